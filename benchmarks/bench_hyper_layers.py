"""Vectorised hyper layers vs the per-sample loop, batch 32, forward + backward (docs/architecture.md: >= 5x faster).

Two of the paper's layers: HyperFusion-AD's block-4 shortcut (generated Conv 1³, 128 -> 256, stride 2, on the
8 × 12 × 8 output of block 3) and the four generated linear layers of brain-age HyperFusion (39,424 -> 16 -> 32
-> 64 -> 1, each with its own Linear(2 -> 1) embedding of the sex one-hot).

The reference is the authors' loop (their HyperConv3dLayer / HyperLinearLayer, minus their off-by-one): generate
every sample's weights in one batch, then for each sample index its features, apply its weights and write the
result into a preallocated output. The note also times a leaner loop (``unbind`` + ``stack``): for the 1³ conv
the work is compute-bound, so most of the gain over the authors' loop is the cost of their per-sample indexing
and in-place writes under autograd, not arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from hyperfusion.bench import BenchResult, interleaved_medians
from hyperfusion.models.hyper import HyperConv3d, HyperLinear, linear_embedding, tabular_embedding

BATCH = 32


def _forward_backward(forward: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> Callable[[], None]:
    """forward, then backward of a fixed upstream gradient (no loss: only the layer is timed)."""
    upstream = torch.randn_like(forward().detach())

    def step() -> None:
        for p in params:
            p.grad = None
        forward().backward(upstream)

    return step


Timed = dict[str, Callable[[], None]]


def _shortcut_conv() -> Timed:
    torch.manual_seed(0)
    layer = HyperConv3d(128, 256, 1, tabular_embedding(16, 8), 8, stride=2)
    x = torch.randn(BATCH, 128, 8, 12, 8, requires_grad=True)
    t = torch.randn(BATCH, 16)

    def authors_loop() -> torch.Tensor:
        weight, bias = layer.generate(t)
        out = torch.zeros(BATCH, 256, 4, 6, 4)
        for i, (w, b) in enumerate(zip(weight, bias)):
            out[i] = F.conv3d(x[i][None], w, b, stride=2)[0]
        return out

    def lean_loop() -> torch.Tensor:
        weight, bias = layer.generate(t)
        samples = zip(x.unbind(0), weight.unbind(0), bias.unbind(0))
        return torch.stack([F.conv3d(xb[None], w, b, stride=2)[0] for xb, w, b in samples])

    params = [x, *layer.parameters()]
    fns = {"vectorised": lambda: layer(x, t), "authors_loop": authors_loop, "lean_loop": lean_loop}
    return {name: _forward_backward(fn, params) for name, fn in fns.items()}


def _brain_age_linears() -> Timed:
    torch.manual_seed(0)
    widths = (39424, 16, 32, 64, 1)
    layers = [
        HyperLinear(widths[i], widths[i + 1], linear_embedding(2, 1), 1, input_variance=0.25)
        for i in range(4)
    ]
    x = torch.randn(BATCH, widths[0], requires_grad=True)
    t = F.one_hot(torch.arange(BATCH) % 2, 2).float()

    def vectorised() -> torch.Tensor:
        h = x
        for i, layer in enumerate(layers):
            h = layer(h, t)
            h = F.relu(h) if i < 3 else h
        return h

    def authors_loop() -> torch.Tensor:
        h = x
        for i, layer in enumerate(layers):
            weight, bias = layer.generate(t)
            out = torch.zeros(BATCH, widths[i + 1])
            for b, (w, bb) in enumerate(zip(weight, bias)):
                out[b] = F.linear(h[b], w, bb)
            h = F.relu(out) if i < 3 else out
        return h

    def lean_loop() -> torch.Tensor:
        h = x
        for i, layer in enumerate(layers):
            weight, bias = layer.generate(t)
            h = torch.stack(
                [F.linear(*sample) for sample in zip(h.unbind(0), weight.unbind(0), bias.unbind(0))]
            )
            h = F.relu(h) if i < 3 else h
        return h

    params = [x, *(p for layer in layers for p in layer.parameters())]
    fns = {"vectorised": vectorised, "authors_loop": authors_loop, "lean_loop": lean_loop}
    return {name: _forward_backward(fn, params) for name, fn in fns.items()}


def run(repeats: int) -> list[BenchResult]:
    results = []
    cases = {
        "hyper conv 1³ 128->256 /2, AD block-4 shortcut": _shortcut_conv,
        "hyper linear x4, brain age (39424->16->32->64->1)": _brain_age_linears,
    }
    threads = torch.get_num_threads()
    # One thread: on a CPU shared with other processes, OpenMP barriers stall at random and swamp the
    # comparison; on an idle machine the batched products parallelise at least as well as the loop's small ones
    torch.set_num_threads(1)
    try:
        timings = {name: interleaved_medians(make(), repeats) for name, make in cases.items()}
    finally:
        torch.set_num_threads(threads)
    for name, t in timings.items():
        lean = t["lean_loop"] / t["vectorised"]
        results.append(
            BenchResult(
                name=name,
                measured=t["vectorised"],
                reference=t["authors_loop"],
                budget=">= 5x faster",
                passed=t["authors_loop"] / t["vectorised"] >= 5,
                note=f"batch {BATCH}, forward + backward, one thread, reference = the authors' per-sample loop; "
                f"a lean unbind/stack loop takes {t['lean_loop']:.4g} s ({lean:.2f}x the vectorised time)",
            )
        )
    return results
