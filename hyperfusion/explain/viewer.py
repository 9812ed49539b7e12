"""The interactive viewer's data: what a browser needs to draw three linked orthogonal views of a scan with
attribution overlays, and what a cursor position reads.

The dashboard's viewer draws in the browser, so a crosshair move, a zoom, a pan or a slice scroll costs no
server round trip. What it is sent stays small: the scan resampled to a display grid of about 2 mm (block
means, cropped to the brain's bounding box) as gzipped uint8, each map on that grid as gzipped int16 over the
box where it is non-zero, the Desikan-Killiany labels (the atlas of :mod:`hyperfusion.explain.regions`) as
gzipped uint8 indices, and the colour maps as 256-entry tables. Thresholds and colour ranges are numbers
computed here (:func:`limits`), so a threshold change re-sends no volume.

:class:`View` is what a shared link or report carries of the view (cursor, zoom, pan, threshold, sign, colour
map, overlays, orientation, opacity), as short text (:meth:`View.to_text`, :meth:`View.from_text`).
:func:`readout` is the text at the cursor: the scan value, each map's value, the mm coordinate and the atlas
label, computed on the full-resolution data.
"""

from __future__ import annotations

import base64
import csv
import functools
import gzip
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from hyperfusion.explain import regions
from hyperfusion.explain.views import Volume, colormap, overlay_limits

__all__ = [
    "LAYERS",
    "SIGNS",
    "MapLayer",
    "Prepared",
    "View",
    "atlas_label",
    "coarse_caption",
    "display_step",
    "downsample",
    "fingerprint",
    "limits",
    "peak_mm",
    "prepare",
    "readout",
    "readout_text",
    "scene",
    "snapshot_png",
]

#: How a map is shown: |map|, only its positive or negative part, or both signs on a diverging colour map.
SIGNS: dict[str, str] = {
    "absolute": "|map|",
    "positive": "positive only",
    "negative": "negative only",
    "both": "both signs",
}
#: Overlays that can be toggled: the attribution maps, the difference, the synthetic truth map, atlas outlines.
LAYERS: dict[str, str] = {
    "map": "attribution",
    "difference": "difference",
    "truth": "synthetic truth map",
    "atlas": "atlas outlines",
}
DISPLAY_MM = 2.0  # the display grid's voxel size (at least the scan's own)


def _floats(text: str, n: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split(","))
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise ValueError(f"expected {n} finite numbers separated by commas")
    return values


@dataclass(frozen=True)
class View:
    """What the viewer shows, apart from the maps themselves.

    Attributes:
        cursor: the crosshair in world mm (RAS), or None (the first map's peak, else the scan's centre).
        zoom: 1 shows the whole scan; up to 16.
        centre: the point of world mm at the middle of every view (pan), or None (the scan's centre).
        threshold: "90%" (percentile of the map's non-zero |values|) or an absolute value "0.002".
        sign: a key of :data:`SIGNS`.
        cmap: a colour map name (hyperfusion.explain.views.colormap).
        layers: the overlays drawn, keys of :data:`LAYERS`.
        radiological: the subject's right on the viewer's left.
        opacity: of the maps over the scan, 0 to 1.
    """

    cursor: tuple[float, float, float] | None = None
    zoom: float = 1.0
    centre: tuple[float, float, float] | None = None
    threshold: str = "90%"
    sign: str = "absolute"
    cmap: str = "hot"
    layers: tuple[str, ...] = ("map", "difference")
    radiological: bool = True
    opacity: float = 0.6

    def percentile(self) -> float | None:
        """The threshold as a percentile, or None when it is an absolute value."""
        return float(self.threshold[:-1]) if self.threshold.endswith("%") else None

    def to_text(self) -> dict[str, str]:
        """The view as short text values (a link's query parameters, a scenario file)."""
        out = {
            "zoom": f"{self.zoom:g}",
            "threshold": self.threshold,
            "sign": self.sign,
            "cmap": self.cmap,
            "layers": ",".join(self.layers) or "none",
            "orientation": "radiological" if self.radiological else "neurological",
            "opacity": f"{self.opacity:g}",
        }
        if self.cursor is not None:
            out["cursor"] = ",".join(f"{v:.4g}" for v in self.cursor)
        if self.centre is not None:
            out["centre"] = ",".join(f"{v:.4g}" for v in self.centre)
        return out

    @classmethod
    def from_text(cls, text: Mapping[str, str], base: View | None = None) -> tuple[View, list[str]]:
        """A view from text values (those missing keep ``base``'s), and each problem found: a bad value is
        named and left out, never applied half way."""
        view, problems = base or cls(), []
        parsers = {
            "cursor": lambda v: _floats(v, 3),
            "centre": lambda v: _floats(v, 3),
            "zoom": _zoom,
            "threshold": _threshold,
            "sign": lambda v: _one_of(v, SIGNS),
            "cmap": _cmap,
            "layers": _layers,
            "orientation": lambda v: _one_of(v, ("radiological", "neurological")) == "radiological",
            "opacity": _opacity,
        }
        names = {"orientation": "radiological"}
        for key, parse in parsers.items():
            if key not in text:
                continue
            try:
                view = replace(view, **{names.get(key, key): parse(str(text[key]))})
            except (ValueError, KeyError) as exc:
                problems.append(f"view {key}={text[key]!r} left out: {exc}")
        return view, problems


