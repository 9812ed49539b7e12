from __future__ import annotations

import gzip
import hashlib
import tracemalloc
import zlib

import nibabel as nib
import numpy as np
import pytest

from hyperfusion.data.nifti import image_sha256, load_nifti, scan_grid
from hyperfusion.errors import DataError
from tests.data.conftest import nifti_bytes

AFFINE = np.array(
    [[1.5, 0.0, 0.0, -10.0], [0.0, 1.2, 0.0, -20.0], [0.0, 0.0, 2.0, -30.0], [0.0, 0.0, 0.0, 1.0]]
)


@pytest.fixture
def data() -> np.ndarray:
    return np.random.default_rng(0).uniform(1, 100, size=(12, 14, 10)).astype(np.float32)


def _bytes(data, affine=AFFINE, edit=None) -> bytes:
    return nifti_bytes(data, affine, edit)


# --- every source kind gives the same validated image ---------------------------------------------------
def test_paths_bytes_and_images_load_identically(write_nifti, data):
    gz = write_nifti(data, AFFINE, name="a.nii.gz")
    raw = write_nifti(data, AFFINE, name="b.nii")
    sources = [gz, str(raw), gz.read_bytes(), raw.read_bytes(), nib.Nifti1Image(data, AFFINE)]
    for source in sources:
        img = load_nifti(source)
        assert isinstance(img, nib.Nifti1Image)
        assert img.get_data_dtype() == np.float32
        np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), data)
        np.testing.assert_allclose(img.affine, AFFINE, atol=1e-6)


def test_integer_scaled_and_float64_data_become_float32(write_nifti):
    ints = np.arange(60, dtype=np.int16).reshape(3, 4, 5)

    def scaled(h):
        h.set_slope_inter(2.0, 5.0)

    img = load_nifti(write_nifti(ints, AFFINE, name="i.nii.gz", header=scaled))
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(img.get_fdata(), ints * 2.0 + 5.0)

    doubles = np.linspace(-1, 1, 60).reshape(3, 4, 5)
    img = load_nifti(write_nifti(doubles, AFFINE, name="d.nii"))
    np.testing.assert_allclose(img.get_fdata(), doubles, rtol=1e-6)


def test_qform_is_used_when_there_is_no_sform(write_nifti, data):
    def qform_only(h):
        h.set_qform(AFFINE, code=1)
        h.set_sform(np.eye(4), code=0)

    img = load_nifti(write_nifti(data, np.eye(4), header=qform_only))
    np.testing.assert_allclose(img.affine, AFFINE, atol=1e-5)


def test_nifti2_is_accepted_and_returned_as_nifti1(write_nifti, data):
    img = load_nifti(write_nifti(data, AFFINE, name="n2.nii.gz", klass=nib.Nifti2Image))
    assert isinstance(img, nib.Nifti1Image)
    np.testing.assert_array_equal(img.get_fdata(), data)


def test_single_volume_4d_is_squeezed(data):
    img = load_nifti(_bytes(data[..., None]))
    assert img.shape == data.shape
    np.testing.assert_array_equal(img.get_fdata(), data)


# --- refusals -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("array", "needle"),
    [
        (np.ones((8, 8), np.float32), "2-D"),
        (np.ones((6, 7, 8, 3), np.float32), "3 volumes"),
        (np.ones((0, 7, 8), np.float32), "zero-length axis"),
        (np.array([np.nan] + [1.0] * 59, np.float32).reshape(3, 4, 5), "1 voxel(s) are NaN or infinite"),
        (np.array([np.inf, -np.inf] + [1.0] * 58, np.float32).reshape(3, 4, 5), "2 voxel(s)"),
        (np.full((3, 4, 5), 1e300), "beyond the float32 range"),
        (np.ones((3, 4, 5), np.complex64), "not supported"),
    ],
)
def test_unusable_volumes_are_refused_with_the_file_named(write_nifti, array, needle):
    path = write_nifti(array, AFFINE, name="bad.nii.gz")
    with pytest.raises(DataError, match="bad.nii.gz") as err:
        load_nifti(path)
    assert needle in str(err.value)


def _with_sform(matrix):
    def edit(h):
        h.set_qform(None, code=0)
        h["sform_code"] = 1
        h["srow_x"], h["srow_y"], h["srow_z"] = matrix[0], matrix[1], matrix[2]

    return edit


@pytest.mark.parametrize(
    ("matrix", "needle"),
    [
        (np.array([[np.nan, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]), "NaN or infinite"),
        (np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]), "singular"),
        (np.array([[1.0, 1.0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]]), "singular"),  # two parallel axes
        (np.array([[0.1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]), "implausible voxel size"),
        (np.array([[1.0, 0, 0, 0], [0, 12.0, 0, 0], [0, 0, 1, 0]]), "implausible voxel size"),
    ],
)
def test_bad_affines_are_refused(data, matrix, needle):
    raw = _bytes(data, np.eye(4), edit=_with_sform(matrix))
    with pytest.raises(DataError, match="upload.nii") as err:
        load_nifti(raw, name="upload.nii")
    assert needle in str(err.value)


