"""Moved: :func:`hyperfusion.data.cohort.cohort_record` and :func:`~hyperfusion.data.cohort.cohort_subject`
live beside ``parse_record`` in the data layer; this name stays for code written against it."""

from hyperfusion.data.cohort import cohort_record, cohort_subject

__all__ = ["cohort_record", "cohort_subject"]
