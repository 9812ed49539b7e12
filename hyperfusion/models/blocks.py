"""Residual and conditioning blocks: pre-activation residual block (optionally hyper), FiLM, DAFT, concatenation.

docs/models.md §1 (Architecture, Baselines). Every block that reads the record splits into ``encode(x)``, the part
that reads only image features and returns a tuple, and ``decode(parts, condition)``; ``forward(x, condition)``
is ``decode(encode(x), condition)``. Blocks that do not read the record (``reads_condition`` False) are used as
``forward(x)``. No module is called twice in one forward and nothing is modified in place, so Captum's hooks
(DeepLift, LayerGradCam) see every step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperfusion.models.hyper import HyperConv3d

__all__ = [
    "ConcatLinear",
    "DAFT",
    "DAFTBlock",
    "FiLM",
    "FiLMBlock",
    "HyperShortcut",
    "PreActResBlock",
    "ResidualAdd",
]

HYPER_BLOCK_LAYERS = ("conv1", "conv2", "shortcut")


class ResidualAdd(nn.Module):
    """``main + shortcut`` as a module, so the block's output has a hook point (LayerGradCam's layer)."""

    def forward(self, main: Tensor, shortcut: Tensor) -> Tensor:
        return main + shortcut


class HyperShortcut(nn.Module):
    """The hyper block's shortcut: generated Conv 1³ (stride s, generated bias) -> BatchNorm (docs/models.md §1).

    Note the order differs from the plain shortcut (BatchNorm -> Conv), as in the authors' code.
    """

    reads_condition = True

    def __init__(self, conv: HyperConv3d, bn_momentum: float) -> None:
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm3d(conv.out_channels, momentum=bn_momentum)

    def encode(self, x: Tensor) -> tuple[Tensor]:
        return self.conv.encode(x)

    def decode(self, parts: tuple[Tensor], condition: Tensor) -> Tensor:
        return self.bn(self.conv.decode(parts, condition))

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        return self.decode(self.encode(x), condition)


class FiLM(nn.Module):
    """Feature-wise linear modulation (Perez et al., AAAI 2018), as the paper's FiLM baseline.

    (γ, β) = MLP(condition) with MLP = Linear(F -> bottleneck, no bias) -> ReLU -> Linear(-> 2C, no bias);
    returns γ ⊙ x + β per channel (linear scale, no activation). Shapes: x (B, C, D, H, W), condition (B, F).
    """

    def __init__(self, n_condition: int, channels: int, bottleneck: int = 7) -> None:
        super().__init__()
        self.channels = channels
        self.mlp = nn.Sequential(
            nn.Linear(self._mlp_inputs(n_condition, channels), bottleneck, bias=False),
            nn.ReLU(),
            nn.Linear(bottleneck, 2 * channels, bias=False),
        )

    @staticmethod
    def _mlp_inputs(n_condition: int, channels: int) -> int:
        return n_condition

    def _mlp_input(self, x: Tensor, condition: Tensor) -> Tensor:
        return condition

    def scale_shift(self, x: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """γ and β, each (B, C)."""
        gamma, beta = self.mlp(self._mlp_input(x, condition)).split(self.channels, dim=1)
        return gamma, beta

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        gamma, beta = self.scale_shift(x, condition)
        view = (-1, self.channels) + (1,) * (x.ndim - 2)
        return gamma.view(view) * x + beta.view(view)


class DAFT(FiLM):
    """Dynamic affine feature-map transform (Pölsterl et al., MICCAI 2021), as the paper's DAFT baseline.

    Like :class:`FiLM`, but the MLP reads [global-average-pool(x) ; condition], (C + F) -> bottleneck -> 2C.
    """

    @staticmethod
    def _mlp_inputs(n_condition: int, channels: int) -> int:
        return channels + n_condition

    def _mlp_input(self, x: Tensor, condition: Tensor) -> Tensor:
        return torch.cat([x.mean(dim=tuple(range(2, x.ndim))), condition], dim=1)


class PreActResBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016) of the paper's 3-D ResNet (docs/models.md §1).

    main:     BN -> ReLU -> Dropout3d -> Conv 3³ (stride s) -> BN -> ReLU -> Dropout3d -> Conv 3³
    shortcut: BN -> Conv 1³ (stride s) when s != 1 or C_in != C_out, else identity; with "shortcut" in
              ``hyper``: generated Conv 1³ (stride s) -> BN (:class:`HyperShortcut`)
    output:   main + shortcut

    Args:
        in_channels, out_channels, stride, dropout, bn_momentum: as above.
        hyper: which of "conv1", "conv2", "shortcut" are generated from the record (the paper's HyperFusion
            generates only block 4's shortcut; the others are the authors' ablations).
        embedding: factory of a fresh embedding module for each generated layer (each owns its own).
        embedding_dim: its output size d_k.
        input_variance: v of the principled init of the generated layers.
        modulation: a :class:`FiLM` / :class:`DAFT` applied to the main branch's input (the shortcut sees the
            unmodulated input); makes the FiLM and DAFT blocks.

    Shapes: x (B, C_in, D, H, W) -> (B, C_out, D/s, H/s, W/s).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dropout: float = 0.0,
        bn_momentum: float = 0.05,
        hyper: Collection[str] = (),
        embedding: Callable[[], nn.Module] | None = None,
        embedding_dim: int = 8,
        input_variance: float = 1.0,
        modulation: FiLM | None = None,
        shortcut_pool: bool = False,
    ) -> None:
        super().__init__()
        unknown = set(hyper) - set(HYPER_BLOCK_LAYERS)
        if unknown:
            raise ValueError(f"unknown hyper layer(s) {sorted(unknown)}; a block has {HYPER_BLOCK_LAYERS}")
        if hyper and embedding is None:
            raise ValueError("generated layers need an embedding factory")
        if hyper and modulation is not None:
            raise ValueError("a block is either modulated (FiLM/DAFT) or has generated layers, not both")
        has_shortcut = stride != 1 or in_channels != out_channels
        if "shortcut" in hyper and not has_shortcut:
            raise ValueError("this block has an identity shortcut: there is no shortcut conv to generate")
        self.hyper = frozenset(hyper)

        def conv(name: str, c_in: int, c_out: int, k: int, s: int, p: int) -> nn.Module:
            if name in self.hyper:
                return HyperConv3d(
                    c_in,
                    c_out,
                    k,
                    embedding(),
                    embedding_dim,
                    stride=s,
                    padding=p,
                    input_variance=input_variance,
                )
            return nn.Conv3d(c_in, c_out, k, stride=s, padding=p)

        self.modulation = modulation
        self.bn1 = nn.BatchNorm3d(in_channels, momentum=bn_momentum)
        self.relu1 = nn.ReLU()
        self.drop1 = nn.Dropout3d(dropout)
        self.conv1 = conv("conv1", in_channels, out_channels, 3, stride, 1)
        self.bn2 = nn.BatchNorm3d(out_channels, momentum=bn_momentum)
        self.relu2 = nn.ReLU()
        self.drop2 = nn.Dropout3d(dropout)
        self.conv2 = conv("conv2", out_channels, out_channels, 3, 1, 1)
        # A 1³ conv of stride s reads one voxel in s³ and passes no gradient to the others: stacked over the
        # network's stride-2 stages that draws a lattice into every gradient map. With ``shortcut_pool`` the
        # shortcut averages each s³ cell first (ResNet-D's shortcut) and its conv has stride 1: the same
        # parameters, every voxel read. The paper's (and the authors' checkpoints') shortcut is the strided conv.
        pooled = shortcut_pool and stride != 1
        self.shortcut_pool = nn.AvgPool3d(stride, stride, ceil_mode=True) if pooled else None
        s_stride = 1 if pooled else stride
        if "shortcut" in self.hyper:
            self.shortcut = HyperShortcut(
                conv("shortcut", in_channels, out_channels, 1, s_stride, 0), bn_momentum
            )
        elif has_shortcut:
            self.shortcut = nn.Sequential(
                nn.BatchNorm3d(in_channels, momentum=bn_momentum),
                nn.Conv3d(in_channels, out_channels, 1, stride=s_stride),
            )
        else:
            self.shortcut = nn.Identity()
        self.add = ResidualAdd()
        self._main = ("bn1", "relu1", "drop1", "conv1", "bn2", "relu2", "drop2", "conv2")

    @property
    def reads_condition(self) -> bool:
        return bool(self.hyper) or self.modulation is not None

    def _first_conditioned_step(self) -> int:
        if self.modulation is not None:
            return 0
        for i, name in enumerate(self._main):
            if name in self.hyper:
                return i
        return len(self._main)

    def encode(self, x: Tensor) -> tuple[Tensor, ...]:
        """(main branch run up to its first generated conv, the shortcut or what the hyper shortcut reads)."""
        h = x
        for name in self._main[: self._first_conditioned_step()]:
            h = getattr(self, name)(h)
        xs = x if self.shortcut_pool is None else self.shortcut_pool(x)
        shortcut = self.shortcut.encode(xs) if "shortcut" in self.hyper else (self.shortcut(xs),)
        return (h, *shortcut)

    def decode(self, parts: tuple[Tensor, ...], condition: Tensor | None) -> Tensor:
        h, *shortcut_parts = parts
        if self.modulation is not None:
            h = self.modulation(h, condition)
        for name in self._main[self._first_conditioned_step() :]:
            step = getattr(self, name)
            h = step(h, condition) if name in self.hyper else step(h)
        if "shortcut" in self.hyper:
            shortcut = self.shortcut.decode(tuple(shortcut_parts), condition)
        else:
            (shortcut,) = shortcut_parts
        return self.add(h, shortcut)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        return self.decode(self.encode(x), condition)


class FiLMBlock(PreActResBlock):
    """The paper's FiLM baseline block: a :class:`PreActResBlock` whose main branch sees γ ⊙ x + β."""

    modulation_type: type[FiLM] = FiLM

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_condition: int,
        stride: int = 2,
        dropout: float = 0.3,
        bn_momentum: float = 0.05,
        bottleneck: int = 7,
        shortcut_pool: bool = False,
    ) -> None:
        modulation = self.modulation_type(n_condition, in_channels, bottleneck)
        super().__init__(
            in_channels,
            out_channels,
            stride,
            dropout,
            bn_momentum,
            modulation=modulation,
            shortcut_pool=shortcut_pool,
        )


