"""read_scan: a scan decoded and validated once, accepted wherever a path or an upload's bytes are."""

from __future__ import annotations

import pickle

import nibabel as nib
import numpy as np
import pytest

from hyperfusion.data import nifti
from hyperfusion.errors import DataError


@pytest.fixture
def scan_file(tmp_path):
    path = tmp_path / "s.nii.gz"
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random((12, 14, 10), dtype=np.float32), np.eye(4)), path
    )
    return path


def test_a_scan_file_decodes_once_and_is_the_path_and_its_hash(scan_file, monkeypatch):
    calls = []
    decode = nifti._image_from_stream
    monkeypatch.setattr(nifti, "_image_from_stream", lambda *a: calls.append(a[1]) or decode(*a))
    scan = nifti.read_scan(scan_file)
    assert scan == str(scan_file) and not calls  # nothing decoded before first use
    first = nifti.load_nifti(scan)
    assert nifti.load_nifti(scan) is first and scan.image is first
    assert nifti.image_sha256(scan) == nifti.image_sha256(str(scan_file))
    assert nifti.scan_grid(scan)[0] == (12, 14, 10)
    assert len(calls) == 1
    with pytest.raises(ValueError):  # shared, so read-only
        np.asarray(first.dataobj)[0, 0, 0] = 1
    assert type(pickle.loads(pickle.dumps(scan))) is str  # pickled (e.g. by a cache) as the plain path
    assert nifti.read_scan(scan) is scan


def test_upload_bytes_decode_once_and_a_bad_scan_fails_on_first_use(scan_file, monkeypatch):
    calls = []
    decode = nifti._image_from_stream
    monkeypatch.setattr(nifti, "_image_from_stream", lambda *a: calls.append(a[1]) or decode(*a))
    data = scan_file.read_bytes()
    scan = nifti.read_scan(data, name="mine.nii.gz")
    assert isinstance(scan, bytes) and scan == data
    np.testing.assert_array_equal(nifti.load_nifti(scan).get_fdata(), nifti.load_nifti(scan).get_fdata())
    assert calls == ["mine.nii.gz"]
    bad = nifti.read_scan(b"not a scan", name="bad.nii")
    with pytest.raises(DataError, match="bad.nii"):
        _ = bad.image
