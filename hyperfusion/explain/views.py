"""Three orthogonal views of a scan with attribution overlays, drawn as one PNG (the dashboard's Attribution
page and the HTML report show it; only these slices leave a server).

Volumes are reoriented to the closest RAS+ grid (nibabel ``as_closest_canonical``), so array axes are x
(increasing towards the subject's right), y (anterior) and z (superior), and world millimetres follow from the
affine. Radiological display puts the subject's right on the viewer's left; neurological the reverse.

One map is one row of three views; several maps (two models, or a map and a difference) are stacked as rows of
one figure that share the scan, the crosshair and the orientation, each row with its own title and colour bar.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import matplotlib.colors
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

CROSSHAIR = "#00e5ff"


def _cold_hot() -> matplotlib.colors.ListedColormap:
    """Blue to light cyan below zero, red to yellow above (FSL's paired statistics colours): no white or black
    middle, so values just above the display threshold are as visible as the peaks on a grey scan."""
    t = np.linspace(0.0, 1.0, 128)[:, None]
    negative = (1 - t) * np.array([0.6, 1.0, 1.0]) + t * np.array([0.0, 0.25, 1.0])  # −vmax … 0
    positive = (1 - t) * np.array([0.9, 0.05, 0.0]) + t * np.array([1.0, 1.0, 0.35])  # 0 … vmax
    return matplotlib.colors.ListedColormap(np.vstack([negative, positive]), name="cold_hot")


_CMAPS = {"cold_hot": _cold_hot()}


def colormap(name: str) -> matplotlib.colors.Colormap:
    """A matplotlib colour map by name, or one of this module's own ("cold_hot")."""
    return _CMAPS.get(name) or matplotlib.colormaps[name]


@dataclass
class Volume:
    """A RAS+ volume: data (X, Y, Z) and the world mm of voxel centres along each axis."""

    data: np.ndarray
    affine: np.ndarray

    @property
    def axes_mm(self) -> list[np.ndarray]:
        return [self.affine[a, a] * np.arange(n) + self.affine[a, 3] for a, n in enumerate(self.data.shape)]

    def index_of(self, mm: tuple[float, float, float]) -> tuple[int, int, int]:
        ijk = np.linalg.solve(self.affine, np.r_[mm, 1.0])[:3]
        return tuple(int(np.clip(round(v), 0, n - 1)) for v, n in zip(ijk, self.data.shape))

    def mm_of(self, ijk: tuple[int, int, int]) -> np.ndarray:
        return (self.affine @ np.r_[ijk, 1.0])[:3]


def ras_volume(data: np.ndarray, affine: np.ndarray) -> Volume:
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine))
    return Volume(np.asarray(img.dataobj, dtype=np.float32), img.affine)


def overlay_limits(
    values: np.ndarray | Sequence[np.ndarray], percentile: float, signed: bool = False
) -> tuple[float, float]:
    """(threshold, vmax): |values| below the percentile of the non-zero magnitudes are hidden.

    ``values`` may be several maps: their magnitudes are pooled, so maps drawn with these limits share one
    colour scale and one threshold (equal colours mean equal values).
    """
    arrays = [values] if isinstance(values, np.ndarray) else list(values)
    mag = np.concatenate([np.abs(a[a != 0]).ravel() for a in arrays]) if arrays else np.empty(0)
    if mag.size == 0:
        return 0.0, 1.0
    threshold, vmax = np.percentile(mag, [percentile, 99.5])  # one partial sort for both
    return float(threshold), float(vmax) or float(mag.max()) or 1.0


@dataclass
class Layer:
    """One map drawn over the scan as a row of three views.

    Attributes:
        data: the map on the RAS grid of the scan (``ras_volume(...).data``).
        title: the row's title, e.g. "hyperfusion · Saliency".
        label: the colour bar's label.
        cmap: a matplotlib colour map (a diverging one for signed maps).
        signed: colour from −vmax to vmax (else 0 to vmax).
        threshold: |values| below it are not drawn.
        vmax: the end of the colour scale.
    """

    data: np.ndarray
    title: str = ""
    label: str = ""
    cmap: str = "hot"
    signed: bool = False
    threshold: float = 0.0
    vmax: float = 1.0


