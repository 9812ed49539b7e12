"""Errors a user can act on.

Every error raised for bad input derives from :class:`HyperFusionError`; its message names the problem and
what to do. The CLI prints it as one line and exits non-zero; the dashboard shows it and keeps working.
"""


class HyperFusionError(Exception):
    """Base class of the errors whose message is meant for the user."""


class DataError(HyperFusionError, ValueError):
    """A table, record or scan that cannot be used as it is."""


class ModelFileError(HyperFusionError, ValueError):
    """A model directory that cannot be loaded safely."""
