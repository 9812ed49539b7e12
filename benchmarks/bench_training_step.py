"""HyperFusion training step vs the same backbone's image-only step (docs/architecture.md budget: <= 1.2x the time).

One Adam step (forward, loss, backward, update) in train mode, on one thread, measured in alternation with the
image-only network of the same size. Sizes:

- AD demo: init_features 8 on a 2 mm hemisphere crop (32 × 48 × 32), batch 16.
- AD paper: init_features 16 on the 64 × 96 × 64 crop, batch 4 (about 1.3 GB; the paper trains at batch 32).
- Brain age paper: the 90 × 120 × 99 input, batch 2 (about 1.2 GB; the paper trains at batch 64).

``--size demo`` (the default) runs the AD demo size, ``--size paper`` the two paper sizes, each also reported
as training throughput (samples per second, one CPU thread).

Also reports parameter counts next to the paper's (docs/models.md) (HyperFusion-AD ≈ 3.86 M, ≈ 0.30 M of it in the
generators) and prints every network's count.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

from hyperfusion.bench import BenchResult, interleaved_medians
from hyperfusion.models import available_models, build_model

SIZES = {
    "AD demo (f=8, 32x48x32, batch 16)": ("ad", {"init_features": 8, "input_shape": [32, 48, 32]}, 16),
    "AD paper (f=16, 64x96x64, batch 4)": ("ad", {}, 4),
    "brain age paper (90x120x99, batch 2)": ("brain_age", {}, 2),
}
BY_SIZE = {"demo": list(SIZES)[:1], "paper": list(SIZES)[1:]}
PAPER_COUNTS = {
    "total": 3.86e6,
    "generators": 0.30e6,
}  # docs/models.md §1, HyperFusion-AD at init_features 16


def _training_step(name: str, task: str, overrides: dict, batch: int) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_model(name, task, **overrides).train()
    image = torch.randn(batch, 1, *model.input_shape)
    if task == "ad":
        tabular, target, loss_fn = torch.randn(batch, 16), torch.arange(batch) % 3, F.cross_entropy
    else:
        tabular = F.one_hot(torch.arange(batch) % 2, 2).float()
        target, loss_fn = torch.rand(batch, 1) * 80 + 10, F.mse_loss
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss_fn(model(image, tabular), target).backward()
        optimiser.step()

    return step


def _print_parameter_counts() -> None:
    print("parameter counts (paper size):", file=sys.stderr)
    for task, names in available_models().items():
        for name in names:
            counts = build_model(name, task).parameter_counts()
            print(
                f"  {task:9s} {name:13s} {counts['total']:>10,d}  generators {counts['generators']:>9,d}",
                file=sys.stderr,
            )


def run(repeats: int, size: str = "demo") -> list[BenchResult]:
    results = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as bench_hyper_layers: OpenMP stalls on a shared CPU would swamp the ratio
    try:
        timings = {
            label: interleaved_medians(
                {
                    name: _training_step(name, task, overrides, batch)
                    for name in ("image_only", "hyperfusion")
                },
                repeats,
            )
            for label, (task, overrides, batch) in SIZES.items()
            if label in BY_SIZE[size]
        }
    finally:
        torch.set_num_threads(threads)
    for label, t in timings.items():
        slowdown = t["hyperfusion"] / t["image_only"]
        results.append(
            BenchResult(
                name=f"training step, {label}",
                measured=t["hyperfusion"],
                reference=t["image_only"],
                budget=">= 0.83x (HyperFusion <= 1.2x image-only)",
                passed=slowdown <= 1.2,
                note=f"measured = HyperFusion step, reference = image-only step: HyperFusion takes {slowdown:.2f}x; "
                f"{SIZES[label][2] / t['hyperfusion']:.1f} samples/s (image-only {SIZES[label][2] / t['image_only']:.1f}), "
                "one CPU thread",
            )
        )
    _print_parameter_counts()
    counts = build_model("hyperfusion", "ad").parameter_counts()
    for part, paper in PAPER_COUNTS.items():
        results.append(
            BenchResult(
                name=f"parameters, HyperFusion-AD {part}",
                measured=counts[part],
                reference=paper,
                budget="within 2% of the paper's count",
                passed=abs(counts[part] / paper - 1) <= 0.02,
                unit="params",
                note=f"{counts[part]:,d} vs ≈ {paper / 1e6:.2f} M in the paper; the authors' checkpoint keys give "
                "exactly the same count",
            )
        )
    return results
