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


def read_json_object(path, error: type[HyperFusionError] = DataError, damaged: str = "") -> dict:
    """The JSON object in the UTF-8 file ``path``; anything else raises ``error`` naming the file (and
    ``damaged``, what a bad file means for the user)."""
    import json
    from pathlib import Path

    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc}){damaged}") from None
    if not isinstance(value, dict):
        raise error(f"{path}: must hold a JSON object{damaged}")
    return value
