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

import numpy as np
import torch

from hyperfusion.bench import (
    AD_MODELS,
    BENCH_RECORD,
    PAPER,
    BenchResult,
    median_time,
    random_ad_models,
    random_box_scan,
)
from hyperfusion.inference.predictor import Predictor

MODELS = AD_MODELS
RECORD = BENCH_RECORD


PAPER_MODELS = ("hyperfusion", "image_only", "concat")


def run(repeats: int, size: str = "demo") -> list[BenchResult]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the dashboard runs its Predictor (app/dashboard.py)
    try:
        return _paper(repeats) if size == "paper" else _demo(repeats)
    finally:
        torch.set_num_threads(threads)


def _setup(tmp: Path, voxel_mm: float, init_features: int, models) -> tuple[Predictor, bytes]:
    dirs = random_ad_models(tmp, voxel_mm, init_features, models)
    return Predictor(dirs), random_box_scan(tmp / "scan.nii.gz", voxel_mm).read_bytes()


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
    with tempfile.TemporaryDirectory() as tmp:
        predictor, scan_bytes = _setup(Path(tmp), 2.0, 8, MODELS)
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
