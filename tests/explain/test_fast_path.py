"""The fast path of attribute_views (thread budget, one forward at the scan, IG's delta from the reported
outputs, autocast precision, device) gives the maps of the straightforward Captum calls, at tiny shapes."""

import copy
import threading

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

from hyperfusion.data import parse_record
from hyperfusion.errors import DataError
from hyperfusion.explain.methods import (
    SubjectOutput,
    attribute_views,
    attribution_network,
    default_threads,
    resolve_device,
    resolve_precision,
    thread_budget,
)


@pytest.fixture(scope="module")
def subject(env):
    scan, record = env.subject(5)
    member = env.predictor.models["hyperfusion"].members[0]
    views = env.predictor.views(member, scan)
    tabular = member.tabular([parse_record(record)])
    return member.network, views, tabular


def _straightforward(network, views, tabular, method, target, baseline=None, **kw):
    """What attribute_views did before the fast path: Captum on the subject function, one thread, fp32,
    Captum's own convergence delta, and separate no-grad forwards for the outputs."""
    forward = SubjectOutput(network, "ad", "probability")
    x = torch.tensor(views).unsqueeze(0).requires_grad_(True)
    tab = torch.as_tensor(tabular).reshape(1, -1)
    delta = None
    with thread_budget(1):
        if method == "saliency":
            attr = Saliency(forward).attribute(x, target=target, abs=True, additional_forward_args=(tab,))
        elif method == "grad_cam":
            coarse = LayerGradCam(forward, network.gradcam_layer).attribute(
                x, target=target, additional_forward_args=(tab,), relu_attributions=True
            )
            attr = LayerAttribution.interpolate(coarse, tuple(x.shape[-3:]), interpolate_mode="trilinear")
        else:
            base = torch.tensor(baseline).unsqueeze(0)
            attr, delta = IntegratedGradients(forward).attribute(
                x,
                baselines=base,
                target=target,
                additional_forward_args=(tab,),
                n_steps=kw["n_steps"],
                method="gausslegendre",
                internal_batch_size=kw["internal_batch_size"],
                return_convergence_delta=True,
            )
        with torch.no_grad():
            output = float(forward(x.detach(), tab)[0, target])
            base_out = None if baseline is None else float(forward(base, tab)[0, target])
    arr = attr.detach().reshape(views.shape[0], *views.shape[-3:]).numpy()
    return arr, output, base_out, None if delta is None else float(delta[0])


