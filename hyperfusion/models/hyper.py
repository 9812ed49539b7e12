"""Hyper layers: a 3-D convolution and a linear layer whose weights are generated per sample from the record.

Duenias et al. 2025, §3 (HyperFusion) and docs/models.md §1 (Architecture, Hypernetwork). A hyper layer owns a
small hypernetwork: an *embedding* of the tabular condition (B, F) -> e (B, d_k), and two affine *heads* that
turn e into the layer's weight (B, *weight_shape) and bias (B, out). Generated values are in the authors' order
(``(out, in, *kernel)``, C order), so their checkpoints load with only the heads' matrices transposed.

Both layers are vectorised over the batch and apply sample b's generated weights to sample b's own features
(the authors' conv loop gives sample k the features of sample k - 1; that bug is not repeated here):

- :class:`HyperConv3d`: a 1³ kernel (the paper's block-4 shortcut) is one batched matrix product over the
  strided voxels; any other kernel is one grouped convolution with ``groups = B``.
- :class:`HyperLinear`: since the weight head is affine in e, ``W_b x_b = Σ_k e_bk (A_k x_b) + A_0 x_b``; the
  layer computes the d_k + 1 "basis responses" ``A_k x`` with one dense matrix product for the whole batch and
  mixes them per sample, never materialising B weight matrices (16 × 39,424 each for brain age's first layer).

Each layer splits into the part that reads only image features, ``encode(x) -> tuple of tensors``, and the part
that reads the record, ``decode(parts, condition)``; networks use that to cache image features (docs/architecture.md,
Models). ``forward(x, condition)`` is ``decode(encode(x), condition)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperfusion.errors import DataError

__all__ = [
    "GeneratorHead",
    "HyperConv3d",
    "HyperLayer",
    "HyperLinear",
    "linear_embedding",
    "measure_input_variance",
    "principled_init_",
    "tabular_embedding",
]


def measure_input_variance(tabular_train: Tensor) -> float:
    """The hypernetwork input variance v of the principled init, measured on the training rows.

    As in the authors' code: the variance of each row across its features (population variance), averaged over
    rows. A sex one-hot gives 0.25. If every row is constant the variance is 0, which the init cannot use, so
    1.0 is returned (the authors' fallback).

    Args:
        tabular_train: (N, F) preprocessed training rows, the exact input the hypernetwork will see.
    """
    if not isinstance(tabular_train, Tensor):
        tabular_train = torch.as_tensor(tabular_train)
    if tabular_train.ndim != 2 or tabular_train.shape[0] == 0 or tabular_train.shape[1] == 0:
        raise DataError(
            f"measure_input_variance needs a (rows, features) table with at least one row; got shape "
            f"{tuple(tabular_train.shape)}: pass the preprocessed training rows"
        )
    rows = tabular_train.detach().to(torch.float64)
    if not torch.isfinite(rows).all():
        raise DataError(
            "measure_input_variance got missing or infinite values: impute and scale the training rows first"
        )
    v = rows.var(dim=1, unbiased=False).mean().item()
    return v if v > 0 else 1.0


class GeneratorHead(nn.Module):
    """The affine map e (B, d_k) -> A e + a (B, P) that turns an embedding into P generated values.

    Like ``nn.Linear(d_k, P)``, but the matrix is stored as (d_k, P): P is large (32,768 for the block-4
    shortcut, 630,784 for brain age's first layer) and d_k small, and in this layout the weight gradient is one
    well-shaped product with no transposed copy, about a quarter of a hyper conv's training time saved.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default; hyper layers apply the principled init
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))

    def forward(self, e: Tensor) -> Tensor:
        return torch.addmm(self.bias, e, self.weight)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def principled_init_(
    weight_head: GeneratorHead, bias_head: GeneratorHead, fan_in: int, input_variance: float
) -> None:
    """Principled hypernetwork initialisation (Chang, Flokas, Lipson, ICLR 2020), docs/models.md §1.

    With d_k the embedding size, d_j the fan-in of the generated layer and v the input variance:
    Var(weight head) = 1 / (d_j · d_k · v), Var(bias head) = 1 / (d_k · v), both uniform on ±√(3·Var);
    the heads' own biases start at 0. Then a generated layer starts with the variance a fan-in init would give.
    """
    if not input_variance > 0:
        raise ValueError(f"input_variance must be > 0, got {input_variance}")
    d_k = weight_head.in_features
    var_w = 1.0 / (fan_in * d_k * input_variance)
    var_b = 1.0 / (d_k * input_variance)
    with torch.no_grad():
        weight_head.weight.uniform_(-math.sqrt(3 * var_w), math.sqrt(3 * var_w))
        bias_head.weight.uniform_(-math.sqrt(3 * var_b), math.sqrt(3 * var_b))
        weight_head.bias.zero_()
        bias_head.bias.zero_()


