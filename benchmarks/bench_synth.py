"""Synthetic cohort generation: time per subject and peak memory, against the budgets of issue #3.

* per subject, 2 mm hippocampal box: <= 0.5 s (one process: generate and write the scan and its truth maps)
* per subject, 2 mm whole brain: <= 2 s (the AD task, and the brain-age task with its white-matter fields and
  whole-brain volume measures; at 4 mm, as the brain-age demo writes them, for reference)
* peak memory of ``hyperfusion synth --whole-brain`` with 2 workers, all processes together (proportional set
  size): <= 4 GB, whatever N (subjects stream to disk; measured at two N to show it does not grow)

The budget is the reference, so the printed ratio is budget / measured (above 1: within budget). The field
cache is built before timing (it is built once per machine).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hyperfusion.bench import BenchResult, median_time

BOX_BUDGET_S, WHOLE_BRAIN_BUDGET_S, MEMORY_BUDGET_GB = 0.5, 2.0, 4.0


def _per_subject(
    whole_brain: bool, repeats: int, out: Path, task: str = "ad", voxel_size: float = 2.0
) -> float:
    from hyperfusion.data.synthetic import SynthConfig
    from hyperfusion.data.synthetic.generator import _init_worker, _write_subject
    from hyperfusion.data.synthetic.subject import render_context

    config = SynthConfig(n=1000, seed=0, task=task, voxel_size=voxel_size, whole_brain=whole_brain)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    _init_worker(config, str(out))
    render_context(voxel_size, whole_brain, task)  # per-process set-up, paid once per worker
    indices = itertools.count()
    return median_time(lambda: _write_subject(next(indices)), repeats=max(repeats, 3), warmup=1)


def _memory_bytes(pid: int) -> int:
    """Proportional set size (shared pages split between the processes sharing them), else resident size."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _tree_memory_bytes(root: int) -> int:
    """Memory of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            total += _memory_bytes(pid)
        except (OSError, ValueError, IndexError):
            pass
        stack.extend(children.get(pid, []))
    return total


def _peak_memory_gb(n: int, out: Path) -> float:
    cmd = [
        sys.executable,
        "-m",
        "hyperfusion.cli",
        "synth",
        "--n",
        str(n),
        "--out",
        str(out),
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_memory_bytes(proc.pid))
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with status {proc.returncode}")
    return peak / 1e9


def run(repeats: int) -> list[BenchResult]:
    from hyperfusion.data.synthetic.fields import load_fields

    load_fields()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        box = _per_subject(False, repeats, Path(tmp) / "box")
        results.append(
            BenchResult("synth: 2 mm box, per subject", box, BOX_BUDGET_S, "<= 0.5 s", box <= BOX_BUDGET_S)
        )
        whole = _per_subject(True, repeats, Path(tmp) / "whole")
        results.append(
            BenchResult(
                "synth: 2 mm whole brain, per subject",
                whole,
                WHOLE_BRAIN_BUDGET_S,
                "<= 2 s",
                whole <= WHOLE_BRAIN_BUDGET_S,
            )
        )
        for voxel_size in (2.0, 4.0):
            ages = _per_subject(True, repeats, Path(tmp) / f"ages{voxel_size:g}", "brain_age", voxel_size)
            results.append(
                BenchResult(
                    f"synth: brain age, {voxel_size:g} mm whole brain, per subject",
                    ages,
                    WHOLE_BRAIN_BUDGET_S,
                    "<= 2 s",
                    ages <= WHOLE_BRAIN_BUDGET_S,
                )
            )
        if Path("/proc/self/statm").exists():
            small, large = _peak_memory_gb(8, Path(tmp) / "m8"), _peak_memory_gb(32, Path(tmp) / "m32")
            results.append(
                BenchResult(
                    "synth: peak memory, 2 mm whole brain, 2 workers, N = 32",
                    large,
                    MEMORY_BUDGET_GB,
                    "<= 4 GB",
                    large <= MEMORY_BUDGET_GB,
                    unit="GB",
                    note=f"N = 8: {small:.2f} GB; all processes together (proportional set size)",
                )
            )
    return results
