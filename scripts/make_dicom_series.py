"""Write a NIfTI T1 scan as a DICOM MR series (one file a slice), with SimpleITK's DICOM writer.

No openly licensed real 3-D T1 DICOM series installs from Debian or PyPI (pydicom-data holds single MR slices
and other modalities; Debian's DICOM packages ship tools, not head series), so the DICOM path of
``hyperfusion preprocess`` is tested on a series made from a real scan: Colin27 (Debian's mricron-data),
moved into scanner coordinates, written slice by slice with the geometry tags dcm2niix reads
(ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness). The pixel data are the real
scan's, scaled to 12-bit integers; the header is made here, not a scanner's.

    python scripts/make_dicom_series.py tests/.real_scans/ch2.nii.gz /tmp/colin27_dicom [--voxel-mm 2] [--move]
"""

from __future__ import annotations

import argparse
import locale
from pathlib import Path

import nibabel as nib
import numpy as np

_LPS = np.diag([-1.0, -1.0, 1.0])
#: The rigid move into 'scanner' coordinates (the tests' MOVE): 12°, −8°, 20° about x, y, z and (15, −25, 30) mm.
MOVE_DEGREES = (12.0, -8.0, 20.0)
MOVE_MM = (15.0, -25.0, 30.0)


def move_matrix() -> np.ndarray:
    from scipy.spatial.transform import Rotation

    move = np.eye(4)
    move[:3, :3] = Rotation.from_euler("xyz", MOVE_DEGREES, degrees=True).as_matrix()
    move[:3, 3] = MOVE_MM
    return move


def prepare(img: nib.Nifti1Image, voxel_mm: float | None = None, move: bool = False) -> nib.Nifti1Image:
    """``img`` resampled to ``voxel_mm`` (isotropic, linear) and placed in the world by :func:`move_matrix`."""
    if voxel_mm is not None:
        from nibabel.processing import resample_to_output

        img = resample_to_output(img, voxel_sizes=voxel_mm, order=1)
    if move:
        affine = move_matrix() @ img.affine
        img = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), affine)
        img.header.set_sform(affine, code=1)
        img.header.set_qform(affine, code=1)
    return img


def write_series(
    img: nib.Nifti1Image, folder: str | Path, description: str = "T1 (Colin27, written as DICOM)"
):
    """Write ``img`` (3-D) as a DICOM MR series of axial-index slices into ``folder``; returns the files."""
    import SimpleITK as sitk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = np.asarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3])
    top = float(np.percentile(data[data > 0], 99.9)) if (data > 0).any() else 1.0
    pixels = np.clip(np.rint(data / top * 4000.0), 0, 4095).astype(np.int16)
    zooms = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    volume = sitk.GetImageFromArray(np.ascontiguousarray(pixels.transpose(2, 1, 0)))
    volume.SetSpacing([float(z) for z in zooms])
    volume.SetOrigin([float(v) for v in _LPS @ img.affine[:3, 3]])
    direction = _LPS @ (img.affine[:3, :3] / zooms)
    volume.SetDirection([float(v) for v in direction.ravel()])
    study, series, frame = sitk_uid(), sitk_uid(), sitk_uid()
    d = volume.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    common = [
        ("0008|0008", "ORIGINAL\\PRIMARY\\M\\ND"),
        ("0008|0020", "20000101"),  # study, series and acquisition date and time: one scan session
        ("0008|0021", "20000101"),
        ("0008|0030", "120000"),
        ("0008|0031", "120000"),
        ("0008|0016", "1.2.840.10008.5.1.4.1.1.4"),  # MR Image Storage
        ("0008|0060", "MR"),
        ("0008|0070", "hyperfusion test series"),
        ("0008|103e", description),
        ("0010|0010", "Colin27"),
        ("0010|0020", "colin27"),
        ("0018|0050", f"{zooms[2]:.4f}"),  # slice thickness
        ("0018|5100", "HFS"),  # head first, supine
        ("0020|000d", study),
        ("0020|000e", series),
        ("0020|0011", "1"),
        ("0020|0037", orientation),
        ("0020|0052", frame),
        ("0028|1050", "2000"),
        ("0028|1051", "4000"),
    ]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    saved = locale.setlocale(
        locale.LC_ALL
    )  # ITK's GDCM writer sets the C locale: Python's text I/O turns ASCII
    try:
        return _write_slices(volume, common, series, folder, writer)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_slices(volume, common, series, folder, writer) -> list[Path]:
    files = []
    for k in range(volume.GetDepth()):
        slice_k = volume[:, :, k]
        for tag, value in common:
            slice_k.SetMetaData(tag, value)
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        slice_k.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in position))
        slice_k.SetMetaData("0020|0013", str(k + 1))
        slice_k.SetMetaData("0008|0018", f"{series}.{k + 1}")
        path = folder / f"IM{k + 1:04d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slice_k)
        files.append(path)
    return files


def sitk_uid() -> str:
    """A fresh DICOM UID under ITK's root."""
    import uuid

    return f"1.2.826.0.1.3680043.2.1125.{uuid.uuid4().int % 10**30}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("nifti")
    parser.add_argument("folder")
    parser.add_argument("--voxel-mm", type=float, default=None, help="resample to this isotropic voxel size")
    parser.add_argument("--move", action="store_true", help="move the head into 'scanner' coordinates first")
    a = parser.parse_args()
    files = write_series(prepare(nib.load(a.nifti), a.voxel_mm, a.move), a.folder)
    print(f"wrote {len(files)} DICOM slices to {a.folder}")


if __name__ == "__main__":
    main()
