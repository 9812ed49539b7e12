"""Task A networks: CN / MCI / AD classification from one hemisphere's crop and the 16-value record.

Duenias et al. 2025, §4.1, and docs/models.md §1 (Architecture, Baselines on the same backbone). Presets by name
live in :mod:`hyperfusion.models.registry`; this module holds the general classes:

- :class:`ADResNet`: the paper's pre-activation 3-D ResNet, with any of its layers generated from the record
  (HyperFusion and the authors' ablations), the record concatenated before fc1 (concatenation baseline), or
  block 4 modulated by FiLM / DAFT. With none of these it is the image-only baseline.
- :class:`AttentionGMUNet`: the same backbone with Jiang et al.'s EHR-guided attention and multi-head GMU.
- :class:`TabularMLP`: the tabular-only baseline, whose first three layers are HyperFusion's embedding.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from hyperfusion.errors import DataError
from hyperfusion.models.attention import EHRSpatialAttention, GMUFusion
from hyperfusion.models.blocks import (
    HYPER_BLOCK_LAYERS,
    ConcatLinear,
    DAFTBlock,
    FiLMBlock,
    PreActResBlock,
    pooled_head,
)
from hyperfusion.models.hyper import HyperLinear, tabular_embedding
from hyperfusion.models.network import FusionNetwork, ImageFeatures, StagedNetwork

__all__ = ["AD_HYPER_LAYERS", "ADResNet", "AttentionGMUNet", "TabularMLP"]

# Dropout3d of blocks 1-4 and the dropouts before fc1 and fc2 (docs/models.md §1)
_BLOCK_DROPOUT = (0.1, 0.2, 0.2, 0.3)
_HEAD_DROPOUT = (0.6, 0.5)

AD_HYPER_LAYERS = tuple(f"block{i}.{layer}" for i in range(1, 5) for layer in HYPER_BLOCK_LAYERS) + (
    "fc1",
    "fc2",
)


def _dropouts(block: Sequence[float], head: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Checked dropout rates: four for blocks 1-4, two for the head (before fc1, before fc2)."""
    block, head = tuple(float(p) for p in block), tuple(float(p) for p in head)
    if len(block) != 4 or len(head) != 2 or not all(0.0 <= p < 1.0 for p in (*block, *head)):
        raise ValueError(
            f"block_dropout needs 4 rates and head_dropout 2, each in [0, 1); got {block}, {head}"
        )
    return block, head


def _stem(init_features: int, bn_momentum: float) -> nn.Sequential:
    """Conv 3³ (1 -> f) -> BN -> ReLU -> MaxPool 2: (B, 1, D, H, W) -> (B, f, D/2, H/2, W/2)."""
    return nn.Sequential(
        nn.Conv3d(1, init_features, 3, padding=1),
        nn.BatchNorm3d(init_features, momentum=bn_momentum),
        nn.ReLU(),
        nn.MaxPool3d(2),
    )


