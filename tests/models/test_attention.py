"""Defining properties of our reading of Jiang et al. 2021 (see hyperfusion/models/attention.py)."""

import pytest
import torch

from hyperfusion.models.attention import EHRSpatialAttention, GMUFusion, MultiHeadGMU


@pytest.fixture
def attention():
    torch.manual_seed(0)
    return EHRSpatialAttention(channels=6, n_condition=5, attention_dim=4)


def test_attention_maps_are_distributions_over_voxels(attention):
    x, t = torch.randn(3, 6, 4, 5, 3), torch.randn(3, 5) * 3
    a = attention.attention_map(x, t)
    assert a.shape == (3, 4, 5, 3)
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(dim=(1, 2, 3)), torch.ones(3))
    assert a.flatten(1).std(dim=1).min() > 0  # the record actually moves weight between voxels


def test_attention_reweights_voxels_not_channels(attention):
    x, t = torch.randn(2, 6, 4, 5, 3), torch.randn(2, 5)
    out = attention(x, t)
    n_voxels = 4 * 5 * 3
    weight = attention.attention_map(x, t) * n_voxels
    torch.testing.assert_close(out, x * weight.unsqueeze(1))
    # the same voxel weight for every channel
    ratio = out / x
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))


def test_uniform_map_leaves_features_unchanged(attention):
    with torch.no_grad():
        attention.query.weight.zero_()
        attention.query.bias.zero_()
    x, t = torch.randn(2, 6, 4, 5, 3), torch.randn(2, 5)
    torch.testing.assert_close(attention(x, t), x)


def test_attention_depends_on_the_record(attention):
    x, t = torch.randn(2, 6, 4, 5, 3), torch.randn(2, 5)
    assert not torch.allclose(attention.attention_map(x, t), attention.attention_map(x, t + 2.0))


@pytest.fixture
def gmu():
    torch.manual_seed(0)
    return MultiHeadGMU(image_dim=12, ehr_dim=8, heads=4, head_dim=3)


def test_gmu_gates_in_open_unit_interval_and_output_is_their_mix(gmu):
    x_v, x_t = torch.randn(5, 12) * 4, torch.randn(5, 8) * 4
    fused, z = gmu.fuse(x_v, x_t)
    assert z.shape == fused.shape == (5, 4, 3)
    assert (z > 0).all() and (z < 1).all()
    h_v = torch.tanh(torch.einsum("hod,bhd->bho", gmu.w_image, x_v.view(5, 4, 3)) + gmu.b_image)
    h_t = torch.tanh(torch.einsum("hod,bhd->bho", gmu.w_ehr, x_t.view(5, 4, 2)) + gmu.b_ehr)
    torch.testing.assert_close(fused, z * h_v + (1 - z) * h_t)
    assert (fused.abs() < 1).all()
    assert gmu(x_v, x_t).shape == (5, 12)


@pytest.mark.parametrize("head", [0, 2, 3])
def test_gmu_heads_are_independent(gmu, head):
    """Changing head j's image and EHR subspaces changes head j's output and nothing else."""
    x_v, x_t = torch.randn(2, 12), torch.randn(2, 8)
    before = gmu(x_v, x_t).view(2, 4, 3)
    x_v2, x_t2 = x_v.clone(), x_t.clone()
    x_v2[:, head * 3 : (head + 1) * 3] += 2.0
    x_t2[:, head * 2 : (head + 1) * 2] -= 2.0
    after = gmu(x_v2, x_t2).view(2, 4, 3)
    others = [h for h in range(4) if h != head]
    torch.testing.assert_close(after[:, others], before[:, others])
    assert not torch.allclose(after[:, head], before[:, head])


def test_gmu_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadGMU(image_dim=10, ehr_dim=8, heads=4)


def test_gmu_stage_reads_the_record():
    torch.manual_seed(0)
    stage = GMUFusion(image_dim=8, n_condition=5, ehr_dim=4, heads=2, head_dim=3)
    x_v, t = torch.randn(2, 8), torch.randn(2, 5)
    assert stage(x_v, t).shape == (2, 6)
    assert not torch.allclose(stage(x_v, t), stage(x_v, -t))
