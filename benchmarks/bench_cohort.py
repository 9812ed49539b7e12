"""Cohort inference throughput (``hyperfusion predict --cohort``), subjects per second.

A cohort of N subjects whose scans are nilearn's MNI152 template (1 mm, 197 × 233 × 189, ``.nii.gz``) with a
little noise each (so every scan is its own file to decode, resample and z-score), three image models
(hyperfusion, image_only, concat) randomly initialised. Measured in alternation in the same run, each from
cold (no volume cache, no cached features):

- :func:`~hyperfusion.inference.cohort.predict_cohort` with 1 loader thread, and with 2;
- the reference: ``Predictor.predict`` one subject at a time (what the Cohort page did before).

Budget: the batched run is at least as fast as the loop (ratio ≥ 1). Sizes: demo (2 mm box, init_features 4,
16 subjects, batches of 8) and paper (1 mm box of two 64 × 96 × 64 views, init_features 16, 8 subjects,
batches of 4). torch runs with the default threads (every core), as the command does.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from hyperfusion.bench import PAPER, BenchResult, interleaved_medians, random_ad_models, random_record_rows

MODELS = ("hyperfusion", "image_only", "concat")
SIZES = {
    "demo": {"voxel_mm": 2.0, "init_features": 4, "n": 16, "batch_size": 8},
    "paper": {**PAPER, "n": 8, "batch_size": 4},
}


def _mni_template() -> Path:
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    if not path.is_file():
        raise FileNotFoundError(f"nilearn's MNI152 template is missing at {path}; reinstall nilearn")
    return path


def _cohort(root: Path, n: int) -> Path:
    """A cohort directory: cohort.csv with random records, images/PTID.nii.gz the template with noise."""
    rng = np.random.default_rng(0)
    table = random_record_rows(rng, n)
    table.insert(0, "PTID", [f"B{i:03d}" for i in range(n)])
    table["DX"] = rng.choice(["CN", "MCI", "AD"], n)
    table["PTGENDER"] = table["PTGENDER"].map({0.0: "Female", 1.0: "Male"})
    (root / "images").mkdir(parents=True)
    table.to_csv(root / "cohort.csv", index=False)
    template = nib.load(_mni_template())
    data = np.asarray(template.dataobj, dtype=np.float32)
    for ptid in table["PTID"]:
        noisy = np.where(data > 0, data + rng.integers(0, 3, data.shape), 0).astype(
            np.int16
        )  # as scanners store
        nib.save(nib.Nifti1Image(noisy, template.affine), root / "images" / f"{ptid}.nii.gz")
    return root


def _models(root: Path, voxel_mm: float, init_features: int) -> dict[str, Path]:
    return random_ad_models(root, voxel_mm, init_features, MODELS, seed=1)


def run(repeats: int, size: str = "demo") -> list[BenchResult]:
    from hyperfusion.data import load_cohort
    from hyperfusion.data.cohort import cohort_record
    from hyperfusion.inference.cohort import predict_cohort
    from hyperfusion.inference.predictor import Predictor

    cfg = SIZES[size]
    n = cfg["n"]
    with tempfile.TemporaryDirectory(prefix="hyperfusion-bench-") as tmp:
        tmp = Path(tmp)
        cohort = load_cohort(_cohort(tmp / "cohort", cfg["n"]))
        dirs = _models(tmp / "models", cfg["voxel_mm"], cfg["init_features"])
        counts = {}

        def batched(workers: int):
            def call():
                predictor = Predictor(dirs)  # no volume cache: every scan decoded and resampled
                rows = predict_cohort(predictor, cohort, batch_size=cfg["batch_size"], workers=workers)
                counts[workers] = rows

            return call

        def loop():
            predictor = Predictor(dirs)
            for _, row in cohort.table.iterrows():
                predictor.predict(row["image_path"], cohort_record(row))

        t = interleaved_medians(
            {"loop": loop, "workers1": batched(1), "workers2": batched(2)}, max(1, min(repeats, 3))
        )
        errors = counts[1]["error"].fillna("")
        if (errors != "").any() or len(counts[1]) != n * len(MODELS):
            raise RuntimeError(f"the cohort run failed: {sorted(set(errors))[:3]}")
        shutil.rmtree(tmp / "cohort", ignore_errors=True)
    label = (
        f"{cfg['voxel_mm']:g} mm box, init_features {cfg['init_features']}, {n} subjects x {len(MODELS)} models, "
        f"batches of {cfg['batch_size']}, {torch.get_num_threads()} torch thread(s), scans decoded from cold"
    )
    rate = {k: n / v for k, v in t.items()}
    return [
        BenchResult(
            f"cohort ({size}): predict_cohort, 1 loader thread vs one subject at a time",
            t["workers1"],
            t["loop"],
            ">= 1x",
            t["workers1"] <= t["loop"] * 1.05,
            note=f"{label}: {rate['workers1']:.2f} subjects/s vs {rate['loop']:.2f}",
        ),
        BenchResult(
            f"cohort ({size}): predict_cohort, 2 loader threads vs 1",
            t["workers2"],
            t["workers1"],
            "informational",
            True,
            note=f"{rate['workers2']:.2f} subjects/s with 2 loader threads, {rate['workers1']:.2f} with 1",
        ),
    ]
