"""Every image attribution method behind one call: :func:`attribute_views`.

The methods are Captum's classes; this module only decides what
they explain and how. They all explain the same function of one subject, :class:`SubjectOutput`: the
network run on every view of the scan (both hemispheres, the left one mirrored) with the same record, and the
views' outputs averaged as the Predictor averages them. For AD that is the probability of the target class
(or, with ``output="logit"``, its mean logit); for brain age the predicted age in years. Because the input is
all views at once, one attribution covers the whole box and integrated gradients' completeness holds for
the prediction the user actually sees. DeepLIFT explains the mean logit by default: its rescale rule sums
exactly to a logit change (measured: relative delta < 1e-5), while Captum's softmax rule is only an
approximation (relative deltas of 0.3-6 on probabilities), as DeepLIFT's authors warn.

=====================  ===============================================================  ========  =====
method                 Captum                                                           baseline  hooks
=====================  ===============================================================  ========  =====
saliency               ``Saliency`` (|∂y/∂x| by default)                                no        no
input_x_gradient       ``InputXGradient``                                               no        no
integrated_gradients   ``IntegratedGradients`` (n_steps, internal_batch_size [auto:      yes       no
                       about 1 M voxels a pass], convergence delta)
smoothgrad             ``NoiseTunnel(Saliency)``, nt_type "smoothgrad", seeded noise    no        no
grad_cam               ``LayerGradCam`` on the network's ``gradcam_layer`` (or a named  no        yes
                       module), upsampled trilinearly to the input; coarse grid stated
deeplift               ``DeepLift`` (rescale rule, convergence delta)                   yes       yes
occlusion              ``Occlusion`` with a cube of ``window_mm`` filled from the       yes       no
                       baseline, stride ``stride_mm`` (offline: hundreds of forwards)
=====================  ===============================================================  ========  =====

Speed (issue #17, the paper's 1 mm size): the views run as one batch through the network; each map runs with a
per-request intra-op thread budget (:func:`thread_budget`: ``threads``, else ``HYPERFUSION_THREADS``, else
every core this process may use), set in the calling thread only and restored after; integrated gradients'
path points run in batches under a memory cap (:data:`IG_VOXELS_PER_BATCH`); the forward at the scan (and
at the baseline) is done once: gradient methods keep the output of their own forward pass, and integrated
gradients' convergence delta is Captum's formula, ``sum(attributions) − (F(x) − F(baseline))``, on the two
outputs the result reports anyway (Captum would run both forwards again). ``device`` runs the map where the
network lives (a CUDA copy of it if asked); ``precision`` "bfloat16" / "float16" runs it under
``torch.autocast`` (off by default; the README states how far such maps move from float32's). Hook-free
methods run on :func:`attribution_network`, a streamlined copy (stem fused, BatchNorms folded, channels-last
on the CPU). Through a fused stem, integrated gradients' path starts after the stem conv (affine: its output
at every path point is computed from two convs per map) and the only full-resolution work a point is writing
it into one reused buffer and max-pooling it; the pool's backward is a scatter-add into the path sum
(:func:`_ig_through_stem`). Integrated gradients' ``tolerance`` (default 0: off) tries a quarter of
``n_steps`` first and keeps that map only when its convergence delta is within the tolerance;
``ViewAttribution.steps`` (and ``ImageAttribution.steps``) says which.

Thread safety: Captum's gradient methods only call ``torch.autograd.grad`` on their own inputs, so many
threads may run them on one shared network. Hook-based methods (Grad-CAM's forward hook, DeepLift's hooks
that store tensors as attributes on every activation module) would see each other's forward passes, and the
Predictor's, if they hooked the shared network; they run on a private copy of it borrowed from a pool
(:func:`private_copy`). Methods that draw random numbers (SmoothGrad) draw them from a seeded generator
under a process-wide lock, so a seed gives the same map in any thread.
"""

from __future__ import annotations

