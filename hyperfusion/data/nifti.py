"""Loading and validating NIfTI scans.

Every imaging entry point of HyperFusion goes through :func:`load_nifti`, so a scan that cannot be used is
refused here, once, with a message that names the file, says what is wrong and what to do. A scan may come
as a path, as the raw bytes of an upload (gzip-compressed or not) or as a nibabel image.

The size of the volume is read from the header before any voxel is decoded, and only the bytes the header
announces are ever decompressed: a small ``.nii.gz`` that would inflate to gigabytes (a "gzip bomb") or a
header announcing enormous dimensions costs a few hundred bytes of work to refuse.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import threading
import warnings
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from hyperfusion.errors import DataError

NiftiSource = str | os.PathLike | bytes | bytearray | memoryview | nib.spatialimages.SpatialImage


class _Parsed:
    """What :class:`ScanFile` and :class:`ScanBytes` share: the scan decoded and validated by
    :func:`load_nifti` on first use and kept (read-only), and its content sha256 computed once."""

    def _setup(self, name: str | None) -> None:
        self.name, self._image, self._sha256, self._lock = name, None, None, threading.Lock()

    def _raw(self) -> str | bytes:
        raise NotImplementedError

    @property
    def image(self) -> nib.Nifti1Image:
        """The decoded, validated scan (float32, voxels in memory, read-only): decoded once."""
        with self._lock:
            if self._image is None:
                img = load_nifti(self._raw(), name=self.name)
                np.asarray(img.dataobj).flags.writeable = False
                self._image = img
            return self._image

    @property
    def sha256(self) -> str:
        """:func:`image_sha256` of the scan's bytes, computed once."""
        if self._sha256 is None:
            self._sha256 = image_sha256(self._raw())
        return self._sha256

    def __reduce__(self):  # pickled, copied or hashed as the plain path or bytes it is
        return (type(self._raw()), (self._raw(),))


class ScanFile(_Parsed, str):
    """A scan's path that is read once (:func:`read_scan`): every call taking a path takes it and reuses the
    decoded image and content hash instead of reading the file again."""

    def __new__(cls, path: str | os.PathLike, name: str | None = None) -> ScanFile:
        obj = str.__new__(cls, os.fspath(path))
        obj._setup(name)
        return obj

    def _raw(self) -> str:
        return str.__str__(self)


class ScanBytes(_Parsed, bytes):
    """An uploaded scan's bytes, read once (:func:`read_scan`); ``name`` is its file name in messages."""

    def __new__(cls, data: bytes, name: str | None = None) -> ScanBytes:
        obj = bytes.__new__(cls, data)
        obj._setup(name)
        return obj

    def _raw(self) -> bytes:
        return bytes(self)


def read_scan(source: str | os.PathLike | bytes, *, name: str | None = None) -> ScanFile | ScanBytes:
    """A scan (a path, or an upload's bytes) as an object that decodes and validates it once, on first use,
    and that every HyperFusion call taking a scan accepts in place of the path or bytes (the Predictor,
    explain_image, to_subject, the entry checks). Hold it, for a subject, for as long as the scan is shown:
    each use after the first costs no decoding. Returns ``source`` itself when it already is one."""
    if isinstance(source, _Parsed):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return ScanBytes(bytes(source), name)
    return ScanFile(source, name)


#: Plausible voxel edge lengths of a structural brain MRI, in mm. Outside this range the header's units or
#: affine are almost certainly wrong (metres or microns, a zeroed pixdim), not the scan.
VOXEL_SIZE_RANGE_MM = (0.2, 10.0)

_GZIP_MAGIC = b"\x1f\x8b"
# Both NIfTI headers fit in the first 540 bytes (NIfTI-1: 348, NIfTI-2: 540).
_HEADER_PEEK = 540
# Extensions between the header and the voxels are small; a larger vox_offset is a corrupt header.
_MAX_VOX_OFFSET = 64 * 2**20


def _fail(label: str, problem: str, fix: str) -> DataError:
    return DataError(f"{label}: {problem}. {fix}")


