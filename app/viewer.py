"""Three orthogonal views of a scan with an attribution overlay, drawn as one PNG (only these slices leave the
server).

Volumes are reoriented to the closest RAS+ grid (nibabel ``as_closest_canonical``), so array axes are x
(increasing towards the subject's right), y (anterior) and z (superior), and world millimetres follow from the
affine. Radiological display puts the subject's right on the viewer's left; neurological the reverse.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402


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


def overlay_limits(values: np.ndarray, percentile: float, signed: bool) -> tuple[float, float]:
    """(threshold, vmax): |values| below the percentile of the non-zero magnitudes are hidden."""
    mag = np.abs(values[values != 0])
    if mag.size == 0:
        return 0.0, 1.0
    vmax = float(np.percentile(mag, 99.5)) or float(mag.max()) or 1.0
    return float(np.percentile(mag, percentile)), vmax


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
    """Axial, coronal and sagittal slices through ``cursor`` (RAS voxel indices) as PNG bytes."""
    x, y, z = scan.axes_mm
    i, j, k = cursor
    brain = scan.data[scan.data != 0]
    lo, hi = np.percentile(brain, [1, 99.5]) if brain.size else (0.0, 1.0)
    threshold, vmax = overlay_limits(overlay, percentile, signed) if overlay is not None else (0.0, 1.0)
    half = [abs(scan.affine[a, a]) / 2 for a in range(3)]

    def extent(u, v, a, b):
        return [u[0] - half[a], u[-1] + half[a], v[0] - half[b], v[-1] + half[b]]

    cx, cy, cz = scan.mm_of(cursor)
    panels = [
        ("axial", f"z = {cz:.0f} mm", scan.data[:, :, k], None if overlay is None else overlay[:, :, k],
         extent(x, y, 0, 1), (cx, cy), True),
        ("coronal", f"y = {cy:.0f} mm", scan.data[:, j, :], None if overlay is None else overlay[:, j, :],
         extent(x, z, 0, 2), (cx, cz), True),
        ("sagittal", f"x = {cx:.0f} mm", scan.data[i, :, :], None if overlay is None else overlay[i, :, :],
         extent(y, z, 1, 2), (cy, cz), False),
    ]  # fmt: skip
    widths = [e[1] - e[0] for *_, e, _, _ in panels]
    fig = plt.figure(figsize=(12, 4.6), facecolor="black")
    grid = fig.add_gridspec(2, 3, width_ratios=widths, height_ratios=[20, 1], hspace=0.25, wspace=0.08)
    image = None
    for col, (name, where, anat, over, ext, (h, v), lateral) in enumerate(panels):
        ax = fig.add_subplot(grid[0, col])
        ax.set_facecolor("black")
        ax.imshow(anat.T, origin="lower", extent=ext, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        if over is not None:
            shown = np.ma.masked_where(np.abs(over) < max(threshold, 1e-12), over)
            image = ax.imshow(shown.T, origin="lower", extent=ext, cmap=cmap, alpha=opacity,
                              vmin=-vmax if signed else 0.0, vmax=vmax, interpolation="nearest")  # fmt: skip
        ax.axvline(h, color="#00e5ff", lw=0.8, alpha=0.7)
        ax.axhline(v, color="#00e5ff", lw=0.8, alpha=0.7)
        if lateral and radiological:
            ax.invert_xaxis()
        if not lateral:
            ax.invert_xaxis()  # sagittal: anterior on the left, as FSLeyes / ITK-SNAP show it
        left, right = ("R", "L") if lateral and radiological else ("L", "R") if lateral else ("A", "P")
        style = {"color": "white", "fontsize": 12, "fontweight": "bold", "va": "center",
                 "bbox": {"facecolor": "black", "alpha": 0.5, "pad": 1, "edgecolor": "none"}}  # fmt: skip
        ax.text(0.02, 0.5, left, transform=ax.transAxes, ha="left", **style)
        ax.text(0.98, 0.5, right, transform=ax.transAxes, ha="right", **style)
        ax.text(0.5, 0.97, "S" if name != "axial" else "A", transform=ax.transAxes, ha="center", **style)
        ax.set_title(f"{name} · {where}", color="white", fontsize=11)
        ax.tick_params(colors="#aaaaaa", labelsize=7)
        for spine in ax.spines.values():
            spine.set_visible(False)
    if image is not None:
        cax = fig.add_subplot(grid[1, 1])
        bar = fig.colorbar(image, cax=cax, orientation="horizontal")
        bar.set_label(
            f"{overlay_label} (shown: |value| ≥ {percentile:g}th percentile)", color="white", fontsize=9
        )
        bar.ax.tick_params(colors="white", labelsize=8)
        bar.ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        bar.ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, facecolor="black", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