def render_views(
    scan: Volume,
    overlay: np.ndarray | None,
    cursor: tuple[int, int, int],
    *,
    radiological: bool = True,
    opacity: float = 0.6,
    percentile: float = 90.0,
    cmap: str = "hot",
    signed: bool = False,
    overlay_label: str = "saliency",
) -> bytes:
    """Axial, coronal and sagittal slices through ``cursor`` (RAS voxel indices) as PNG bytes; one overlay."""
    layers = []
    if overlay is not None:
        threshold, vmax = overlay_limits(overlay, percentile, signed)
        label = f"{overlay_label} (shown: |value| ≥ {percentile:g}th percentile)"
        layers.append(Layer(overlay, "", label, cmap, signed, threshold, vmax))
    return render_rows(scan, layers, cursor, radiological=radiological, opacity=opacity)


def render_rows(
    scan: Volume,
    layers: Sequence[Layer],
    cursor: tuple[int, int, int],
    *,
    radiological: bool = True,
    opacity: float = 0.6,
) -> bytes:
    """One row of axial, coronal and sagittal slices through ``cursor`` per layer (the scan alone when there
    is none), as PNG bytes. Every row shows the same slices, crosshair and orientation."""
    rows: list[Layer | None] = list(layers) or [None]
    titled = any(layer is not None and layer.title for layer in rows)
    size = _RowSize.of(scan, titled)
    brain = scan.data[scan.data != 0]
    window = tuple(np.percentile(brain, [1, 99.5])) if brain.size else (0.0, 1.0)  # grey scale of every row
    fig = plt.figure(figsize=(size.width, size.height * len(rows)), facecolor="black")
    subfigs = fig.subfigures(len(rows), 1, squeeze=False)[:, 0]
    for sub, layer in zip(subfigs, rows):
        sub.set_facecolor("black")
        _draw_row(sub, scan, layer, cursor, radiological, opacity, size, window)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, facecolor="black", bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return buffer.getvalue()


@dataclass(frozen=True)
class _RowSize:
    """A row's height in inches, chosen so the three slices (drawn at one mm scale) fill their cells: a fixed
    figure height would leave bands of black above and below boxes that are wider than they are tall."""

    width: float
    height: float
    title: float  # inches above the panels: the row title and the panel titles
    below: float  # inches under the panels: tick labels, colour bar and its label
    widths: tuple[float, float, float]  # panel extents in mm (x, x, y)

    WSPACE = 0.08
    LEFT, RIGHT = 0.04, 0.99
    COLOURBAR = 0.14

    @classmethod
    def of(cls, scan: Volume, titled: bool, width: float = 12.0) -> _RowSize:
        span = [abs(scan.affine[a, a]) * n for a, n in enumerate(scan.data.shape)]
        widths = (span[0], span[0], span[1])
        heights = (span[1], span[2], span[2])
        # gridspec: the columns share (RIGHT − LEFT) of the width, with WSPACE × the mean column between them
        mean_column = width * (cls.RIGHT - cls.LEFT) / (3 + 2 * cls.WSPACE)
        inch_per_mm = 3 * mean_column / sum(widths)
        panels = inch_per_mm * max(heights)
        title = 0.75 if titled else 0.35
        below = 0.35 + cls.COLOURBAR + 0.45
        return cls(width, title + panels + below, title, below, widths)