def _close(fast: np.ndarray, reference: np.ndarray, rtol: float = 1e-4) -> None:
    scale = float(np.abs(reference).max())
    assert scale > 0
    np.testing.assert_allclose(fast, reference, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("method", ["saliency", "grad_cam"])
@pytest.mark.parametrize("threads", [1, 2])
def test_gradient_maps_equal_the_straightforward_path(subject, method, threads):
    network, views, tabular = subject
    ref, output, _, _ = _straightforward(network, views, tabular, method, 2)
    fast = attribute_views(network, views, tabular, method, target=2, voxel_mm=4.0, threads=threads)
    _close(fast.views, ref)
    # the output is taken from the method's own forward pass: the same number as a separate forward
    assert fast.output == pytest.approx(output, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_integrated_gradients_equal_the_straightforward_path(subject, batch):
    network, views, tabular = subject
    baseline = np.zeros_like(views)
    ref, output, base_out, delta = _straightforward(
        network, views, tabular, "ig", 1, baseline, n_steps=8, internal_batch_size=batch
    )
    fast = attribute_views(
        network,
        views,
        tabular,
        "integrated_gradients",
        target=1,
        baseline=baseline,
        threads=2,
        settings={"n_steps": 8, "internal_batch_size": batch},
    )
    _close(fast.views, ref)
    assert fast.output == pytest.approx(output, rel=1e-5, abs=1e-7)
    assert fast.baseline_output == pytest.approx(base_out, rel=1e-5, abs=1e-7)
    # Captum's convergence delta, computed from the two outputs the result reports
    assert fast.delta == pytest.approx(delta, rel=1e-3, abs=1e-6)
    assert fast.delta == pytest.approx(fast.views.astype(np.float64).sum() - (output - base_out), abs=1e-6)


def test_thread_budget_is_set_for_the_call_and_restored(subject, monkeypatch):
    network, views, tabular = subject
    before = torch.get_num_threads()
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.reads_scan, self.reads_record = net, True, True

        def forward(self, image, tab):
            seen.append((threading.get_ident(), torch.get_num_threads(), image.shape[0]))
            return self.net(image, tab)

    # a method over all views at once: one thread of the caller's, with the budget
    attribute_views(
        Spy(network), views, tabular, "smoothgrad", target=0, threads=3, settings={"nt_samples": 2}
    )
    assert seen and {t for _, t, _ in seen} == {3}
    assert torch.get_num_threads() == before
    # saliency: all views in one batch, with the whole budget (faster than side by side, measured)
    seen.clear()
    attribute_views(Spy(network), views, tabular, "saliency", target=0, threads=3)
    assert {t for _, t, _ in seen} == {3} and {rows for _, _, rows in seen} == {2}
    assert torch.get_num_threads() == before
    with thread_budget(2) as n:
        assert n == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    monkeypatch.setenv("HYPERFUSION_THREADS", "5")
    assert default_threads() == 5
    monkeypatch.setenv("HYPERFUSION_THREADS", "many")
    with pytest.raises(DataError, match="HYPERFUSION_THREADS"):
        default_threads()
    with pytest.raises(DataError, match="threads"):
        attribute_views(network, views, tabular, "saliency", target=0, threads=0)


def test_reduced_precision_stays_close_to_float32(subject):
    """bfloat16 autocast on the CPU: the same code path the GPU runs; the map is float32 and close to fp32's."""
    network, views, tabular = subject
    full = attribute_views(network, views, tabular, "saliency", target=2, threads=1)
    half = attribute_views(network, views, tabular, "saliency", target=2, threads=1, precision="bf16")
    assert half.views.dtype == np.float32
    a, b = full.views.ravel(), half.views.ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.95
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.2
    assert half.output == pytest.approx(full.output, abs=0.02)
    assert not np.array_equal(a, b)  # autocast did run in bfloat16


def test_precision_and_device_names_are_checked(monkeypatch):
    assert resolve_precision(None) == "float32"
    assert resolve_precision("fp16") == "float16"
    monkeypatch.setenv("HYPERFUSION_PRECISION", "bf16")
    assert resolve_precision(None) == "bfloat16"
    with pytest.raises(DataError, match="precision"):
        resolve_precision("int8")
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("HYPERFUSION_DEVICE", "cpu")
    assert resolve_device(None).type == "cpu"
    with pytest.raises(DataError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DataError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_command_line_options():
    from hyperfusion.cli import build_parser

    a = build_parser().parse_args(
        [
            "explain",
            "--model",
            "m",
            "--out",
            "o.nii.gz",
            "--threads",
            "1",
            "--precision",
            "bf16",
            "--device",
            "cpu",
        ]
    )
    assert (a.threads, a.precision, a.device) == (1, "bf16", "cpu")
    p = build_parser().parse_args(["predict", "--cohort", "c", "--models", "a", "b", "--out", "p.csv"])
    assert (p.cohort, p.models, p.workers, p.batch_size) == ("c", ["a", "b"], 2, 8)


def test_fused_stem_is_the_same_function_and_gradient(subject):
    network, views, tabular = subject
    fast = attribution_network(network)
    assert fast is not network and attribution_network(network) is fast  # made once
    assert type(fast.stem).__name__ == "_FusedConvBlock" and type(network.stem).__name__ == "Sequential"
    # every BatchNorm folded into a conv or made one multiply-add; the convs in the channels-last layout
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in network.modules())
    assert fast.block2.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert not any(p.requires_grad for p in fast.parameters())
    x = torch.tensor(views).requires_grad_(True)
    tab = torch.as_tensor(tabular).repeat(2, 1)
    grads = []
    for net in (network, fast):
        out = net(x, tab)
        (g,) = torch.autograd.grad(out[:, 2].sum(), x)
        grads.append((out.detach(), g))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-5, atol=1e-6)
    _close(grads[1][1].numpy(), grads[0][1].numpy())
    # also with BatchNorm statistics far from the identity (a copy of the network, so others are unaffected)
    skewed = copy.deepcopy(network)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in skewed.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                m.bias.copy_(torch.rand(c, generator=generator) * 0.4 - 0.2)
    pair = []
    for net in (skewed, attribution_network(skewed)):
        out = net(x, tab)
        (g,) = torch.autograd.grad(out[:, 2].sum(), x)
        pair.append((out.detach(), g))
    torch.testing.assert_close(pair[1][0], pair[0][0], rtol=1e-5, atol=1e-6)
    _close(pair[1][1].numpy(), pair[0][1].numpy())
    assert all(p.requires_grad for p in network.parameters())  # the loaded network is left as it was
    network.train()
    try:
        assert attribution_network(network) is network  # BatchNorm statistics are only folded in eval mode
    finally:
        network.eval()


def test_progress_is_reported_from_the_calling_thread(subject):
    """A UI's callback (Streamlit's) only works in the script's thread, also when the views run side by side."""
    network, views, tabular = subject
    calls = []
    attribute_views(
        network,
        views,
        tabular,
        "integrated_gradients",
        target=1,
        baseline=np.zeros_like(views),
        threads=2,
        settings={"n_steps": 8, "internal_batch_size": 2},
        progress=lambda f: calls.append((threading.get_ident(), f)),
    )
    assert calls and {ident for ident, _ in calls} == {threading.get_ident()}
    fractions = [f for _, f in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_integrated_gradients_uses_fewer_steps_only_when_they_converge(subject):
    """tolerance 0 (the default): exactly n_steps, today's map. A tolerance: a quarter of the steps first,
    kept only when Captum's convergence delta is within it (and the result says so), else n_steps."""
    network, views, tabular = subject
    baseline = np.zeros_like(views)

    def ig(**settings):
        return attribute_views(
            network,
            views,
            tabular,
            "integrated_gradients",
            target=1,
            baseline=baseline,
            threads=1,
            settings={"n_steps": 16, **settings},
        )

    default, quarter = ig(), ig(n_steps=4)
    assert default.steps == 16 and default.settings["tolerance"] == 0.0
    ref16, *_ = _straightforward(
        network, views, tabular, "ig", 1, baseline, n_steps=16, internal_batch_size=4
    )
    _close(default.views, ref16)
    # a loose tolerance that the 4-step map meets: it is kept and reported as 4 steps
    loose = ig(tolerance=min(0.99, 2 * quarter.relative_delta + 1e-3))
    assert loose.steps == 4
    _close(loose.views, quarter.views)
    assert loose.delta == pytest.approx(quarter.delta, abs=1e-6)
    # a tolerance the 4-step map misses: the full 16 steps, equal to the default map
    strict = ig(tolerance=quarter.relative_delta / 2)
    assert strict.steps == 16
    _close(strict.views, default.views)
    with pytest.raises(DataError, match="tolerance"):
        ig(tolerance=2)


@pytest.mark.parametrize("layout", ["channels_last_3d", "contiguous_format"])
@pytest.mark.parametrize(
    "pool", [torch.nn.MaxPool3d(3, stride=2, padding=1), torch.nn.MaxPool3d(2, ceil_mode=True)]
)
def test_integrated_gradients_through_the_stem_follow_any_max_pool(subject, pool, layout, monkeypatch):
    """The path after the stem sends each pooled gradient back to the voxel its cell took by a scatter-add at
    the pool's own indices: overlapping cells (a voxel taken by several) and ceil-mode edges give Captum's map,
    in the CPU's channels-last layout and in the default one a GPU uses."""
    from hyperfusion.explain import methods
    from hyperfusion.models import build_model

    monkeypatch.setattr(methods, "_path_layout", lambda device: getattr(torch, layout))
    network, views, tabular = subject
    torch.manual_seed(0)
    net = build_model("hyperfusion", "ad", init_features=4, input_shape=list(views.shape[-3:])).eval()
    net.stem[3] = pool
    baseline = np.full_like(views, -0.5)
    ref, output, base_out, _ = _straightforward(
        net, views, tabular, "ig", 2, baseline, n_steps=6, internal_batch_size=2
    )
    fast = attribute_views(
        net,
        views,
        tabular,
        "integrated_gradients",
        target=2,
        baseline=baseline,
        threads=1,
        settings={"n_steps": 6, "internal_batch_size": 4},
    )
    _close(fast.views, ref)
    assert fast.output == pytest.approx(output, rel=1e-5, abs=1e-7)
    assert fast.baseline_output == pytest.approx(base_out, rel=1e-5, abs=1e-7)