import copy
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum.attr import (
    DeepLift,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import Tensor, nn

from hyperfusion.errors import DataError
from hyperfusion.explain.maps import Completeness
from hyperfusion.models.blocks import PreActResBlock
from hyperfusion.models.network import subject_output
from hyperfusion.runtime import (
    PRECISIONS,
    autocast,
    default_threads,
    resolve_device,
    resolve_precision,
    thread_budget,
)

__all__ = [
    "METHODS",
    "Method",
    "SubjectOutput",
    "ViewAttribution",
    "PRECISIONS",
    "attribute_views",
    "attribution_network",
    "available_methods",
    "default_threads",
    "private_copy",
    "resolve_device",
    "resolve_precision",
    "resolve_settings",
    "seeded_rng",
    "thread_budget",
]

# DeepLift announces on every call that it hooks the activations; we know, and it would flood the CLI.
warnings.filterwarnings("ignore", message="Setting forward, backward hooks and attributes on non-linear")

OUTPUTS = {"ad": ("probability", "logit"), "brain_age": ("years",)}


class SubjectOutput(nn.Module):
    """One subject's prediction as a function of all its views: what every method explains.

    Args:
        network: the task network (``forward(image, tabular)``).
        task: "ad" or "brain_age".
        output: "probability" (mean over views of the softmax, as the Predictor), "logit" (mean logit) or
            "years" (brain age).
        on_rows: called with the number of subjects in each forward (for progress reports).

    Shapes: views (N, V, 1, D, H, W'), tabular (N, F) -> (N, C) for AD, (N, 1) years for brain age.
    """

    def __init__(
        self, network: nn.Module, task: str, output: str, on_rows: Callable[[int], None] | None = None
    ) -> None:
        super().__init__()
        self.network = network
        self.task = task
        self.output = output
        # A module, not F.softmax: DeepLift applies its softmax rule only to modules it can hook.
        self.softmax = nn.Softmax(dim=-1)
        self._on_rows = on_rows
        #: when a list, every forward appends its (detached) output: a gradient method's single forward at
        #: the scan is then also the prediction the result reports, with no second pass
        self.tap: list[Tensor] | None = None

    def forward(self, views: Tensor, tabular: Tensor) -> Tensor:
        n, v = views.shape[:2]
        if self._on_rows is not None:
            self._on_rows(n)
        out = self.network(views.flatten(0, 1), tabular.repeat_interleave(v, dim=0))
        out = subject_output(out.float(), v, probabilities=self.output == "probability", softmax=self.softmax)
        if self.tap is not None:
            self.tap.append(out.detach())
        return out


@dataclass
class ViewAttribution(Completeness):
    """One subject's attribution on the model grid.

    Attributes:
        views: float32 (V, D, H, W'), in the units of the output per unit of z-scored intensity (gradient
            methods) or in output units (IG, DeepLift, occlusion, input × gradient: they sum to an output
            change).
        output: the explained output at the scan (probability, logit or years).
        baseline_output: the output at the baseline scan (methods with a baseline), else None.
        delta: Captum's convergence delta, sum(attributions) − (output − baseline_output) (IG, DeepLift).
        settings: every setting the method ran with, defaults included.
        coarse: Grad-CAM only: {"layer", "shape" (d, h, w), "voxel_mm" (z, y, x)} of the map before upsampling.
        steps: integrated gradients only: the path points the map used (``n_steps``, or a quarter of them when
            ``tolerance`` > 0 and their convergence delta was within it), else None.
    """

    views: np.ndarray
    output: float
    baseline_output: float | None = None
    delta: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    coarse: dict[str, Any] | None = None
    steps: int | None = None


@dataclass
class _Call:
    """What a method's runner gets: the subject function, its inputs and the resolved settings."""

    forward: SubjectOutput
    inputs: Tensor  # (1, V, 1, D, H, W'), requires grad
    baseline: Tensor | None  # same shape
    tabular: Tensor  # (1, F)
    target: int | None
    settings: dict[str, Any]
    voxel_mm: float
    #: what a runner reports besides the map (integrated gradients: "steps", the path points it used)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def args(self) -> tuple[Tensor]:
        return (self.tabular,)


@dataclass(frozen=True)
class Method:
    """An attribution method as the dashboard lists it.

    ``rows(settings, (V, D, H, W'), voxel_mm)`` estimates how many subjects (each all views) the method runs
    forward, for progress reports.
    """

    name: str
    label: str
    description: str
    defaults: Mapping[str, Any]
    uses_baseline: bool
    uses_hooks: bool
    run: Callable[[_Call], tuple[Tensor, Tensor | None, dict | None]]
    rows: Callable[[dict[str, Any], tuple[int, ...], float], int]
    seeded: bool = False
    offline: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "defaults": dict(self.defaults),
            "uses_baseline": self.uses_baseline,
            "offline": self.offline,
        }


# --- the runners: one per method, all answering _Call -> (attributions, delta, coarse) ----------------------
def _saliency(c: _Call):
    attr = Saliency(c.forward).attribute(
        c.inputs, target=c.target, abs=c.settings["abs"], additional_forward_args=c.args
    )
    return attr, None, None


def _input_x_gradient(c: _Call):
    return (
        InputXGradient(c.forward).attribute(c.inputs, target=c.target, additional_forward_args=c.args),
        None,
        None,
    )


def _after_stem(net: nn.Module) -> Callable[[Tensor, Tensor], Tensor] | None:
    """For a staged network whose first stage is a fused stem (conv, then MaxPool and ReLU) that reads no
    record: the network's logits as a function of the stem's max-pooled conv output (before its ReLU), else
    None."""
    names = getattr(net, "stage_names", ())
    if not names or names[0] != "stem" or not isinstance(getattr(net, "stem", None), _FusedConvBlock):
        return None
    flags = [getattr(getattr(net, n), "reads_condition", False) for n in names]
    split = flags.index(True) if True in flags else len(names)
    if split == 0:
        return None

    def rest(pooled: Tensor, tabular: Tensor) -> Tensor:
        x = torch.relu(pooled)
        for name in names[1:split]:
            x = getattr(net, name)(x)
        features = (x,) if split == len(names) else tuple(getattr(net, names[split]).encode(x))
        return net.decode(features, tabular)

    return rest


def _max_pool(pool: nn.MaxPool3d, h: Tensor) -> tuple[Tensor, Tensor]:
    """``pool(h)`` and, for each output, the flat index (in its own D·H·W plane) of the voxel it took."""
    return torch.nn.functional.max_pool3d(
        h,
        pool.kernel_size,
        pool.stride,
        pool.padding,
        pool.dilation,
        ceil_mode=pool.ceil_mode,
        return_indices=True,
    )


