"""Shared fixtures: hand-built ADNI-format tables (never real ADNI rows) and random cohort tables."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# A hand-made ADNIMERGE-style table: several visits per subject, censored CSF strings, gaps, every label
# spelling. Expected after baseline selection (label column DX_bl):
#   S1 bl CN; S2 bl EMCI->MCI (m06 row has DX Dementia, ignored); S3 no bl -> earliest EXAMDATE (2011-02-01) LMCI;
#   S4 SMC->CN; S5 AD; S6 empty DX_bl -> dropped; S7 only row, MCI
ADNIMERGE_CSV = textwrap.dedent(
    """\
    RID,PTID,VISCODE,EXAMDATE,DX_bl,DX,AGE,PTGENDER,PTEDUCAT,APOE4,ABETA,TAU,PTAU,FDG,AV45,MMSE,ADAS13,CDRSB
    1,S1,bl,2010-01-05,CN,CN,71.2,Female,16,0,>1700,210.5,19.2,1.31,,29,8.67,0
    1,S1,m12,2011-01-04,CN,CN,72.2,Female,16,0,1650,220,20.1,1.30,,30,7,0
    2,S2,bl,2012-03-01,EMCI,MCI,68.0,Male,18,1,640.2,300.1,28.5,,1.21,28,12,0.5
    2,S2,m06,2012-09-01,EMCI,Dementia,68.5,Male,18,1,600,310,29,,1.25,26,18,2
    3,S3,m12,2012-02-01,LMCI,MCI,80.1,Male,12,,<200,,,1.05,,27,20,1.5
    3,S3,sc,2011-02-01,LMCI,MCI,79.1,Male,12,2,<200,400,<8,1.10,1.52,27,19,1
    4,S4,bl,2013-05-05,SMC,CN,66.0,Female,20,0,,,,,1.01,30,5,0
    5,S5,bl,2010-06-06,AD,Dementia,77.7,Female,14,1,512,380,36.2,0.95,1.44,22,31,4.5
    5,S5,m24,2012-06-06,AD,Dementia,79.7,Female,14,1,480,390,38,0.90,1.48,19,38,6
    6,S6,bl,2014-01-01,,,70.0,Male,16,0,900,200,18,1.2,1.1,29,9,0
    7,S7,bl,2015-01-01,LMCI,MCI,74.0,Female,15,1,800,250,24,1.2,1.3,27,15,1
    """
)


@pytest.fixture
def adnimerge_path(tmp_path: Path) -> Path:
    path = tmp_path / "ADNIMERGE_example.csv"
    path.write_text(ADNIMERGE_CSV, encoding="utf-8")
    return path


def random_cohort_table(n: int, seed: int = 0, missing: float = 0.3) -> pd.DataFrame:
    """A parsed-cohort-like table (DX, nine attributes as numbers) with random gaps; not ADNI data."""
    rng = np.random.default_rng(seed)
    dx = rng.choice(["CN", "MCI", "AD"], size=n, p=[0.35, 0.48, 0.17])
    severity = pd.Series(dx).map({"CN": 0.0, "MCI": 0.4, "AD": 1.0}).to_numpy()
    table = pd.DataFrame(
        {
            "PTID": [f"SUBJ_{i:04d}" for i in range(n)],
            "DX": dx,
            "AGE": np.clip(rng.normal(73, 7, n) + 2 * severity, 55, 91).round(1),
            "PTGENDER": rng.integers(0, 2, n).astype(float),
            "PTEDUCAT": np.clip(rng.normal(16, 2.7, n), 6, 20).round(),
            "APOE4": rng.choice([0.0, 1.0, 2.0], size=n, p=[0.55, 0.35, 0.10]),
            "ABETA": np.exp(rng.normal(np.log(1200) - 0.6 * severity, 0.25)),
            "PTAU": np.exp(rng.normal(np.log(22) + 0.5 * severity, 0.3)),
            "FDG": rng.normal(1.3 - 0.25 * severity, 0.11),
            "AV45": rng.normal(1.1 + 0.3 * severity, 0.15),
        }
    )
    table["TAU"] = table["PTAU"] * 10.6 * np.exp(rng.normal(0, 0.05, n))
    for col in ["APOE4", "ABETA", "TAU", "PTAU", "FDG", "AV45"]:
        table.loc[rng.random(n) < missing, col] = np.nan
    return table


@pytest.fixture
def cohort_table() -> pd.DataFrame:
    return random_cohort_table(300, seed=1)


def mni_brain(shape: tuple[int, ...], affine: np.ndarray, scale: float = 100.0) -> np.ndarray:
    """nilearn's skull-stripped MNI152 template (shipped inside nilearn) sampled on a grid: float32, 0 outside
    the brain. A scan built from it passes the entry check (skull-stripped, registered, T1 contrast)."""
    from scipy import ndimage

    from hyperfusion.data.preprocess.template import template

    t = template(2)
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4]
    inv = np.linalg.inv(t.affine)
    src = inv[:3, :3] @ world + inv[:3, 3:4]
    values = ndimage.map_coordinates(np.asarray(t.dataobj, dtype=np.float32), src, order=1, cval=0.0)
    return (scale * np.clip(values, 0, None)).reshape(shape).astype(np.float32)


def write_image_cohort(
    root: Path, n: int, seed: int = 0, voxel_mm: float = 4.0, brain_like: bool = False
) -> Path:
    """A cohort directory of ``n`` random subjects with small box scans (brighter left hemisphere, and a
    hippocampus-like blob that dims with the diagnosis so image models have something to learn).

    ``brain_like``: the scans are the MNI152 template with the same signals added inside the brain (weaker),
    so that they pass the entry check of ``predict`` / ``explain`` / the Upload page / ``load_cohort``;
    otherwise noise boxes, and ``cohort.json`` says ``"allow_unregistered": true`` (loaded with a warning).
    """
    import json

    import nibabel as nib

    from hyperfusion.data.geometry import ad_box, box_affine

    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    table = random_cohort_table(n, seed=seed)
    severity = table["DX"].map({"CN": 0.0, "MCI": 0.5, "AD": 1.0}).to_numpy()
    table["PTGENDER"] = table["PTGENDER"].map({0.0: "Female", 1.0: "Male"})
    table.rename(columns={"DX": "DX_bl"}).to_csv(root / "cohort.csv", index=False)
    meta = {"source": "synthetic", "generator": "tests"}
    if not brain_like:  # noise boxes fail the entry check: this cohort says to load it anyway, with a warning
        meta["allow_unregistered"] = True
    (root / "cohort.json").write_text(json.dumps(meta))
    g = ad_box(voxel_mm)
    affine = box_affine(g)
    rng = np.random.default_rng(seed)
    d, h, w = g.box_shape
    zz, yy, xx = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    anatomy = mni_brain(g.box_shape, affine) if brain_like else None
    for i, ptid in enumerate(table["PTID"]):
        box = rng.uniform(50, 60, g.box_shape).astype(np.float32)
        box[..., : w // 2] += 100 + i
        for cx in (w // 4, 3 * w // 4):
            blob = ((zz - d / 2) ** 2 + (yy - h / 2) ** 2 + (xx - cx) ** 2) < (min(d, h, w) / 5) ** 2
            box[blob] += 80 * (1 - severity[i])
        if anatomy is not None:  # the template, with a tenth of the signals above inside its brain
            box = np.where(anatomy > 5, anatomy + 0.1 * (box - 50), 0).astype(np.float32)
        nib.save(nib.Nifti1Image(box, affine), root / "images" / f"{ptid}.nii.gz")
    return root
