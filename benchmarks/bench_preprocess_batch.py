"""Batch preprocessing throughput (``hyperfusion preprocess --input TABLE --workers W``): N = 1, 2, 4 real heads
with 1 and 2 worker processes, the 2 cores shared out (1 worker: 2 threads; 2 workers: 1 thread each). Each
setting is one fresh ``hyperfusion preprocess`` process, timed from start to exit as a user would see it
(Python start-up, imports and loading deepbet's network included, once per worker process).

The subjects are Colin27 with its skull (Debian's mricron-data, scripts/fetch_real_scans.sh), each copy moved
into 'scanner' coordinates by its own known rigid transform. Each setting starts from an empty cohort directory
(no subject is skipped). Budget: linear in N (the time per subject of N = 4 within 1.5× that of N = 1). On 2
cores, 2 workers of 1 thread and 1 worker of 2 threads both use both cores: their ratio is reported, not budgeted. This takes minutes (about 14 subject runs of ~30 s): it is not part of
``hyperfusion bench preprocess``; run it as ``hyperfusion bench preprocess_batch``.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from hyperfusion.bench import BenchResult

REAL = Path(
    os.environ.get("HYPERFUSION_REAL_SCANS", Path(__file__).resolve().parents[1] / "tests" / ".real_scans")
)
SIZES = (1, 2, 4)
WORKERS = (1, 2)
LINEAR_BUDGET = 1.5


def moves(n: int) -> list[np.ndarray]:
    """``n`` known rigid transforms (world mm -> world mm): rotations up to 20° and shifts up to 30 mm."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(14)
    out = []
    for _ in range(n):
        m = np.eye(4)
        m[:3, :3] = Rotation.from_euler("xyz", rng.uniform(-20, 20, 3), degrees=True).as_matrix()
        m[:3, 3] = rng.uniform(-30, 30, 3)
        out.append(m)
    return out


def write_subjects(root: Path, n: int) -> Path:
    """``n`` moved copies of Colin27's head and a table naming them (PTID, AGE, scan); returns the table."""
    head = nib.load(REAL / "ch2.nii.gz")
    data = np.asarray(head.dataobj)
    lines = ["PTID,AGE,scan"]
    for k, move in enumerate(moves(n)):
        affine = move @ head.affine
        img = nib.Nifti1Image(data, affine)
        img.header.set_sform(affine, code=1)
        img.header.set_qform(affine, code=1)
        nib.save(img, root / f"sub{k}.nii.gz")
        lines.append(f"sub{k},33,sub{k}.nii.gz")
    table = root / "subjects.csv"
    table.write_text("\n".join(lines) + "\n")
    return table


def time_batch(table: Path, out: Path, workers: int) -> tuple[float, list[dict], float]:
    """Wall time of one ``hyperfusion preprocess`` process on the table, the subjects' statuses, and the peak
    memory (GB) of the largest process so far (this benchmark's children)."""
    import csv
    import subprocess
    import sys

    args = [
        sys.executable,
        "-m",
        "hyperfusion.cli",
        "preprocess",
        "--input",
        str(table),
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--threads",
        str(max(1, 2 // workers)),
        "--quiet",
    ]
    start = time.perf_counter()
    subprocess.run(args, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    statuses = list(csv.DictReader((out / "preprocess" / "summary.csv").open()))
    return wall, statuses, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def run(repeats: int) -> list[BenchResult]:
    if not (REAL / "ch2.nii.gz").is_file():
        return [
            BenchResult(
                "preprocess batch: Colin27 absent (run scripts/fetch_real_scans.sh)",
                0.0,
                1.0,
                "skipped",
                True,
                note=f"no {REAL / 'ch2.nii.gz'}",
            )
        ]
    results = []
    seconds: dict[tuple[int, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="hyperfusion-bench-batch-") as tmp:
        tmp = Path(tmp)
        for n in SIZES:
            folder = tmp / f"n{n}"
            folder.mkdir()
            table = write_subjects(folder, n)
            for w in WORKERS:
                wall, statuses, peak = time_batch(table, folder / f"cohort_w{w}", w)
                failed = [s for s in statuses if s["status"] != "done" or "QC passed" not in s.get("qc", "")]
                seconds[(n, w)] = wall
                results.append(
                    BenchResult(
                        f"preprocess batch: N={n}, {w} worker(s)",
                        wall,
                        60.0 * n,
                        "<= 60 s per subject",
                        wall <= 60.0 * n and not failed,
                        note=f"{wall / n:.1f} s per subject, {n / wall * 3600:.0f} subjects/hour; "
                        f"{len(failed)} failed or failed QC",
                    )
                )
    for w in WORKERS:
        ratio = (seconds[(4, w)] / 4) / seconds[(1, w)]
        results.append(
            BenchResult(
                f"preprocess batch: per-subject time N=4 / N=1, {w} worker(s)",
                ratio,
                LINEAR_BUDGET,
                f"<= {LINEAR_BUDGET} (linear in N)",
                ratio <= LINEAR_BUDGET,
                unit="x",
            )
        )
    speedup = seconds[(4, 1)] / seconds[(4, 2)]
    results.append(
        BenchResult(
            "preprocess batch: 2 workers (1 thread) against 1 worker (2 threads), N=4",
            speedup,
            1.0,
            "reported",
            True,
            unit="x",
            note=f"peak memory of the largest process: {peak:.2f} GB",
        )
    )
    return results