def _path_layout(device: torch.device) -> torch.memory_format:
    """The memory layout of integrated gradients' full-resolution path points: channels-last on the CPU (as
    :func:`attribution_network`'s convs), the default elsewhere."""
    return torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format


def _subject_rows(c: _Call, rows: Tensor, views: int) -> Tensor:
    fwd = c.forward
    return subject_output(rows.float(), views, probabilities=fwd.output == "probability", softmax=fwd.softmax)


def _ig_through_stem(c: _Call, steps: int, rest: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Integrated gradients with Captum's path rule (nodes and weights), the stem conv taken out of the path:
    the conv is affine, so its output at a path point is ``h_b + α (h_x − h_b)`` (computed once per map), and
    the gradients' weighted sum over the path goes back through the conv once (its adjoint is linear) instead
    of once per point. The same map as Captum's up to rounding; about a third less work a point at 1 mm.

    The only full-resolution work left per point is writing it and max-pooling it. Each batch of points is
    written into one buffer reused for the whole path (a fresh 50 MB tensor a point at 1 mm paid for its page
    faults every time), and the pooling's backward, which sends each pooled gradient to the voxel its cell
    took, is a scatter-add of the pooled gradient straight into the path sum at the pooling's indices: the
    same additions as autograd's (which zero-fills a full-resolution gradient per point and adds it to the
    sum), on an eighth of the voxels for the 2³ pool. Also reports the outputs at the scan and the baseline
    (``c.info["ends"]``) from the stem outputs already computed."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    s, fwd, net = c.settings, c.forward, c.forward.network
    conv, pool = net.stem.conv, net.stem.pool
    x, b = c.inputs.detach()[0], c.baseline[0]  # (V, 1, D, H, W)
    views = x.shape[0]
    layout = _path_layout(x.device)
    column = c.target or 0
    with torch.no_grad():
        hx, hb = conv(x).float(), conv(b).float()  # float32 accumulation also under autocast
        hx, hb = hx.contiguous(memory_format=layout), hb.contiguous(memory_format=layout)
        dh = hx - hb
        if "ends" not in c.info:  # the outputs at the scan and at the baseline, the path's two ends
            if fwd._on_rows is not None:
                fwd._on_rows(2)
            pooled = torch.cat([_max_pool(pool, hx)[0], _max_pool(pool, hb)[0]])
            ends = _subject_rows(c, rest(pooled, c.tabular.expand(2 * views, -1)), views)
            c.info["ends"] = (ends[0], ends[1])
    step_sizes, alphas = approximation_parameters(s["integration"])
    weights, points = step_sizes(steps), alphas(steps)
    per = max(1, min(s["internal_batch_size"] or steps, steps))
    buffer = torch.empty((per * views, *hx.shape[1:]), dtype=hx.dtype, device=hx.device, memory_format=layout)
    # the path sum and the scatter's operands as (V, voxels, C) in the channels-last layout, (V, C, voxels)
    # otherwise: views of the tensors as they are (a scatter through strided operands is a few times slower)
    last = layout == torch.channels_last_3d
    dim = 1 if last else 2

    def planes(t: Tensor) -> Tensor:
        return t.permute(0, 2, 3, 4, 1).reshape(t.shape[0], -1, t.shape[1]) if last else t.flatten(2)

    total = torch.zeros_like(planes(hx), dtype=torch.float32)
    for i in range(0, steps, per):
        alpha = points[i : i + per]
        k = len(alpha)
        h = buffer[: k * views]
        with torch.no_grad():
            for j, a in enumerate(alpha):  # α·Δh, then + h_b: the same roundings as before (no fused
                point = h[j * views : (j + 1) * views]  # multiply-add, which moves arg-max ties in the pool)
                torch.mul(dh, a, out=point).add_(hb)
            pooled, taken = _max_pool(pool, h)
        pooled.requires_grad_(True)
        if fwd._on_rows is not None:
            fwd._on_rows(k)
        out = _subject_rows(c, rest(pooled, c.tabular.expand(k * views, -1)), views)
        w = torch.tensor(weights[i : i + per], dtype=torch.float32, device=hx.device)
        (grad,) = torch.autograd.grad((out[:, column] * w).sum(), pooled)
        grad, taken = planes(grad.float()), planes(taken)
        for j in range(k):
            total.scatter_add_(dim, taken[j * views : (j + 1) * views], grad[j * views : (j + 1) * views])
    grad_x = torch.nn.grad.conv3d_input(
        x.shape,
        conv.weight.float(),
        total.view(views, *hx.shape[2:], -1).permute(0, 4, 1, 2, 3) if last else total.view(hx.shape),
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
    )
    return ((x - b) * grad_x).unsqueeze(0)


