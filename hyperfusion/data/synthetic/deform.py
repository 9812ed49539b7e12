"""Diffeomorphic warps from stationary velocity fields.

A subject is the template pulled back through one map ``y = psi(x)``: the scan's voxel at ``x`` shows the
template at ``y``. ``psi`` is the exponential of a stationary velocity field (scaling and squaring), so it stays
invertible even for the large ventricular expansions of old AD patients, and the log-volume change it produces
in a region is close to linear in the velocity's divergence there.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from hyperfusion.data.synthetic.geometry import Grid, sample_at_index

SQUARING_STEPS = 4  # velocity / 16 per step: under half a voxel for displacements of up to ~15 mm


def identity_index(shape: tuple[int, int, int]) -> np.ndarray:
    """Voxel indices of every voxel of a grid of ``shape``: ``(X, Y, Z, 3)`` float32."""
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def exponentiate(velocity_vox: np.ndarray, identity: np.ndarray, steps: int = SQUARING_STEPS) -> np.ndarray:
    """Displacement (3, X, Y, Z), in voxels, of the exponential of a velocity field in voxels per unit time.

    ``identity`` is :func:`identity_index` of the same shape (passed in so that it is built once per grid).
    """
    u = velocity_vox.astype(np.float32) / np.float32(2**steps)
    for _ in range(steps):
        # u <- u + u o (id + u): compose the half-time map with itself.
        u = u + sample_at_index(u, identity + np.moveaxis(u, 0, -1), padding="border")
    return u


def divergence(field: np.ndarray, spacing: float) -> np.ndarray:
    """Divergence (1/unit) of a vector field (3, X, Y, Z) in mm on a grid of ``spacing`` mm, by central
    differences."""
    return sum(np.gradient(field[i], spacing, axis=i) for i in range(3)).astype(np.float32)


def _kernel_norm(sigma_vox: float) -> float:
    """Standard deviation of unit white noise after scipy's 3D Gaussian filter of ``sigma_vox``."""
    radius = int(4.0 * sigma_vox + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma_vox) ** 2)
    w /= w.sum()
    return float(np.sqrt((w**2).sum()) ** 3)


def smooth_random_field(
    rng: np.random.Generator, lattice: Grid, rms_mm: float, sigma_vox: float = 1.0
) -> np.ndarray:
    """A smooth random vector field (3, X, Y, Z) on ``lattice`` whose vector length has RMS ``rms_mm``.

    Gaussian-filtered white noise: its correlation length is set by the lattice spacing (``sigma_vox`` of it).
    The noise is drawn on a fixed lattice in MNI mm, so the same subject gets the same field whatever grid it
    is written on.
    """
    noise = rng.standard_normal((3, *lattice.shape), dtype=np.float32)
    gain = np.float32(rms_mm / np.sqrt(3.0) / _kernel_norm(sigma_vox))
    return np.stack([ndimage.gaussian_filter(c, sigma_vox, mode="constant") for c in noise]) * gain
