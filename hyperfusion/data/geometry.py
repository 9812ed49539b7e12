"""The model's input geometry: which part of a scan a network sees, on which grid, and the way back.

Two modes (docs/architecture.md, Geometry):

``mni_box`` (the default)
    A box defined in MNI152 millimetres (RAS: x left->right, y posterior->anterior, z inferior->superior),
    sampled at ``voxel_size_mm`` from whatever grid and orientation the subject's scan has, through the scan's
    affine. Voxel ``i`` along an axis covers ``[min + i·v, min + (i+1)·v)`` mm; its centre is
    ``min + (i + ½)·v``. Arrays are ordered (D, H, W) = (z, y, x), each axis increasing in mm, which is the
    layout of the authors' 64×96×128 crop. The paper-equivalent box (:func:`ad_box`) is
    x ∈ [−64, 64), y ∈ [−55, 41), z ∈ [−55, 9) mm: 64×96×128 voxels at 1 mm, 32×48×64 at 2 mm.

``voxel_crop``
    The authors' fixed index crop of their bounding-box-centred scans (:func:`authors_crop`), for checkpoints
    imported from their code. The affine is ignored when cropping, as they did.

Hemispheres (both modes): the box is split in two along W. View 0 is the upper half ``box[..., W/2:]`` as is;
view 1 is the lower half mirrored, ``box[..., :W/2][..., ::-1]``, so both views have the medial side at W'
index 0 and look like the same hemisphere. In ``mni_box`` the split is at x = 0 mm, view 0 is the right
hemisphere (x ≥ 0) and view 1 the left one, mirrored exactly about the mid-sagittal plane (voxel centres
sit at ±v/2, ±3v/2, ...).

What the authors' code does (github.com/daniel4725/HyperFusion: ``preprocess_code``,
``data_utils/transformation.py``, ``data_utils/ADNI_data_handler.py``, ``pl_wrap.py``): their scans were
resampled to AFNI orientation ``RPI`` and stored transposed, so a stored 170×186×170 array is indexed
(z, y, x) with x running right->left. Their experiments load the data into RAM (``load2ram=True``), cutting
``img[25:89, 55:151, 21:149]`` (64×96×128) once. Training (transform ``hippo_crop_lNr_l2r``) flips that
crop along its last axis with probability ½ (MONAI ``RandFlip(spatial_axis=2)`` on a channel-first array),
keeps ``[..., 64:]`` and z-scores that half alone. Evaluation z-scores the whole 128-wide crop
(``hippo_crop_2sides``), splits it at ``mid = W // 2`` and runs the model on ``x[..., mid:]`` and on
``x[..., :mid].flip(-1)``, averaging the softmax outputs. So the half kept as is is the upper last-axis half
(the left hemisphere, given their right->left x axis) and the lower half is mirrored along the last axis;
both views have the midline at index 0. :func:`split_views` performs exactly these two index operations in
both modes, so views 0 / 1 of ``voxel_crop`` are their as-is / flipped halves.

Intensity: :func:`zscore_nonzero` is applied to the whole box before splitting, so both hemispheres of a
subject share one intensity scale (as in the authors' evaluation path) and a view is the same array whether
it is used for training or for evaluation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import nibabel as nib
import numpy as np

from hyperfusion.data.nifti import NiftiSource, load_nifti, scan_grid
from hyperfusion.errors import DataError

#: Changes whenever :func:`model_input` would produce different numbers for the same scan and geometry, so
#: caches keyed on it (``hyperfusion.data.volume_cache``) never serve stale arrays.
PREPROCESSING_VERSION = "hyperfusion-volume-1"

MODES = ("mni_box", "voxel_crop")
_VOXEL_SIZE_RANGE_MM = (0.2, 10.0)
_MAX_BOX_VOXELS = 400**3

Vec3 = tuple[float, float, float]
Idx3 = tuple[int, int, int]


@dataclass(frozen=True)
class Geometry:
    """Where a model looks, on which grid. Immutable; JSON-able through :meth:`to_dict` / :meth:`from_dict`.

    Attributes:
        mode: ``"mni_box"`` or ``"voxel_crop"``.
        voxel_size_mm: the model grid's isotropic voxel edge in mm (``mni_box``); nominal for ``voxel_crop``
            (the authors' scans are about 1 mm), where it is not used.
        box_min_mm, box_max_mm: the box's corners in MNI mm, RAS (x, y, z) (``mni_box`` only); each extent
            must be a whole number of voxels.
        crop_start, crop_stop: index bounds of the crop in the stored array's own axis order
            (``voxel_crop`` only).
        source_shape: for ``voxel_crop``, the exact array shape the crop indices were written for (the
            authors': 170×186×170); ``None`` accepts any array large enough.
        hemispheres: split the box along W into two mirrored views (requires an even W; for ``mni_box`` a
            box symmetric about x = 0).
    """

    mode: str
    voxel_size_mm: float = 1.0
    box_min_mm: Vec3 | None = None
    box_max_mm: Vec3 | None = None
    crop_start: Idx3 | None = None
    crop_stop: Idx3 | None = None
    source_shape: Idx3 | None = None
    hemispheres: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise DataError(f"geometry: unknown mode {self.mode!r}. Use one of {list(MODES)}")
        v = _number(self.voxel_size_mm, "voxel_size_mm")
        lo, hi = _VOXEL_SIZE_RANGE_MM
        if not lo <= v <= hi:
            raise DataError(f"geometry: voxel_size_mm = {v} is outside {lo}–{hi} mm. Use e.g. 1.0 or 2.0")
        object.__setattr__(self, "voxel_size_mm", v)
        if not isinstance(self.hemispheres, bool):
            raise DataError(f"geometry: hemispheres must be true or false, not {self.hemispheres!r}")
        if self.mode == "mni_box":
            self._check_mni_box()
        else:
            self._check_voxel_crop()
        shape = self.box_shape
        if math.prod(shape) > _MAX_BOX_VOXELS:
            raise DataError(f"geometry: the box {shape} has more than {_MAX_BOX_VOXELS} voxels. Shrink it")
        if self.hemispheres and shape[2] % 2:
            raise DataError(
                f"geometry: hemispheres need an even number of voxels along W, the box has {shape[2]}. "
                "Adjust the box or the voxel size, or set hemispheres to false"
            )

    def _check_mni_box(self) -> None:
        for unused in ("crop_start", "crop_stop", "source_shape"):
            if getattr(self, unused) is not None:
                raise DataError(f"geometry: {unused} belongs to mode 'voxel_crop', not 'mni_box'")
        lo = _vec3(self.box_min_mm, "box_min_mm", float)
        hi = _vec3(self.box_max_mm, "box_max_mm", float)
        object.__setattr__(self, "box_min_mm", lo)
        object.__setattr__(self, "box_max_mm", hi)
        for axis, a, b in zip("xyz", lo, hi):
            if not b > a:
                raise DataError(f"geometry: the box's {axis} range [{a}, {b}) mm is empty. Swap or fix it")
            n = (b - a) / self.voxel_size_mm
            if abs(n - round(n)) > 1e-6 * max(1.0, n):
                raise DataError(
                    f"geometry: the box's {axis} extent {b - a} mm is not a whole number of "
                    f"{self.voxel_size_mm} mm voxels. Adjust the box or the voxel size"
                )
        if self.hemispheres and lo[0] != -hi[0]:
            raise DataError(
                f"geometry: hemispheres are split at x = 0, so the box's x range must be symmetric, "
                f"not [{lo[0]}, {hi[0]}). Centre it or set hemispheres to false"
            )

    def _check_voxel_crop(self) -> None:
        for unused in ("box_min_mm", "box_max_mm"):
            if getattr(self, unused) is not None:
                raise DataError(f"geometry: {unused} belongs to mode 'mni_box', not 'voxel_crop'")
        start = _vec3(self.crop_start, "crop_start", int)
        stop = _vec3(self.crop_stop, "crop_stop", int)
        object.__setattr__(self, "crop_start", start)
        object.__setattr__(self, "crop_stop", stop)
        if any(a < 0 or b <= a for a, b in zip(start, stop)):
            raise DataError(
                f"geometry: crop {list(start)}:{list(stop)} is empty or negative. Fix the indices"
            )
        if self.source_shape is not None:
            shape = _vec3(self.source_shape, "source_shape", int)
            object.__setattr__(self, "source_shape", shape)
            if any(b > s for b, s in zip(stop, shape)):
                raise DataError(f"geometry: crop stop {list(stop)} lies outside source_shape {list(shape)}")

    # --- shapes -------------------------------------------------------------------------------------------
    @property
    def box_shape(self) -> Idx3:
        """Shape (D, H, W) of the full box: (z, y, x) voxels for ``mni_box``, the crop's size otherwise."""
        if self.mode == "mni_box":
            x, y, z = (round((b - a) / self.voxel_size_mm) for a, b in zip(self.box_min_mm, self.box_max_mm))
            return (z, y, x)
        return tuple(b - a for a, b in zip(self.crop_start, self.crop_stop))

    @property
    def input_shape(self) -> Idx3:
        """Shape (D, H, W') of one model input: half the box along W when ``hemispheres``."""
        d, h, w = self.box_shape
        return (d, h, w // 2) if self.hemispheres else (d, h, w)

    @property
    def n_views(self) -> int:
        """Number of model inputs per scan: 2 (hemispheres) or 1."""
        return 2 if self.hemispheres else 1

    # --- JSON ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists); ``Geometry.from_dict(g.to_dict()) == g``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Geometry:
        """Rebuild a geometry from :meth:`to_dict`'s output (e.g. a model card); refuses anything else."""
        if not isinstance(d, Mapping):
            raise DataError(f"geometry: expected a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"geometry: unknown field(s) {unknown}. Known fields: {sorted(known)}")
        if "mode" not in d:
            raise DataError("geometry: the field 'mode' is missing")
        if not isinstance(d["mode"], str):
            raise DataError(f"geometry: mode must be a string, not {d['mode']!r}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DataError(f"geometry: {name} must be a number, not {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise DataError(f"geometry: {name} must be finite, not {value}")
    return value


def _vec3(value: Any, name: str, kind: type) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise DataError(f"geometry: {name} must be three numbers, not {value!r}")
    if kind is int:
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in value):
            raise DataError(f"geometry: {name} must be three integers, not {value!r}")
        return tuple(int(v) for v in value)
    return tuple(_number(v, name) for v in value)


# --- presets --------------------------------------------------------------------------------------------
def ad_box(voxel_size_mm: float = 2.0) -> Geometry:
    """The paper-equivalent two-hippocampus box in MNI mm, split into hemispheres at x = 0.

    x ∈ [−64, 64), y ∈ [−55, 41), z ∈ [−55, 9) mm (docs/models.md §1): box (D, H, W) = 64×96×128 at 1 mm,
    32×48×64 at 2 mm; each view is half as wide.
    """
    return Geometry(
        mode="mni_box",
        voxel_size_mm=voxel_size_mm,
        box_min_mm=(-64.0, -55.0, -55.0),
        box_max_mm=(64.0, 41.0, 9.0),
        hemispheres=True,
    )


def brain_box(voxel_size_mm: float = 2.0) -> Geometry:
    """The whole brain in MNI mm, one view (no hemisphere split): the brain-age task's input.

    x ∈ [−90, 90), y ∈ [−126, 90), z ∈ [−72, 108) mm, the MNI152 template's field of view trimmed to whole
    voxels: box (D, H, W) = 90×108×90 at 2 mm (the paper's input is about 90×120×99 voxels).
    """
    return Geometry(
        mode="mni_box",
        voxel_size_mm=voxel_size_mm,
        box_min_mm=(-90.0, -126.0, -72.0),
        box_max_mm=(90.0, 90.0, 108.0),
        hemispheres=False,
    )


def authors_crop() -> Geometry:
    """The authors' fixed crop ``[25:89, 55:151, 21:149]`` of their 170×186×170 bounding-box-centred arrays.

    Box 64×96×128, split along the last axis into two 64×96×64 views: view 0 = ``[..., 64:]`` as is, view 1
    = ``[..., :64]`` mirrored, as in their evaluation code (see the module docstring).
    """
    return Geometry(
        mode="voxel_crop",
        voxel_size_mm=1.0,
        crop_start=(25, 55, 21),
        crop_stop=(89, 151, 149),
        source_shape=(170, 186, 170),
        hemispheres=True,
    )


# --- grids ----------------------------------------------------------------------------------------------
def box_affine(geometry: Geometry, reference: NiftiSource | None = None) -> np.ndarray:
    """4×4 affine mapping a full-box voxel index (d, h, w) to world mm (x, y, z).

    ``mni_box``: MNI mm, voxel centres at ``min + (i + ½)·v``. ``voxel_crop`` has no fixed place in the
    world: it needs the ``reference`` scan the crop is taken from, and returns its affine shifted to the
    crop's first voxel.
    """
    if geometry.mode == "voxel_crop":
        if reference is None:
            raise DataError("box_affine: a voxel_crop geometry has no fixed world position; pass the scan")
        _, ref_affine = _reference_grid(reference)
        shift = np.eye(4)
        shift[:3, 3] = geometry.crop_start
        return ref_affine @ shift
    v = geometry.voxel_size_mm
    affine = np.zeros((4, 4))
    affine[0, 2] = affine[1, 1] = affine[2, 0] = v  # d -> z, h -> y, w -> x
    affine[:3, 3] = np.asarray(geometry.box_min_mm) + v / 2
    affine[3, 3] = 1.0
    return affine


def resample_box(image: NiftiSource, geometry: Geometry, order: int = 1) -> np.ndarray:
    """Sample the geometry's full box from a scan: float32 array (D, H, W).

    ``mni_box``: each box voxel centre is mapped through the scan's affine into its voxel grid and
    interpolated with spline ``order`` (1 = trilinear) by ``scipy.ndimage.affine_transform``; any voxel
    size or orientation works, and box voxels outside the scan are 0. ``voxel_crop``: a plain index crop of
    the stored array, affine ignored.
    """
    label = _label(image, "scan")
    img = load_nifti(image, name=label)
    data = img.get_fdata(dtype=np.float32)
    if geometry.mode == "voxel_crop":
        _check_crop_fits(data.shape, geometry, label)
        return np.array(data[_crop_slices(geometry)], dtype=np.float32)
    # Output index -> world (box affine) -> scan index (inverse scan affine): one matrix, applied by scipy.
    to_scan = np.linalg.inv(img.affine) @ box_affine(geometry)
    from scipy import ndimage  # 0.25 s: imported when a scan is resampled, not with the Predictor

    return ndimage.affine_transform(
        data,
        to_scan[:3, :3],
        offset=to_scan[:3, 3],
        output_shape=geometry.box_shape,
        output=np.float32,
        order=order,
        mode="constant",
        cval=0.0,
        prefilter=order > 1,
    )


def _crop_slices(geometry: Geometry) -> tuple[slice, slice, slice]:
    return tuple(slice(a, b) for a, b in zip(geometry.crop_start, geometry.crop_stop))


def _check_crop_fits(shape: tuple[int, ...], geometry: Geometry, label: str) -> None:
    shape = tuple(shape[:3])
    expected = geometry.source_shape
    if expected is not None and shape != expected:
        raise DataError(
            f"{label}: shape {shape} is not the {expected} the voxel crop was written for. This geometry "
            "expects the authors' bounding-box-centred arrays; use an mni_box geometry for registered scans"
        )
    if any(b > s for b, s in zip(geometry.crop_stop, shape)):
        raise DataError(f"{label}: shape {shape} is too small for the crop up to {geometry.crop_stop}")


# --- hemispheres ----------------------------------------------------------------------------------------
def split_views(box: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Full box (..., D, H, W) -> views (..., n_views, D, H, W'), C-contiguous.

    View 0 = ``box[..., W/2:]`` as is (right hemisphere in ``mni_box``); view 1 = ``box[..., :W/2]``
    mirrored along W, so its medial side is at W' index 0 too. Without hemispheres: one view, the box.
    """
    box = np.asarray(box)
    if tuple(box.shape[-3:]) != geometry.box_shape:
        raise DataError(f"split_views: expected a box of shape {geometry.box_shape}, got {box.shape}")
    if not geometry.hemispheres:
        return np.ascontiguousarray(box[..., None, :, :, :])
    half = geometry.box_shape[2] // 2
    return np.ascontiguousarray(np.stack([box[..., half:], box[..., half - 1 :: -1]], axis=-4))


def merge_views(views: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Exact inverse of :func:`split_views`: views (..., n_views, D, H, W') -> box (..., D, H, W)."""
    views = np.asarray(views)
    expected = (geometry.n_views, *geometry.input_shape)
    if tuple(views.shape[-4:]) != expected:
        raise DataError(f"merge_views: expected views of shape {expected}, got {views.shape}")
    if not geometry.hemispheres:
        return np.ascontiguousarray(views[..., 0, :, :, :])
    return np.concatenate([views[..., 1, :, :, ::-1], views[..., 0, :, :, :]], axis=-1)


# --- intensity and the whole pipeline -------------------------------------------------------------------
def zscore_nonzero(arr: np.ndarray) -> np.ndarray:
    """Z-score over the non-zero voxels, zeros left at 0: MONAI ``NormalizeIntensity(nonzero=True)``.

    Mean and (population) standard deviation are taken over ``arr != 0``; a zero deviation divides by 1, an
    all-zero array is returned unchanged. Returns a new float32 array of the same shape.
    """
    out = np.array(arr, dtype=np.float32)
    mask = out != 0
    if not mask.any():
        return out
    values = out[mask].astype(np.float64)  # float64 sums: stable over millions of voxels
    mean = values.mean()
    std = values.std()
    out[mask] = ((values - mean) / (std if std != 0 else 1.0)).astype(np.float32)
    return out


#: Least share of the model box that a registered scan's field of view must cover, and least share of the
#: box's voxels that must hold signal (a skull-stripped brain, not background). Both are low on purpose: a
#: scan cropped to the hippocampal box covers about 11% of the whole-brain box and is still usable there.
MIN_BOX_COVERAGE = 0.05
MIN_BOX_SIGNAL = 0.01


def check_registered(
    image: NiftiSource, geometry: Geometry, box: np.ndarray | None = None, *, name: str | None = None
) -> None:
    """Refuse a scan that is not where an MNI152-registered brain would be (``mni_box`` only).

    Two checks, both in world mm through the scan's affine: at least :data:`MIN_BOX_COVERAGE` of the box's
    voxel centres (sampled on a coarse 8×8×8 lattice) must lie inside the scan's field of view, and, when the
    resampled ``box`` is given, at least :data:`MIN_BOX_SIGNAL` of its voxels must be non-zero. A scan in
    scanner coordinates, far from the MNI origin, fails the first; a brain shifted out of a large empty field
    of view fails the second. Any voxel size or orientation (oblique included) passes when registered.
    ``name``: how the messages call the scan (default: its path or file name).
    """
    if geometry.mode != "mni_box":
        return
    label = name or _label(image, "scan")
    shape, affine = scan_grid(image, name=label)
    lattice = [np.linspace(0, n - 1, min(n, 8)) for n in geometry.box_shape]
    idx = np.stack(np.meshgrid(*lattice, indexing="ij"), axis=0).reshape(3, -1)
    to_scan = np.linalg.inv(affine) @ box_affine(geometry)
    ijk = to_scan[:3, :3] @ idx + to_scan[:3, 3:4]
    inside = np.all((ijk >= -0.5) & (ijk <= np.asarray(shape).reshape(3, 1) - 0.5), axis=0)
    coverage = float(inside.mean())
    fix = "Register it to MNI152 first (e.g. FSL flirt/fnirt, ANTs antsRegistrationSyN) and check its affine"
    if coverage < MIN_BOX_COVERAGE:
        raise DataError(
            f"{label}: not registered to MNI152: only {coverage:.0%} of the model's box "
            f"{list(geometry.box_min_mm)}–{list(geometry.box_max_mm)} mm lies inside the scan. {fix}"
        )
    if box is not None and np.count_nonzero(box) < MIN_BOX_SIGNAL * box.size:
        raise DataError(
            f"{label}: not registered to MNI152: the model's box {list(geometry.box_min_mm)}–"
            f"{list(geometry.box_max_mm)} mm holds no brain (the brain lies outside it). {fix}"
        )


def model_input(source: NiftiSource, geometry: Geometry, *, name: str | None = None) -> np.ndarray:
    """A scan as the network sees it: float32 (n_views, 1, D, H, W'), C-contiguous.

    load_nifti -> check_registered -> resample_box -> zscore_nonzero over the whole box -> split_views ->
    channel axis. ``name``: how messages call the scan (default: its path; an upload's bytes: its file name).
    """
    label = name or _label(source, "scan")
    image = load_nifti(source, name=label)
    # the loaded image has no file name of its own: every check names the source
    check_registered(image, geometry, name=label)
    box = resample_box(image, geometry)
    check_registered(image, geometry, box, name=label)
    box = zscore_nonzero(box)
    return np.ascontiguousarray(split_views(box, geometry)[:, None])


# --- back to the subject ------------------------------------------------------------------------------
def to_subject_space(
    arr: np.ndarray, geometry: Geometry, reference: NiftiSource, order: int = 1
) -> nib.Nifti1Image:
    """Map an array on the model grid back onto the reference scan's own grid (e.g. an attribution map).

    Args:
        arr: views (n_views, D, H, W') or (n_views, 1, D, H, W'), or a full box (D, H, W); the mirror of
            view 1 is undone.
        geometry: the geometry ``arr`` was produced with.
        reference: the subject's scan (path, bytes or nibabel image): the output takes its shape and affine.
        order: spline order of the interpolation (1 = trilinear).

    Returns:
        float32 ``Nifti1Image`` on the reference grid with the reference affine; 0 outside the box. It opens
        over the subject's scan in FSLeyes / ITK-SNAP.
    """
    box = _as_box(arr, geometry)
    label = _label(reference, "reference scan")
    # Only the grid of an image object is needed: its voxels are not decoded.
    ref = (
        reference
        if isinstance(reference, nib.spatialimages.SpatialImage)
        else load_nifti(reference, name=label)
    )
    shape, ref_affine = scan_grid(ref, name=label)
    out = np.zeros(shape, dtype=np.float32)
    if geometry.mode == "voxel_crop":
        _check_crop_fits(shape, geometry, label)
        out[_crop_slices(geometry)] = box
    else:
        _fill_from_box(out, box, geometry, ref_affine, order)
    return new_image_like(out, ref_affine, ref.header)


def new_image_like(
    data: np.ndarray, affine: np.ndarray, ref_header: Any = None, description: str = ""
) -> nib.Nifti1Image:
    """A float32 NIfTI image of ``data`` on a reference scan's grid (``affine``) that viewers place exactly
    where the reference is: a map kept as an image with its affine.

    The sform and qform codes of the reference header (scanner, aligned, MNI, ...) are kept, so FSLeyes /
    ITK-SNAP treat both as the same space ("aligned" when it says nothing); the qform is left out when the
    affine has shear it cannot represent. ``description`` goes to the header's ``descrip`` (79 characters).
    """
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    hdr = img.header
    codes = {"sform_code": 2, "qform_code": 2}  # "aligned" when the reference says nothing
    if isinstance(ref_header, nib.Nifti1Header):
        codes = {k: int(ref_header[k]) or v for k, v in codes.items()}
    hdr.set_sform(affine, code=codes["sform_code"])
    hdr.set_qform(affine, code=codes["qform_code"])
    if not np.allclose(hdr.get_qform(), affine, atol=1e-4):
        hdr.set_qform(affine, code=0)
    hdr.set_xyzt_units("mm")
    if description:
        hdr["descrip"] = description[:79]
    return img


def _as_box(arr: np.ndarray, geometry: Geometry) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float32)
    views = (geometry.n_views, *geometry.input_shape)
    if arr.shape == geometry.box_shape:
        return arr
    if arr.shape == views:
        return merge_views(arr, geometry)
    if arr.shape == (views[0], 1, *views[1:]):
        return merge_views(arr[:, 0], geometry)
    raise DataError(
        f"to_subject_space: array of shape {arr.shape} does not fit the geometry: expected a box "
        f"{geometry.box_shape} or views {views} (optionally with a channel axis of 1)"
    )


def _fill_from_box(
    out: np.ndarray, box: np.ndarray, geometry: Geometry, ref_affine: np.ndarray, order: int
) -> None:
    """Interpolate ``box`` at the reference voxels that fall inside the box's cells, in place."""
    to_box = np.linalg.inv(box_affine(geometry)) @ ref_affine
    # Only reference voxels near the box can land in it: bound them by the box's corners, so the cost
    # scales with the box, not with the whole scan.
    n = np.asarray(geometry.box_shape)
    corners = np.array(np.meshgrid(*[(-0.5, k - 0.5) for k in n], indexing="ij")).reshape(3, 8).T
    in_ref = (np.linalg.inv(to_box) @ np.c_[corners, np.ones(8)].T)[:3]
    lo = np.clip(np.floor(in_ref.min(axis=1)).astype(int) - 1, 0, out.shape)
    hi = np.clip(np.ceil(in_ref.max(axis=1)).astype(int) + 2, 0, out.shape)
    if np.any(hi <= lo):
        return
    grid = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij"), axis=0)
    coords = np.tensordot(to_box[:3, :3], grid, axes=1) + to_box[:3, 3].reshape(3, 1, 1, 1)
    # A reference voxel is inside the box when it falls in a box cell [-½, n-½); "nearest" lets cells at
    # the box's faces use their own value instead of fading to 0 in the outer half voxel.
    inside = np.all((coords >= -0.5) & (coords < n.reshape(3, 1, 1, 1) - 0.5), axis=0)
    from scipy import ndimage

    values = ndimage.map_coordinates(box, coords, output=np.float32, order=order, mode="nearest")
    region = tuple(slice(a, b) for a, b in zip(lo, hi))
    out[region] = np.where(inside, values, 0.0)


def _reference_grid(reference: NiftiSource) -> tuple[tuple[int, int, int], np.ndarray]:
    return scan_grid(reference, name=_label(reference, "reference scan"))


def _label(source: NiftiSource, default: str) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, nib.spatialimages.SpatialImage):
        return source.get_filename() or default
    return default