def _integrated_gradients(c: _Call):
    s = c.settings
    rest = _after_stem(c.forward.network)

    def path(steps: int) -> Tensor:
        if rest is not None:
            return _ig_through_stem(c, steps, rest)
        return IntegratedGradients(c.forward).attribute(
            c.inputs,
            baselines=c.baseline,
            target=c.target,
            additional_forward_args=c.args,
            n_steps=steps,
            method=s["integration"],
            internal_batch_size=min(s["internal_batch_size"] or steps, steps),
        )

    # tolerance > 0: try a quarter of the steps first and keep that map only if Captum's convergence delta
    # is within ``tolerance`` of the output gap; else the full n_steps (worst case 1.25 × the work).
    first = max(2, s["n_steps"] // 4)
    if s["tolerance"] > 0 and first < s["n_steps"]:
        attr = path(first)
        if "ends" not in c.info:
            with torch.no_grad():
                both = c.forward(torch.cat([c.inputs.detach(), c.baseline]), c.tabular.expand(2, -1))
            c.info["ends"] = (both[0], both[1])
        column = c.target or 0
        out, base_out = c.info["ends"]
        gap = float(out[column]) - float(base_out[column])
        delta = float(attr.detach().sum(dtype=torch.float64)) - gap
        if gap != 0 and abs(delta) <= s["tolerance"] * abs(gap):
            c.info["steps"] = first
            return attr, COMPLETENESS_DELTA, None
    # The convergence delta is computed by attribute_views from the outputs at the scan and the baseline it
    # reports anyway (Captum's own formula); return_convergence_delta=True would run both forwards again.
    c.info["steps"] = s["n_steps"]
    return path(s["n_steps"]), COMPLETENESS_DELTA, None


#: A runner returns this as its delta when attribute_views should compute Captum's convergence delta itself.
COMPLETENESS_DELTA = object()

#: Methods whose only forward pass is at the scan itself: its output is the reported prediction.
_ONE_FORWARD_AT_SCAN = frozenset({"saliency", "input_x_gradient", "grad_cam"})
#: Methods whose map of a view depends on that view only and scales with the output (no hooks, no noise
#: drawn over all views at once) could run the views side by side, one thread each. Measured at the paper's
#: size on a 2-core CPU, the streamlined channels-last network (:func:`attribution_network`) is faster with
#: the views as one batch on both threads (saliency 0.26 s against 0.35 s side by side), so no method does.
_VIEW_SEPARABLE: frozenset[str] = frozenset()


def _smoothgrad(c: _Call):
    s = c.settings
    x = c.inputs.detach()
    # Noise relative to the scan's intensity range (Smilkov et al. suggest 10-20 %).
    stdev = float(s["noise_fraction"] * (x.max() - x.min()))
    attr = NoiseTunnel(Saliency(c.forward)).attribute(
        c.inputs,
        nt_type="smoothgrad",
        nt_samples=s["nt_samples"],
        nt_samples_batch_size=s["batch_size"],
        stdevs=stdev,
        target=c.target,
        additional_forward_args=c.args,
        abs=s["abs"],
    )
    return attr, None, None


def _grad_cam(c: _Call):
    network = c.forward.network
    modules = dict(network.named_modules())
    name = c.settings["layer"]
    if name not in modules:
        cams = [n for n, m in modules.items() if n.endswith(".add") or n.startswith("stage")]
        raise DataError(f"grad_cam: the network has no module {name!r}; e.g. {cams[:8]}")
    coarse = LayerGradCam(c.forward, modules[name]).attribute(
        c.inputs, target=c.target, additional_forward_args=c.args, relu_attributions=c.settings["relu"]
    )  # (V, 1, d, h, w): the layer sees the views as one batch
    shape = tuple(c.inputs.shape[-3:])
    if coarse.ndim != 5:
        raise DataError(f"grad_cam: module {name!r} does not output a 3-D feature map; choose a conv block")
    up = LayerAttribution.interpolate(coarse, shape, interpolate_mode="trilinear")
    info = {
        "layer": name,
        "shape": list(coarse.shape[-3:]),
        "voxel_mm": [round(c.voxel_mm * s / k, 4) for s, k in zip(shape, coarse.shape[-3:])],
    }
    return up.reshape(c.inputs.shape), None, info


def _deeplift(c: _Call):
    attr, delta = DeepLift(c.forward, eps=c.settings["eps"]).attribute(
        c.inputs,
        baselines=c.baseline,
        target=c.target,
        additional_forward_args=c.args,
        return_convergence_delta=True,
    )
    return attr, delta, None


def _occlusion_voxels(settings: dict[str, Any], voxel_mm: float) -> tuple[int, int]:
    window = max(1, round(settings["window_mm"] / voxel_mm))
    stride = max(1, round(settings["stride_mm"] / voxel_mm))
    return window, stride


def _occlusion(c: _Call):
    k, s = _occlusion_voxels(c.settings, c.voxel_mm)
    attr = Occlusion(c.forward).attribute(
        c.inputs,
        sliding_window_shapes=(1, 1, k, k, k),
        strides=(1, 1, s, s, s),
        baselines=c.baseline,
        target=c.target,
        additional_forward_args=c.args,
        perturbations_per_eval=c.settings["batch_size"],
    )
    return attr, None, None


def _occlusion_rows(settings: dict[str, Any], shape: tuple[int, ...], voxel_mm: float) -> int:
    """1 + the number of windows Captum slides over the views (V, D, H, W')."""
    k, s = _occlusion_voxels(settings, voxel_mm)
    windows = [max(1, -(-(n - k) // s) + 1) for n in shape[1:]]
    return 1 + shape[0] * int(np.prod(windows))


def _one_row(settings: dict[str, Any], shape: tuple[int, ...], voxel_mm: float) -> int:
    return 1


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            name="saliency",
            label="Saliency",
            description="gradient of the output with respect to each voxel (absolute value)",
            defaults={"abs": True},
            uses_baseline=False,
            uses_hooks=False,
            run=_saliency,
            rows=_one_row,
        ),
        Method(
            name="input_x_gradient",
            label="Input × gradient",
            description="gradient times the z-scored intensity",
            defaults={},
            uses_baseline=False,
            uses_hooks=False,
            run=_input_x_gradient,
            rows=_one_row,
        ),
        Method(
            name="integrated_gradients",
            label="Integrated gradients",
            description="path integral of gradients from the baseline scan; sums to the output change",
            defaults={
                "n_steps": 32,
                "internal_batch_size": None,
                "integration": "gausslegendre",
                "tolerance": 0.0,
            },
            uses_baseline=True,
            uses_hooks=False,
            run=_integrated_gradients,
            # the path (with a tolerance, a quarter of it first), then the scan and the baseline
            rows=lambda s, shape, mm: (
                s["n_steps"] + (max(2, s["n_steps"] // 4) if s["tolerance"] > 0 else 0) + 2
            ),
        ),
        Method(
            name="smoothgrad",
            label="SmoothGrad",
            description="saliency averaged over noisy copies of the scan",
            defaults={"nt_samples": 16, "noise_fraction": 0.15, "batch_size": 8, "abs": True, "seed": 0},
            uses_baseline=False,
            uses_hooks=False,
            run=_smoothgrad,
            rows=lambda s, shape, mm: s["nt_samples"],
            seeded=True,
        ),
        Method(
            name="grad_cam",
            label="Grad-CAM",
            description="class activation of a coarse feature map, upsampled trilinearly",
            defaults={"layer": None, "relu": True},
            uses_baseline=False,
            uses_hooks=True,
            run=_grad_cam,
            rows=_one_row,
        ),
        Method(
            name="deeplift",
            label="DeepLIFT",
            description="reference-based contributions (rescale rule); sums to the logit change",
            defaults={"eps": 1e-10, "output": "logit"},
            uses_baseline=True,
            uses_hooks=True,
            run=_deeplift,
            rows=lambda s, shape, mm: 2,
        ),
        Method(
            name="occlusion",
            label="Occlusion",
            description="output drop when a cube is replaced by the baseline (slow: offline)",
            defaults={"window_mm": 12.0, "stride_mm": 6.0, "batch_size": 16},
            uses_baseline=True,
            uses_hooks=False,
            run=_occlusion,
            rows=_occlusion_rows,
            offline=True,
        ),
    )
}


def available_methods() -> list[dict[str, Any]]:
    """Every method as plain data for the dashboard: name, label, description, defaults, baseline, offline."""
    return [m.describe() for m in METHODS.values()]


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise DataError(f"unknown attribution method {name!r}; choose one of {list(METHODS)}") from None


#: Integrated gradients' automatic internal batch: about this many input voxels per forward pass (a 2 mm
#: subject of two 32×48×32 views: 10 path points at once; a 1 mm one: 1), which bounds the autograd graph's
#: memory (measured at 2 mm, init_features 4: 32 points at once raised the peak RSS by 0.6 GB, 8 by 0.2 GB).
IG_VOXELS_PER_BATCH = 2**20


def resolve_settings(
    method: str,
    settings: Mapping[str, Any] | None,
    network: nn.Module,
    task: str,
    subject_voxels: int | None = None,
) -> dict[str, Any]:
    """The method's defaults updated with ``settings``, plus ``output``; refuses unknown names and values.

    ``subject_voxels`` (V·D·H·W') resolves integrated gradients' automatic ``internal_batch_size`` (None).
    """
    m = get_method(method)
    settings = dict(settings or {})
    preferred = m.defaults.get("output")
    output = settings.pop("output", preferred if preferred in OUTPUTS[task] else OUTPUTS[task][0])
    if output not in OUTPUTS[task]:
        raise DataError(f"{method}: output {output!r} does not exist for task {task}; use {OUTPUTS[task]}")
    unknown = sorted(set(settings) - set(m.defaults) - {"output"})
    if unknown:
        raise DataError(
            f"{method}: unknown setting(s) {unknown}; it takes {sorted(set(m.defaults) | {'output'})}"
        )
    resolved = {**m.defaults, **settings, "output": output}
    for key in ("n_steps", "internal_batch_size", "nt_samples", "batch_size"):
        if key == "internal_batch_size" and resolved.get(key) is None:
            continue  # automatic
        if key in resolved and (not isinstance(resolved[key], int) or resolved[key] < 1):
            raise DataError(f"{method}: {key} must be a positive whole number, not {resolved[key]!r}")
    if method == "integrated_gradients":
        tol = resolved["tolerance"]
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 <= tol < 1:
            raise DataError(
                f"{method}: tolerance is the relative convergence delta that lets fewer steps do, "
                f"a number in [0, 1) (0: always n_steps), not {tol!r}"
            )
        resolved["tolerance"] = float(tol)
    if method == "integrated_gradients" and resolved["internal_batch_size"] is None and subject_voxels:
        resolved["internal_batch_size"] = max(
            1, min(resolved["n_steps"], IG_VOXELS_PER_BATCH // subject_voxels)
        )
    if method == "grad_cam" and resolved["layer"] is None:
        layer = getattr(network, "gradcam_layer", None)
        names = {id(mod): n for n, mod in network.named_modules()}
        if layer is None or id(layer) not in names:
            raise DataError(f"grad_cam: {type(network).__name__} names no gradcam_layer; pass settings layer")
        resolved["layer"] = names[id(layer)]
    if method == "occlusion" and min(resolved["window_mm"], resolved["stride_mm"]) <= 0:
        raise DataError("occlusion: window_mm and stride_mm must be positive (mm)")
    return resolved


# --- private copies for hook-based methods --------------------------------------------------------------
_POOL: weakref.WeakKeyDictionary[nn.Module, list[nn.Module]] = weakref.WeakKeyDictionary()
_POOL_LOCK = threading.Lock()


@contextmanager
def private_copy(network: nn.Module) -> Iterator[nn.Module]:
    """A copy of ``network`` that no other thread uses while the block runs (kept in a pool for reuse).

    Hooks registered on it cannot fire for anyone else's forward pass. The copy is made once per concurrent
    user; networks loaded for inference are never modified, so copies stay equal to the original.
    """
    with _POOL_LOCK:
        free = _POOL.setdefault(network, [])
        replica = free.pop() if free else None
    if replica is None:
        replica = copy.deepcopy(network)
    try:
        yield replica
    finally:
        with _POOL_LOCK:
            _POOL.setdefault(network, []).append(replica)


# --- a faster copy of the network for hook-free methods ----------------------------------------------------
def _bn_scale_shift(bn: nn.BatchNorm3d) -> tuple[Tensor, Tensor]:
    """An eval-mode BatchNorm's per-channel affine map: y = x · scale + shift."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias.detach() - bn.running_mean * scale


class _FusedConvBlock(nn.Module):
    """Conv -> BatchNorm (eval) -> ReLU -> MaxPool as one conv with the BatchNorm folded in, then MaxPool, then
    ReLU: the same function (max-pooling commutes with the monotone ReLU; folding is exact up to rounding)
    and the same gradient almost everywhere (ties inside a pooling cell aside). At the paper's size the AD
    stem is the only full-resolution stage; there this saves about a fifth of a forward + backward pass."""

    def __init__(self, conv: nn.Conv3d, bn: nn.BatchNorm3d, pool: nn.MaxPool3d) -> None:
        super().__init__()
        self.conv = _fold_after(conv, bn)
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.pool(self.conv(x)))


class _EvalBatchNorm(nn.Module):
    """An eval-mode BatchNorm3d as ``x · scale + shift`` per channel (one fused op), optionally with the ReLU
    that follows it applied in place: the same function, and cheaper than BatchNorm's kernels in the
    channels-last layout."""

    def __init__(self, bn: nn.BatchNorm3d, relu: bool = False) -> None:
        super().__init__()
        scale, shift = _bn_scale_shift(bn)
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1, 1).clone())
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1, 1).clone())
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        y = torch.addcmul(self.shift, x, self.scale)
        return torch.relu_(y) if self.relu else y


def _fold_after(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> nn.Conv3d:
    """Conv -> BatchNorm (eval) as one conv (exact up to rounding)."""
    scale, shift = _bn_scale_shift(bn)
    folded = copy.deepcopy(conv)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
    with torch.no_grad():
        folded.weight.mul_(scale.view(-1, *([1] * (conv.weight.ndim - 1))))
        folded.bias = nn.Parameter(bias * scale + shift)
    return folded


def _fold_before(bn: nn.BatchNorm3d, conv: nn.Conv3d) -> nn.Conv3d:
    """BatchNorm (eval) -> 1³ conv without padding as one conv (exact up to rounding, any stride)."""
    scale, shift = _bn_scale_shift(bn)
    folded = copy.deepcopy(conv)
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros(weight.shape[0], dtype=weight.dtype)
    with torch.no_grad():
        folded.bias = nn.Parameter(bias + weight.flatten(1) @ shift)
        folded.weight.mul_(scale.view(1, -1, *([1] * (conv.weight.ndim - 2))))
    return folded


def _foldable_bn(module: nn.Module) -> bool:
    return isinstance(module, nn.BatchNorm3d) and module.track_running_stats and module.affine


def _fusable(module: nn.Module) -> bool:
    kinds = (nn.Conv3d, nn.BatchNorm3d, nn.ReLU, nn.MaxPool3d)
    parts = list(module.children()) if isinstance(module, nn.Sequential) else []
    return (
        len(parts) == 4
        and all(isinstance(m, k) for m, k in zip(parts, kinds))
        and _foldable_bn(parts[1])
        and not parts[3].return_indices
    )


def _streamline_block(block: PreActResBlock) -> None:
    """Fold a pre-activation block's BatchNorms into its convs where that is exact: BN2 into conv1 (conv ->
    BN), the shortcut's BN into its 1³ conv (BN -> 1³ conv, no padding); BN1 and its ReLU become one op."""
    if isinstance(block.conv1, nn.Conv3d) and _foldable_bn(block.bn2):
        block.conv1 = _fold_after(block.conv1, block.bn2)
        block.bn2 = nn.Identity()
    if _foldable_bn(block.bn1) and isinstance(block.relu1, nn.ReLU):
        block.bn1 = _EvalBatchNorm(block.bn1, relu=True)
        block.relu1 = nn.Identity()
    sc = block.shortcut
    if (
        isinstance(sc, nn.Sequential)
        and len(sc) == 2
        and _foldable_bn(sc[0])
        and isinstance(sc[1], nn.Conv3d)
    ):
        conv = sc[1]
        if conv.kernel_size == (1, 1, 1) and conv.padding == (0, 0, 0):
            block.shortcut = _fold_before(sc[0], conv)


_FAST: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()


def attribution_network(network: nn.Module) -> nn.Module:
    """An eval-mode network for hook-free methods, made once per network: a copy computing the same function
    faster (issue #17): Conv-BatchNorm-ReLU-MaxPool stems fused (:class:`_FusedConvBlock`), each
    pre-activation block's BatchNorms folded into its convs where exact (:func:`_streamline_block`), every
    other eval BatchNorm one multiply-add (:class:`_EvalBatchNorm`), and on the CPU the channels-last 3-D
    layout (oneDNN's fast convolutions; about a third off a forward + backward pass at the paper's size). The
    network itself when in training mode. Networks loaded for inference are never modified, so the copy stays
    valid; its parameters need no gradient (only the input's is asked for)."""
    if network.training:
        return network
    with _POOL_LOCK:
        if network in _FAST:
            return _FAST[network]
    fast = copy.deepcopy(network).eval()
    for name in [name for name, module in fast.named_modules() if _fusable(module)]:
        parent_name, _, child = name.rpartition(".")
        parent = fast.get_submodule(parent_name) if parent_name else fast
        conv, bn, _, pool = list(getattr(parent, child).children())
        setattr(parent, child, _FusedConvBlock(conv, bn, pool))
    for module in list(fast.modules()):
        if isinstance(module, PreActResBlock):
            _streamline_block(module)
    for name in [name for name, module in fast.named_modules() if _foldable_bn(module)]:
        parent_name, _, child = name.rpartition(".")
        parent = fast.get_submodule(parent_name) if parent_name else fast
        setattr(parent, child, _EvalBatchNorm(getattr(parent, child)))
    if _network_device(fast).type == "cpu":
        fast = fast.to(memory_format=torch.channels_last_3d)
    fast.requires_grad_(False)
    with _POOL_LOCK:
        _FAST.setdefault(network, fast)
        return _FAST[network]


# The global torch RNG is process-wide: a seeded method holds this lock while it draws from it.
_RNG_LOCK = threading.Lock()


@contextmanager
def seeded_rng(seed: int | None) -> Iterator[None]:
    """Run the block with torch's global generator seeded, holding a process-wide lock (None: as is)."""
    if seed is None:
        yield
        return
    with _RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _network_device(network: nn.Module) -> torch.device:
    for p in network.parameters():
        return p.device
    return torch.device("cpu")


# --- the entry point ------------------------------------------------------------------------------------
def attribute_views(
    network: nn.Module,
    views: np.ndarray | Tensor,
    tabular: Tensor | np.ndarray,
    method: str,
    *,
    task: str = "ad",
    target: int | None = None,
    baseline: np.ndarray | Tensor | None = None,
    settings: Mapping[str, Any] | None = None,
    voxel_mm: float = 1.0,
    progress: Callable[[float], None] | None = None,
    threads: int | None = None,
    precision: str | None = None,
) -> ViewAttribution:
    """Attribute one subject's output to every voxel of every view, with any method of :data:`METHODS`.

    Args:
        network: the task network (eval mode); it may be shared with other threads. The map runs on the
            device its parameters are on (inputs are moved there; the map comes back as a NumPy array).
        views: the subject's model input, (V, 1, D, H, W') float32 (``model_input``'s output).
        tabular: the preprocessed record, (F,) or (1, F).
        method: a key of :data:`METHODS`.
        task: "ad" or "brain_age".
        target: class index to explain (AD; required), None for brain age.
        baseline: (V, 1, D, H, W'), for methods with ``uses_baseline`` (see :mod:`.baselines`).
        settings: method settings (see ``METHODS[method].defaults``) and ``output``.
        voxel_mm: the model grid's voxel size, mm (occlusion windows and Grad-CAM's coarse grid).
        progress: called with the fraction done, 0-1, while the method runs.
        threads: intra-op threads for this map (None: :func:`default_threads`); see :func:`thread_budget`.
        precision: "float32" (default; ``HYPERFUSION_PRECISION``), "bfloat16" or "float16" (autocast).

    Returns:
        A :class:`ViewAttribution`; ``views`` has shape (V, D, H, W').
    """
    m = get_method(method)
    if not network.reads_scan:
        raise DataError(f"{method}: this model does not read the scan; explain its record instead")
    if task == "ad" and target is None:
        raise DataError(f"{method}: choose the class to explain (target)")
    precision = resolve_precision(precision)
    device = _network_device(network)
    x = views.detach() if isinstance(views, Tensor) else torch.tensor(np.asarray(views))
    x = x.to(torch.float32)
    if x.ndim != 5 or x.shape[1] != 1:
        raise DataError(f"{method}: expected views of shape (V, 1, D, H, W'), got {tuple(x.shape)}")
    s = resolve_settings(method, settings, network, task, subject_voxels=x.numel())
    inputs = x.detach().to(device).clone().unsqueeze(0).requires_grad_(True)
    tab = torch.as_tensor(tabular, dtype=torch.float32).reshape(1, -1).to(device)
    base = None
    if m.uses_baseline:
        if baseline is None:
            raise DataError(f"{method} needs a baseline scan (zero, blur or cohort_cn_mean)")
        base = baseline.detach() if isinstance(baseline, Tensor) else torch.tensor(np.asarray(baseline))
        base = base.to(device=device, dtype=torch.float32).reshape(inputs.shape).clone()
    expected = max(1, m.rows(s, (x.shape[0], *x.shape[-3:]), float(voxel_mm)))
    done = [0]

    def on_rows(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(min(1.0, done[0] / expected))

    target_index = None if task == "brain_age" else int(target)
    info: dict[str, Any] = {}  # what the runner reports besides the map (IG: the steps it used)
    column = target_index or 0

    def part(net: nn.Module, xin: Tensor, bin_: Tensor | None, count: Callable[[float], None]):
        """The method on some views: (attributions, delta, coarse, output row, baseline output row)."""
        forward = SubjectOutput(net, task, s["output"], count)
        if method in _ONE_FORWARD_AT_SCAN:
            forward.tap = []
        call = _Call(forward, xin, bin_, tab, target_index, s, float(voxel_mm), info)
        with seeded_rng(s.get("seed") if m.seeded else None), autocast(device, precision):
            attr, delta, coarse = m.run(call)
        tapped = forward.tap or []
        with torch.no_grad(), autocast(device, precision):
            plain = SubjectOutput(net, task, s["output"], count)
            if len(tapped) == 1 and tapped[0].shape[0] == 1:
                out, base_row = tapped[0][0], None
            elif "ends" in info:  # the runner computed the outputs at the scan and the baseline already
                out, base_row = info.pop("ends")
            elif bin_ is not None:  # the scan and the baseline in one pass
                both = plain(torch.cat([xin.detach(), bin_]), tab.expand(2, -1))
                out, base_row = both[0], both[1]
            else:
                out, base_row = plain(xin.detach(), tab)[0], None
            if bin_ is not None and base_row is None:
                base_row = plain(bin_, tab)[0]
        base_row = None if base_row is None else base_row.float()
        return attr.detach().float(), delta, coarse, out.float(), base_row

    n_views = x.shape[0]
    budget = default_threads() if threads is None else int(threads)
    if budget < 1:
        raise DataError(f"threads must be a positive whole number, not {threads!r}")
    workers = min(n_views, budget) if method in _VIEW_SEPARABLE and not m.uses_hooks else 1
    if workers > 1:
        # The subject's output is the mean of a function of each view alone, so each view's attribution is
        # that method on its own view, divided by V: the views run side by side, each in its own thread with
        # its share of the thread budget (no OpenMP barrier between them: robust on a busy CPU).
        fast = attribution_network(network)
        count_lock = threading.Lock()

        def count(n: float) -> None:  # the workers only count; progress is reported from the calling thread
            with count_lock:
                done[0] += n / n_views

        def one_view(v: int):
            with thread_budget(max(1, budget // workers)):
                xin = inputs[:, v : v + 1].detach().clone().requires_grad_(True)
                bin_ = None if base is None else base[:, v : v + 1]
                return part(fast, xin, bin_, count)

        from concurrent.futures import ThreadPoolExecutor, wait

        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(one_view, v) for v in range(n_views)]
            reported = -1.0
            while True:  # a UI's progress callback must run in its own thread (Streamlit's script thread)
                _, running = wait(futures, timeout=0.1)
                fraction = min(1.0, done[0] / expected)
                if progress is not None and fraction != reported:
                    progress(fraction)
                    reported = fraction
                if not running:
                    break
            parts = [f.result() for f in futures]
        attr = torch.cat([p_[0] for p_ in parts], dim=1) / n_views
        out_row = torch.stack([p_[3] for p_ in parts]).mean(dim=0)
        base_row = None if base is None else torch.stack([p_[4] for p_ in parts]).mean(dim=0)
        delta, coarse = parts[0][1], None
    else:
        with thread_budget(budget):
            if m.uses_hooks:
                with private_copy(network) as replica:
                    attr, delta, coarse, out_row, base_row = part(replica, inputs, base, on_rows)
            else:
                attr, delta, coarse, out_row, base_row = part(
                    attribution_network(network), inputs, base, on_rows
                )
    output = float(out_row[column])
    base_out = None if base_row is None else float(base_row[column])
    if delta is COMPLETENESS_DELTA:  # Captum's convergence delta, on the outputs computed above
        delta = float(attr.sum(dtype=torch.float64)) - (output - base_out)
    arr = attr.reshape(n_views, *x.shape[-3:]).cpu().numpy().astype(np.float32, copy=False)
    result = ViewAttribution(
        views=arr,
        output=output,
        baseline_output=base_out,
        delta=None if delta is None else float(torch.as_tensor(delta).reshape(-1)[0]),
        settings=s,
        coarse=coarse,
        steps=info.get("steps"),
    )
    if progress is not None:
        progress(1.0)
    return result
