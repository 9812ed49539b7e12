"""N4 bias-field correction (``hyperfusion preprocess --n4``) on a real head: a known smooth multiplicative
bias field laid over Colin27 (resampled to 2 mm to keep the test short) spreads its white-matter intensities;
N4 takes most of that spread away, and leaves an unbiased scan about as it was."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.processing import resample_to_output
from scipy import ndimage

from hyperfusion.data.preprocess.pipeline import _n4


def _cv(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


def test_n4_removes_most_of_a_multiplicative_bias_field_from_a_real_head(real_scans):
    head = resample_to_output(nib.load(real_scans / "ch2.nii.gz"), voxel_sizes=2.0, order=1)
    brain = resample_to_output(nib.load(real_scans / "ch2bet.nii.gz"), voxel_sizes=2.0, order=1)
    data = np.asarray(head.dataobj, dtype=np.float32)
    bet = np.asarray(brain.dataobj, dtype=np.float32)
    assert data.shape == bet.shape
    # white matter: the brightest quarter of the skull-stripped brain, eroded away from partial volumes
    inside = bet[bet > 0.1 * bet.max()]
    wm = ndimage.binary_erosion(bet > np.percentile(inside, 75), iterations=1)
    assert wm.sum() > 5000
    # a smooth field of 0.67–1.49 (exp(±0.4)) along an oblique axis, as a receive coil's shading would be
    i, j, k = np.indices(data.shape, dtype=np.float32)
    u = (i / data.shape[0] + j / data.shape[1] + k / data.shape[2]) / 1.5 - 1.0  # -1 .. 1
    field = np.exp(0.4 * u).astype(np.float32)
    biased = data * field

    before, biased_cv = _cv(data[wm]), _cv(biased[wm])
    corrected = _n4(biased, head.affine, threads=2)
    corrected_cv = _cv(corrected[wm])
    assert corrected.shape == data.shape and np.isfinite(corrected).all()
    assert biased_cv > 1.5 * before, (before, biased_cv)  # the field matters
    assert corrected_cv < 0.6 * biased_cv, (before, biased_cv, corrected_cv)
    assert corrected_cv < 1.5 * before, (before, biased_cv, corrected_cv)
    # the recovered field follows the true one: the ratio corrected / original is nearly flat over the brain
    ratio = corrected[wm] / data[wm]
    assert _cv(ratio) < 0.5 * _cv(field[wm]), (_cv(ratio), _cv(field[wm]))
    # on the scan without a field, N4 changes little
    assert _cv(_n4(data, head.affine, threads=2)[wm]) < 1.15 * before
