"""Pooled shortcuts: the same parameters as the paper's strided 1³ shortcut, and no gradient lattice."""

import torch

from hyperfusion.data.augment import AnatomyAugment, AugmentConfig
from hyperfusion.models import build_model


def _lattice(grad: torch.Tensor, stride: int = 16) -> float:
    """Mean share of the hottest 1 % of the stride³ voxel phases of |grad|, over the even share."""
    a = grad.abs()[:, 0]
    b, d, h, w = a.shape
    a = a.reshape(b, d // stride, stride, h // stride, stride, w // stride, stride)
    phases = a.sum(dim=(0, 1, 3, 5)).flatten()
    phases = phases / phases.sum()
    return float(phases.topk(max(1, phases.numel() // 100)).values.mean() * phases.numel())


def _saliency(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    net(x, torch.randn(x.shape[0], 16)).softmax(-1)[:, 2].sum().backward()
    return x.grad


def test_pooled_shortcuts_keep_parameters_and_remove_the_stride_lattice():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 32, 48, 32)
    scores = {}
    for pooled in (False, True):
        torch.manual_seed(1)
        net = build_model(
            "hyperfusion", "ad", init_features=4, input_shape=[32, 48, 32], shortcut_pool=pooled
        )
        shapes = {k: v.shape for k, v in net.state_dict().items()}
        scores[pooled] = (_lattice(_saliency(net.eval(), x)), shapes)
    assert scores[False][1] == scores[True][1]  # checkpoints of either kind have the same keys and shapes
    assert scores[False][0] > 5 and scores[True][0] < 2.5, (scores[False][0], scores[True][0])


def test_augmentation_is_seeded_keeps_background_and_can_be_off():
    x = torch.zeros(4, 1, 16, 24, 16)
    x[:, :, 4:12, 6:18, 4:12] = torch.randn(4, 1, 8, 12, 8)
    a, b = AnatomyAugment(seed=3)(x), AnatomyAugment(seed=3)(x)
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert float((a[:, :, 0] != 0).float().mean()) == 0.0  # far background stays 0 after the small affine
    assert abs(float((a != 0).float().mean()) - float((x != 0).float().mean())) < 0.05
    off = AnatomyAugment(AugmentConfig(prob_affine=0, prob_intensity=0))(x)
    assert torch.equal(off, x)
