"""Preprocessing of real scans (``hyperfusion preprocess``) and the entry check, against their budgets.

- one 1 mm whole-head T1 preprocessed end to end (Colin27 with its skull, moved into scanner coordinates by a
  known rigid transform), in a fresh process so that its peak memory is its own: ≤ 60 s and ≤ 2 GB on 2 cores;
- the registration error on that known transform (nilearn's template moved, registration only), mean
  distance over the brain: ≤ 1.5 mm;
- the entry check of a 1 mm scan (the check alone, the scan already decoded as predict has it): ≤ 0.2 s.

Batch throughput (N = 1, 2, 4 heads, 1 and 2 workers) takes minutes and is its own benchmark:
``hyperfusion bench preprocess_batch``.

Colin27 comes from Debian's mricron-data (scripts/fetch_real_scans.sh); without it the first figure is taken on
nilearn's template (skull-stripped, so brain extraction has less to do) and the note says so.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from hyperfusion.bench import BenchResult

TIME_BUDGET_S = 60.0
MEMORY_BUDGET_GB = 2.0
ERROR_BUDGET_MM = 1.5
ENTRY_BUDGET_S = 0.2
REAL = Path(
    os.environ.get("HYPERFUSION_REAL_SCANS", Path(__file__).resolve().parents[1] / "tests" / ".real_scans")
)

_CHILD = """
import json, resource, sys, time
from hyperfusion.data.preprocess.pipeline import preprocess_scan
t = time.perf_counter()
r = preprocess_scan(sys.argv[1], sys.argv[2], threads=2)
print(json.dumps({"seconds": time.perf_counter() - t, "qc": r.qc["verdict"]["summary"], "steps": r.qc["seconds"],
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def _move() -> np.ndarray:
    from scipy.spatial.transform import Rotation

    move = np.eye(4)
    move[:3, :3] = Rotation.from_euler("xyz", [12, -8, 20], degrees=True).as_matrix()
    move[:3, 3] = [15, -25, 30]
    return move


def _moved(img: nib.Nifti1Image, path: Path) -> Path:
    affine = _move() @ img.affine
    out = nib.Nifti1Image(np.asarray(img.dataobj), affine)
    out.header.set_sform(affine, code=1)
    nib.save(out, path)
    return path


def run(repeats: int) -> list[BenchResult]:
    import SimpleITK as sitk

    from hyperfusion.data.entry import check_scan
    from hyperfusion.data.preprocess.pipeline import preprocess_scan, transform_points
    from hyperfusion.data.preprocess.template import brain_mask, template

    results = []
    with tempfile.TemporaryDirectory(prefix="hyperfusion-bench-") as tmp:
        tmp = Path(tmp)
        real = (REAL / "ch2.nii.gz").is_file()
        source = nib.load(REAL / "ch2.nii.gz") if real else template(1)
        raw = _moved(source, tmp / "head.nii.gz")
        runs = []
        for k in range(max(1, min(repeats, 3))):  # each run is ~30 s: at most three
            env = {**os.environ, "OMP_NUM_THREADS": "2"}
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, str(raw), str(tmp / f"out{k}")],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = max(r["peak_gb"] for r in runs)
        what = "Colin27 whole head (mricron-data)" if real else "nilearn template (Colin27 absent)"
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in runs[0]["steps"].items())
        results.append(
            BenchResult(
                f"preprocess: one 1 mm T1, {what}",
                seconds,
                TIME_BUDGET_S,
                "<= 60 s",
                seconds <= TIME_BUDGET_S,
                note=f"{len(runs)} run(s); {steps}; {runs[0]['qc']}",
            )
        )
        results.append(
            BenchResult(
                "preprocess: peak memory of that process",
                peak,
                MEMORY_BUDGET_GB,
                "<= 2 GB",
                peak <= MEMORY_BUDGET_GB,
                unit="GB",
            )
        )

        moved = _moved(template(1), tmp / "template_moved.nii.gz")
        preprocess_scan(moved, tmp / "reg", skull_strip=False)
        m = brain_mask(2)
        ijk = np.argwhere(np.asarray(m.dataobj) > 0)[::10]
        points = (m.affine[:3, :3] @ ijk.T + m.affine[:3, 3:4]).T
        truth = (_move()[:3, :3] @ points.T + _move()[:3, 3:4]).T
        found = transform_points(sitk.ReadTransform(str(tmp / "reg" / "transform.tfm")), points)
        error = float(np.linalg.norm(found - truth, axis=1).mean())
        results.append(
            BenchResult(
                "preprocess: registration error on a known transform",
                error,
                ERROR_BUDGET_MM,
                "<= 1.5 mm",
                error <= ERROR_BUDGET_MM,
                unit="mm",
                note="nilearn template moved by 12°/-8°/20° and (15, -25, 30) mm",
            )
        )

        scan = REAL / "ch2bet.nii.gz" if (REAL / "ch2bet.nii.gz").is_file() else tmp / "reg" / "scan.nii.gz"
        from hyperfusion.data.nifti import load_nifti

        img = load_nifti(scan)
        check_scan(img)  # warm: the template's coarse reference is built once per process
        times = []
        for _ in range(max(repeats, 5)):
            t = time.perf_counter()
            check_scan(img)
            times.append(time.perf_counter() - t)
        entry = statistics.median(times)
        t = time.perf_counter()
        check_scan(scan)
        with_decode = time.perf_counter() - t
        results.append(
            BenchResult(
                "entry check: one 1 mm scan",
                entry,
                ENTRY_BUDGET_S,
                "<= 0.2 s",
                entry <= ENTRY_BUDGET_S,
                note=f"{scan.name}; with decoding the .nii.gz {with_decode:.2f} s",
            )
        )
    return results