class DAFTBlock(FiLMBlock):
    """The paper's DAFT baseline block: :class:`FiLMBlock` with the MLP reading [pooled x ; record]."""

    modulation_type = DAFT


class ConcatLinear(nn.Module):
    """Linear layer on [x ; condition] (the concatenation baseline), split so the image part can be cached.

    ``W [x; t] + b = W_x x + (W_t t + b)``: ``encode`` computes W_x x, ``decode`` adds the record's part. One
    ``weight`` of shape (out, in + F), as ``nn.Linear(in + F, out)`` would hold it.

    Shapes: ``forward(x (B, in), condition (B, F)) -> (B, out)``.
    """

    reads_condition = True

    def __init__(self, in_features: int, n_condition: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.linear = nn.Linear(in_features + n_condition, out_features)

    def encode(self, x: Tensor) -> tuple[Tensor]:
        return (F.linear(x, self.linear.weight[:, : self.in_features]),)

    def decode(self, parts: tuple[Tensor], condition: Tensor) -> Tensor:
        (image_part,) = parts
        return image_part + F.linear(condition, self.linear.weight[:, self.in_features :], self.linear.bias)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        return self.decode(self.encode(x), condition)


def pooled_head(dropout: float) -> nn.Sequential:
    """Global average pool -> flatten -> dropout: (B, C, D, H, W) -> (B, C)."""
    return nn.Sequential(
        OrderedDict(pool=nn.AdaptiveAvgPool3d(1), flatten=nn.Flatten(), dropout=nn.Dropout(dropout))
    )
