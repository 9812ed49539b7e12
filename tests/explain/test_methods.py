import numpy as np
import pytest
import torch

from hyperfusion.data import parse_record
from hyperfusion.errors import DataError
from hyperfusion.explain.methods import METHODS, attribute_views, available_methods
from tests.explain.conftest import G

FAST = {
    "occlusion": {"window_mm": 16.0, "stride_mm": 16.0},
    "smoothgrad": {"nt_samples": 4},
    "integrated_gradients": {"n_steps": 8},
}


@pytest.fixture(scope="module")
def subject(env):
    scan, record = env.subject(3)
    member = env.predictor.models["hyperfusion"].members[0]
    views = env.predictor.views(member, scan)
    tabular = member.tabular([parse_record(record)])
    return member.network, views, tabular


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_answers_the_same_call(subject, method):
    network, views, tabular = subject
    progress = []
    result = attribute_views(
        network,
        views,
        tabular,
        method,
        target=2,
        baseline=np.zeros_like(views),
        voxel_mm=4.0,
        settings=FAST.get(method),
        progress=progress.append,
    )
    assert result.views.shape == (2, *G.input_shape)
    assert np.isfinite(result.views).all() and np.abs(result.views).sum() > 0
    assert progress and progress[-1] == 1.0 and all(0 <= p <= 1 for p in progress)
    assert set(METHODS[method].defaults) <= set(result.settings)
    assert (result.baseline_output is not None) == METHODS[method].uses_baseline


def test_integrated_gradients_is_complete(subject):
    """Sum of attributions ≈ output at the scan − output at the baseline; the delta says how far off.

    (On these random networks and brain-like test scans 32 steps leave up to ~15 % of a tiny probability gap
    unexplained, which the relative delta reports; 128 steps about 2 %, 256 under 1 %.)
    """
    network, views, tabular = subject
    for output, steps in (("probability", 256), ("logit", 64)):
        r = attribute_views(
            network,
            views,
            tabular,
            "integrated_gradients",
            target=2,
            baseline=np.zeros_like(views),
            settings={"n_steps": steps, "internal_batch_size": 32, "output": output},
        )
        total = r.views.astype(np.float64).sum()
        gap = r.output - r.baseline_output
        assert abs(gap) > 1e-4
        assert total == pytest.approx(gap, rel=1e-2)
        assert r.delta == pytest.approx(total - gap, abs=1e-6)
        assert r.relative_delta == pytest.approx(abs(total - gap) / abs(gap), rel=1e-2, abs=1e-4)


def test_deeplift_sums_to_the_logit_change(subject):
    network, views, tabular = subject
    r = attribute_views(network, views, tabular, "deeplift", target=1, baseline=np.zeros_like(views))
    assert r.settings["output"] == "logit"
    assert r.relative_delta < 1e-3


def test_grad_cam_states_its_coarse_grid(subject):
    network, views, tabular = subject
    r = attribute_views(network, views, tabular, "grad_cam", target=0, voxel_mm=4.0)
    # block 4 sees the 16×24×16 view at 1/16: a 1×2×1 grid of 64×48×64 mm cells
    assert r.coarse == {"layer": "block4.add", "shape": [1, 2, 1], "voxel_mm": [64.0, 48.0, 64.0]}
    r3 = attribute_views(
        network, views, tabular, "grad_cam", target=0, voxel_mm=4.0, settings={"layer": "block3.add"}
    )
    assert r3.coarse["shape"] == [2, 3, 2] and r3.settings["layer"] == "block3.add"


def test_smoothgrad_is_reproducible_by_seed(subject):
    network, views, tabular = subject
    a, b, c = (
        attribute_views(
            network, views, tabular, "smoothgrad", target=2, settings={"nt_samples": 3, "seed": s}
        )
        for s in (1, 1, 2)
    )
    np.testing.assert_array_equal(a.views, b.views)
    assert not np.array_equal(a.views, c.views)


def test_refusals_say_what_to_do(subject, env):
    network, views, tabular = subject
    with pytest.raises(DataError, match="choose one of"):
        attribute_views(network, views, tabular, "lime", target=0)
    with pytest.raises(DataError, match="unknown setting"):
        attribute_views(network, views, tabular, "saliency", target=0, settings={"steps": 3})
    with pytest.raises(DataError, match="baseline"):
        attribute_views(network, views, tabular, "integrated_gradients", target=0)
    with pytest.raises(DataError, match="output"):
        attribute_views(network, views, tabular, "saliency", target=0, settings={"output": "years"})
    tabular_only = env.predictor.models["tabular_only"].members[0].network
    with pytest.raises(DataError, match="record"):
        attribute_views(tabular_only, views, tabular, "saliency", target=0)


def test_available_methods_lists_every_method_as_data():
    listed = available_methods()
    assert [m["name"] for m in listed] == list(METHODS)
    assert {m["name"] for m in listed if m["offline"]} == {"occlusion"}
    assert all(isinstance(m["defaults"], dict) for m in listed)


def test_hook_methods_leave_the_shared_network_clean(subject):
    network, views, tabular = subject
    for method in ("grad_cam", "deeplift"):
        attribute_views(network, views, tabular, method, target=2, baseline=np.zeros_like(views))
    for module in network.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
        assert not hasattr(module, "input") and not hasattr(module, "output")
    assert all(p.grad is None for p in network.parameters())
    torch.testing.assert_close(network.training, False)
