"""Per-region atrophy fields, computed once and cached on disk.

For each region r of :data:`~hyperfusion.data.synthetic.anatomy.REGIONS` a source map ``f_r`` says where volume
is lost or gained per unit log-volume change: +1 inside the region (smoothed by 1 mm) and a negative
compensation in the neighbouring CSF (or, for the ventricles, the surrounding tissue) so that it integrates to
zero. The velocity field ``v_r = grad(phi_r)`` with ``laplacian(phi_r) = f_r`` (one FFT Poisson solve) has
divergence ``f_r``: flowing along ``-a v_r`` changes the region's log-volume by about ``a`` and lets the
neighbouring CSF grow to take up the space. Fields are linear in ``a``, so a subject's velocity is
``-sum_r gain_r a_r v_r``. The deformation delivers only part of the requested change (smoothing, partial
volumes), so ``gain_r`` is calibrated once here by warping the template and measuring the region again.

Everything lives on the "field grid": the template's 2 mm grid (2x2x2 blocks of the 1 mm template) cropped to
the brain plus a margin. The cache holds ``velocity.npy`` (R, 3, X, Y, Z) mm per unit, ``source.npy`` (R, X, Y,
Z), ``measure.npy`` (M, X, Y, Z) partial-volume masks of the measured structures, and ``meta.json``. It is keyed
by the field version, the atlas and the template files, and written atomically, so concurrent builds are safe.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import fft, ndimage

from hyperfusion.data.synthetic.anatomy import (
    AGEING_MEASURED,
    AGEING_REGIONS,
    MEASURED,
    REGIONS,
    TEMPLATE_GRID,
    atlas_labels,
    atlas_source,
    file_digest,
    load_template,
    region_indicator,
    template_path,
)
from hyperfusion.data.synthetic.deform import exponentiate, identity_index
from hyperfusion.data.synthetic.geometry import Grid, sample_at_index
from hyperfusion.files import cache_root

FIELDS_VERSION = "fields-5"
FIELD_SPACING_MM = 2.0
_MARGIN_MM = 16.0
_SOURCE_SMOOTHING_MM = 1.0
_TISSUE_TAKE_UP = 0.02
# Log-volume changes at which each gain is calibrated: typical of an AD patient's region.
_CALIBRATION_ROUNDS = 3


@dataclass(frozen=True)
class AtrophyFields:
    """The cached fields, memory-mapped read-only. ``grid`` is the field grid; arrays as in the module doc."""

    grid: Grid
    velocity: np.ndarray
    source: np.ndarray
    measure: np.ndarray
    curves: tuple  # per region: (delivered log-volume changes, strengths), the response curve
    joint_factors: np.ndarray  # (R,)
    measured_names: tuple[str, ...]
    template_volumes_ml: dict[str, float]
    brain_centre_mm: tuple[float, float, float]
    atlas_source: str
    key: str

    def strengths(self, change: np.ndarray) -> np.ndarray:
        """Field strengths (R,) that deliver the log-volume changes ``change`` (R,): the subject's velocity is
        ``-sum_r strength_r v_r``."""
        return np.array(
            [f * invert_response(float(a), *c) for a, c, f in zip(change, self.curves, self.joint_factors)]
        )

    def gains(self, change: float = -0.25) -> np.ndarray:
        """Strength per unit change at ``change`` (for provenance: how much each field had to be amplified)."""
        return self.strengths(np.full(len(self.curves), change)) / change


def _pool2(a: np.ndarray) -> np.ndarray:
    """Mean over 2x2x2 blocks (zero-padding odd dimensions at the high end)."""
    pad = [(0, n % 2) for n in a.shape]
    a = np.pad(a, pad)
    x, y, z = (n // 2 for n in a.shape)
    return a.reshape(x, 2, y, 2, z, 2).mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)


def _pooled_grid() -> Grid:
    shape = tuple((n + 1) // 2 for n in TEMPLATE_GRID.shape)
    origin = tuple(o + 0.5 for o in TEMPLATE_GRID.origin)  # centre of the first 2x2x2 block
    return Grid(shape, FIELD_SPACING_MM, origin)


def poisson_velocity(source: np.ndarray, spacing: float) -> np.ndarray:
    """``grad(phi)`` with ``laplacian(phi) = source`` (zero-mean), by FFT on a zero-padded periodic domain.

    Returns (3, X, Y, Z) float32 in mm per unit of ``source``; its divergence is ``source``.
    """
    shape = tuple(fft.next_fast_len(n + 32) for n in source.shape)
    f_hat = fft.rfftn(source.astype(np.float64), s=shape, workers=1)
    ks = [2 * np.pi * fft.fftfreq(n, d=spacing) for n in shape[:-1]]
    ks.append(2 * np.pi * fft.rfftfreq(shape[-1], d=spacing))
    kx, ky, kz = np.meshgrid(*ks, indexing="ij", sparse=True)
    k2 = kx**2 + ky**2 + kz**2
    k2[0, 0, 0] = 1.0
    phi_hat = -f_hat / k2
    phi_hat[0, 0, 0] = 0.0
    crop = tuple(slice(0, n) for n in source.shape)
    return np.stack([fft.irfftn(1j * k * phi_hat, s=shape, workers=1)[crop] for k in (kx, ky, kz)]).astype(
        np.float32
    )


def _region_source(m: np.ndarray, tissue: dict[str, np.ndarray], compensation: str, reach_mm: float):
    smooth = ndimage.gaussian_filter(m, _SOURCE_SMOOTHING_MM / FIELD_SPACING_MM)
    dist = ndimage.distance_transform_edt(m < 0.5) * FIELD_SPACING_MM
    falloff = np.exp(-0.5 * (dist / reach_mm) ** 2) * (1.0 - np.clip(m, 0, 1))
    if compensation == "csf":
        # A little tissue shares the load so that where CSF is scarce (the temporal horn is tiny in the
        # template) the neighbouring CSF does not have to grow without bound.
        take_up = tissue["csf"] + _TISSUE_TAKE_UP * (tissue["gm"] + tissue["wm"])
    else:
        take_up = tissue["gm"] + tissue["wm"]
    comp = (take_up * falloff).astype(np.float64)
    return (smooth - comp * (smooth.sum(dtype=np.float64) / comp.sum())).astype(np.float32)


# Field strengths (in units of v_r) at which a region's response is measured: wide enough for the most extreme
# subjects (an old AD patient's ventricles more than double, a young adult's are half the template's).
_SWEEP = {
    "csf": (-2.4, -1.6, -1.0, -0.6, -0.3, -0.1, 0.1, 0.3, 0.6, 1.0),
    "tissue": (-1.6, -1.0, -0.6, -0.3, -0.1, 0.1, 0.3, 0.6, 1.0, 1.6, 2.4, 3.4),
}
# Large cortical sheets change little per subject (a few percent): one point fixes their (linear) gain.
_LINEAR_STRUCTURES = ("cortex", "parietal", "frontal", "temporal")
_LINEAR_POINT = -0.1


def _structure_of(region_name: str) -> str:
    return region_name.split("_")[0]


def _response_curve(velocity: np.ndarray, mask: np.ndarray, grid: Grid, strengths) -> tuple[list, list]:
    """Log-volume change of ``mask`` delivered by ``exp(-e * velocity)`` for each strength e.

    Returns (delivered, strengths), sorted, through (0, 0). Deformations are not linear in e for large changes
    (an expanding ventricle's wall moves into tissue whose own field shrinks it), hence a curve, not a gain.
    """
    # The region's neighbourhood only: the fields are negligible far from it.
    nz = np.argwhere(mask > 0)
    pad = int(np.ceil(24.0 / grid.spacing))
    sl = tuple(
        slice(max(0, lo - pad), min(n, hi + pad + 1)) for lo, hi, n in zip(nz.min(0), nz.max(0), mask.shape)
    )
    v = velocity[(slice(None), *sl)] / np.float32(grid.spacing)
    m = np.ascontiguousarray(mask[sl])
    ident = identity_index(m.shape)
    v0 = m.sum(dtype=np.float64)
    points = [(0.0, 0.0)]
    for e in strengths:
        u = exponentiate(np.float32(-e) * v, ident)
        warped = sample_at_index(m[None], ident + np.moveaxis(u, 0, -1))[0]
        points.append((float(np.log(warped.sum(dtype=np.float64) / v0)), float(e)))
    points.sort(key=lambda p: p[1])
    delivered = np.maximum.accumulate([p[0] for p in points])  # monotone, for a well-defined inverse
    return [round(float(d), 6) for d in delivered], [p[1] for p in points]


def invert_response(change: float, delivered, strengths) -> float:
    """The strength delivering ``change``: piecewise-linear inverse of the response curve, extended linearly."""
    d, e = np.asarray(delivered), np.asarray(strengths)
    if change <= d[0]:
        i = 0
    elif change >= d[-1]:
        i = len(d) - 2
    else:
        i = int(np.searchsorted(d, change, side="right")) - 1
        i = min(max(i, 0), len(d) - 2)
    span = d[i + 1] - d[i]
    t = (change - d[i]) / span if span > 0 else 0.0
    return float(e[i] + t * (e[i + 1] - e[i]))


# A typical AD patient's plan, at which the strengths of the measured structures are refined jointly: regions
# that atrophy together share their CSF and push on each other, which single-region curves cannot see.
_JOINT_PLAN = {
    "hippocampus": -0.25,
    "amygdala": -0.25,
    "entorhinal": -0.25,
    "parahippocampal": -0.25,
    "ventricles": 0.40,
    "cortex": -0.04,
}


def _refine_jointly(
    curves: list, velocity: np.ndarray, measure: np.ndarray, names: tuple[str, ...], grid: Grid
) -> np.ndarray:
    """Per-region factors on the strengths that make the joint AD-like plan deliver every measured request."""
    plan = [_JOINT_PLAN.get(_structure_of(r.name), 0.0) for r in REGIONS]
    ident = identity_index(grid.shape)
    before = measure.reshape(len(names), -1).sum(axis=1, dtype=np.float64)
    factors = np.ones(len(REGIONS))
    for _ in range(_CALIBRATION_ROUNDS):
        v = np.zeros((3, *grid.shape), dtype=np.float32)
        for i, a in enumerate(plan):
            if a != 0.0:
                v += np.float32(-factors[i] * invert_response(a, *curves[i]) / grid.spacing) * velocity[i]
        u = exponentiate(v, ident)
        warped = sample_at_index(measure, ident + np.moveaxis(u, 0, -1))
        delivered = np.log(warped.reshape(len(names), -1).sum(axis=1, dtype=np.float64) / before)
        for m, name in enumerate(names):
            structure, side = name.rsplit("_", 1)
            for i, region in enumerate(REGIONS):
                if _structure_of(region.name) == structure and region.name.endswith("_" + side):
                    factors[i] *= _JOINT_PLAN[structure] / delivered[m]
    return factors


def _build(directory: Path, key: str, atlas: str, labels: np.ndarray) -> None:
    t = load_template()
    pooled = _pooled_grid()
    brain = np.argwhere(_pool2(t["mask"]) > 0)
    grid, sl = pooled.crop(
        tuple(pooled.origin[i] + pooled.spacing * brain[:, i].min() - _MARGIN_MM for i in range(3)),
        tuple(pooled.origin[i] + pooled.spacing * brain[:, i].max() + _MARGIN_MM for i in range(3)),
    )
    tissue = {k: _pool2(t[k])[sl] for k in ("gm", "wm", "csf", "mask")}
    velocity = np.zeros((len(REGIONS), 3, *grid.shape), dtype=np.float32)
    source = np.zeros((len(REGIONS), *grid.shape), dtype=np.float32)
    curves = []
    for i, region in enumerate(REGIONS):
        m = _pool2(region_indicator(labels, region))[sl]
        source[i] = _region_source(m, tissue, region.compensation, region.reach_mm)
        velocity[i] = poisson_velocity(source[i], grid.spacing)
        linear = _structure_of(region.name) in _LINEAR_STRUCTURES
        sweep = (_LINEAR_POINT,) if linear else _SWEEP[region.compensation]
        curves.append(_response_curve(velocity[i], m, grid, sweep))
    names = tuple(MEASURED)
    measure = np.stack([_pool2(np.isin(labels, MEASURED[n]).astype(np.float32))[sl] for n in names])
    factors = _refine_jointly(curves, velocity, measure, names, grid)
    voxel_ml = grid.spacing**3 / 1000.0
    mask_idx = np.argwhere(t["mask"] > 0)
    centre = tuple(float(c) for c in TEMPLATE_GRID.origin + mask_idx.mean(axis=0) * TEMPLATE_GRID.spacing)
    np.save(directory / "velocity.npy", velocity)
    np.save(directory / "source.npy", source)
    np.save(directory / "measure.npy", measure)
    meta = {
        "key": key,
        "version": FIELDS_VERSION,
        "atlas_source": atlas,
        "grid": {"shape": list(grid.shape), "spacing": grid.spacing, "origin": list(grid.origin)},
        "regions": [r.name for r in REGIONS],
        "response_curves": {r.name: {"delivered": c[0], "strength": c[1]} for r, c in zip(REGIONS, curves)},
        "joint_factors": [round(float(f), 6) for f in factors],
        "measured": list(names),
        "template_volumes_ml": {
            n: float(measure[i].sum(dtype=np.float64) * voxel_ml) for i, n in enumerate(names)
        },
        "brain_centre_mm": centre,
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=1))


def fields_key() -> tuple[str, str]:
    """The cache key of the fields for the installed template and atlas, and the atlas source."""
    source = atlas_source()
    digest = "-".join(file_digest(template_path(k))[:8] for k in ("t1", "gm", "wm"))
    return f"{FIELDS_VERSION}-{source.replace(':', '-')}-{digest}", source


def _cached_build(root: Path, key: str, build) -> Path:
    """The cache directory ``root/synthetic/key``, filled by ``build(tmp_dir)`` on first use, atomically."""
    directory = root / "synthetic" / key
    if not (directory / "meta.json").exists():
        root.joinpath("synthetic").mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root / "synthetic"))
        try:
            build(tmp)
            try:
                os.replace(tmp, directory)
            except OSError:  # another process finished first: keep its copy
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


@lru_cache(maxsize=2)
def load_fields(cache_dir: str | None = None) -> AtrophyFields:
    """The atrophy fields, built on first use (about a minute on two cores) and memory-mapped afterwards."""
    key, source = fields_key()
    root = Path(cache_dir) if cache_dir else cache_root()
    directory = _cached_build(root, key, lambda tmp: _build(tmp, key, source, atlas_labels()[0]))
    meta = json.loads((directory / "meta.json").read_text())
    g = meta["grid"]
    return AtrophyFields(
        grid=Grid(tuple(g["shape"]), float(g["spacing"]), tuple(g["origin"])),
        velocity=np.load(directory / "velocity.npy", mmap_mode="r"),
        source=np.load(directory / "source.npy", mmap_mode="r"),
        measure=np.load(directory / "measure.npy", mmap_mode="r"),
        curves=tuple(
            (tuple(meta["response_curves"][r]["delivered"]), tuple(meta["response_curves"][r]["strength"]))
            for r in meta["regions"]
        ),
        joint_factors=np.asarray(meta["joint_factors"], dtype=np.float64),
        measured_names=tuple(meta["measured"]),
        template_volumes_ml=meta["template_volumes_ml"],
        brain_centre_mm=tuple(meta["brain_centre_mm"]),
        atlas_source=meta["atlas_source"],
        key=meta["key"],
    )


# --- brain-age cohorts: white-matter fields and whole-brain measures -------------------------------------------
AGEING_FIELDS_VERSION = "ageing-fields-1"
# White matter changes by at most about +-25 % between 20 and 90: a short sweep covers it.
_AGEING_SWEEP = (-0.6, -0.3, -0.1, 0.1, 0.3, 0.6)


@dataclass(frozen=True)
class AgeingFields:
    """What brain-age cohorts add to :class:`AtrophyFields`, on the same grid: the fields of
    :data:`~hyperfusion.data.synthetic.anatomy.AGEING_REGIONS` and the partial-volume masks of
    :data:`~hyperfusion.data.synthetic.anatomy.AGEING_MEASURED` plus ``brain`` (grey + white matter).

    A separate cache, so that the AD task's fields, cache key and output stay exactly as they were."""

    velocity: np.ndarray  # (A, 3, X, Y, Z)
    source: np.ndarray  # (A, X, Y, Z)
    measure: np.ndarray  # (K, X, Y, Z)
    curves: tuple
    measured_names: tuple[str, ...]
    template_volumes_ml: dict[str, float]
    key: str

    def strengths(self, change: np.ndarray) -> np.ndarray:
        return np.array([invert_response(float(a), *c) for a, c in zip(change, self.curves)])


def _build_ageing(directory: Path, key: str, fields: AtrophyFields, labels: np.ndarray) -> None:
    t = load_template()
    pooled = _pooled_grid()
    start = [round((f - p) / FIELD_SPACING_MM) for f, p in zip(fields.grid.origin, pooled.origin)]
    sl = tuple(slice(s0, s0 + n) for s0, n in zip(start, fields.grid.shape))
    tissue = {k: _pool2(t[k])[sl] for k in ("gm", "wm", "csf")}
    velocity = np.zeros((len(AGEING_REGIONS), 3, *fields.grid.shape), dtype=np.float32)
    source = np.zeros((len(AGEING_REGIONS), *fields.grid.shape), dtype=np.float32)
    curves = []
    for i, region in enumerate(AGEING_REGIONS):
        m = _pool2(region_indicator(labels, region))[sl]
        if m.sum() == 0:
            raise ValueError(f"the atlas has no voxel of {region.name}")
        source[i] = _region_source(m, tissue, region.compensation, region.reach_mm)
        velocity[i] = poisson_velocity(source[i], fields.grid.spacing)
        curves.append(_response_curve(velocity[i], m, fields.grid, _AGEING_SWEEP))
    names = (*AGEING_MEASURED, "brain")
    masks = [_pool2(np.isin(labels, AGEING_MEASURED[n]).astype(np.float32))[sl] for n in AGEING_MEASURED]
    masks.append(np.clip(tissue["gm"] + tissue["wm"], 0.0, 1.0))
    measure = np.stack(masks)
    voxel_ml = fields.grid.spacing**3 / 1000.0
    np.save(directory / "velocity.npy", velocity)
    np.save(directory / "source.npy", source)
    np.save(directory / "measure.npy", measure)
    meta = {
        "key": key,
        "version": AGEING_FIELDS_VERSION,
        "regions": [r.name for r in AGEING_REGIONS],
        "response_curves": {
            r.name: {"delivered": c[0], "strength": c[1]} for r, c in zip(AGEING_REGIONS, curves)
        },
        "measured": list(names),
        "template_volumes_ml": {
            n: float(measure[i].sum(dtype=np.float64) * voxel_ml) for i, n in enumerate(names)
        },
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=1))


@lru_cache(maxsize=2)
def load_ageing_fields(cache_dir: str | None = None) -> AgeingFields:
    """The brain-age additions (:class:`AgeingFields`), built on first use (about half a minute) and
    memory-mapped afterwards; keyed by their own version and the main fields' key."""
    fields = load_fields(cache_dir)
    key = f"{AGEING_FIELDS_VERSION}-{fields.key}"
    root = Path(cache_dir) if cache_dir else cache_root()
    directory = _cached_build(root, key, lambda tmp: _build_ageing(tmp, key, fields, atlas_labels()[0]))
    meta = json.loads((directory / "meta.json").read_text())
    return AgeingFields(
        velocity=np.load(directory / "velocity.npy", mmap_mode="r"),
        source=np.load(directory / "source.npy", mmap_mode="r"),
        measure=np.load(directory / "measure.npy", mmap_mode="r"),
        curves=tuple(
            (tuple(meta["response_curves"][r]["delivered"]), tuple(meta["response_curves"][r]["strength"]))
            for r in meta["regions"]
        ),
        measured_names=tuple(meta["measured"]),
        template_volumes_ml=meta["template_volumes_ml"],
        key=meta["key"],
    )
