"""What the scanner does to the warped template: contrast, bias field, blur, Rician noise (1.5 T and 3 T).

Works on the tissue maps already sampled on the output grid. Intensities are written as int16 in arbitrary
scanner units (white matter about 700 at 1.5 T, about 1000 at 3 T), zero outside the skull-stripped brain, as
in ADNI's processed T1 scans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Tissue levels of the ICBM152 2009a T1 (template units): white matter, grey matter, CSF.
_WM, _GM, _CSF = 222.0, 166.0, 69.0
# Per field strength: white-matter level (range), GM/WM and CSF/WM ratios (mean, sd), bias-field coefficient
# sd, noise sd as a fraction of white matter (range). 3 T MPRAGE: more GM/WM contrast, more signal, stronger
# B1 inhomogeneity.
FLAVOURS = {
    1.5: {
        "wm": (600.0, 850.0),
        "gm": (0.78, 0.02),
        "csf": (0.34, 0.03),
        "bias": 0.035,
        "noise": (0.025, 0.045),
    },
    3.0: {
        "wm": (900.0, 1200.0),
        "gm": (0.71, 0.02),
        "csf": (0.27, 0.03),
        "bias": 0.06,
        "noise": (0.015, 0.030),
    },
}
BLUR_MM = (0.0, 0.6)  # extra Gaussian sigma on top of the voxel's own point-spread function
STREAM_SCANNER = 3


@dataclass(frozen=True)
class ScannerSettings:
    field_strength: float
    wm_level: float
    gm_ratio: float
    csf_ratio: float
    bias: tuple[float, ...]  # coefficients of x, y, z, x^2, y^2, z^2, xy, xz, yz (over about 90 mm)
    blur_mm: float
    noise_fraction: float


def scanner_settings(field_strength: float, rng: np.random.Generator) -> ScannerSettings:
    f = FLAVOURS[field_strength]
    return ScannerSettings(
        field_strength=field_strength,
        wm_level=float(rng.uniform(*f["wm"])),
        gm_ratio=float(rng.normal(*f["gm"])),
        csf_ratio=float(rng.normal(*f["csf"])),
        bias=tuple(float(c) for c in rng.normal(0.0, f["bias"], 9)),
        blur_mm=float(rng.uniform(*BLUR_MM)),
        noise_fraction=float(rng.uniform(*f["noise"])),
    )


def bias_field(points_mm: np.ndarray, centre_mm, coefficients) -> np.ndarray:
    """Smooth multiplicative field exp(quadratic polynomial) at world points (..., 3) mm."""
    p = (points_mm - np.asarray(centre_mm, dtype=np.float32)) / np.float32(90.0)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    terms = (x, y, z, x * x, y * y, z * z, x * y, x * z, y * z)
    log_b = np.zeros(p.shape[:-1], dtype=np.float32)
    for c, t in zip(coefficients, terms):
        log_b += np.float32(c) * t
    return np.exp(log_b)


def acquire(
    tissue: dict[str, np.ndarray],
    bias: np.ndarray,
    voxel_size: float,
    settings: ScannerSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """The T1 scan (int16) from the warped template: ``tissue`` holds ``t1`` (template units), ``gm``, ``wm``
    and ``mask`` sampled on the output grid of ``voxel_size`` mm; ``bias`` is :func:`bias_field` there."""
    # In place where possible: a 1 mm whole brain is 35 MB per float32 copy.
    t1, gm, wm, mask = tissue["t1"], tissue["gm"], tissue["wm"], tissue["mask"]
    csf = mask - gm
    csf -= wm
    np.clip(csf, 0.0, 1.0, out=csf)
    # Shift the grey-matter and CSF levels, keeping the template's own texture (deep nuclei, partial volumes).
    img = gm * np.float32(settings.gm_ratio * _WM - _GM)
    img += t1
    csf *= np.float32(settings.csf_ratio * _WM - _CSF)
    img += csf
    del csf
    np.maximum(img, 0.0, out=img)
    img *= bias
    if settings.blur_mm > 0.05:
        img = ndimage.gaussian_filter(img, settings.blur_mm / voxel_size, mode="nearest")
    img *= np.float32(settings.wm_level / _WM)
    # Rician noise: the magnitude of the signal plus complex Gaussian noise.
    sigma = np.float32(settings.noise_fraction * settings.wm_level)
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    noise *= sigma
    img += noise
    np.square(img, out=img)
    rng.standard_normal(dtype=np.float32, out=noise)
    noise *= sigma
    np.square(noise, out=noise)
    img += noise
    del noise
    np.sqrt(img, out=img)
    img *= mask > 0.5  # skull-stripped: nothing outside the brain
    np.rint(img, out=img)
    np.clip(img, 0, np.iinfo(np.int16).max, out=img)
    return img.astype(np.int16)
