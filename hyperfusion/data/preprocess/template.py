"""The MNI152 template every scan is registered to: nilearn's ICBM152 2009a, shipped inside nilearn.

Nothing is downloaded: ``nilearn.datasets.load_mni152_template`` and ``load_mni152_brain_mask`` read files that
come with the installed nilearn wheel. The template is skull-stripped (no signal outside its brain mask), so it
is the target of the registration once the subject's brain has been extracted, and the reference of the entry
check and of the quality measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np
from scipy import ndimage

#: Grid spacing of the coarse reference used by the entry check (mm). At 4 mm a whole brain is about 30 000
#: points: fast to sample, and smooth enough that a scan's own texture does not dominate the correlation.
COARSE_MM = 4.0


def template(resolution: int = 1) -> nib.Nifti1Image:
    """The ICBM152 2009a T1 template (skull-stripped, intensities 0–1) at 1 or 2 mm."""
    return _template(resolution)


def brain_mask(resolution: int = 1) -> nib.Nifti1Image:
    """The template's brain mask (uint8) at 1 or 2 mm."""
    return _mask(resolution)


@lru_cache(maxsize=2)
def _template(resolution: int) -> nib.Nifti1Image:
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=resolution)


@lru_cache(maxsize=2)
def _mask(resolution: int) -> nib.Nifti1Image:
    from nilearn.datasets import load_mni152_brain_mask

    return load_mni152_brain_mask(resolution=resolution)


@dataclass(frozen=True)
class CoarseReference:
    """The template on a coarse grid: what a scan is compared with in well under a second.

    ``points``: (3, N) world mm of the brain-mask points; ``values``: the smoothed template there;
    ``shell``: (3, M) world mm of points between 8 and 24 mm outside the brain mask (where a skull would be);
    ``centre``: the brain's centroid, the pivot of trial rotations.
    """

    points: np.ndarray
    values: np.ndarray
    shell: np.ndarray
    centre: np.ndarray
    volume_ml: float


@lru_cache(maxsize=1)
def coarse_reference() -> CoarseReference:
    """The template at :data:`COARSE_MM` (from the 2 mm files, smoothed before subsampling)."""
    t2 = template(2)
    step = int(round(COARSE_MM / 2.0))
    values = ndimage.gaussian_filter(np.asarray(t2.dataobj, dtype=np.float32), 1.0)[::step, ::step, ::step]
    mask = (np.asarray(brain_mask(2).dataobj) > 0)[::step, ::step, ::step]
    affine = t2.affine.copy()
    affine[:3, :3] *= step
    near = ndimage.binary_dilation(mask, iterations=2)  # 8 mm
    far = ndimage.binary_dilation(mask, iterations=6)  # 24 mm
    shell = far & ~near

    def world(sel: np.ndarray) -> np.ndarray:
        ijk = np.argwhere(sel).T.astype(np.float64)
        return affine[:3, :3] @ ijk + affine[:3, 3:4]

    points = world(mask)
    return CoarseReference(
        points=points,
        values=values[mask].astype(np.float64),
        shell=world(shell),
        centre=points.mean(axis=1),
        volume_ml=float(mask.sum()) * COARSE_MM**3 / 1000.0,
    )
