"""Task B network: brain age (years) from a T1 scan, conditioned on sex (docs/models.md §2).

Duenias et al. 2025, §4.2. One general class, :class:`BrainAgeNet`; the registry's presets are HyperFusion
(all four linear layers generated from the sex one-hot), image-only and concatenation (sex joins after the first
linear layer).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from hyperfusion.models.blocks import ConcatLinear
from hyperfusion.models.hyper import HyperLinear, linear_embedding
from hyperfusion.models.network import StagedNetwork

__all__ = ["BRAIN_AGE_HYPER_LAYERS", "BrainAgeNet"]

BRAIN_AGE_HYPER_LAYERS = ("linear1", "linear2", "linear3", "output")


def _stage(c_in: int, c_out: int, bn_momentum: float) -> nn.Sequential:
    """Conv 3³ (no padding) + ReLU, Conv 3³ + ReLU, MaxPool 2, BatchNorm: each side -> (side - 4) // 2."""
    return nn.Sequential(
        OrderedDict(
            conv_a=nn.Conv3d(c_in, c_out, 3),
            relu_a=nn.ReLU(),
            conv_b=nn.Conv3d(c_out, c_out, 3),
            relu_b=nn.ReLU(),
            pool=nn.MaxPool3d(2),
            bn=nn.BatchNorm3d(c_out, momentum=bn_momentum),
        )
    )


class BrainAgeNet(StagedNetwork):
    """The paper's brain-age CNN with optionally generated linear layers (docs/models.md §2).

    ::

        stage1-3   [Conv 3³ + ReLU, Conv 3³ + ReLU, MaxPool 2, BatchNorm] with channels c1, c2, c3
        dropout    Dropout3d 0.2, flatten (c3 · d · h · w; 39,424 for 90 × 120 × 99)
        linear1    -> h1, ReLU      (concatenation: sex joins here, [h1 ; sex] -> h2 in linear2)
        linear2    -> h2, ReLU
        linear3    -> h3, ReLU
        output     -> 1 (years)

    Args:
        input_shape: (D, H, W) in voxels (about 90 × 120 × 99 in the paper).
        n_tabular: size of the condition (2: sex one-hot [F, M]).
        channels: (c1, c2, c3), (16, 32, 64) in the paper.
        hidden: (h1, h2, h3), (16, 32, 64) in the paper.
        dropout: of the Dropout3d before flattening (0.2).
        bn_momentum: of the BatchNorms (PyTorch's 0.1, as the authors).
        hyper_layers: linear layers generated from the condition, from ``BRAIN_AGE_HYPER_LAYERS``; each has its
            own embedding Linear(2 -> 1) starting at weight 1, bias 0. HyperFusion: all four.
        embedding_dim: d_k of those embeddings (1).
        hyper_input_variance: v of the principled init (0.25, a one-hot's variance, as the paper).
        concat_tabular: concatenate the condition to linear1's output (concatenation baseline).

    Shapes: image (B, 1, *input_shape), tabular (B, 2) -> predicted age (B, 1).

    Split: HyperFusion: features = linear1's basis responses (B, d_k + 1, h1), so ``decode`` is a few tiny
    products; concatenation: features = (linear2's image half W_x · ReLU(linear1(x)), (B, h2)); image-only:
    features = (prediction,), and ``decode`` returns it.
    """

    #: the stages that read only the scan (what ``--init-image-from`` copies from an image-only model)
    image_branch = ("stage1", "stage2", "stage3")
    stage_names = (
        "stage1",
        "stage2",
        "stage3",
        "dropout",
        "flatten",
        "linear1",
        "act1",
        "linear2",
        "act2",
        "linear3",
        "act3",
        "output",
    )

    task = "brain_age"

    def __init__(
        self,
        input_shape: Sequence[int] = (90, 120, 99),
        n_tabular: int = 2,
        channels: Sequence[int] = (16, 32, 64),
        hidden: Sequence[int] = (16, 32, 64),
        dropout: float = 0.2,
        bn_momentum: float = 0.1,
        hyper_layers: Sequence[str] = (),
        embedding_dim: int = 1,
        hyper_input_variance: float = 0.25,
        concat_tabular: bool = False,
    ) -> None:
        super().__init__()
        unknown = sorted(set(hyper_layers) - set(BRAIN_AGE_HYPER_LAYERS))
        if unknown:
            raise ValueError(f"unknown hyper layer(s) {unknown}; choose from {list(BRAIN_AGE_HYPER_LAYERS)}")
        if concat_tabular and "linear2" in hyper_layers:
            raise ValueError("linear2 either reads the concatenated sex or is generated from it, not both")
        if len(channels) != 3 or len(hidden) != 3:
            raise ValueError("channels and hidden take three values each")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_tabular = n_tabular
        self.reads_record = bool(hyper_layers) or concat_tabular
        sides = self.input_shape
        for _ in range(3):
            sides = tuple((s - 4) // 2 for s in sides)
        if min(sides) < 1:
            raise ValueError(
                f"input_shape {self.input_shape} is too small for three conv-conv-pool stages (each side >= 36)"
            )
        c1, c2, c3 = channels
        self.stage1 = _stage(1, c1, bn_momentum)
        self.stage2 = _stage(c1, c2, bn_momentum)
        self.stage3 = _stage(c2, c3, bn_momentum)
        self.dropout = nn.Dropout3d(dropout)
        self.flatten = nn.Flatten()
        widths = (c3 * sides[0] * sides[1] * sides[2], *hidden, 1)
        for i, name in enumerate(BRAIN_AGE_HYPER_LAYERS):
            if name in hyper_layers:
                layer = HyperLinear(
                    widths[i],
                    widths[i + 1],
                    linear_embedding(n_tabular, embedding_dim),
                    embedding_dim,
                    hyper_input_variance,
                )
            elif name == "linear2" and concat_tabular:
                layer = ConcatLinear(widths[i], n_tabular, widths[i + 1])
            else:
                layer = nn.Linear(widths[i], widths[i + 1])
            setattr(self, name, layer)
        self.act1, self.act2, self.act3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    @property
    def gradcam_layer(self) -> nn.Module:
        """Stage 3's output, the last 3-D feature map (c3 × d × h × w)."""
        return self.stage3