def test_voxel_limit_is_checked(data):
    assert load_nifti(_bytes(data), max_voxels=data.size).shape == data.shape
    with pytest.raises(DataError, match="too large"):
        load_nifti(_bytes(data), max_voxels=data.size - 1)


def test_not_nifti_misleading_names_and_pairs(tmp_path, data):
    text = tmp_path / "notes.nii"
    text.write_bytes(b"subject,age\n" * 100)
    with pytest.raises(DataError, match="notes.nii: not a NIfTI file"):
        load_nifti(text)

    gz_text = tmp_path / "notes.nii.gz"
    gz_text.write_bytes(gzip.compress(b"subject,age\n" * 100))
    with pytest.raises(DataError, match="not a NIfTI file"):
        load_nifti(gz_text)

    plain_named_gz = tmp_path / "plain.nii.gz"
    plain_named_gz.write_bytes(_bytes(data))
    with pytest.raises(DataError, match="not gzip-compressed .misleading extension"):
        load_nifti(plain_named_gz)

    gz_named_plain = tmp_path / "packed.nii"
    gz_named_plain.write_bytes(gzip.compress(_bytes(data)))
    with pytest.raises(DataError, match="Rename it to .nii.gz"):
        load_nifti(gz_named_plain)

    mgz = tmp_path / "scan.mgz"
    mgz.write_bytes(gzip.compress(_bytes(data)))
    with pytest.raises(DataError, match="expected .nii or .nii.gz"):
        load_nifti(mgz)

    pair = nib.Nifti1Pair(data, AFFINE)
    header_only = pair.header.binaryblock + b"\x00" * 200
    with pytest.raises(DataError, match=".hdr/.img pair"):
        load_nifti(header_only)

    with pytest.raises(DataError, match="file not found"):
        load_nifti(tmp_path / "missing.nii.gz")


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_files_are_refused(tmp_path, data, compress):
    raw = _bytes(data)
    blob = gzip.compress(raw) if compress else raw
    for cut in (len(blob) * 3 // 5, 200):
        path = tmp_path / ("cut.nii.gz" if compress else "cut.nii")
        path.write_bytes(blob[:cut])
        with pytest.raises(DataError, match="truncated"):
            load_nifti(path)


def test_enormous_dims_are_refused_from_the_header_alone(data):
    def huge(h):
        h.set_data_shape((2000, 2000, 2000))

    # Only a few voxels follow the header: the size check must fire before any "truncated" complaint.
    raw = _bytes(data, edit=huge)
    with pytest.raises(DataError, match="too large: 2000×2000×2000"):
        load_nifti(gzip.compress(raw))


def test_gzip_bomb_is_never_inflated(data):
    """A valid small image followed by 256 MB of zeros inside the gzip stream (about 1 MB compressed)."""
    zero_mb = bytes(2**20)
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: gzip container
    bomb = packer.compress(_bytes(data)) + b"".join(packer.compress(zero_mb) for _ in range(256))
    bomb += packer.flush()
    assert len(bomb) < 2 * 2**20

    tracemalloc.start()
    try:
        img = load_nifti(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(img.get_fdata(), data)
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.0f} MB: the loader inflated the padding"


def test_source_of_the_wrong_type_is_refused():
    with pytest.raises(DataError, match="cannot read a scan from a list"):
        load_nifti([1, 2, 3])


# --- hashing and grids ----------------------------------------------------------------------------------
def test_image_sha256_is_the_hash_of_the_file_bytes(write_nifti, data):
    path = write_nifti(data, AFFINE)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert image_sha256(path) == expected
    assert image_sha256(str(path)) == expected
    assert image_sha256(path.read_bytes()) == expected
    other = write_nifti(data + 1, AFFINE, name="other.nii.gz")
    assert image_sha256(other) != expected
    img = nib.Nifti1Image(data, AFFINE)
    assert image_sha256(img) == hashlib.sha256(img.to_bytes()).hexdigest()


def test_scan_grid_checks_an_image_without_decoding_it(data):
    shape, affine = scan_grid(nib.Nifti1Image(data, AFFINE))
    assert shape == data.shape
    np.testing.assert_array_equal(affine, AFFINE)
    flat = nib.Nifti1Image.from_bytes(_bytes(data, edit=_with_sform(np.diag([1.0, 1.0, 0.0, 1.0])[:3])))
    with pytest.raises(DataError, match="ref.nii.gz: the affine .* is singular"):
        scan_grid(flat, name="ref.nii.gz")
    assert scan_grid(_bytes(data))[0] == data.shape
