"""Byte-reproducible files: gzipped NIfTI with a fixed gzip header, and plain CSV/JSON.

``nibabel.save`` to ``.nii.gz`` stamps the current time into the gzip header, so two runs differ; here the
NIfTI bytes are built in memory and compressed with ``mtime=0`` and no file name. Files are written to a
temporary name and renamed, so a killed run never leaves a truncated scan behind.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from hyperfusion.files import atomic_write

NIFTI_XFORM_MNI_152 = 4
GZIP_LEVEL = 4  # level 6 costs twice the time for 1 % smaller noisy scans


def nifti_bytes(data: np.ndarray, affine: np.ndarray, description: str) -> bytes:
    """A gzipped single-file NIfTI-1 in MNI152 space (sform and qform), bytes identical for identical input."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = description.encode("ascii")[:79]
    img.set_sform(affine, code=NIFTI_XFORM_MNI_152)
    img.set_qform(affine, code=NIFTI_XFORM_MNI_152)
    return gzip.compress(img.to_bytes(), compresslevel=GZIP_LEVEL, mtime=0)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, description: str) -> None:
    atomic_write(path, nifti_bytes(data, affine, description))


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue().encode("utf-8"))


def write_json(path: Path, obj: dict) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))
