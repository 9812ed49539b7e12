"""Explanation budgets (docs/architecture.md, issue #6): ICE curves, saliency, Grad-CAM, integrated gradients.

Demo size: the 2 mm AD box (two 32×48×32 views), init_features 4, the seven AD architectures randomly
initialised (timing does not depend on the weights), one random scan. Each result is measured side by side
with a reference taken in the same run:

- a 64-point ICE curve of one attribute for all 7 models (one batched call through cached image features)
  against the same 64 points predicted one at a time (timed once: about 9 s); budget ≤ 1 s;
- a saliency map and a Grad-CAM map of HyperFusion (a fresh map, not cached; the scan decoded each time, as
  the dashboard does) against a cold prediction of all 7 models; budget ≤ 1 s each;
- integrated gradients with 32 steps against saliency; budget ≤ 10 s;
- IG's peak memory: a fresh Python process builds the same model and scan, resets the kernel's peak-RSS
  counter (``/proc/self/clear_refs``) just before the map, and reads ``VmHWM`` after it: the peak resident
  memory of the whole process (interpreter, torch, model, autograd graph) while IG ran, against its
  resident memory just before; budget ≤ 2 GB.

``--size paper`` (issue #17): the 1 mm box (two 64 × 96 × 64 views), init_features 16, HyperFusion. Each map
as ``explain_image`` makes it (the thread budget: every core; float32) against the straightforward path
measured in the same run: Captum on the subject function at one thread (as the dashboard ran it), Captum's own
convergence delta and separate forwards for the outputs, which is what ``attribute_views`` did before:

- saliency; budget ≤ 0.5 s;
- integrated gradients, 32 steps; budget ≤ 8 s;
- the same two maps in bfloat16 (``precision="bfloat16"``), against float32's: the note gives the map's
  relative L2 distance and correlation to float32's (informational: no budget);
- IG's peak memory at this size in a fresh process, as above; budget ≤ 2 GB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from hyperfusion.bench import (
    AD_MODELS,
    BENCH_RECORD,
    PAPER,
    BenchResult,
    interleaved_medians,
    median_time,
    random_ad_models,
    random_box_scan,
)

MODELS = AD_MODELS
RECORD = BENCH_RECORD
GB = 2**30


def _demo_predictor(tmp: Path, models=MODELS, size: str = "demo"):
    """(Predictor with the demo-size (or paper-size) models, scan bytes) in ``tmp``."""
    from hyperfusion.inference.predictor import Predictor

    voxel_mm = PAPER["voxel_mm"] if size == "paper" else 2.0
    features = PAPER["init_features"] if size == "paper" else 4
    dirs = random_ad_models(tmp, voxel_mm, features, models)
    return Predictor(dirs), random_box_scan(tmp / "scan.nii.gz", voxel_mm).read_bytes()


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _ig_memory_child(size: str = "demo") -> None:
    """Run in a fresh process: one 32-step IG map; print RSS before and the peak during, in bytes."""
    import time

    from hyperfusion.explain.image import explain_image

    with tempfile.TemporaryDirectory() as tmp:
        predictor, scan = _demo_predictor(Path(tmp), models=("hyperfusion",), size=size)
        predictor.predict(scan, RECORD)  # everything but the map itself is loaded and warm
        before = _status_kb("VmRSS") * 1024
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter to the current RSS
        t0 = time.perf_counter()
        explain_image(
            predictor,
            "hyperfusion",
            scan,
            RECORD,
            "integrated_gradients",
            settings={"n_steps": 32},
            cache=False,
        )
        seconds = time.perf_counter() - t0
        peak = _status_kb("VmHWM") * 1024
    print(json.dumps({"before": before, "peak": peak, "seconds": seconds}))


def _ig_memory(size: str = "demo") -> dict:
    root = Path(__file__).resolve().parent.parent
    # the child imports this checkout's hyperfusion, like its parent, not whichever one is installed
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--ig-memory", size],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the IG memory probe failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _straightforward(network, views, tabular, method: str, target: int, baseline=None, n_steps: int = 32):
    """The map as attribute_views made it before issue #17: one thread, Captum's delta, separate forwards."""
    import torch
    from captum.attr import IntegratedGradients, Saliency

    from hyperfusion.explain.methods import SubjectOutput, thread_budget

    forward = SubjectOutput(network, "ad", "probability")
    x = torch.tensor(views).unsqueeze(0).requires_grad_(True)
    tab = torch.as_tensor(tabular).reshape(1, -1)
    with thread_budget(1):
        if method == "saliency":
            attr = Saliency(forward).attribute(x, target=target, abs=True, additional_forward_args=(tab,))
        else:
            base = torch.tensor(baseline).unsqueeze(0)
            attr, _ = IntegratedGradients(forward).attribute(
                x,
                baselines=base,
                target=target,
                additional_forward_args=(tab,),
                n_steps=n_steps,
                method="gausslegendre",
                internal_batch_size=1,
                return_convergence_delta=True,
            )
        with torch.no_grad():
            forward(x.detach(), tab)
            if baseline is not None:
                forward(base, tab)
    return attr.detach().reshape(views.shape[0], *views.shape[-3:]).numpy()


