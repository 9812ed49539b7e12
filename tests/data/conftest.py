"""Small scans built in temporary folders for the imaging tests (nothing large is stored in the repo)."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hyperfusion.data.geometry import ad_box, box_affine


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3×3 rotation about the world x, y or z axis."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def smooth_field(xyz: np.ndarray) -> np.ndarray:
    """A smooth, everywhere-positive test function of world mm; xyz has shape (3, ...)."""
    x, y, z = xyz
    return (
        100.0
        + 0.4 * x
        + 0.25 * y
        - 0.3 * z
        + 12.0 * np.sin(x / 17.0) * np.cos(y / 23.0)
        + 8.0 * np.cos(z / 19.0)
    )


def world_coords(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World mm (3, I, J, K) of every voxel centre of a grid."""
    ijk = np.indices(shape, dtype=np.float64)
    return np.tensordot(affine[:3, :3], ijk, axes=1) + affine[:3, 3].reshape(3, 1, 1, 1)


def oblique_grid(voxel_mm=(1.3, 1.1, 1.6), margin_mm: float = 8.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """An LPS-flipped, obliquely rotated (15° about z, 10° about x), anisotropic grid covering the AD box.

    Returns the grid shape and its affine. Voxel i runs towards the subject's left, j towards posterior.
    """
    rot = rotation("z", 15.0) @ rotation("x", 10.0)
    linear = rot @ np.diag([-1.0, -1.0, 1.0]) @ np.diag(voxel_mm)
    # The box's corners, expressed along the grid's own axes, bound the grid.
    g = ad_box(2.0)
    d, h, w = g.box_shape
    corners_idx = np.array(np.meshgrid([-0.5, d - 0.5], [-0.5, h - 0.5], [-0.5, w - 0.5], indexing="ij"))
    corners = box_affine(g) @ np.r_[corners_idx.reshape(3, 8), np.ones((1, 8))]
    along = np.linalg.inv(linear) @ corners[:3]
    lo = along.min(axis=1) - margin_mm / np.asarray(voxel_mm)
    hi = along.max(axis=1) + margin_mm / np.asarray(voxel_mm)
    shape = tuple(int(np.ceil(b - a)) + 1 for a, b in zip(lo, hi))
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = linear @ lo
    return shape, affine


@pytest.fixture(scope="session")
def oblique_scan() -> nib.Nifti1Image:
    """The smooth field sampled on the oblique LPS grid (about 0.8 M voxels, in memory)."""
    shape, affine = oblique_grid()
    data = smooth_field(world_coords(shape, affine)).astype(np.float32)
    return nib.Nifti1Image(data, affine)


def nifti_bytes(
    data: np.ndarray,
    affine: np.ndarray | None = None,
    header: Callable[[nib.Nifti1Header], None] | None = None,
    klass: type = nib.Nifti1Image,
) -> bytes:
    """Uncompressed single-file NIfTI bytes; ``header`` edits the header block after nibabel wrote it.

    The edit is patched into the bytes as is (nibabel would otherwise rewrite sform / qform from the
    affine), so it can describe things nibabel itself never writes: other dims than the data, odd affines.
    """
    raw = klass(np.asarray(data), np.eye(4) if affine is None else affine).to_bytes()
    if header is None:
        return raw
    hdr = klass.header_class.from_fileobj(io.BytesIO(raw), check=False)
    header(hdr)
    block = hdr.binaryblock
    return block + raw[len(block) :]


@pytest.fixture
def write_nifti(tmp_path: Path) -> Callable[..., Path]:
    """Write a NIfTI into tmp_path: ``write_nifti(data, affine=None, name="scan.nii.gz", header=None)``.

    ``header`` is a callable that may edit the image's header before saving. ``.gz`` names are compressed.
    """

    def write(
        data: np.ndarray,
        affine: np.ndarray | None = None,
        name: str = "scan.nii.gz",
        header: Callable[[nib.Nifti1Header], None] | None = None,
        klass: type = nib.Nifti1Image,
    ) -> Path:
        raw = nifti_bytes(data, affine, header, klass)
        path = tmp_path / name
        path.write_bytes(gzip.compress(raw, compresslevel=1) if name.endswith(".gz") else raw)
        return path

    return write


@pytest.fixture
def small_scan(write_nifti) -> Path:
    """A 2 mm RAS scan covering the AD box with a margin: a brain-like blob on a zero background."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-72.0, -64.0, -64.0]
    shape = (73, 59, 40)
    xyz = world_coords(shape, affine)
    inside = ((xyz[0] / 60) ** 2 + ((xyz[1] + 7) / 50) ** 2 + ((xyz[2] + 23) / 30) ** 2) < 1.0
    data = np.where(inside, smooth_field(xyz), 0.0).astype(np.float32)
    return write_nifti(data, affine, name="small.nii.gz")


@pytest.fixture(scope="session")
def mni_template_path() -> Path:
    """nilearn's MNI152 2009a template (197×233×189, 1 mm, RAS); used in place, never copied into the repo."""
    import nilearn

    path = (
        Path(nilearn.__file__).parent
        / "datasets"
        / "data"
        / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    )
    assert path.is_file(), f"nilearn's MNI template is missing at {path}"
    return path