def load_nifti(source: NiftiSource, *, max_voxels: int = 400**3, name: str | None = None) -> nib.Nifti1Image:
    """Load a scan and check that it can be used as a 3-D structural volume.

    Args:
        source: a path to a ``.nii`` / ``.nii.gz`` file, the bytes of such a file (compressed or not), or a
            nibabel image.
        max_voxels: the largest number of voxels accepted (default 400³, a 0.5 mm whole-head scan).
        name: how to call the scan in error messages (e.g. an uploaded file's name); default: its path.

    Returns:
        A new ``Nifti1Image`` with float32 data of shape (I, J, K) (a 4-D file with one volume is squeezed)
        and the source's affine (voxel index -> world mm, sform or qform as nibabel chooses).

    Raises:
        DataError: not a NIfTI file, not gzip although named ``.gz`` (or the reverse), truncated, 2-D, several
            volumes, a zero-length axis, more than ``max_voxels`` voxels, an unsupported data type, NaN or
            infinite voxels, a non-finite or singular affine, or voxel sizes outside 0.2–10 mm.
    """
    if isinstance(source, _Parsed):
        return source.image  # decoded and validated once (read_scan)
    if isinstance(source, nib.spatialimages.SpatialImage):
        label = name or source.get_filename() or "in-memory image"
        img = source
        _check_shape(tuple(img.shape), label, max_voxels)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "uploaded bytes"
        data = bytes(source)
        if name is not None:
            _check_suffix(name, data, label)
        img = _image_from_stream(io.BytesIO(data), label, max_voxels)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            raise _fail(label, "file not found", "Check the path (cohort images live in COHORT_DIR/images/)")
        with path.open("rb") as f:
            _check_suffix(path.name, f.read(2), label, require=True)
            f.seek(0)
            img = _image_from_stream(f, label, max_voxels)
    else:
        raise DataError(
            f"{name or 'scan'}: cannot read a scan from a {type(source).__name__}. "
            "Pass a path to a .nii/.nii.gz file, its bytes, or a nibabel image"
        )
    return _validated(img, label)


def image_sha256(source: str | os.PathLike | bytes | bytearray | memoryview | nib.Nifti1Image) -> str:
    """Hex sha256 of a scan's file bytes (as stored, compressed or not): the key of the volume cache.

    A nibabel image that has no file is hashed through its uncompressed NIfTI serialisation.
    """
    if isinstance(source, _Parsed):
        return source.sha256
    digest = hashlib.sha256()
    if isinstance(source, (bytes, bytearray, memoryview)):
        digest.update(source)
    elif isinstance(source, nib.spatialimages.SpatialImage):
        digest.update(source.to_bytes())
    else:
        path = Path(source)
        if not path.is_file():
            raise _fail(str(path), "file not found", "Check the path")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                digest.update(block)
    return digest.hexdigest()


def scan_grid(source: NiftiSource, *, name: str | None = None) -> tuple[tuple[int, int, int], np.ndarray]:
    """A scan's voxel grid: its 3-D shape and its 4×4 affine (voxel index -> world mm), validated.

    For a nibabel image the voxels are not decoded (only the shape and affine are checked); paths and bytes
    go through :func:`load_nifti`.
    """
    if isinstance(source, nib.spatialimages.SpatialImage):
        label = name or source.get_filename() or "in-memory image"
        shape = _check_shape(tuple(source.shape), label, max_voxels=2**62)
        return (shape[0], shape[1], shape[2]), _checked_affine(source, label)
    img = load_nifti(source, name=name)
    return (img.shape[0], img.shape[1], img.shape[2]), img.affine


def check_file_name(filename: str, head: bytes, *, name: str | None = None) -> None:
    """Refuse a file name that is not ``.nii`` / ``.nii.gz``, or that says gzip when the content is not (or the
    reverse), as :func:`load_nifti` does for paths; for uploads, whose bytes alone ``load_nifti`` accepts.

    ``head``: the file's first bytes (two suffice).
    """
    _check_suffix(filename, head[:2], name or filename, require=True)


# --- bytes -> image ---------------------------------------------------------------------------------------
def _check_suffix(filename: str, head: bytes, label: str, require: bool = False) -> None:
    """Refuse a name that lies about the content: viewers and other tools trust the suffix."""
    lower = filename.lower()
    is_gzip = head[:2] == _GZIP_MAGIC
    if lower.endswith(".nii.gz"):
        if not is_gzip:
            raise _fail(
                label,
                "named .nii.gz but not gzip-compressed (misleading extension)",
                "Rename it to .nii if it is an uncompressed NIfTI, or compress it with gzip",
            )
    elif lower.endswith(".nii"):
        if is_gzip:
            raise _fail(
                label,
                "named .nii but its content is gzip-compressed (misleading extension)",
                "Rename it to .nii.gz",
            )
    elif require:
        raise _fail(
            label,
            "not a NIfTI file name (expected .nii or .nii.gz)",
            "Convert the scan to NIfTI (e.g. dcm2niix for DICOM, mri_convert for .mgz)",
        )