def _draw_row(
    fig,
    scan: Volume,
    layer: Layer | None,
    cursor: tuple[int, int, int],
    radiological: bool,
    opacity: float,
    size: _RowSize,
    window: tuple[float, float],
) -> None:
    """One row: the three slices through ``cursor`` with ``layer`` over them, its title and colour bar."""
    x, y, z = scan.axes_mm
    i, j, k = cursor
    lo, hi = window
    over = None if layer is None else layer.data
    half = [abs(scan.affine[a, a]) / 2 for a in range(3)]

    def extent(u, v, a, b):
        return [u[0] - half[a], u[-1] + half[a], v[0] - half[b], v[-1] + half[b]]

    cx, cy, cz = scan.mm_of(cursor)
    panels = [
        (
            "axial",
            f"z = {cz:.0f} mm",
            scan.data[:, :, k],
            None if over is None else over[:, :, k],
            extent(x, y, 0, 1),
            (cx, cy),
            True,
        ),
        (
            "coronal",
            f"y = {cy:.0f} mm",
            scan.data[:, j, :],
            None if over is None else over[:, j, :],
            extent(x, z, 0, 2),
            (cx, cz),
            True,
        ),
        (
            "sagittal",
            f"x = {cx:.0f} mm",
            scan.data[i, :, :],
            None if over is None else over[i, :, :],
            extent(y, z, 1, 2),
            (cy, cz),
            False,
        ),
    ]
    if layer is not None and layer.title:
        fig.suptitle(
            layer.title, color="white", fontsize=13, fontweight="bold", y=1 - 0.12 / size.height, va="top"
        )
    grid = fig.add_gridspec(
        1,
        3,
        width_ratios=size.widths,
        wspace=size.WSPACE,
        left=size.LEFT,
        right=size.RIGHT,
        top=1 - size.title / size.height,
        bottom=size.below / size.height,
    )
    image = None
    for col, (name, where, anat, slab, ext, (h, v), lateral) in enumerate(panels):
        ax = fig.add_subplot(grid[0, col])
        ax.set_facecolor("black")
        ax.imshow(anat.T, origin="lower", extent=ext, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        if slab is not None:
            shown = np.ma.masked_where(np.abs(slab) < max(layer.threshold, 1e-12), slab)
            image = ax.imshow(
                shown.T,
                origin="lower",
                extent=ext,
                cmap=colormap(layer.cmap),
                alpha=opacity,
                vmin=-layer.vmax if layer.signed else 0.0,
                vmax=layer.vmax,
                interpolation="nearest",
            )
        ax.axvline(h, color=CROSSHAIR, lw=0.8, alpha=0.7)
        ax.axhline(v, color=CROSSHAIR, lw=0.8, alpha=0.7)
        if lateral and radiological:
            ax.invert_xaxis()
        if not lateral:
            ax.invert_xaxis()  # sagittal: anterior on the left, as FSLeyes / ITK-SNAP show it
        left, right = ("R", "L") if lateral and radiological else ("L", "R") if lateral else ("A", "P")
        style = {
            "color": "white",
            "fontsize": 12,
            "fontweight": "bold",
            "va": "center",
            "bbox": {"facecolor": "black", "alpha": 0.5, "pad": 1, "edgecolor": "none"},
        }
        ax.text(0.02, 0.5, left, transform=ax.transAxes, ha="left", **style)
        ax.text(0.98, 0.5, right, transform=ax.transAxes, ha="right", **style)
        ax.text(0.5, 0.97, "S" if name != "axial" else "A", transform=ax.transAxes, ha="center", **style)
        ax.set_title(f"{name} · {where}", color="white", fontsize=11)
        ax.tick_params(colors="#aaaaaa", labelsize=7)
        for spine in ax.spines.values():
            spine.set_visible(False)
    if image is not None:
        _, _, lefts, rights = grid.get_grid_positions(fig)
        bottom = (size.below - 0.35 - size.COLOURBAR) / size.height
        cax = fig.add_axes((lefts[1], bottom, rights[1] - lefts[1], size.COLOURBAR / size.height))
        bar = fig.colorbar(image, cax=cax, orientation="horizontal")
        bar.set_label(layer.label, color="white", fontsize=9)
        bar.ax.tick_params(colors="white", labelsize=8)
        bar.ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        bar.ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
