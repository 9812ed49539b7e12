"""Live what-if: a tabular edit -> new predictions of every loaded model, through cached image features.

Side by side in one run: a cold prediction (image features computed) against an edit (decode only), for the
seven AD architectures at the demo size (2 mm box, init_features 8), randomly initialised (timing does not
depend on the weights). Budget (docs/architecture.md): an edit ≤ 50 ms median for all models together.

``--size paper``: the 1 mm box (two 64 × 96 × 64 views), init_features 16, the three image models the paper
compares most (hyperfusion, image_only, concat); budget: an edit ≤ 5 ms per model, against a cold prediction.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from hyperfusion.bench import PAPER, BenchResult, median_time, random_record_rows
from hyperfusion.data import TabularPreprocessor, ad_box
from hyperfusion.data.geometry import box_affine
from hyperfusion.inference.model_files import save_model
from hyperfusion.inference.predictor import Predictor
from hyperfusion.models import build_model

MODELS = ("hyperfusion", "image_only", "tabular_only", "concat", "film", "daft", "attention_gmu")
RECORD = {
    "AGE": 74.0,
    "PTGENDER": "Female",
    "PTEDUCAT": 16,
    "APOE4": 1,
    "ABETA": 700.0,
    "TAU": 300.0,
    "PTAU": 28.0,
    "FDG": 1.2,
    "AV45": None,
}


PAPER_MODELS = ("hyperfusion", "image_only", "concat")


def run(repeats: int, size: str = "demo") -> list[BenchResult]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the dashboard runs its Predictor (app/dashboard.py)
    try:
        return _paper(repeats) if size == "paper" else _demo(repeats)
    finally:
        torch.set_num_threads(threads)


def _setup(tmp: Path, voxel_mm: float, init_features: int, models) -> tuple[Predictor, bytes]:
    g = ad_box(voxel_mm)
    rng = np.random.default_rng(0)
    rows = random_record_rows(rng)
    card = {"geometry": g.to_dict(), "tabular": {"preprocessing": TabularPreprocessor().fit(rows).to_dict()}}
    scan = tmp / "scan.nii.gz"
    nib.save(nib.Nifti1Image(rng.uniform(0, 100, g.box_shape).astype(np.float32), box_affine(g)), scan)
    dirs = {}
    torch.manual_seed(0)
    for name in models:
        kw = (
            {}
            if name == "tabular_only"
            else {"init_features": init_features, "input_shape": list(g.input_shape)}
        )
        dirs[name] = save_model(build_model(name, "ad", **kw).eval(), card, tmp / name)
    return Predictor(dirs), scan.read_bytes()


def _paper(repeats: int) -> list[BenchResult]:
    n = len(PAPER_MODELS)
    with tempfile.TemporaryDirectory() as tmp:
        predictor, scan_bytes = _setup(Path(tmp), PAPER["voxel_mm"], PAPER["init_features"], PAPER_MODELS)
        ages = iter(np.linspace(55, 90, 100000))

        def cold():
            predictor._features.clear()
            predictor.predict(scan_bytes, RECORD)

        t_cold = median_time(cold, max(1, min(repeats, 3)))
        predictor.predict(scan_bytes, RECORD)
        t_edit = median_time(
            lambda: predictor.predict(scan_bytes, {**RECORD, "AGE": float(next(ages))}), max(repeats, 20)
        )
    return [
        BenchResult(
            f"predictor (paper): tabular edit per model, {n} models (cached features) vs a cold prediction",
            t_edit / n,
            t_cold / n,
            "<= 5 ms per model",
            t_edit / n <= 0.005,
            note=f"1 mm box, two 64x96x64 views, init_features 16, {', '.join(PAPER_MODELS)}; one torch thread "
            f"as in the dashboard; the cold prediction (scan decoded, image features computed) {t_cold / n * 1e3:.0f} "
            "ms per model",
        )
    ]


def _demo(repeats: int) -> list[BenchResult]:
    g = ad_box(2.0)
    rng = np.random.default_rng(0)
    rows = random_record_rows(rng)
    card = {"geometry": g.to_dict(), "tabular": {"preprocessing": TabularPreprocessor().fit(rows).to_dict()}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scan = tmp / "scan.nii.gz"
        nib.save(nib.Nifti1Image(rng.uniform(0, 100, g.box_shape).astype(np.float32), box_affine(g)), scan)
        dirs = {}
        for name in MODELS:
            kw = {} if name == "tabular_only" else {"init_features": 8, "input_shape": list(g.input_shape)}
            dirs[name] = save_model(build_model(name, "ad", **kw).eval(), card, tmp / name)
        predictor = Predictor(dirs)
        scan_bytes = scan.read_bytes()
        ages = iter(np.linspace(55, 90, 100000))

        def cold():
            predictor._features.clear()
            predictor.predict(scan_bytes, RECORD)

        def edit():
            predictor.predict(scan_bytes, {**RECORD, "AGE": float(next(ages))})

        t_cold = median_time(cold, repeats)
        predictor.predict(scan_bytes, RECORD)
        t_edit = median_time(edit, max(repeats, 20))
        sweep = [{**RECORD, "AGE": float(a)} for a in np.linspace(55, 90, 32)]
        t_sweep = median_time(lambda: predictor.predict(scan_bytes, sweep), repeats)
    return [
        BenchResult(
            "predictor: tabular edit, 7 models (cached features) vs cold prediction",
            t_edit,
            t_cold,
            "<= 50 ms",
            t_edit <= 0.050,
            note=f"2 mm box, init_features 8, one torch thread as in the dashboard; an ICE sweep of 32 ages through all 7 models took {t_sweep * 1e3:.0f} ms",
        )
    ]
