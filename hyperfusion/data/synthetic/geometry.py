"""Voxel grids in MNI millimetres, and trilinear sampling of volumes at world points.

Every grid the generator uses is axis-aligned RAS with isotropic voxels, so it is fully described by its shape,
voxel size and the world position (mm) of voxel (0, 0, 0). Arrays are indexed ``[x, y, z]`` (RAS order), with
a leading channel axis where there are several volumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The paper-equivalent two-hippocampus box (docs/architecture.md, "Geometry"), MNI mm, [lo, hi).
HIPPOCAMPAL_BOX_MM = ((-64.0, 64.0), (-55.0, 41.0), (-55.0, 9.0))
# The field of view of the 1 mm ICBM152 2009a template (197 x 233 x 189 voxels, voxel centres -98..98,
# -134..98, -72..116 mm), as [lo, hi) edges.
TEMPLATE_FOV_MM = ((-98.5, 98.5), (-134.5, 98.5), (-72.5, 116.5))


@dataclass(frozen=True)
class Grid:
    """An axis-aligned RAS grid: ``shape`` voxels of ``spacing`` mm, voxel (0,0,0) centred at ``origin`` (mm)."""

    shape: tuple[int, int, int]
    spacing: float
    origin: tuple[float, float, float]

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel-to-MNI affine (mm)."""
        aff = np.diag([self.spacing, self.spacing, self.spacing, 1.0])
        aff[:3, 3] = self.origin
        return aff

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    def world_points(self) -> np.ndarray:
        """Voxel-centre coordinates, shape ``(*shape, 3)``, float32 mm."""
        axes = [
            np.float32(o) + np.float32(self.spacing) * np.arange(n, dtype=np.float32)
            for o, n in zip(self.origin, self.shape)
        ]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    def to_index(self, points_mm: np.ndarray) -> np.ndarray:
        """Fractional voxel indices of world points (mm), same shape as ``points_mm``."""
        return (points_mm - np.asarray(self.origin, dtype=np.float32)) / np.float32(self.spacing)

    def crop(
        self, lo_mm: tuple[float, float, float], hi_mm: tuple[float, float, float]
    ) -> tuple[Grid, tuple]:
        """The sub-grid whose voxel centres fall in [lo, hi] (clipped to this grid), and its index slices."""
        slices = []
        for o, n, lo, hi in zip(self.origin, self.shape, lo_mm, hi_mm):
            i0 = max(0, math.floor((lo - o) / self.spacing))
            i1 = min(n, math.ceil((hi - o) / self.spacing) + 1)
            slices.append(slice(i0, i1))
        shape = tuple(s.stop - s.start for s in slices)
        origin = tuple(o + self.spacing * s.start for o, s in zip(self.origin, slices))
        return Grid(shape, self.spacing, origin), tuple(slices)


def grid_covering(bounds_mm, voxel_size: float) -> Grid:
    """The grid of ``voxel_size`` mm voxels, centred on the box ``bounds_mm = ((lo, hi),) * 3``, covering it.

    Where the box's extent is a multiple of the voxel size (1 and 2 mm for the hippocampal box) the grid is
    exactly the box; otherwise it overhangs by less than one voxel, symmetrically.
    """
    shape, origin = [], []
    for lo, hi in bounds_mm:
        n = max(1, math.ceil((hi - lo) / voxel_size - 1e-6))
        shape.append(n)
        origin.append((lo + hi) / 2 - voxel_size * (n - 1) / 2)
    return Grid(tuple(shape), float(voxel_size), tuple(origin))


def output_grid(voxel_size: float, whole_brain: bool) -> Grid:
    """The grid written to ``images/``: the hippocampal box, or the template's whole field of view."""
    return grid_covering(TEMPLATE_FOV_MM if whole_brain else HIPPOCAMPAL_BOX_MM, voxel_size)


def sample_at_index(volumes: np.ndarray, index: np.ndarray, padding: str = "zeros") -> np.ndarray:
    """Trilinear samples of ``volumes`` (C, X, Y, Z) at fractional voxel indices ``(A, B, D, 3)``.

    Returns ``(C, A, B, D)`` float32. One ``grid_sample`` call serves every channel, and each output voxel is
    computed on its own, so the result does not depend on the number of threads. ``padding`` is ``"zeros"``
    (images: nothing outside) or ``"border"`` (displacement fields: continue the edge value).
    """
    import torch  # here: reading where the synthetic cohort lives must not load torch

    # grid_sample wants (x, y, z) of the input's (W, H, D) = our (z, y, x) axes, normalised to [-1, 1].
    scale = np.asarray([2.0 / max(n - 1, 1) for n in volumes.shape[1:]], dtype=np.float32)
    norm = (index * scale - np.float32(1.0))[..., ::-1].copy()
    src = torch.from_numpy(np.ascontiguousarray(volumes, dtype=np.float32))[None]
    out = torch.nn.functional.grid_sample(
        src, torch.from_numpy(norm)[None], mode="bilinear", padding_mode=padding, align_corners=True
    )
    return out[0].numpy()


def sample(volumes: np.ndarray, grid: Grid, points_mm: np.ndarray, padding: str = "zeros") -> np.ndarray:
    """Trilinear samples of ``volumes`` (C, X, Y, Z) on ``grid`` at world points ``(A, B, D, 3)`` mm."""
    return sample_at_index(volumes, grid.to_index(points_mm).astype(np.float32), padding)
