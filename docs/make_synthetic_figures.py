"""Renders the synthetic-cohort figures in docs/: a CN, an MCI and an AD subject (seed 0), three orthogonal
1 mm views through the left hippocampus, without and with the planted-disease truth overlay; and the 2 mm
hippocampal box the models see.

    python docs/make_synthetic_figures.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hyperfusion.data.synthetic import synthesize_subject  # noqa: E402
from hyperfusion.data.synthetic.records import diagnosis_of, sample_subject  # noqa: E402

DOCS = Path(__file__).resolve().parent
POINT_MM = np.array([-26.0, -22.0, -14.0])  # through the left hippocampus
N = 400


def _pick(dx: str, severity: tuple[float, float]) -> int:
    for i in range(N):
        if diagnosis_of(0, i) == dx:
            lat = sample_subject(0, i, N)[1]
            if severity[0] <= lat["severity"] <= severity[1] and 68 <= lat["age"] <= 80:
                return i
    raise RuntimeError(f"no {dx} subject with severity in {severity}")


def _slices(volume: np.ndarray, grid, point_mm: np.ndarray):
    i, j, k = np.round((point_mm - np.asarray(grid.origin)) / grid.spacing).astype(int)
    return (
        ("sagittal", volume[i, :, :].T, f"x = {point_mm[0]:.0f} mm", ("P", "A")),
        ("coronal", volume[:, j, :].T, f"y = {point_mm[1]:.0f} mm", ("L", "R")),
        ("axial", volume[:, :, k].T, f"z = {point_mm[2]:.0f} mm", ("L", "R")),
    )


def _overlay(ax, truth_slice: np.ndarray) -> None:
    shown = np.ma.masked_where(np.abs(truth_slice) < 0.05, truth_slice)
    ax.imshow(shown, cmap="coolwarm", origin="lower", vmin=-0.6, vmax=0.6, alpha=0.6, interpolation="nearest")


def subject_figure(index: int, path: Path, whole_brain: bool = True, voxel_size: float = 1.0) -> None:
    s = synthesize_subject(index, N, seed=0, voxel_size=voxel_size, whole_brain=whole_brain)
    image = s.image.astype(np.float32)
    vmax = float(np.percentile(image[image > 0], 99.5))
    lat = s.latent
    title = (
        f"{s.row['PTID']} (synthetic): {s.row['DX_bl']}, {lat['age']:.0f} y, {s.row['PTGENDER'].lower()}, "
        f"APOE4 {lat['apoe4']}, severity {lat['severity']:.2f}, {lat['field_strength']:g} T, "
        f"hippocampi {s.volumes_ml['hippocampus_L'] + s.volumes_ml['hippocampus_R']:.1f} ml"
    )
    fig, axes = plt.subplots(2, 3, figsize=(13, 8.4), facecolor="black")
    views = _slices(image, s.grid, POINT_MM)
    truths = _slices(s.truth["disease"], s.grid, POINT_MM)
    for col, ((name, sl, where, (lo, hi)), (_, tsl, _, _)) in enumerate(zip(views, truths)):
        for row in range(2):
            ax = axes[row, col]
            ax.imshow(sl, cmap="gray", origin="lower", vmin=0, vmax=vmax, interpolation="nearest")
            if row == 1:
                _overlay(ax, tsl)
            ax.set_axis_off()
            ax.text(0.01, 0.5, lo, color="w", transform=ax.transAxes, va="center", fontsize=10)
            ax.text(0.97, 0.5, hi, color="w", transform=ax.transAxes, va="center", fontsize=10)
            ax.set_title(f"{name}, {where}" + (" + planted disease" if row else ""), color="w", fontsize=10)
    fig.suptitle(title, color="w", fontsize=11)
    fig.text(
        0.5,
        0.01,
        "Overlay: planted log-volume change (blue: tissue lost; red: CSF and ventricles grown). "
        "Neurological convention (left on the left).",
        color="w",
        ha="center",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    fig.savefig(path, dpi=80, facecolor="black")
    plt.close(fig)


def main() -> None:
    picks = {"cn": _pick("CN", (0, 0)), "mci": _pick("MCI", (0.45, 0.6)), "ad": _pick("AD", (0.95, 1.1))}
    for name, index in picks.items():
        subject_figure(index, DOCS / f"synthetic_{name}.png")
        print(f"docs/synthetic_{name}.png: subject {index}")
    subject_figure(picks["ad"], DOCS / "synthetic_ad_box_2mm.png", whole_brain=False, voxel_size=2.0)
    print("docs/synthetic_ad_box_2mm.png")


if __name__ == "__main__":
    main()