class ADResNet(StagedNetwork):
    """The paper's pre-activation 3-D ResNet for CN / MCI / AD, with configurable fusion (docs/models.md §1).

    ::

        stem    Conv 3³ (1 -> f) + BN + ReLU, MaxPool 2
        block1  pre-activation residual block f -> 2f,  stride 1, Dropout3d 0.1
        block2  2f -> 4f,  stride 2, Dropout3d 0.2
        block3  4f -> 8f,  stride 2, Dropout3d 0.2
        block4  8f -> 16f, stride 2, Dropout3d 0.3  (HyperFusion: generated shortcut; FiLM / DAFT block)
        pool    global average pool -> Dropout 0.6
        fc1     Linear 16f -> 4f (concatenation: [pooled ; record] 16f + F -> 4f)
        act1    ReLU -> Dropout 0.5
        fc2     Linear 4f -> n_classes

    Args:
        n_tabular: F, the record's size (16 in the paper).
        n_classes: 3 (CN, MCI, AD).
        init_features: f (16 in the paper).
        input_shape: one hemisphere's crop (D, H, W) in voxels (64 × 96 × 64 in the paper).
        bn_momentum: of every 3-D BatchNorm (0.05).
        hyper_layers: layers generated from the record, from ``AD_HYPER_LAYERS``
            (``"block{1-4}.{conv1,conv2,shortcut}"``, ``"fc1"``, ``"fc2"``). HyperFusion: ``["block4.shortcut"]``.
            Each generated layer has its own embedding Linear(F -> 8) -> BN -> PReLU.
        embedding_dim: d_k of those embeddings (8).
        hyper_input_variance: v of the principled init (re-init later with ``init_hyper_heads``).
        concat_tabular: concatenate the record to the pooled vector before fc1.
        block4_modulation: None, "film" or "daft" (block 4 replaced by the FiLM / DAFT block).
        modulation_bottleneck: hidden size of the FiLM / DAFT MLP (7).
        block_dropout: Dropout3d of blocks 1-4 (the paper: 0.1, 0.2, 0.2, 0.3).
        head_dropout: dropout before fc1 and before fc2 (the paper: 0.6, 0.5; far too much for a 64-wide pooled
            vector at init_features 4, where the CPU recipe uses 0.2, 0.1).
        shortcut_pool: strided shortcuts average each 2³ cell, then a 1³ conv of stride 1 (same parameters);
            the paper's strided 1³ conv reads one voxel in eight, which draws a lattice at the network's total
            stride (16) into every gradient-based attribution map.

    Shapes: image (B, 1, *input_shape), tabular (B, F) -> logits (B, n_classes).

    Split: ``encode_image`` runs up to the first layer that reads the record. HyperFusion: through block 4's
    main branch, features = (main branch (B, 16f, ...), the voxels the 1³ stride-2 shortcut reads (B, 8f, ...));
    concatenation: features = (fc1's image half W_x · pooled, (B, 4f)); FiLM / DAFT: features = (block 3's
    output, block 4's shortcut of it); image-only: features = (logits,), and ``decode`` returns them.
    """

    #: the stages that read only the scan (what ``--init-image-from`` copies from an image-only model)
    image_branch = ("stem", "block1", "block2", "block3", "block4")
    stage_names = ("stem", "block1", "block2", "block3", "block4", "pool", "fc1", "act1", "fc2")

    task = "ad"

    def __init__(
        self,
        n_tabular: int = 16,
        n_classes: int = 3,
        init_features: int = 16,
        input_shape: Sequence[int] = (64, 96, 64),
        bn_momentum: float = 0.05,
        hyper_layers: Sequence[str] = (),
        embedding_dim: int = 8,
        hyper_input_variance: float = 1.0,
        concat_tabular: bool = False,
        block4_modulation: str | None = None,
        modulation_bottleneck: int = 7,
        block_dropout: Sequence[float] = _BLOCK_DROPOUT,
        head_dropout: Sequence[float] = _HEAD_DROPOUT,
        shortcut_pool: bool = False,
    ) -> None:
        super().__init__()
        block_dropout, head_dropout = _dropouts(block_dropout, head_dropout)
        unknown = sorted(set(hyper_layers) - set(AD_HYPER_LAYERS))
        if unknown:
            raise ValueError(f"unknown hyper layer(s) {unknown}; choose from {list(AD_HYPER_LAYERS)}")
        if block4_modulation not in (None, "film", "daft"):
            raise ValueError(f"block4_modulation must be None, 'film' or 'daft', got {block4_modulation!r}")
        if block4_modulation and any(name.startswith("block4.") for name in hyper_layers):
            raise ValueError("block 4 is either FiLM / DAFT modulated or has generated layers, not both")
        if concat_tabular and "fc1" in hyper_layers:
            raise ValueError("fc1 either reads the concatenated record or is generated from it, not both")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_tabular = n_tabular
        self.reads_record = bool(hyper_layers) or concat_tabular or block4_modulation is not None

        def embedding() -> nn.Module:
            return tabular_embedding(n_tabular, embedding_dim)

        f = init_features
        self.stem = _stem(f, bn_momentum)
        widths = (f, 2 * f, 4 * f, 8 * f, 16 * f)
        for i in range(1, 5):
            c_in, c_out, stride = widths[i - 1], widths[i], 1 if i == 1 else 2
            if i == 4 and block4_modulation is not None:
                block_type = FiLMBlock if block4_modulation == "film" else DAFTBlock
                block = block_type(
                    c_in,
                    c_out,
                    n_tabular,
                    stride,
                    block_dropout[3],
                    bn_momentum,
                    modulation_bottleneck,
                    shortcut_pool=shortcut_pool,
                )
            else:
                hyper = [name.split(".")[1] for name in hyper_layers if name.startswith(f"block{i}.")]
                block = PreActResBlock(
                    c_in,
                    c_out,
                    stride,
                    block_dropout[i - 1],
                    bn_momentum,
                    hyper=hyper,
                    embedding=embedding,
                    embedding_dim=embedding_dim,
                    input_variance=hyper_input_variance,
                    shortcut_pool=shortcut_pool,
                )
            setattr(self, f"block{i}", block)
        self.pool = pooled_head(head_dropout[0])
        if concat_tabular:
            self.fc1 = ConcatLinear(16 * f, n_tabular, 4 * f)
        elif "fc1" in hyper_layers:
            self.fc1 = HyperLinear(16 * f, 4 * f, embedding(), embedding_dim, hyper_input_variance)
        else:
            self.fc1 = nn.Linear(16 * f, 4 * f)
        self.act1 = nn.Sequential(OrderedDict(relu=nn.ReLU(), dropout=nn.Dropout(head_dropout[1])))
        if "fc2" in hyper_layers:
            self.fc2 = HyperLinear(4 * f, n_classes, embedding(), embedding_dim, hyper_input_variance)
        else:
            self.fc2 = nn.Linear(4 * f, n_classes)

    @property
    def gradcam_layer(self) -> nn.Module:
        """Block 4's residual sum: the last 3-D feature map (16f × D/16 × H/16 × W/16)."""
        return self.block4.add

    def load_tabular_embedding(self, tabular_model: TabularMLP) -> None:
        """Copy a (pre-trained) tabular-only model's first three layers into every hyper layer's embedding.

        The paper pre-trains the embedding as the tabular-only model on the training rows and keeps it
        trainable inside HyperFusion (docs/models.md §1).
        """
        layers = list(self.hyper_layers())
        if not layers:
            raise ValueError("this network has no generated layers to take an embedding")
        for _, layer in layers:
            layer.embedding.load_state_dict(tabular_model.embedding.state_dict())


