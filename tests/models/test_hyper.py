import math

import pytest
import torch
import torch.nn.functional as F

from hyperfusion.errors import DataError
from hyperfusion.models import HyperConv3d, HyperLinear, measure_input_variance
from hyperfusion.models.hyper import linear_embedding, tabular_embedding


def _conv(c_in=3, c_out=5, kernel=1, stride=1, padding=0, n_tab=6, v=1.0):
    torch.manual_seed(0)
    layer = HyperConv3d(
        c_in, c_out, kernel, tabular_embedding(n_tab, 4), 4, stride, padding, input_variance=v
    )
    return layer.eval()


def _per_sample_conv(layer: HyperConv3d, x, condition):
    """The reference: a Python loop, sample b's generated kernel on sample b's own features."""
    weight, bias = layer.generate(condition)
    return torch.cat(
        [
            F.conv3d(x[b : b + 1], weight[b], bias[b], stride=layer.stride, padding=layer.padding)
            for b in range(x.shape[0])
        ]
    )


@pytest.mark.parametrize(
    "kernel, stride, padding",
    [
        (1, 2, 0),
        (1, 1, 0),
        (1, (2, 1, 2), 1),
        (3, 1, 1),
        (3, 2, 1),
        (2, 1, 0),
        ((1, 3, 2), (1, 2, 1), (0, 1, 0)),
    ],
)
def test_hyper_conv_equals_per_sample_loop(kernel, stride, padding):
    layer = _conv(kernel=kernel, stride=stride, padding=padding)
    x, t = torch.randn(4, 3, 6, 7, 5), torch.randn(4, 6)
    with torch.no_grad():
        torch.testing.assert_close(layer(x, t), _per_sample_conv(layer, x, t), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel", [1, 3])
def test_each_sample_gets_its_own_kernel_not_its_neighbours(kernel):
    """Regression for the authors' bug: their loop fed sample k - 1's features to sample k's kernel."""
    layer = _conv(kernel=kernel, padding=kernel // 2)
    x, t = torch.randn(3, 3, 4, 4, 4), torch.randn(3, 6)
    weight, bias = layer.generate(t)
    with torch.no_grad():
        out = layer(x, t)
        own = F.conv3d(x[1:2], weight[1], bias[1], padding=kernel // 2)
        neighbour = F.conv3d(x[0:1], weight[1], bias[1], padding=kernel // 2)
    torch.testing.assert_close(out[1:2], own, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[1:2], neighbour, atol=1e-3)
    # permuting the batch permutes the outputs: nothing leaks between samples
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(layer(x[perm], t[perm]), out[perm], atol=1e-5, rtol=1e-5)


def test_hyper_conv_record_changes_output():
    layer = _conv()
    x, t = torch.randn(2, 3, 4, 4, 4), torch.randn(2, 6)
    with torch.no_grad():
        assert not torch.allclose(layer(x, t), layer(x, t + 1.0))


def test_hyper_linear_equals_per_sample_loop_and_splits():
    torch.manual_seed(0)
    layer = HyperLinear(7, 5, tabular_embedding(6, 3), 3).eval()
    x, t = torch.randn(4, 7), torch.randn(4, 6)
    weight, bias = layer.generate(t)
    expected = torch.stack([F.linear(x[b], weight[b], bias[b]) for b in range(4)])
    with torch.no_grad():
        torch.testing.assert_close(layer(x, t), expected, atol=1e-5, rtol=1e-5)
        (basis,) = layer.encode(x)
        assert basis.shape == (4, 3 + 1, 5)
        torch.testing.assert_close(layer.decode((basis,), t), expected, atol=1e-5, rtol=1e-5)


def test_hyper_linear_gradients_match_materialised_weights():
    """The factorised forward must train the heads exactly as generating each W_b would."""
    torch.manual_seed(0)
    layer = HyperLinear(9, 4, linear_embedding(2, 1), 1, input_variance=0.25)
    x, t = torch.randn(5, 9), F.one_hot(torch.tensor([0, 1, 1, 0, 1]), 2).float()
    layer(x, t).square().sum().backward()
    fast = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    weight, bias = layer.generate(t)
    torch.einsum("boi,bi->bo", weight, x).add(bias).square().sum().backward()
    for a, p in zip(fast, layer.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("v", [0.25, 1.0, 3.0])
def test_principled_init_variances(v):
    layer = HyperConv3d(64, 32, 1, tabular_embedding(16, 8), 8, input_variance=v)
    d_j, d_k = 64, 8
    w = layer.weight_head.weight
    var_w = 1 / (d_j * d_k * v)
    assert w.var().item() == pytest.approx(var_w, rel=0.05)
    assert w.abs().max().item() <= math.sqrt(3 * var_w) + 1e-7
    var_b = 1 / (d_k * v)
    assert layer.bias_head.weight.abs().max().item() <= math.sqrt(3 * var_b) + 1e-7
    assert layer.weight_head.bias.abs().max() == 0 and layer.bias_head.bias.abs().max() == 0


def test_principled_init_gives_fan_in_scaled_generated_weights():
    """What the init is for: with inputs of variance v, generated weights have variance ≈ 1 / fan_in."""
    torch.manual_seed(0)
    v, fan_in = 2.0, 128
    layer = HyperLinear(fan_in, 64, torch.nn.Identity(), 8, input_variance=v)
    e = torch.randn(512, 8) * math.sqrt(v)
    weight, _ = layer.generate(e)
    assert weight.var().item() == pytest.approx(1 / fan_in, rel=0.1)


def test_measure_input_variance():
    assert measure_input_variance(F.one_hot(torch.tensor([0, 1, 1]), 2).float()) == pytest.approx(0.25)
    rows = torch.tensor([[1.0, 3.0], [0.0, 4.0]])  # row variances 1 and 4
    assert measure_input_variance(rows) == pytest.approx(2.5)
    assert measure_input_variance(torch.ones(4, 3)) == 1.0  # constant rows: the authors' fallback
    with pytest.raises(DataError, match="impute"):
        measure_input_variance(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(DataError, match="rows"):
        measure_input_variance(torch.ones(0, 3))


def test_mismatched_batch_is_refused():
    layer = _conv()
    with pytest.raises(DataError, match="one record per image"):
        layer(torch.randn(2, 3, 4, 4, 4), torch.randn(3, 6))