def _zoom(text: str) -> float:
    value = float(text)
    if not 1.0 <= value <= 16.0:
        raise ValueError("zoom is between 1 and 16")
    return value


def _opacity(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("opacity is between 0 and 1")
    return value


def _threshold(text: str) -> str:
    text = text.strip()
    value = float(text[:-1] if text.endswith("%") else text)
    if not math.isfinite(value) or value < 0 or (text.endswith("%") and value >= 100):
        raise ValueError("a threshold is a percentile below 100 (e.g. 90%) or an absolute value ≥ 0")
    return f"{value:g}%" if text.endswith("%") else f"{value:g}"


def _one_of(text: str, options) -> str:
    if text not in options:
        raise ValueError(f"expected one of {', '.join(options)}")
    return text


def _cmap(text: str) -> str:
    colormap(text)  # KeyError for an unknown name
    return text


def _layers(text: str) -> tuple[str, ...]:
    names = tuple(v for v in text.split(",") if v and v != "none")
    for name in names:
        _one_of(name, LAYERS)
    return names


# --- the display grid ----------------------------------------------------------------------------------------
def display_step(volume: Volume, mm: float = DISPLAY_MM) -> tuple[int, int, int]:
    """The block size per axis that brings the scan's voxels to about ``mm`` (1 for a coarser scan)."""
    return tuple(max(1, int(round(mm / abs(float(volume.affine[a, a]))))) for a in range(3))


def downsample(data: np.ndarray, step: Sequence[int]) -> np.ndarray:
    """Block means of ``step`` voxels per axis (the last partial block of an axis is averaged too)."""
    out = np.asarray(data, dtype=np.float32)
    for axis, k in enumerate(step):
        if k <= 1:
            continue
        n = out.shape[axis]
        starts = np.arange(0, n, k)
        sums = np.add.reduceat(out, starts, axis=axis)
        counts = np.minimum(starts + k, n) - starts
        shape = [1, 1, 1]
        shape[axis] = len(counts)
        out = sums / counts.reshape(shape)
    return out


@dataclass(frozen=True)
class _Grid:
    """The display grid: ``shape`` voxels whose centres lie at ``origin + index * spacing`` (RAS mm)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    @property
    def affine(self) -> np.ndarray:
        return np.array(
            [
                [self.spacing[0], 0, 0, self.origin[0]],
                [0, self.spacing[1], 0, self.origin[1]],
                [0, 0, self.spacing[2], self.origin[2]],
                [0, 0, 0, 1.0],
            ]
        )


def _grid_and_crop(volume: Volume, step) -> tuple[_Grid, tuple[slice, ...]]:
    """The downsampled grid of the scan, cropped to its non-zero bounding box (one block of margin)."""
    small = downsample(volume.data, step)
    nonzero = np.argwhere(small != 0)
    if nonzero.size:
        lo = np.maximum(nonzero.min(axis=0) - 1, 0)
        hi = np.minimum(nonzero.max(axis=0) + 2, small.shape)
    else:
        lo, hi = np.zeros(3, int), np.array(small.shape)
    crop = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    spacing = tuple(float(volume.affine[a, a]) * step[a] for a in range(3))
    first = [  # the centre of the first block kept
        float(volume.affine[a, 3] + volume.affine[a, a] * (lo[a] * step[a] + (step[a] - 1) / 2))
        for a in range(3)
    ]
    return _Grid(tuple(int(b - a) for a, b in zip(lo, hi)), spacing, tuple(first)), crop


def _encode(array: np.ndarray) -> str:
    """C-order bytes with x fastest (the browser indexes ``i + nx * (j + ny * k)``), gzipped, base64."""
    raw = np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)).tobytes()
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode()


def _ident(*parts: object) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p.tobytes() if isinstance(p, np.ndarray) else repr(p).encode())
    return h.hexdigest()[:16]


def _int16_box(data: np.ndarray) -> dict[str, Any]:
    """A map on the display grid as int16 over the box where it is non-zero, with its scale."""
    nonzero = np.argwhere(data != 0)
    if not nonzero.size:
        return {"box": [0, 0, 0, 0, 0, 0], "scale": 0.0, "data": "", "id": "empty"}
    lo, hi = nonzero.min(axis=0), nonzero.max(axis=0) + 1
    part = data[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    scale = float(np.abs(part).max()) / 32767.0
    q = np.round(part / scale).astype(np.int16)
    return {"box": [*map(int, lo), *map(int, hi - lo)], "scale": scale, "data": _encode(q), "id": _ident(q)}


def _lut(name: str) -> str:
    rgb = (colormap(name)(np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)
    return base64.b64encode(rgb.tobytes()).decode()


# --- the atlas -----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _dk_names() -> dict[int, str]:
    path = regions.atlas_path()
    if path is None:
        return {}
    table = path.parent / "labels_desikan_killiany.csv"
    if not table.is_file():
        return {}
    with table.open(newline="") as f:
        return {int(row["index"]): row["name"] for row in csv.DictReader(f)}


def _labels_on(affine: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, list[str], str]:
    """Atlas labels at the voxel centres of a grid: (uint8 indices into names, names ("" = none), source)."""
    atlas = regions._atlas()
    names = _dk_names()
    if atlas is not None and names:
        data, atlas_affine = atlas
        to_atlas = np.linalg.inv(atlas_affine) @ affine
        dk = ndimage.affine_transform(
            data, to_atlas[:3, :3], offset=to_atlas[:3, 3], output_shape=shape, order=0, mode="constant"
        )
        ids = np.unique(dk)
        index = np.searchsorted(ids, dk).astype(np.uint8 if len(ids) < 256 else np.uint16)
        label_names = ["" if i == 0 else names.get(int(i), f"label {int(i)}") for i in ids]
        return index, label_names, "Desikan-Killiany atlas"
    labels, _ = regions._labels(affine, shape, fallback=True)
    label_names = [n if n != "rest" else "" for n in regions.REGION_NAMES]
    return labels.astype(np.uint8), label_names, "approximate regions (the atlas is not installed)"


def atlas_label(mm: Sequence[float]) -> str:
    """The Desikan-Killiany label at a point of MNI mm ("" outside every label); the approximate regions of
    :mod:`hyperfusion.explain.regions` when the atlas is not installed."""
    affine = np.eye(4)
    affine[:3, 3] = np.asarray(mm, dtype=float)
    index, names, _ = _labels_on(affine, (1, 1, 1))
    return names[int(index[0, 0, 0])]


# --- thresholds ------------------------------------------------------------------------------------------------
def limits(maps: np.ndarray | Sequence[np.ndarray], view: View) -> tuple[float, float]:
    """(threshold, vmax) of a map (or several, pooled: one colour scale) under the view: |values| below the
    threshold are hidden; colours saturate at vmax (the 99.5th percentile of |map|, never below the threshold)."""
    percentile = view.percentile()
    threshold, vmax = overlay_limits(maps, percentile if percentile is not None else 0.0)
    if percentile is None:
        threshold = float(view.threshold)
    return threshold, max(vmax, threshold)


@dataclass(eq=False)
class MapLayer:
    """One map of the viewer: a row of three views. ``data`` is on the scan's RAS grid (``Volume.data``)."""

    data: np.ndarray
    title: str
    label: str  # what the colour bar measures, e.g. "|Saliency| of P(AD)"
    difference: bool = False


@dataclass(eq=False)
class Prepared:
    """The part of a scene that depends on the data only (not on the view): built once per scan and maps."""

    grid: _Grid
    scan: np.ndarray  # the scan on the display grid
    payload: dict[str, Any]  # the encoded scan, atlas, truth and each map's data
    small: list[np.ndarray]  # each map on the display grid
    maps: list[MapLayer]


def fingerprint(array: np.ndarray) -> str:
    """A short content hash of an array (to tell whether a map changed)."""
    return _ident(np.ascontiguousarray(array), array.shape, str(array.dtype))


def prepare(scan: Volume, maps: Sequence[MapLayer], truth: Volume | None = None) -> Prepared:
    """Resample, quantise and encode the scan, the maps, the atlas labels and the truth map for the browser."""
    step = display_step(scan)
    grid, crop = _grid_and_crop(scan, step)
    small = downsample(scan.data, step)[crop]
    brain = small[small != 0]
    lo, hi = (float(v) for v in np.percentile(brain, [1, 99.5])) if brain.size else (0.0, 1.0)
    grey = np.clip((small - lo) / ((hi - lo) or 1.0) * 255, 0, 255).round().astype(np.uint8)
    labels, names, source = _labels_on(grid.affine, grid.shape)
    values = [downsample(m.data, step)[crop] for m in maps]
    payload: dict[str, Any] = {
        "shape": list(grid.shape),
        "spacing": list(grid.spacing),
        "origin": list(grid.origin),
        "scan": {"data": _encode(grey), "id": _ident(grey), "window": [lo, hi]},
        "atlas": {"data": _encode(labels), "id": _ident(labels), "names": names, "source": source},
        "rows": [_int16_box(v) for v in values],
        "truth": None,
    }
    if truth is not None:
        resampled = _resample(truth, grid)
        payload["truth"] = {**_int16_box(resampled), "vmax": float(np.abs(resampled).max())}
    return Prepared(grid, small, payload, values, list(maps))


def scene(prepared: Prepared, view: View, *, shared: bool = False, revision: int = 0) -> dict[str, Any]:
    """Everything the browser viewer draws, as JSON-ready values: the display grid, the scan, one row per map
    (its data, threshold, colour range and colour table), the truth map, the atlas labels and the view.
    ``shared``: the maps (not a difference) share one colour scale and threshold, pooled over them."""

    def shown(m: MapLayer, v: np.ndarray) -> np.ndarray:
        return v if m.difference or view.sign != "absolute" else np.abs(v)

    pooled = [shown(m, v) for m, v in zip(prepared.maps, prepared.small) if not m.difference]
    common = limits(pooled, view) if shared and pooled else None
    rows = []
    for m, v, encoded in zip(prepared.maps, prepared.small, prepared.payload["rows"]):
        sign = "both" if m.difference else view.sign
        threshold, vmax = common if common and not m.difference else limits(shown(m, v), view)
        cmap = "cold_hot" if m.difference and view.sign != "both" else view.cmap  # a difference is signed
        rows.append(
            {
                **encoded,
                "title": m.title,
                "label": m.label,
                "sign": sign,
                "threshold": threshold,
                "vmax": vmax,
                "range": [float(m.data.min()), float(m.data.max())] if m.data.size else [0.0, 0.0],
                "lut": _lut(cmap),
                "difference": m.difference,
            }
        )
    return {**prepared.payload, "rows": rows, "view": _view_json(view, revision)}


def snapshot_png(prepared: Prepared, view: View, *, shared: bool = False) -> bytes:
    """The view as a static PNG (downloads and the HTML report): one row of three slices through the cursor
    per map, on the display grid, with the view's thresholds, colour maps and orientation."""
    from hyperfusion.explain.views import Layer, render_rows

    drawn = scene(prepared, view, shared=shared)["rows"]
    volume = Volume(prepared.scan, prepared.grid.affine)
    layers = []
    for m, values, row in zip(prepared.maps, prepared.small, drawn):
        shown = {"absolute": np.abs(values), "positive": np.clip(values, 0, None)}.get(row["sign"], values)
        if row["sign"] == "negative":
            shown = np.clip(-values, 0, None)
        hidden = (
            row["difference"]
            and "difference" not in view.layers
            or not m.difference
            and "map" not in view.layers
        )
        cmap = "cold_hot" if row["sign"] == "both" and m.difference and view.sign != "both" else view.cmap
        layers.append(
            Layer(
                np.zeros_like(shown) if hidden else shown,
                m.title,
                f"{m.label} (shown: |value| ≥ {row['threshold']:.3g})",
                cmap,
                row["sign"] == "both",
                row["threshold"],
                row["vmax"],
            )
        )
    cursor = (
        volume.index_of(view.cursor) if view.cursor is not None else tuple(n // 2 for n in volume.data.shape)
    )
    return render_rows(volume, layers, cursor, radiological=view.radiological, opacity=view.opacity)


def _resample(volume: Volume, grid: _Grid) -> np.ndarray:
    to_source = np.linalg.inv(volume.affine) @ grid.affine
    return ndimage.affine_transform(
        volume.data, to_source[:3, :3], offset=to_source[:3, 3], output_shape=grid.shape, order=1, cval=0.0
    )


def _view_json(view: View, revision: int) -> dict[str, Any]:
    return {
        "revision": revision,
        "cursor": list(view.cursor) if view.cursor is not None else None,
        "centre": list(view.centre) if view.centre is not None else None,
        "zoom": view.zoom,
        "radiological": view.radiological,
        "opacity": view.opacity,
        "layers": list(view.layers),
    }


def peak_mm(scan: Volume, data: np.ndarray) -> tuple[float, float, float]:
    """The world mm of a map's largest |value| (``data`` on ``scan``'s grid); the scan's centre for a zero map."""
    if not np.any(data):
        index = tuple(n // 2 for n in scan.data.shape)
    else:
        index = np.unravel_index(int(np.argmax(np.abs(data))), data.shape)
    return tuple(float(v) for v in scan.mm_of(index))


# --- the readout at the cursor -------------------------------------------------------------------------------
def readout(scan: Volume, maps: Sequence[MapLayer], mm: Sequence[float]) -> dict[str, Any]:
    """What the cursor reads at world ``mm``: the nearest voxel's mm, the scan value, each map's value and
    the atlas label, on the full-resolution data. Outside the scan, ``inside`` is False."""
    ijk = np.linalg.solve(scan.affine, np.r_[np.asarray(mm, dtype=float), 1.0])[:3]
    nearest = tuple(int(round(v)) for v in ijk)
    inside = all(0 <= v < n for v, n in zip(nearest, scan.data.shape))
    index = tuple(int(np.clip(v, 0, n - 1)) for v, n in zip(nearest, scan.data.shape))
    at = scan.mm_of(index)
    return {
        "inside": inside,
        "mm": [float(v) for v in at],
        "voxel": list(index),
        "scan": float(scan.data[index]),
        "maps": {m.title: float(m.data[index]) for m in maps},
        "label": atlas_label(at),
    }


def readout_text(r: Mapping[str, Any]) -> str:
    """A readout as one line: "x = −24, y = −22, z = −14 mm · scan 0.84 · hyperfusion 0.0012 · Left-Hippocampus"."""
    x, y, z = (f"{v:.0f}".replace("-", "−") for v in r["mm"])
    parts = [f"x = {x}, y = {y}, z = {z} mm (MNI)", f"scan {r['scan']:.3g}"]
    parts += [f"{name} {value:.3g}" for name, value in r["maps"].items()]
    parts.append(r["label"] or "no atlas label")
    return (" · ".join(parts)) + ("" if r["inside"] else " (outside the scan: nearest voxel)")


def coarse_caption(coarse: Mapping[str, Any] | None) -> str:
    """Grad-CAM's coarse grid in words: the layer, its cells and their size, and how the map was upsampled."""
    if not coarse:
        return ""
    shape = " × ".join(str(int(v)) for v in coarse.get("shape", []))
    cells = " × ".join(f"{float(v):.0f}" for v in coarse.get("voxel_mm", []))
    return (
        f"Grad-CAM reads layer {coarse.get('layer', '?')}, whose feature map is a grid of {shape} cells per "
        f"hemisphere view (each cell about {cells} mm): finer detail than a cell is not in the map. It is "
        "upsampled trilinearly to the input and shown with linear interpolation, so its smooth gradients are "
        "interpolation, not finer evidence."
    )