def _paper(repeats: int) -> list[BenchResult]:
    from hyperfusion.data import parse_record
    from hyperfusion.explain.image import explain_image
    from hyperfusion.explain.methods import default_threads

    with tempfile.TemporaryDirectory() as tmp:
        predictor, scan = _demo_predictor(Path(tmp), models=("hyperfusion",), size="paper")
        member = predictor.models["hyperfusion"].members[0]
        views = predictor.views(member, scan)
        tabular = member.tabular([parse_record(RECORD)])
        zero = np.zeros_like(views)

        kept: dict = {}

        def explain(key, method, precision=None, **settings):
            def call():
                kept[key] = explain_image(
                    predictor,
                    "hyperfusion",
                    scan,
                    RECORD,
                    method,
                    target="AD",
                    settings=settings or None,
                    cache=False,
                    precision=precision,
                )

            return call

        def straight(key, method, baseline=None):
            def call():
                kept[key] = _straightforward(member.network, views, tabular, method, 2, baseline)

            return call

        sal = interleaved_medians(
            {
                "fast": explain("sal", "saliency"),
                "straight": straight("sal_straight", "saliency"),
                "bf16": explain("sal_bf16", "saliency", precision="bfloat16"),
            },
            repeats,
        )
        ig_fns = {
            "fast": explain("ig", "integrated_gradients", n_steps=32),
            "straight": straight("ig_straight", "ig", zero),
            "bf16": explain("ig_bf16", "integrated_gradients", precision="bfloat16", n_steps=32),
        }
        ig_times: dict[str, list[float]] = {k: [] for k in ig_fns}
        for _ in range(max(1, min(repeats, 3))):  # no warm-up round: saliency warmed the model; 20-60 s a map
            for key, fn in ig_fns.items():
                ig_times[key].append(median_time(fn, 1, warmup=0))
        ig = {k: float(np.median(v)) for k, v in ig_times.items()}
        ig_map = kept["ig"]
        closeness = {}
        for method, key in (("saliency", "sal"), ("integrated_gradients", "ig")):
            a = kept[key].views.ravel().astype(np.float64)
            b = kept[f"{key}_bf16"].views.ravel().astype(np.float64)
            reference = kept[f"{key}_straight"].ravel().astype(np.float64)
            if method == "saliency":  # explain_image keeps a gradient map on the brain voxels only
                reference = np.where(np.asarray(views)[:, 0].ravel() != 0, reference, 0)
            closeness[method] = {
                "rel_l2_bf16": float(np.linalg.norm(a - b) / np.linalg.norm(a)),
                "corr_bf16": float(np.corrcoef(a, b)[0, 1]),
                "max_vs_straightforward": float(np.abs(a - reference).max() / np.abs(reference).max()),
            }
    memory = _ig_memory("paper")
    size = f"1 mm box, two 64x96x64 views, init_features 16; {default_threads()} thread(s) vs 1"

    def close(method: str) -> str:
        c = closeness[method]
        return (
            f"float32 map vs the straightforward one: max |diff| {c['max_vs_straightforward']:.1e} of its max; "
            f"bfloat16 map vs float32: relative L2 {c['rel_l2_bf16']:.3f}, correlation {c['corr_bf16']:.4f}"
        )

    return [
        BenchResult(
            "explain (paper): saliency map vs the straightforward path",
            sal["fast"],
            sal["straight"],
            "<= 0.5 s",
            sal["fast"] <= 0.5,
            note=f"{size}; {close('saliency')}",
        ),
        BenchResult(
            "explain (paper): integrated gradients, 32 steps vs the straightforward path",
            ig["fast"],
            ig["straight"],
            "<= 8 s",
            ig["fast"] <= 8.0,
            note=f"{size}; relative delta {ig_map.relative_delta:.3g}; {close('integrated_gradients')}",
        ),
        BenchResult(
            "explain (paper): saliency in bfloat16 vs float32",
            sal["bf16"],
            sal["fast"],
            "informational",
            True,
            note="autocast to bfloat16 (--precision bf16)",
        ),
        BenchResult(
            "explain (paper): IG 32 steps in bfloat16 vs float32",
            ig["bf16"],
            ig["fast"],
            "<= 8 s",
            ig["bf16"] <= 8.0,
            note="autocast to bfloat16 (--precision bf16)",
        ),
        BenchResult(
            "explain (paper): IG 32 steps, peak RSS of the process vs its RSS before",
            memory["peak"] / GB,
            memory["before"] / GB,
            "<= 2 GB",
            memory["peak"] <= 2 * GB,
            unit="GB",
            note=f"a fresh process, VmHWM after resetting it; IG took {memory['seconds']:.2f} s there",
        ),
    ]


