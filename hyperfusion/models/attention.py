"""Jiang et al. 2021 (arXiv:2112.11710): EHR-guided spatial attention and the multi-head gated multimodal unit.

The paper's exact equations, head count and sizes are not public in our sources (docs/models.md §1, Baselines),
so this is our reading, written down here and tested for its defining properties:

EHR-guided spatial attention (:class:`EHRSpatialAttention`), applied to a CNN feature map F (B, C, N voxels)
during feature extraction:

    keys   K = W_k F              (1³ conv, C -> d_a; reads only the image, so it is cached with it)
    query  q = W_q t + b_q        (the record t -> d_a)
    map    A = softmax_N(qᵀ K / √d_a)       (B, N), A ≥ 0 and Σ_voxels A = 1 for every sample
    output F' = F ⊙ (N · A)       (one weight per voxel, shared by all channels)

so a uniform map (q = 0) leaves F unchanged and the record moves weight between voxels without changing the
feature map's overall scale.

Multi-head GMU (:class:`MultiHeadGMU`), after Arevalo et al. 2017: the image vector x_v (B, D_v) and the EHR
vector x_t (B, D_t) are each split into H equal, contiguous subspaces; head h fuses its pair with a GMU

    h_v = tanh(W_v^h x_v^h + b),  h_t = tanh(W_t^h x_t^h + b),  z = σ(W_z^h [x_v^h ; x_t^h] + b)
    out^h = z ⊙ h_v + (1 − z) ⊙ h_t        (d_h values, z ∈ (0, 1), out^h ∈ (−1, 1))

and the heads are concatenated to (B, H · d_h). Heads share no weights and see only their own subspaces.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import Tensor, nn

__all__ = ["EHRSpatialAttention", "GMUFusion", "MultiHeadGMU"]


class EHRSpatialAttention(nn.Module):
    """Record-guided spatial attention over a 3-D feature map (Jiang et al. 2021; reading in the module doc).

    Args:
        channels: C of the feature map.
        n_condition: F, the record's size.
        attention_dim: d_a of keys and query.

    Shapes: ``forward(x (B, C, D, H, W), condition (B, F)) -> (B, C, D, H, W)``;
    ``attention_map(x, condition) -> (B, D, H, W)``, summing to 1 over voxels.
    """

    reads_condition = True

    def __init__(self, channels: int, n_condition: int, attention_dim: int = 16) -> None:
        super().__init__()
        self.keys = nn.Conv3d(channels, attention_dim, kernel_size=1)
        self.query = nn.Linear(n_condition, attention_dim)
        self.scale = 1.0 / math.sqrt(attention_dim)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, self.keys(x)

    def _map(self, keys: Tensor, condition: Tensor) -> Tensor:
        q = self.query(condition)
        scores = torch.einsum("ba,ban->bn", q, keys.flatten(2)) * self.scale
        return torch.softmax(scores, dim=1).view(keys.shape[0], *keys.shape[2:])

    def decode(self, parts: tuple[Tensor, Tensor], condition: Tensor) -> Tensor:
        x, keys = parts
        weights = self._map(keys, condition) * keys[0, 0].numel()
        return x * weights.unsqueeze(1)

    def attention_map(self, x: Tensor, condition: Tensor) -> Tensor:
        """A (B, D, H, W): non-negative, sums to 1 over the voxels of each sample."""
        return self._map(self.keys(x), condition)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        return self.decode(self.encode(x), condition)


class MultiHeadGMU(nn.Module):
    """Multi-head gated multimodal unit (Jiang et al. 2021 after Arevalo et al. 2017; reading in module doc).

    Args:
        image_dim: D_v, divisible by ``heads``.
        ehr_dim: D_t, divisible by ``heads``.
        heads: H.
        head_dim: d_h, each head's output size.

    Shapes: ``forward(x_v (B, D_v), x_t (B, D_t)) -> (B, H · d_h)``; ``fuse`` also returns the gates
    z (B, H, d_h).
    """

    def __init__(self, image_dim: int, ehr_dim: int, heads: int = 4, head_dim: int = 16) -> None:
        super().__init__()
        if image_dim % heads or ehr_dim % heads:
            raise ValueError(
                f"image_dim {image_dim} and ehr_dim {ehr_dim} must both be divisible by heads {heads}"
            )
        self.heads, self.head_dim = heads, head_dim
        dv, dt = image_dim // heads, ehr_dim // heads
        # One weight tensor per role, indexed by head: block-diagonal, so heads cannot mix
        self.w_image = nn.Parameter(_uniform_fan_in((heads, head_dim, dv), dv))
        self.b_image = nn.Parameter(torch.zeros(heads, head_dim))
        self.w_ehr = nn.Parameter(_uniform_fan_in((heads, head_dim, dt), dt))
        self.b_ehr = nn.Parameter(torch.zeros(heads, head_dim))
        self.w_gate = nn.Parameter(_uniform_fan_in((heads, head_dim, dv + dt), dv + dt))
        self.b_gate = nn.Parameter(torch.zeros(heads, head_dim))
        self.tanh_image = nn.Tanh()
        self.tanh_ehr = nn.Tanh()
        self.gate = nn.Sigmoid()

    def fuse(self, x_v: Tensor, x_t: Tensor) -> tuple[Tensor, Tensor]:
        """Fused heads (B, H, d_h) and gates z (B, H, d_h)."""
        v = x_v.view(x_v.shape[0], self.heads, -1)
        t = x_t.view(x_t.shape[0], self.heads, -1)
        h_v = self.tanh_image(torch.einsum("hod,bhd->bho", self.w_image, v) + self.b_image)
        h_t = self.tanh_ehr(torch.einsum("hod,bhd->bho", self.w_ehr, t) + self.b_ehr)
        z = self.gate(torch.einsum("hod,bhd->bho", self.w_gate, torch.cat([v, t], dim=2)) + self.b_gate)
        return z * h_v + (1 - z) * h_t, z

    def forward(self, x_v: Tensor, x_t: Tensor) -> Tensor:
        fused, _ = self.fuse(x_v, x_t)
        return fused.flatten(1)


class GMUFusion(nn.Module):
    """The network stage around :class:`MultiHeadGMU`: encodes the record (Linear -> ReLU) and fuses.

    Shapes: ``forward(x_v (B, D_v), condition (B, F)) -> (B, H · d_h)``.
    """

    reads_condition = True

    def __init__(
        self, image_dim: int, n_condition: int, ehr_dim: int = 32, heads: int = 4, head_dim: int = 16
    ):
        super().__init__()
        self.ehr = nn.Sequential(OrderedDict(linear=nn.Linear(n_condition, ehr_dim), relu=nn.ReLU()))
        self.gmu = MultiHeadGMU(image_dim, ehr_dim, heads, head_dim)

    def encode(self, x_v: Tensor) -> tuple[Tensor]:
        return (x_v,)

    def decode(self, parts: tuple[Tensor], condition: Tensor) -> Tensor:
        return self.gmu(parts[0], self.ehr(condition))

    def forward(self, x_v: Tensor, condition: Tensor) -> Tensor:
        return self.decode(self.encode(x_v), condition)


def _uniform_fan_in(shape: tuple[int, ...], fan_in: int) -> Tensor:
    """nn.Linear's default weight init, U(±1/√fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound)