def _image_from_stream(
    fileobj: io.BufferedIOBase, label: str, max_voxels: int
) -> nib.Nifti1Image | nib.Nifti2Image:
    """Decode a single-file NIfTI from a binary stream, checking the header before reading the voxels."""
    compressed = fileobj.read(2) == _GZIP_MAGIC
    fileobj.seek(0)
    stream = gzip.GzipFile(fileobj=fileobj, mode="rb") if compressed else fileobj
    try:
        with stream:
            head = _read(stream, _HEADER_PEEK)
            header = _parse_header(head, label)
            shape = _check_shape(_header_shape(header, label), label, max_voxels)
            try:
                dtype = header.get_data_dtype()
            except (KeyError, ValueError, TypeError):  # nibabel: an unknown datatype code
                code = int(header["datatype"])
                raise _fail(
                    label, f"corrupt header (unknown voxel data type code {code})", "Re-export the scan"
                ) from None
            if dtype.kind not in "iuf":
                raise _fail(
                    label,
                    f"voxel data type {dtype} is not supported (RGB, complex or structured)",
                    "Save the T1 as integer or floating-point intensities",
                )
            try:
                offset = int(header.get_data_offset())
            except (ValueError, OverflowError):  # vox_offset NaN or infinite
                raise _fail(
                    label, "corrupt header (voxel data offset is not a number)", "Re-export the scan"
                ) from None
            if not header.sizeof_hdr <= offset <= _MAX_VOX_OFFSET:
                raise _fail(label, f"corrupt header (voxel data offset {offset})", "Re-export the scan")
            expected = offset + int(np.prod(shape)) * dtype.itemsize
            # Read exactly what the header announces and no more: this caps the decompressed size, so
            # trailing data (or a bomb behind a small header) is never inflated.
            raw = head + _read(stream, max(expected - len(head), 0))
    except (OSError, EOFError, zlib.error) as exc:
        raise _fail(
            label, f"corrupt or truncated gzip stream ({exc})", "Re-download or re-export the scan"
        ) from None
    if len(raw) < expected:
        raise _fail(
            label,
            f"truncated: the header announces {expected} bytes, the file holds {len(raw)}",
            "Re-download or re-export the scan",
        )
    klass = nib.Nifti2Image if header.sizeof_hdr == 540 else nib.Nifti1Image
    try:
        return klass.from_bytes(raw[:expected])
    except Exception as exc:  # nibabel raises several types for corrupt headers
        raise _fail(label, f"unreadable NIfTI ({exc})", "Re-export the scan") from None