def run(repeats: int, size: str = "demo") -> list[BenchResult]:
    if size == "paper":
        return _paper(repeats)
    from hyperfusion.explain.image import explain_image
    from hyperfusion.explain.whatif import ice_curves

    with tempfile.TemporaryDirectory() as tmp:
        predictor, scan = _demo_predictor(Path(tmp))
        predictor.predict(scan, RECORD)  # image features cached, as after the dashboard's first view
        ages = np.linspace(55, 90, 64)

        def ice():
            ice_curves(predictor, scan, RECORD, "AGE", ages)

        def one_at_a_time():
            for age in ages:
                predictor.predict(scan, {**RECORD, "AGE": float(age)})

        t = {"ice": median_time(ice, repeats), "loop": median_time(one_at_a_time, 1, warmup=0)}  # (~9 s)

        def cold():
            predictor._features.clear()
            predictor.predict(scan, RECORD)

        def explain(method, **settings):
            return lambda: explain_image(
                predictor,
                "hyperfusion",
                scan,
                RECORD,
                method,
                target="AD",
                settings=settings or None,
                cache=False,
            )

        maps = interleaved_medians(
            {"cold": cold, "saliency": explain("saliency"), "grad_cam": explain("grad_cam")}, repeats
        )
        t_ig = median_time(explain("integrated_gradients", n_steps=32), max(1, min(repeats, 3)))
        ig = explain("integrated_gradients", n_steps=32)()
        cam = explain("grad_cam")().coarse
        t_hit = median_time(
            lambda: explain_image(
                predictor,
                "hyperfusion",
                scan,
                RECORD,
                "integrated_gradients",
                target="AD",
                settings={"n_steps": 32},
            ),
            repeats,
        )
    memory = _ig_memory()
    demo = "2 mm box, init_features 4"
    return [
        BenchResult(
            "explain: 64-point ICE curve, 7 models (batched) vs the points one at a time",
            t["ice"],
            t["loop"],
            "<= 1 s",
            t["ice"] <= 1.0,
            note=demo,
        ),
        BenchResult(
            "explain: saliency map (HyperFusion) vs a cold prediction of 7 models",
            maps["saliency"],
            maps["cold"],
            "<= 1 s",
            maps["saliency"] <= 1.0,
            note=demo,
        ),
        BenchResult(
            "explain: Grad-CAM map (HyperFusion) vs a cold prediction of 7 models",
            maps["grad_cam"],
            maps["cold"],
            "<= 1 s",
            maps["grad_cam"] <= 1.0,
            note=f"{demo}; {cam['layer']}'s grid {'×'.join(map(str, cam['shape']))} of "
            f"{'×'.join(f'{v:g}' for v in cam['voxel_mm'])} mm cells, upsampled trilinearly",
        ),
        BenchResult(
            "explain: integrated gradients, 32 steps vs saliency",
            t_ig,
            maps["saliency"],
            "<= 10 s",
            t_ig <= 10.0,
            note=f"{demo}; relative delta {ig.relative_delta:.3g}; a cached map returns in {t_hit * 1e3:.1f} ms",
        ),
        BenchResult(
            "explain: IG 32 steps, peak RSS of the process vs its RSS before",
            memory["peak"] / GB,
            memory["before"] / GB,
            "<= 2 GB",
            memory["peak"] <= 2 * GB,
            unit="GB",
            note=f"a fresh process, VmHWM after resetting it (/proc/self/clear_refs); IG took {memory['seconds']:.2f} s there",
        ),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ig-memory"]:
        _ig_memory_child(*sys.argv[2:3])
    else:
        from hyperfusion.bench import format_table

        print(format_table(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
