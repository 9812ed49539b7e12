"""Training augmentation that keeps anatomy: a small affine and an intensity change inside the brain.

The models see scans registered to MNI space, so large rotations or flips would teach them poses they never
meet; what varies between real registered scans is a few degrees and millimetres of residual misregistration,
head size, and the scanner's contrast. :class:`AnatomyAugment` draws exactly that, per sample of a batch:

- an affine: rotation up to ``rotate_deg`` about each axis, scaling up to ``scale`` (relative), translation up
  to ``translate_vox`` voxels; trilinear, zeros outside (torch's ``affine_grid`` / ``grid_sample``, the whole
  batch in one call, on whatever device the batch is);
- a random gain and offset applied to the brain voxels only (the background stays 0, the value
  ``zscore_nonzero`` gives it, so the brain's outline is not blurred into the background).

No left-right flip: each training sample is already one of the two hemispheres, the left one mirrored, and a
record-image interaction may be lateralised (the synthetic I3 is). Randomness comes from one seeded generator,
so a run is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = ["AnatomyAugment", "AugmentConfig"]


@dataclass(frozen=True)
class AugmentConfig:
    """The augmentation's ranges (stored in the model card)."""

    prob_affine: float = 0.8
    rotate_deg: float = 5.0
    scale: float = 0.05
    translate_vox: float = 2.0
    prob_intensity: float = 0.8
    gain: float = 0.1
    offset: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) angles in radians -> (B, 3, 3) rotation matrices R_z R_y R_x."""
    c, s = angles.cos(), angles.sin()
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])

    def mat(rows):
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    rx = mat([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    ry = mat([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    rz = mat([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


class AnatomyAugment:
    """Callable on a batch of views (B, 1, D, H, W) -> an augmented batch of the same shape."""

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0) -> None:
        self.config = config or AugmentConfig()
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, shape: tuple[int, ...], bound: float) -> torch.Tensor:
        return (torch.rand(shape, generator=self.generator) * 2 - 1) * bound

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        c = self.config
        b, _, d, h, w = batch.shape
        # draw on the CPU generator (reproducible whatever the device), then move
        apply = (torch.rand(b, generator=self.generator) < c.prob_affine).float()
        angles = self._uniform((b, 3), math.radians(c.rotate_deg)) * apply[:, None]
        scale = 1 + self._uniform((b, 3), c.scale) * apply[:, None]
        # grid_sample's coordinates span [-1, 1] over each axis: a shift of t voxels is 2t / size
        sizes = torch.tensor([w, h, d], dtype=torch.float32)
        shift = self._uniform((b, 3), c.translate_vox) * 2 / sizes * apply[:, None]
        gain_on = (torch.rand(b, generator=self.generator) < c.prob_intensity).float()
        gain = 1 + self._uniform((b,), c.gain) * gain_on
        offset = self._uniform((b,), c.offset) * gain_on

        out = batch.clone()
        moving = apply.bool().nonzero().flatten().tolist()
        if moving:
            theta = torch.cat([_rotation(angles) * scale[:, None, :], shift[:, :, None]], dim=2)[moving]
            theta = theta.to(batch.device, batch.dtype)
            part = batch[moving]
            grid = F.affine_grid(theta, list(part.shape), align_corners=False)
            out[moving] = F.grid_sample(
                part, grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
        # the brain is where the (moved) scan is non-zero; only it changes gain and offset
        view = (-1, 1, 1, 1, 1)
        gain, offset = (
            gain.to(batch.device, batch.dtype).view(view),
            offset.to(batch.device, batch.dtype).view(view),
        )
        return torch.where(out != 0, out * gain + offset, out)
