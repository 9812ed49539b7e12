"""Runs the benchmarks under ``benchmarks/`` and prints one table of ratios measured side by side.

Each ``benchmarks/bench_*.py`` defines ``run(repeats: int) -> list[BenchResult]``. A result compares two
timings (or sizes) taken in the same run, so the ratio holds on any machine; the budget says which way it
must point. Medians of ``repeats`` runs are reported.

Sizes (``hyperfusion bench --size``): "demo" (the default; the shipped models' 2 mm box, small widths) and
"paper" (the paper's 1 mm box of two 64 × 96 × 64 hemisphere views, init_features 16). A benchmark that takes
``run(repeats, size)`` measures the size asked for; the others have only the demo size and are left out of a
paper-size run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hyperfusion.errors import HyperFusionError
from hyperfusion.serve import wait_for_port  # noqa: F401 - the benchmarks' name for it


@dataclass
class BenchResult:
    name: str
    measured: float  # seconds (or the unit named in ``unit``)
    reference: float  # the side-by-side reference, same unit
    budget: str  # e.g. ">= 20x faster" or "<= 1.2x"
    passed: bool
    unit: str = "s"
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.reference / self.measured if self.measured else float("inf")


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median time of each function, measured in alternation so load from other processes hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(median_time(fn, repeats=1, warmup=1 if not times[name] else 0))
    return {name: statistics.median(t) for name, t in times.items()}


def random_record_rows(rng, n: int = 50):
    """``n`` random records of the nine attributes (a DataFrame) to fit a preprocessor for timing runs."""
    import pandas as pd

    return pd.DataFrame(
        {
            "AGE": rng.normal(73, 7, n),
            "PTGENDER": rng.integers(0, 2, n).astype(float),
            "PTEDUCAT": rng.integers(8, 20, n).astype(float),
            "APOE4": rng.integers(0, 3, n).astype(float),
            "ABETA": rng.normal(900, 300, n),
            "TAU": rng.normal(280, 80, n),
            "PTAU": rng.normal(26, 8, n),
            "FDG": rng.normal(1.2, 0.1, n),
            "AV45": rng.normal(1.2, 0.2, n),
        }
    )


#: The seven AD architectures, and one record, that the timing runs predict and explain.
AD_MODELS = ("hyperfusion", "image_only", "tabular_only", "concat", "film", "daft", "attention_gmu")
BENCH_RECORD = {
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


def random_ad_models(
    root: Path, voxel_mm: float, init_features: int, models=AD_MODELS, seed: int = 0
) -> dict[str, Path]:
    """Model files of randomly initialised AD networks (timing does not depend on the weights) in ``root``:
    name -> model directory, at the hippocampal box of ``voxel_mm`` and ``init_features``."""
    import numpy as np
    import torch

    from hyperfusion.data import TabularPreprocessor, ad_box
    from hyperfusion.inference.model_files import save_model
    from hyperfusion.models import build_model

    g = ad_box(voxel_mm)
    rows = random_record_rows(np.random.default_rng(seed))
    card = {"geometry": g.to_dict(), "tabular": {"preprocessing": TabularPreprocessor().fit(rows).to_dict()}}
    torch.manual_seed(seed)
    dirs = {}
    for name in models:
        kw = (
            {}
            if name == "tabular_only"
            else {"init_features": init_features, "input_shape": list(g.input_shape)}
        )
        dirs[name] = save_model(build_model(name, "ad", **kw).eval(), card, Path(root) / name)
    return dirs


def random_box_scan(path: Path, voxel_mm: float, seed: int = 0) -> Path:
    """A NIfTI of uniform noise on the hippocampal box's grid at ``voxel_mm`` (a scan to time models on)."""
    import nibabel as nib
    import numpy as np

    from hyperfusion.data import ad_box
    from hyperfusion.data.geometry import box_affine

    g = ad_box(voxel_mm)
    volume = np.random.default_rng(seed).uniform(0, 100, g.box_shape).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, box_affine(g)), path)
    return Path(path)


