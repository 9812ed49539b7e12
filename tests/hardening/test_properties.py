"""Property-based tests (hypothesis) of the record parser, the cohort table reader and the NIfTI validator.

Whatever a user types or uploads, these functions either return a usable value or raise DataError (whose
message the CLI and the dashboard show); no other exception escapes, and valid inputs come back unchanged.
"""

from __future__ import annotations

import gzip
import math

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hyperfusion.data import load_cohort
from hyperfusion.data.cohort import parse_record
from hyperfusion.data.nifti import load_nifti
from hyperfusion.data.schema import FEATURE_NAMES, FEATURES
from hyperfusion.errors import DataError
from tests.data.conftest import nifti_bytes
from tests.hardening.corpus import brain

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "NA", ">1700", "<8", "<= 200", "=1+1", "1e400", "Female", "m", "-0", "nan", " 74 "]),
    st.lists(st.integers(), max_size=3),
)
_keys = st.one_of(st.sampled_from(list(FEATURE_NAMES) + ["PTID", "DX"]), st.text(max_size=8))


@FAST
@given(st.dictionaries(_keys, _values, max_size=12))
def test_parse_record_returns_numbers_or_raises_data_error(record):
    try:
        parsed = parse_record(record)
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for f in FEATURES:
        value = parsed[f.name]
        assert math.isnan(value) or f.plausible_range[0] <= value <= f.plausible_range[1]


@st.composite
def _valid_records(draw):
    record, expected = {}, {}
    for f in FEATURES:
        if draw(st.booleans()):
            continue
        if f.categories:
            text = draw(st.sampled_from(["Female", "Male", "F", "m", " female "]))
            record[f.name], expected[f.name] = text, 0.0 if text.strip().lower().startswith("f") else 1.0
            continue
        lo, hi = f.plausible_range
        if f.type == "count":
            value = float(draw(st.integers(int(lo), int(hi))))
        else:
            value = draw(st.floats(lo, hi, allow_nan=False))
        record[f.name] = draw(st.sampled_from([value, repr(value), f" {value!r} "]))
        expected[f.name] = value
    return record, expected


@FAST
@given(_valid_records())
def test_valid_records_round_trip(case):
    record, expected = case
    parsed = parse_record(record)
    for f in FEATURES:
        if f.name in expected:
            assert parsed[f.name] == expected[f.name]
        else:
            assert math.isnan(parsed[f.name])


@FAST
@given(st.sampled_from([f for f in FEATURES if f.censorable]), st.data())
def test_censored_csf_values_keep_their_bound_and_direction(feature, data):
    lo, hi = feature.plausible_range
    bound = data.draw(
        st.floats(lo, hi, allow_nan=False).map(lambda v: round(v, 2)).filter(lambda v: lo <= v <= hi)
    )
    sign = data.draw(st.sampled_from(["<", ">"]))
    parsed = parse_record({feature.name: f"{sign}{bound}"})
    assert parsed[feature.name] == bound
    assert parsed[f"{feature.name}_censored"] == (-1 if sign == "<" else 1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=400) | st.binary(max_size=400))
def test_any_cohort_table_loads_or_raises_data_error(tmp_path, content):
    path = tmp_path / "cohort.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    try:
        load_cohort(path)
    except DataError as exc:
        assert "\n" not in str(exc).strip()


# --- NIfTI -----------------------------------------------------------------------------------------------
def _load(raw: bytes, name: str | None = None):
    try:
        return load_nifti(raw, name=name, max_voxels=10**6)
    except DataError as exc:
        assert str(exc)
        return None


@FAST
@given(st.binary(max_size=2000), st.sampled_from([None, "x.nii", "x.nii.gz"]), st.booleans())
def test_random_bytes_raise_only_data_error(raw, name, compress):
    _load(gzip.compress(raw, compresslevel=1) if compress else raw, name)


_VALID = nifti_bytes(*brain(voxel_mm=8.0))


@FAST
@given(st.lists(st.tuples(st.integers(0, 347), st.integers(0, 255)), min_size=1, max_size=8), st.booleans())
@example(edits=[(111, 127)], compress=False)  # vox_offset becomes NaN (found by this test in CI)
def test_corrupted_headers_raise_only_data_error(edits, compress):
    raw = bytearray(_VALID)
    for offset, byte in edits:
        raw[offset] = byte
    img = _load(gzip.compress(bytes(raw), compresslevel=1) if compress else bytes(raw))
    if img is not None:  # whatever is accepted is a finite 3-D volume with a usable affine
        assert img.ndim == 3 and np.isfinite(img.get_fdata()).all() and np.isfinite(img.affine).all()


@FAST
@given(st.integers(0, len(_VALID) - 1))
def test_truncated_files_raise_only_data_error(cut):
    assert _load(_VALID[:cut]) is None
    assert _load(gzip.compress(_VALID)[: cut // 40]) is None


@st.composite
def _valid_images(draw):
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.int32, np.float32, np.float64]))
    shape = draw(st.tuples(*[st.integers(1, 9)] * 3))
    if np.dtype(dtype).kind == "f":
        elements = st.floats(-1e4, 1e4, allow_nan=False, width=32)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, -30000), min(info.max, 30000))
    data = draw(arrays(dtype, shape, elements=elements))
    sizes = draw(st.tuples(*[st.floats(0.25, 9.5)] * 3))
    flips = draw(st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3))
    perm = draw(st.permutations([0, 1, 2]))
    affine = np.eye(4)
    affine[:3, :3] = np.eye(3)[perm] @ np.diag(np.multiply(sizes, flips))
    affine[:3, 3] = draw(st.tuples(*[st.floats(-200, 200)] * 3))
    return data, affine


@FAST
@given(_valid_images(), st.booleans())
def test_valid_images_round_trip(image, compress):
    data, affine = image
    raw = nib.Nifti1Image(data, affine).to_bytes()
    assume(True)
    img = load_nifti(gzip.compress(raw, compresslevel=1) if compress else raw)
    assert img.shape == data.shape
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), data.astype(np.float32))
    np.testing.assert_allclose(img.affine, affine, rtol=1e-5, atol=1e-4)
