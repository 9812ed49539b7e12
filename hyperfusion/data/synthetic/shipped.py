"""Shipped synthetic tables: a ``cohort.csv`` + ``cohort.json`` without ``images/``, whose scans the generator
rebuilds, byte for byte, into the cache (``$HYPERFUSION_CACHE/demo``) the first time they are needed.

:func:`scans_for` gives a cohort directory whose table finds its scans (the whole cohort generated once);
:func:`subject_scan` gives one subject's scan without generating the rest (the dashboard's first look).
"""

from __future__ import annotations

from pathlib import Path

from hyperfusion.files import cache_root

__all__ = ["STARTER_DIR", "cache_name", "is_shipped_table", "scans_for", "subject_scan"]

#: The first subjects' scans, shipped inside a table's folder so a dashboard shows a scan the moment it starts
STARTER_DIR = "starter_scans"


def cache_name(config) -> str:
    """The cache folder of a synthetic cohort's scans."""
    return f"{config.task}_seed{config.seed}_l{config.interaction_strength:g}"


def _generated(config) -> Path:
    return cache_root("demo", "cohorts", cache_name(config))


def is_shipped_cohort(cohort) -> bool:
    """A loaded :class:`~hyperfusion.data.cohort.Cohort` read from a shipped synthetic table (its scans are
    generated on demand, subject by subject: :func:`is_shipped_table`)."""
    return bool(cohort.is_synthetic) and is_shipped_table(cohort.path)


def is_shipped_table(cohort_dir: str | Path) -> bool:
    """A synthetic table whose scans are generated on demand: a directory with the generator's ``cohort.json``
    and no ``images/``."""
    from hyperfusion.data.synthetic import read_config

    path = Path(cohort_dir)
    return path.is_dir() and not (path / "images").is_dir() and read_config(path) is not None


def scans_for(cohort_dir: str | Path, workers: int = 1, progress: bool = False) -> Path:
    """A cohort directory whose table finds its scans: ``cohort_dir`` itself, or, for a shipped synthetic table,
    the generated copy in the cache (made on first use; the generator is deterministic, so it is the cohort the
    table came from)."""
    from hyperfusion.data.synthetic import ensure_cohort, read_config

    path = Path(cohort_dir)
    if not path.is_dir() or (path / "images").is_dir():
        return path
    config = read_config(path)
    if config is None:
        return path
    return ensure_cohort(_generated(config), config, workers=workers, progress=progress)


def subject_scan(cohort_dir: str | Path, ptid: str) -> Path | None:
    """One subject's scan of a shipped synthetic table without generating the whole cohort: the generated
    cohort's file if it is there, else the copy shipped in ``<table>/starter_scans``, else that subject alone,
    generated into the cache (byte-identical to the full cohort's file; the first one on a machine also builds
    the atrophy fields, about a minute). None when the directory is not a synthetic table."""
    from hyperfusion.data.synthetic import read_config, write_subject_scan

    path = Path(cohort_dir)
    config = read_config(path)
    if config is None:
        return None
    for candidate in (
        _generated(config) / "images" / f"{ptid}.nii.gz",
        path / STARTER_DIR / f"{ptid}.nii.gz",
        cache_root("demo", "subjects", cache_name(config)) / f"{ptid}.nii.gz",
    ):
        if candidate.is_file():
            return candidate
    candidate.parent.mkdir(parents=True, exist_ok=True)
    return write_subject_scan(config, ptid, candidate)
