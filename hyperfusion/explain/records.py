"""Cohort subjects as the raw records the Predictor and the explanations take.

A cohort's table holds parsed numbers (PTGENDER 0 / 1, CSF values with a censoring flag); the Predictor takes
records as a person would type them (ADNIMERGE names, "Female" / "Male", ">1700"). These two functions go
from one to the other, so a cohort subject and a hand-written ``ROW.json`` take the same path.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from hyperfusion.data.cohort import Cohort
from hyperfusion.data.schema import FEATURES
from hyperfusion.errors import DataError

__all__ = ["cohort_record", "cohort_subject"]


def cohort_record(row: pd.Series | dict[str, Any]) -> dict[str, Any]:
    """A cohort table row -> raw record: numbers, None where missing, sex as its category, censored CSF
    values as the assay reports them (">1700", "<200")."""
    out: dict[str, Any] = {}
    for f in FEATURES:
        value = row.get(f.name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[f.name] = None
            continue
        if f.categories:
            out[f.name] = f.categories[int(value)]
            continue
        flag = row.get(f"{f.name}_censored", 0) if f.censorable else 0
        flag = 0 if flag is None or (isinstance(flag, float) and math.isnan(flag)) else int(flag)
        value = float(value)
        out[f.name] = f"{'<' if flag < 0 else '>'}{value:g}" if flag else value
    return out


def cohort_subject(cohort: Cohort, ptid: str) -> tuple[str | None, dict[str, Any]]:
    """(scan path or None, raw record) of the subject ``ptid``."""
    rows = cohort.table[cohort.table["PTID"] == ptid]
    if rows.empty:
        sample = ", ".join(cohort.table["PTID"].head(5))
        raise DataError(f"{cohort.path}: no subject {ptid!r}; PTIDs look like {sample}")
    row = rows.iloc[0]
    path = row.get("image_path")
    return (None if not isinstance(path, str) else path), cohort_record(row)
