"""The feature schema: the nine tabular attributes of docs/models.md §1, in one place.

The tabular preprocessing, the cohort parser and the dashboard's record form all read this schema, so a unit,
a range or a name is defined once. Column names are ADNIMERGE's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

FeatureType = Literal["continuous", "binary", "count"]


@dataclass(frozen=True)
class Feature:
    """One tabular attribute.

    ``plausible_range`` bounds what a person can enter or a table can hold before it is refused as an error
    (not a clinical reference range). ``categories`` maps the stored strings of a binary attribute to 0 / 1.
    """

    name: str
    meaning: str
    unit: str
    type: FeatureType
    plausible_range: tuple[float, float]
    editable: bool = True
    censorable: bool = False  # CSF assays report values beyond their range as ">1700" / "<200"
    categories: tuple[str, ...] = ()
    step: float = 1.0  # a sensible increment for the dashboard's inputs

    def to_dict(self) -> dict:
        return asdict(self)


FEATURES: tuple[Feature, ...] = (
    Feature("AGE", "age at the baseline visit", "years", "continuous", (5.0, 110.0), step=0.5),
    Feature(
        "PTGENDER",
        "sex",
        "",
        "binary",
        (0.0, 1.0),
        categories=("Female", "Male"),
    ),
    Feature("PTEDUCAT", "years of education", "years", "count", (0.0, 30.0)),
    Feature("APOE4", "number of APOE ε4 alleles", "alleles", "count", (0.0, 2.0)),
    Feature("ABETA", "CSF amyloid-β 1-42", "pg/mL", "continuous", (50.0, 5000.0), censorable=True, step=10.0),
    Feature("TAU", "CSF total tau", "pg/mL", "continuous", (20.0, 3000.0), censorable=True, step=5.0),
    Feature(
        "PTAU",
        "CSF tau phosphorylated at threonine 181",
        "pg/mL",
        "continuous",
        (2.0, 300.0),
        censorable=True,
        step=0.5,
    ),
    Feature("FDG", "FDG-PET, mean SUVR of the ADNI meta-ROI", "SUVR", "continuous", (0.3, 2.5), step=0.01),
    Feature(
        "AV45", "florbetapir (AV45) amyloid PET, cortical SUVR", "SUVR", "continuous", (0.5, 3.0), step=0.01
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
_BY_NAME = {f.name: f for f in FEATURES}

#: Diagnosis classes, in the order of the model outputs (docs/models.md §1: CN -> 0, MCI -> 1, AD -> 2).
CLASS_NAMES: tuple[str, ...] = ("CN", "MCI", "AD")

#: ADNIMERGE diagnosis strings -> class. EMCI / LMCI / MCI are MCI; SMC counts as CN; "Dementia" is AD.
DIAGNOSIS_MAP: dict[str, str] = {
    "CN": "CN",
    "SMC": "CN",
    "NL": "CN",
    "MCI": "MCI",
    "EMCI": "MCI",
    "LMCI": "MCI",
    "AD": "AD",
    "DEMENTIA": "AD",
}

#: Label columns, in the order they are tried when none is chosen.
LABEL_COLUMNS: tuple[str, ...] = ("DX_bl", "DX", "Group")


def feature(name: str) -> Feature:
    """The schema entry of ``name`` (an ADNIMERGE column name)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown feature {name!r}; known: {', '.join(FEATURE_NAMES)}") from None


def schema_as_dicts() -> list[dict]:
    """The schema as plain data, for model cards and the dashboard."""
    return [f.to_dict() for f in FEATURES]
