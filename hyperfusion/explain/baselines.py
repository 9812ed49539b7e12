"""Baseline scans for the methods that compare against one (integrated gradients, DeepLIFT, occlusion).

A baseline is a scan on the model grid, (V, 1, D, H, W') like the subject's own views, and what it is must
be recorded with every map (:class:`Baseline`'s ``describe``), since an attribution only says what changed
*relative to it*:

``zero``
    All zeros. After the model's intensity normalisation (z-score over the brain, background 0) this is a
    brain at its mean intensity with no contrast, and the background as it is.
``blur``
    The subject's own scan blurred with a Gaussian of ``sigma_mm`` (default 8 mm): anatomy kept at a scale
    coarser than the hippocampus, fine structure removed. Blurred over the whole box before the hemisphere
    split, so both views see one blurred brain.
``cohort_cn_mean``
    The mean model input of the cohort's cognitively normal subjects (each normalised like a model input
    first): "what does this scan show that a typical healthy brain does not".
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from hyperfusion.data.cohort import Cohort
from hyperfusion.data.geometry import Geometry, merge_views, model_input, split_views
from hyperfusion.data.volume_cache import VolumeCache
from hyperfusion.errors import DataError

__all__ = ["BASELINES", "Baseline", "cohort_mean_views", "describe_baseline", "make_baseline"]

BASELINES = ("zero", "blur", "cohort_cn_mean")
DEFAULT_BLUR_MM = 8.0
DEFAULT_MAX_SUBJECTS = 64


@dataclass(frozen=True)
class Baseline:
    """A baseline scan and what it is.

    Attributes:
        kind: one of :data:`BASELINES`.
        views: float32 (V, 1, D, H, W'), on the model grid.
        params: how it was made (``sigma_mm``; the cohort, its CN subjects' count and the list's hash).
    """

    kind: str
    views: np.ndarray = field(repr=False)
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-able record of the baseline, stored with every map that used it."""
        return {"kind": self.kind, **self.params}


def make_baseline(
    kind: str,
    views: np.ndarray,
    geometry: Geometry,
    *,
    sigma_mm: float = DEFAULT_BLUR_MM,
    cohort: Cohort | None = None,
    cache: VolumeCache | None = None,
    max_subjects: int = DEFAULT_MAX_SUBJECTS,
) -> Baseline:
    """The baseline ``kind`` for a subject whose model input is ``views`` (V, 1, D, H, W').

    Args:
        kind: "zero", "blur" or "cohort_cn_mean".
        views: the subject's model input.
        geometry: the model's geometry (``blur`` works on the whole box).
        sigma_mm: the Gaussian's standard deviation for ``blur``, mm.
        cohort: the cohort whose CN subjects are averaged (``cohort_cn_mean``).
        cache: the volume cache used to read those subjects' scans (faster on repeat).
        max_subjects: at most this many CN subjects are averaged (the first ones in the table).
    """
    views = np.asarray(views, dtype=np.float32)
    if kind == "zero":
        return Baseline("zero", np.zeros_like(views))
    if kind == "blur":
        if not sigma_mm > 0:
            raise DataError(f"blur baseline: sigma_mm must be positive, not {sigma_mm}")
        box = merge_views(views[:, 0], geometry)
        blurred = ndimage.gaussian_filter(box, sigma_mm / geometry.voxel_size_mm, mode="constant")
        out = split_views(blurred.astype(np.float32), geometry)[:, None]
        return Baseline("blur", np.ascontiguousarray(out), {"sigma_mm": float(sigma_mm)})
    if kind == "cohort_cn_mean":
        if cohort is None:
            raise DataError("the cohort_cn_mean baseline needs a cohort: load one (--data COHORT_DIR)")
        mean, params = cohort_mean_views(cohort, geometry, cache=cache, max_subjects=max_subjects)
        if mean.shape != views.shape:
            raise DataError(f"cohort mean of shape {mean.shape} does not fit views of shape {views.shape}")
        return Baseline("cohort_cn_mean", mean, params)
    raise DataError(f"unknown baseline {kind!r}; choose one of {list(BASELINES)}")


def describe_baseline(
    kind: str,
    geometry: Geometry,
    *,
    sigma_mm: float = DEFAULT_BLUR_MM,
    cohort: Cohort | None = None,
    cache: VolumeCache | None = None,
    max_subjects: int = DEFAULT_MAX_SUBJECTS,
) -> dict[str, Any]:
    """What :func:`make_baseline` would record for these arguments, without building the subject's
    baseline (a key for cached maps)."""
    if kind == "zero":
        return {"kind": "zero"}
    if kind == "blur":
        return {"kind": "blur", "sigma_mm": float(sigma_mm)}
    if kind == "cohort_cn_mean":
        if cohort is None:
            raise DataError("the cohort_cn_mean baseline needs a cohort: load one (--data COHORT_DIR)")
        _, params = cohort_mean_views(cohort, geometry, cache=cache, max_subjects=max_subjects)
        return {"kind": kind, **params}
    raise DataError(f"unknown baseline {kind!r}; choose one of {list(BASELINES)}")


_MEANS: dict[tuple, tuple[np.ndarray, dict]] = {}
_MEANS_LOCK = threading.Lock()


def cohort_mean_views(
    cohort: Cohort,
    geometry: Geometry,
    diagnosis: str = "CN",
    *,
    cache: VolumeCache | None = None,
    max_subjects: int = DEFAULT_MAX_SUBJECTS,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Mean model input (V, 1, D, H, W') of the cohort's subjects with ``diagnosis`` that have a scan.

    Each scan is normalised as a model input before averaging. Computed once per process for a (cohort,
    geometry, subjects) and kept. Returns the mean and its description (cohort path, count, subjects' hash).
    """
    table = cohort.table
    rows = table[(table["DX"] == diagnosis) & table["image_path"].notna()].head(max_subjects)
    if rows.empty:
        raise DataError(
            f"{cohort.path}: no {diagnosis} subject with a scan, so there is no {diagnosis} mean baseline. "
            "Use the zero or blur baseline"
        )
    ptids = list(rows["PTID"])
    digest = hashlib.sha256("\n".join(ptids).encode()).hexdigest()[:16]
    key = (str(cohort.path), geometry, digest)
    params = {
        "cohort": str(cohort.path),
        "diagnosis": diagnosis,
        "subjects": len(ptids),
        "subjects_sha": digest,
    }
    with _MEANS_LOCK:
        if key in _MEANS:
            return _MEANS[key]
    total = None
    for path in rows["image_path"]:
        arr = cache.get(path, geometry) if cache is not None else model_input(path, geometry)
        total = arr.astype(np.float64) if total is None else total + arr
    mean = (total / len(ptids)).astype(np.float32)
    mean.flags.writeable = False
    with _MEANS_LOCK:
        _MEANS[key] = (mean, params)
    return mean, params