def tabular_embedding(n_tabular: int, embedding_dim: int = 8) -> nn.Sequential:
    """The AD hypernetwork's embedding: Linear(F -> 8) -> BatchNorm1d -> PReLU (docs/models.md §1).

    It is the first three layers of the tabular-only MLP, so it can be pre-trained there and copied in.
    """
    return nn.Sequential(nn.Linear(n_tabular, embedding_dim), nn.BatchNorm1d(embedding_dim), nn.PReLU())


def linear_embedding(n_tabular: int, embedding_dim: int = 1) -> nn.Linear:
    """The brain-age hypernetworks' embedding: Linear(2 -> 1) starting at weight 1, bias 0 (docs/models.md §2)."""
    layer = nn.Linear(n_tabular, embedding_dim)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.zero_()
    return layer


EmbeddingFactory = Callable[[], nn.Module]


class HyperLayer(nn.Module):
    """Base of the hyper layers: embedding, weight head and bias head, and the principled init.

    Args:
        embedding: module mapping the condition (B, F) to e (B, embedding_dim).
        embedding_dim: d_k, the size of e.
        weight_shape: shape of one sample's generated weight, e.g. (out, in) or (out, in, k, k, k).
        fan_in: d_j of the principled init (in, or in · k³).
        input_variance: v of the principled init (see :func:`measure_input_variance`).
    """

    reads_condition = True

    def __init__(
        self,
        embedding: nn.Module,
        embedding_dim: int,
        weight_shape: Sequence[int],
        fan_in: int,
        input_variance: float,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.weight_shape = tuple(int(s) for s in weight_shape)
        self.fan_in = int(fan_in)
        self.weight_head = GeneratorHead(embedding_dim, math.prod(self.weight_shape))
        self.bias_head = GeneratorHead(embedding_dim, self.weight_shape[0])
        self.init_heads(input_variance)

    def init_heads(self, input_variance: float) -> None:
        """(Re)initialise the weight and bias heads with the principled init for input variance v."""
        principled_init_(self.weight_head, self.bias_head, self.fan_in, input_variance)

    def generate(self, condition: Tensor) -> tuple[Tensor, Tensor]:
        """Each sample's generated weight (B, *weight_shape) and bias (B, out), for inspection and tests."""
        e = self.embedding(condition)
        return self.weight_head(e).view(-1, *self.weight_shape), self.bias_head(e)


class HyperConv3d(HyperLayer):
    """3-D convolution with per-sample generated weight and bias (Duenias et al. 2025, §3; docs/models.md §1).

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size, stride, padding: as :class:`torch.nn.Conv3d` (int or 3-tuple; zero padding).
        embedding, embedding_dim, input_variance: the hypernetwork (see :class:`HyperLayer`).

    Shapes: ``forward(x (B, C_in, D, H, W), condition (B, F)) -> (B, C_out, D', H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        embedding: nn.Module,
        embedding_dim: int,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        input_variance: float = 1.0,
    ) -> None:
        kernel = _triple(kernel_size)
        super().__init__(
            embedding,
            embedding_dim,
            (out_channels, in_channels, *kernel),
            fan_in=in_channels * math.prod(kernel),
            input_variance=input_variance,
        )
        self.kernel_size = kernel
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding = _triple(stride), _triple(padding)

    @property
    def pointwise(self) -> bool:
        return self.kernel_size == (1, 1, 1)

    def encode(self, x: Tensor) -> tuple[Tensor]:
        """What the generated kernel reads of x: for a 1³ kernel only the padded, strided voxels, else x."""
        if not self.pointwise:
            return (x,)
        if any(self.padding):
            pd, ph, pw = self.padding
            x = F.pad(x, (pw, pw, ph, ph, pd, pd))
        # One as_strided view rather than three strided slices: its backward writes one zero tensor, not three
        size = [(n - 1) // s + 1 for n, s in zip(x.shape[2:], self.stride)]
        stride = [st * s for st, s in zip(x.stride()[2:], self.stride)]
        view = x.as_strided((*x.shape[:2], *size), (*x.stride()[:2], *stride), x.storage_offset())
        return (view.contiguous(),)

    def decode(self, parts: tuple[Tensor], condition: Tensor) -> Tensor:
        """Apply sample b's generated kernel to sample b of ``encode(x)``."""
        (x,) = parts
        weight, bias = self.generate(condition)
        batch = x.shape[0]
        if weight.shape[0] != batch:
            raise DataError(f"{batch} feature maps but {weight.shape[0]} records: pass one record per image")
        if self.pointwise:
            # (B, O, C) @ (B, C, voxels): one batched matrix product, bias added in the same call
            out = torch.baddbmm(bias.unsqueeze(-1), weight.flatten(2), x.flatten(2))
            return out.view(batch, self.out_channels, *x.shape[2:])
        # Samples become channel groups: group b of the input meets only sample b's kernels
        out = F.conv3d(
            x.reshape(1, batch * self.in_channels, *x.shape[2:]),
            weight.reshape(batch * self.out_channels, self.in_channels, *self.kernel_size),
            bias.reshape(-1),
            stride=self.stride,
            padding=self.padding,
            groups=batch,
        )
        return out.view(batch, self.out_channels, *out.shape[2:])

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        return self.decode(self.encode(x), condition)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )


class HyperLinear(HyperLayer):
    """Linear layer with per-sample generated weight and bias (Duenias et al. 2025, §3; docs/models.md §2).

    Args:
        in_features, out_features: sizes of the generated (out, in) weight.
        embedding, embedding_dim, input_variance: the hypernetwork (see :class:`HyperLayer`).

    Shapes: ``forward(x (B, in), condition (B, F)) -> (B, out)``; ``encode(x) -> ((B, d_k + 1, out),)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        embedding: nn.Module,
        embedding_dim: int,
        input_variance: float = 1.0,
    ) -> None:
        super().__init__(embedding, embedding_dim, (out_features, in_features), in_features, input_variance)
        self.in_features, self.out_features = in_features, out_features

    def encode(self, x: Tensor) -> tuple[Tensor]:
        """Basis responses A_k x for k = 1..d_k, and A_0 x (the weight head's bias), shape (B, d_k + 1, out)."""
        out_f, in_f = self.weight_shape
        d_k = self.weight_head.in_features
        per_k = self.weight_head.weight.view(d_k * out_f, in_f)  # rows: A_1 ... A_dk stacked
        basis = torch.cat([per_k, self.weight_head.bias.view(out_f, in_f)])
        return (F.linear(x, basis).view(x.shape[0], d_k + 1, out_f),)

    def decode(self, parts: tuple[Tensor], condition: Tensor) -> Tensor:
        """Mix the basis responses with sample b's embedding: W_b x_b + bias_b."""
        (basis,) = parts
        e = self.embedding(condition)
        if e.shape[0] != basis.shape[0]:
            raise DataError(
                f"{basis.shape[0]} feature rows but {e.shape[0]} records: pass one record per image"
            )
        coefficients = torch.cat([e, torch.ones_like(e[:, :1])], dim=1)
        return torch.einsum("bk,bko->bo", coefficients, basis) + self.bias_head(e)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        return self.decode(self.encode(x), condition)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _triple(value: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"expected an int or 3 values, got {value}")
    return value