# --- the dashboard in a real browser (the browser benchmarks share these) -----------------------------------
#: Debian's chromium, which Playwright drives headless (installed by the README's test command).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage")


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server process, killing it when it does not stop within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def demo_env() -> dict[str, str]:
    """This environment without any ``HYPERFUSION_*`` setting but the cache: ``hyperfusion app`` then serves
    the demo cohort and models, with the synthetic scans it generates kept where this process keeps them."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("HYPERFUSION_") or k == "HYPERFUSION_CACHE"
    }


def app_command(port: int) -> list[str]:
    """``hyperfusion app --port PORT`` (the README's first command; loopback), run by this Python."""
    return [sys.executable, "-m", "hyperfusion.cli", "app", "--port", str(port)]


def streamlit_command(script: Path, port: int) -> list[str]:
    """``streamlit run SCRIPT`` headless on 127.0.0.1:``port``: a reference app timed beside the dashboard."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]


@contextlib.contextmanager
def serving(
    command: Callable[[int], list[str]], env: dict | None = None, timeout: float = 60.0, **kw
) -> Iterator[str]:
    """Start ``command(port)`` on a free port, yield its URL once the port answers, stop it on exit."""
    port = free_port()
    proc = subprocess.Popen(
        command(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw
    )
    try:
        if not wait_for_port(port, timeout, proc):
            raise RuntimeError(f"the server did not start within {timeout:g} s: {' '.join(command(port))}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def launch_chromium(playwright):
    """Headless Debian chromium through a (sync) Playwright instance."""
    if not Path(CHROMIUM).is_file():
        raise RuntimeError("Debian's chromium is needed: run the README's test command once")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))


def benchmarks_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "benchmarks"
    if not here.is_dir():
        raise HyperFusionError(f"benchmarks folder not found at {here}: run from a source checkout")
    return here


def discover() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(benchmarks_dir().glob("bench_*.py"))}


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"hyperfusion_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def format_table(results: list[BenchResult]) -> str:
    rows = [("benchmark", "measured", "reference", "ratio", "budget", "ok")]
    for r in results:
        rows.append(
            (
                r.name,
                f"{r.measured:.4g} {r.unit}",
                f"{r.reference:.4g} {r.unit}",
                f"{r.ratio:.2f}x",
                r.budget,
                "yes" if r.passed else "NO",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.name}: {r.note}" for r in results if r.note]
    return "\n".join(lines + (["notes:"] + notes if notes else []))


#: The benchmark sizes: the demo's (default) and the paper's.
SIZES = ("demo", "paper")
#: What every paper-size benchmark measures: the 1 mm box (two 64 × 96 × 64 views), init_features 16.
PAPER = {"voxel_mm": 1.0, "init_features": 16}


def takes_size(module) -> bool:
    return "size" in inspect.signature(module.run).parameters


def run_benchmarks(names: list[str] | None = None, repeats: int = 5, size: str = "demo") -> int:
    if size not in SIZES:
        raise HyperFusionError(f"unknown size {size!r}; choose one of {list(SIZES)}")
    available = discover()
    unknown = sorted(set(names or []) - set(available))
    if unknown:
        raise HyperFusionError(f"unknown benchmark(s) {unknown}; available: {sorted(available)}")
    results: list[BenchResult] = []
    for name in names or list(available):
        module = _load(available[name])
        if size != "demo" and not takes_size(module):
            if names:
                sized = sorted(n for n, path in available.items() if takes_size(_load(path)))
                raise HyperFusionError(f"benchmark {name!r} has only the demo size; at {size} size: {sized}")
            continue
        print(f"running {name} ({size} size) ...", file=sys.stderr, flush=True)
        results.extend(module.run(repeats, size=size) if takes_size(module) else module.run(repeats))
    print(format_table(results))
    return 0 if all(r.passed for r in results) else 1


# In-page timers of the Attribution viewer (Playwright's page.evaluate), shared by the dashboard benchmark and
# the viewer's browser test: dispatch a click at a fraction (fx, fy) of a view, or press a zoom button, and
# time until the views are redrawn and painted (one animation frame).
VIEWER_TIME_CLICK = """async ([sel, fx, fy]) => {
  const c = document.querySelector(sel), r = c.getBoundingClientRect();
  const at = {clientX: r.left + fx * r.width, clientY: r.top + fy * r.height, button: 0, pointerId: 1,
              bubbles: true};
  const t0 = performance.now();
  c.dispatchEvent(new PointerEvent('pointerdown', at));
  c.dispatchEvent(new PointerEvent('pointerup', at));
  await new Promise(requestAnimationFrame);
  return performance.now() - t0; }"""
VIEWER_TIME_ZOOM = """async (which) => {
  const b = document.querySelector(`.hfv-bar button[data-z=${which}]`);
  const t0 = performance.now(); b.click(); await new Promise(requestAnimationFrame);
  return performance.now() - t0; }"""