class AttentionGMUNet(StagedNetwork):
    """Jiang et al. 2021 on the paper's backbone: EHR-guided spatial attention + multi-head GMU.

    See :mod:`hyperfusion.models.attention` for the equations we implement (the paper's are not public).
    ::

        stem, block1-3       as :class:`ADResNet`
        attention            the record re-weights block 3's output voxel by voxel (maps sum to 1)
        block4               plain pre-activation block 8f -> 16f, stride 2
        pool                 global average pool -> Dropout 0.6               -> x_v (B, 16f)
        gmu                  record -> Linear -> ReLU (ehr_dim) = x_t; H-head GMU(x_v, x_t) -> (B, H·d_h)
        act                  Dropout 0.5
        classifier           Linear H·d_h -> n_classes

    Args:
        n_tabular, n_classes, init_features, input_shape, bn_momentum, block_dropout, head_dropout,
            shortcut_pool: as :class:`ADResNet`.
        attention_dim: d_a of the attention's keys and query (16).
        ehr_dim: size of the record's encoding fed to the GMU (32).
        gmu_heads: H (4); 16f and ehr_dim must be divisible by it.
        gmu_head_dim: d_h, each head's output size (16; 4 heads × 16 = 64 = fc1's width in :class:`ADResNet`).

    Shapes: image (B, 1, *input_shape), tabular (B, F) -> logits (B, n_classes). Split: features = (block 3's
    output (B, 8f, ...), the attention keys (B, attention_dim, ...)); ``decode`` runs attention, block 4 and the
    GMU head.
    """

    image_branch = ("stem", "block1", "block2", "block3", "block4")
    stage_names = (
        "stem",
        "block1",
        "block2",
        "block3",
        "attention",
        "block4",
        "pool",
        "gmu",
        "act",
        "classifier",
    )

    task = "ad"

    def __init__(
        self,
        n_tabular: int = 16,
        n_classes: int = 3,
        init_features: int = 16,
        input_shape: Sequence[int] = (64, 96, 64),
        bn_momentum: float = 0.05,
        attention_dim: int = 16,
        ehr_dim: int = 32,
        gmu_heads: int = 4,
        gmu_head_dim: int = 16,
        block_dropout: Sequence[float] = _BLOCK_DROPOUT,
        head_dropout: Sequence[float] = _HEAD_DROPOUT,
        shortcut_pool: bool = False,
    ) -> None:
        super().__init__()
        block_dropout, head_dropout = _dropouts(block_dropout, head_dropout)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_tabular = n_tabular
        f = init_features
        self.stem = _stem(f, bn_momentum)
        widths = (f, 2 * f, 4 * f, 8 * f)
        for i in range(1, 4):
            stride = 1 if i == 1 else 2
            block = PreActResBlock(
                widths[i - 1],
                widths[i],
                stride,
                block_dropout[i - 1],
                bn_momentum,
                shortcut_pool=shortcut_pool,
            )
            setattr(self, f"block{i}", block)
        self.attention = EHRSpatialAttention(8 * f, n_tabular, attention_dim)
        self.block4 = PreActResBlock(
            8 * f, 16 * f, 2, block_dropout[3], bn_momentum, shortcut_pool=shortcut_pool
        )
        self.pool = pooled_head(head_dropout[0])
        self.gmu = GMUFusion(16 * f, n_tabular, ehr_dim, gmu_heads, gmu_head_dim)
        self.act = nn.Dropout(head_dropout[1])
        self.classifier = nn.Linear(gmu_heads * gmu_head_dim, n_classes)

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.block4.add