def _read(stream: io.BufferedIOBase, n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        chunk = stream.read(min(left, 2**24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _parse_header(head: bytes, label: str) -> nib.Nifti1Header | nib.Nifti2Header:
    not_nifti = _fail(
        label,
        "not a NIfTI file",
        "Convert the scan to NIfTI-1 (.nii or .nii.gz), e.g. with dcm2niix or mri_convert",
    )
    if len(head) < 348:
        if len(head) >= 4 and _sizeof_hdr(head) is not None:
            raise _fail(label, f"truncated: only {len(head)} bytes of header", "Re-download the scan")
        raise not_nifti
    found = _sizeof_hdr(head)
    if found is None:
        raise not_nifti
    size, endianness = found
    if len(head) < size:
        raise _fail(label, f"truncated: only {len(head)} bytes of header", "Re-download the scan")
    klass = nib.Nifti2Header if size == 540 else nib.Nifti1Header
    header = klass(head[:size], endianness=endianness, check=False)
    magic = bytes(header["magic"]).rstrip(b"\x00")
    if magic in (b"ni1", b"ni2"):
        raise _fail(
            label,
            "is the header of a .hdr/.img pair, not a single-file NIfTI",
            "Convert the pair to one .nii.gz (e.g. nibabel: nib.save(nib.load('x.hdr'), 'x.nii.gz'))",
        )
    if magic not in (b"n+1", b"n+2"):
        raise not_nifti
    return header


def _sizeof_hdr(head: bytes) -> tuple[int, str] | None:
    for endianness in ("<", ">"):
        size = int(np.frombuffer(head[:4], dtype=f"{endianness}i4")[0])
        if size in (348, 540):
            return size, endianness
    return None


def _header_shape(header: nib.Nifti1Header, label: str) -> tuple[int, ...]:
    dims = [int(d) for d in header["dim"]]
    ndim = dims[0]
    if not 1 <= ndim <= 7 or any(d < 0 for d in dims[1 : ndim + 1]):
        raise _fail(label, f"corrupt header (dim = {dims})", "Re-export the scan")
    return tuple(dims[1 : ndim + 1])


# --- checks -----------------------------------------------------------------------------------------------
def _check_shape(shape: tuple[int, ...], label: str, max_voxels: int) -> tuple[int, ...]:
    text = "×".join(str(s) for s in shape)
    if len(shape) < 3:
        raise _fail(
            label,
            f"is {len(shape)}-D (shape {text}); a 3-D T1 volume is needed",
            "Export the whole volume, not a slice",
        )
    if 0 in shape:
        raise _fail(label, f"has a zero-length axis (shape {text})", "Re-export the scan")
    extra = int(np.prod(shape[3:], dtype=np.int64))
    if extra > 1:
        raise _fail(
            label,
            f"holds {extra} volumes (shape {text}); one 3-D T1 volume is needed",
            "Extract one volume first (e.g. nilearn.image.index_img(img, 0) or fslroi)",
        )
    n = int(np.prod(shape[:3], dtype=np.int64))
    if n > max_voxels:
        raise _fail(
            label,
            f"too large: {text} = {n} voxels (limit {max_voxels})",
            "Crop or resample the scan (about 1 mm is plenty)",
        )
    return shape


def _validated(img: nib.spatialimages.SpatialImage, label: str) -> nib.Nifti1Image:
    affine = _checked_affine(img, label)
    try:
        with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
            # float64 values beyond float32's range become inf here and are refused below.
            warnings.simplefilter("ignore", RuntimeWarning)
            data = np.asarray(img.get_fdata(dtype=np.float32, caching="unchanged"), dtype=np.float32)
    except Exception as exc:  # truncated files behind a proxy, bad scaling, ...
        raise _fail(label, f"voxel data cannot be read ({exc})", "Re-export the scan") from None
    data = data.reshape(data.shape[:3])
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - np.count_nonzero(finite))
        raise _fail(
            label,
            f"{bad} voxel(s) are NaN or infinite (or beyond the float32 range)",
            "Replace them (e.g. with 0 outside the brain) and save again",
        )
    header = (
        nib.Nifti1Header.from_header(img.header)
        if isinstance(img.header, nib.Nifti1Header)
        else nib.Nifti1Header()
    )
    out = nib.Nifti1Image(np.ascontiguousarray(data), affine, header)
    out.set_data_dtype(np.float32)
    out.header.set_slope_inter(None, None)
    return out


def _checked_affine(img: nib.spatialimages.SpatialImage, label: str) -> np.ndarray:
    try:
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:
        raise _fail(
            label, f"the orientation (sform/qform) cannot be read ({exc})", "Fix the header"
        ) from None
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise _fail(
            label,
            "the affine (sform/qform) holds NaN or infinite values",
            "Fix the header's orientation, e.g. by re-exporting from the registration tool",
        )
    linear = affine[:3, :3]
    sizes = np.sqrt((linear**2).sum(axis=0))
    volume = abs(float(np.linalg.det(linear)))
    # |det| relative to the product of the column lengths is 1 for orthogonal axes, 0 for parallel ones.
    if volume == 0.0 or not np.all(sizes > 0) or volume / float(np.prod(sizes)) < 1e-3:
        raise _fail(
            label,
            "the affine (sform/qform) is singular: its voxel axes do not span 3-D space",
            "Fix the header's orientation, e.g. by re-exporting from the registration tool",
        )
    lo, hi = VOXEL_SIZE_RANGE_MM
    if not np.all((sizes >= lo) & (sizes <= hi)):
        text = " × ".join(f"{s:.4g}" for s in sizes)
        raise _fail(
            label,
            f"implausible voxel size {text} mm (expected {lo}–{hi} mm)",
            "Check the header's pixdim, units (xyzt_units) and sform/qform",
        )
    return affine