class TabularMLP(FusionNetwork):
    """Tabular-only baseline: Linear F -> 8 -> BatchNorm1d -> PReLU -> Linear 8 -> n_classes (docs/models.md §1).

    ``embedding`` (the first three layers) is what HyperFusion's hypernetwork starts from. It has no image:
    ``encode_image`` accepts None and returns an empty tuple.

    Shapes: tabular (B, F) -> logits (B, n_classes); ``forward(None, tabular)``.
    """

    reads_scan = False

    task = "ad"

    def __init__(self, n_tabular: int = 16, n_classes: int = 3, embedding_dim: int = 8) -> None:
        super().__init__()
        self.n_tabular = n_tabular
        # An identity on the record: the layer LayerGradCam hooks (Grad-CAM there is gradient × input)
        self.record = nn.Identity()
        self.embedding = tabular_embedding(n_tabular, embedding_dim)
        self.head = nn.Linear(embedding_dim, n_classes)

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.record

    def encode_image(self, image: Tensor | None) -> ImageFeatures:
        return ()

    def decode(self, features: ImageFeatures, tabular: Tensor) -> Tensor:
        if not isinstance(tabular, Tensor) or tabular.ndim != 2 or tabular.shape[1] != self.n_tabular:
            shape = tuple(tabular.shape) if isinstance(tabular, Tensor) else type(tabular).__name__
            raise DataError(f"expected a tabular batch of shape (B, {self.n_tabular}), got {shape}")
        return self.head(self.embedding(self.record(tabular)))
