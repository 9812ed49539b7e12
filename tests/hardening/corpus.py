"""The bad-input corpus of issue #8: every case is built at test time in a temporary folder (no data is stored).

A case is a name, a builder that writes the bad input into a folder and returns the CLI arguments that use it,
and the fragment the one-line error must contain (``None``: the input is odd but valid, and must work).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hyperfusion.data.geometry import ad_box
from tests.conftest import mni_brain
from tests.data.conftest import nifti_bytes, rotation

MODEL = Path(__file__).resolve().parents[2] / "assets" / "demo" / "models" / "ad" / "hyperfusion" / "fold0"
RECORD = {"AGE": 74.0, "PTGENDER": "Female", "PTEDUCAT": 16, "APOE4": 1, "ABETA": ">1700", "FDG": 1.2}


def brain(voxel_mm: float = 2.0, margin_mm: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """A small RAS scan covering the AD box with a margin: the MNI152 template there (a registered,
    skull-stripped T1 that passes the entry check), with a little noise inside the brain."""
    g = ad_box(2.0)
    lo = np.asarray(g.box_min_mm) - margin_mm
    hi = np.asarray(g.box_max_mm) + margin_mm
    shape = tuple(int(np.ceil((b - a) / voxel_mm)) for a, b in zip(lo, hi))
    affine = np.diag([voxel_mm] * 3 + [1.0])
    affine[:3, 3] = lo
    return _template_on(shape, affine), affine


def _template_on(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    data = mni_brain(shape, affine)
    noise = np.random.default_rng(0).uniform(0, 5, shape).astype(np.float32)
    return np.where(data > 5, data + noise, 0).astype(np.float32)


def _gz(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=1)


def _ok_bytes() -> bytes:
    return nifti_bytes(*brain())


def _edit(**fields) -> bytes:
    def edit(h):
        for k, v in fields.items():
            h[k] = v

    return nifti_bytes(*brain(), header=edit)


def _with_affine(affine: np.ndarray) -> bytes:
    data, _ = brain()

    def edit(h):
        h.set_sform(affine, code=2)
        h.set_qform(np.eye(4), code=0)

    return nifti_bytes(data, np.eye(4), header=edit)


def _oblique() -> bytes:
    """An oblique grid (12° about z, 8° about x) holding the registered brain: only the grid is tilted."""
    data, affine = brain(margin_mm=30.0)
    centre = affine @ np.r_[np.asarray(data.shape) / 2, 1.0]
    linear = rotation("z", 12.0) @ rotation("x", 8.0) @ affine[:3, :3]
    oblique = np.eye(4)
    oblique[:3, :3] = linear
    oblique[:3, 3] = centre[:3] - linear @ (np.asarray(data.shape) / 2)
    return nifti_bytes(_template_on(data.shape, oblique), oblique)


def _shifted(offset_mm: tuple[float, float, float]) -> bytes:
    data, affine = brain()
    affine[:3, 3] += offset_mm
    return nifti_bytes(data, affine)


def _brain_outside_box() -> bytes:
    """A large field of view covering the box, but the only non-zero voxels lie 100 mm above it."""
    data, affine = brain(voxel_mm=4.0, margin_mm=120.0)
    data[:] = 0
    inv = np.linalg.inv(affine)
    i, j, k = (inv @ np.array([0.0, 0.0, 100.0, 1.0]))[:3].astype(int)
    data[i - 5 : i + 5, j - 5 : j + 5, k - 3 : k + 3] = np.random.default_rng(1).uniform(60, 100, (10, 10, 6))
    return nifti_bytes(data, affine)


def _nan() -> bytes:
    data, affine = brain()
    data[3, 4, 5] = np.nan
    return nifti_bytes(data, affine)


def _inf() -> bytes:
    data, affine = brain()
    data[3, 4, 5] = np.inf
    return nifti_bytes(data, affine)


def _as(dtype) -> bytes:
    data, affine = brain()
    return nifti_bytes(data.astype(dtype), affine)


def _bomb() -> bytes:
    """60 MB of zeros behind a valid small header, gzip-compressed to about 60 kB."""
    return _gz(_ok_bytes() + bytes(60 * 2**20))


def _dims(dims: list[int]) -> bytes:
    return _edit(dim=[len(dims), *dims, *[1] * (7 - len(dims))])


#: (name, file name, bytes builder, error fragment or None when the scan must be accepted)
SCAN_CASES: list[tuple[str, str, Callable[[], bytes], str | None]] = [
    ("not_nifti", "scan.nii", lambda: b"this is a text file, not a scan\n" * 20, "not a NIfTI file"),
    ("not_gzip_named_gz", "scan.nii.gz", _ok_bytes, "misleading extension"),
    ("gzip_named_nii", "scan.nii", lambda: _gz(_ok_bytes()), "misleading extension"),
    ("wrong_suffix", "scan.mgz", lambda: _gz(_ok_bytes()), "not a NIfTI file name"),
    ("truncated_gz", "scan.nii.gz", lambda: _gz(_ok_bytes())[:5000], "truncated"),
    ("truncated_voxels", "scan.nii", lambda: _ok_bytes()[:-1000], "truncated"),
    ("huge_dims_bomb", "scan.nii.gz", lambda: _gz(_dims([2000, 2000, 2000]) + bytes(2**20)), "too large"),
    ("two_d", "scan.nii", lambda: nifti_bytes(np.ones((20, 20), np.float32)), "2-D"),
    ("four_d", "scan.nii", lambda: nifti_bytes(np.ones((10, 10, 10, 3), np.float32)), "3 volumes"),
    (
        "unknown_datatype_code",
        "scan.nii",
        lambda: _edit(datatype=3),
        "unknown voxel data type code 3",
    ),  # found by hypothesis
    ("zero_length_axis", "scan.nii", lambda: _dims([72, 0, 40]), "zero-length axis"),
    ("nan_voxel", "scan.nii.gz", lambda: _gz(_nan()), "NaN or infinite"),
    ("inf_voxel", "scan.nii.gz", lambda: _gz(_inf()), "NaN or infinite"),
    ("singular_affine", "scan.nii", lambda: _with_affine(np.diag([2.0, 2.0, 0.0, 1.0])), "singular"),
    (
        "nan_affine",
        "scan.nii",
        lambda: _with_affine(np.diag([2.0, np.nan, 2.0, 1.0])),
        "NaN or infinite values",
    ),
    (
        "voxel_size_in_metres",
        "scan.nii",
        lambda: _with_affine(np.diag([0.002] * 3 + [1.0])),
        "implausible voxel size",
    ),
    (
        "not_registered_scanner_space",
        "scan.nii.gz",
        lambda: _gz(_shifted((400.0, 300.0, 250.0))),
        "not registered to MNI152",
    ),
    ("brain_outside_box", "scan.nii.gz", lambda: _gz(_brain_outside_box()), "holds no brain"),
    # odd but valid: these must work
    ("gzip_bomb_after_valid_volume", "scan.nii.gz", _bomb, None),
    ("int16_data", "scan.nii.gz", lambda: _gz(_as(np.int16)), None),
    ("float64_data", "scan.nii.gz", lambda: _gz(_as(np.float64)), None),
    ("oblique_affine", "scan.nii.gz", lambda: _gz(_oblique()), None),
    ("other_voxel_size_3mm", "scan.nii.gz", lambda: _gz(nifti_bytes(*brain(voxel_mm=3.0))), None),
]


#: (name, record as written to ROW.json (str: raw text), error fragment or None)
RECORD_CASES: list[tuple[str, object, str | None]] = [
    ("non_numeric_age", {**RECORD, "AGE": "seventy"}, "'seventy' is not a number"),
    ("age_300", {**RECORD, "AGE": 300}, "outside the plausible range"),
    ("apoe4_5", {**RECORD, "APOE4": 5}, "outside the plausible range"),
    ("negative_csf", {**RECORD, "TAU": -12.0}, "outside the plausible range"),
    ("fractional_apoe4", {**RECORD, "APOE4": 1.5}, "must be a whole number"),
    ("censored_age", {**RECORD, "AGE": ">90"}, "censored value '>90' is only allowed for CSF"),
    ("nan_string", {**RECORD, "FDG": "inf"}, "not a finite number"),
    ("unknown_sex", {**RECORD, "PTGENDER": "F?"}, "is not one of"),
    ("every_value_missing", {"AGE": "", "APOE4": None}, "every value of the record is missing"),
    ("unknown_column", {**RECORD, "APOE_4": 1}, "unknown field(s) ['APOE_4']"),
    ("formula", {**RECORD, "AGE": "=cmd|' /C calc'!A0"}, "is not a number"),
    ("not_an_object", "[74, 1]", "must be a JSON object"),
    ("not_json", "AGE=74", "not valid JSON"),
    ("latin1_bytes", b'{"PTGENDER": "F\xe9minin"}', "not valid JSON"),
    ("censored_csf_is_fine", {**RECORD, "ABETA": "<200", "PTAU": ">120"}, None),
]


def _csv(rows: list[str]) -> str:
    return "\n".join(rows) + "\n"


HEADER = "PTID,VISCODE,DX_bl,AGE,PTGENDER,PTEDUCAT,APOE4,ABETA,TAU,PTAU,FDG,AV45"
ROW_A = "S1,bl,CN,71.2,Female,16,0,>1700,210.5,19.2,1.31,"
ROW_B = "S2,bl,AD,77.7,Male,14,1,512,380,36.2,0.95,1.44"


def record_csv(record: dict, delimiter: str = ",", encoding: str = "utf-8", newline: str = "\n") -> bytes:
    """A record as the dashboard's upload takes it: a header line of column names and one line of values."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    writer.writerow(list(record))
    writer.writerow(["" if v is None else v for v in record.values()])
    return out.getvalue().encode(encoding)


# The JSON-only cases of RECORD_CASES, as the CSV file a dashboard user would upload instead
_CSV_FORM_OF_RAW = {
    "not_an_object": (b"[74, 1]\n", "a header line but no values"),
    "not_json": (b"AGE=74\n", "a header line but no values"),
    "latin1_bytes": (b"AGE,PTGENDER\n74,F\xe9minin\n", "'F\u00e9minin' is not one of Female/Male"),
}
# Where the dashboard's CSV upload answers differently from the CLI's JSON record: other ADNIMERGE columns are
# ignored with a note, but a column that looks like a misspelt attribute is refused
_CSV_FRAGMENT = {"unknown_column": "columns 'APOE_4' and 'APOE4' both name APOE4"}
_CP1252_EXPORT = (
    "RID,PTID,VISCODE,SITE,EXAMDATE,DX_bl,AGE,PTGENDER,PTEDUCAT,APOE4,ABETA,TAU,PTAU,FDG,AV45,MMSE,COMMENT\n"
    "3,S3,bl,Clínica Sant Pau,2011-02-01,LMCI,79.1,Male,12,2,<200,400,<8,1.10,1.52,27,revisión\n"
).encode("cp1252")

#: (name, bytes of the uploaded CSV record, error fragment or None): the record corpus as the dashboard's
#: "one CSV row" upload sees it, and what only a CSV file can get wrong
CSV_RECORD_CASES: list[tuple[str, bytes, str | None]] = [
    *[
        (name, record_csv(rec), _CSV_FRAGMENT.get(name, fragment))
        for name, rec, fragment in RECORD_CASES
        if isinstance(rec, dict)
    ],
    *[(name, *_CSV_FORM_OF_RAW[name]) for name, rec, _ in RECORD_CASES if not isinstance(rec, dict)],
    ("empty_file", b"", "the file is empty"),
    ("blank_lines_only", b"\n \n\r\n", "the file is empty"),
    ("header_only", b"AGE,PTGENDER,APOE4\n", "a header line but no values"),
    ("several_rows", _csv([HEADER, ROW_A, ROW_B]).encode(), "holds 2 rows; upload one subject's record"),
    ("ragged_row", b"AGE,PTGENDER\n74,Female,16\n", "the row has 3 values but the header names 2 columns"),
    ("duplicate_column", b"AGE,PTGENDER,AGE\n74,Female,75\n", "column 'AGE' appears 2 times"),
    ("value_without_column", b"AGE,PTGENDER,\n74,Female,16\n", "the value '16' has no column name"),
    (
        "misspelt_column",
        b"AGE,PTGENDER,APOE_4\n74,Female,1\n",
        "column 'APOE_4' is not an ADNIMERGE name; did you mean 'APOE4'?",
    ),
    ("lower_case_column", b"age,PTGENDER\n74,Female\n", "did you mean 'AGE'?"),
    ("formula_in_sex", record_csv({**RECORD, "PTGENDER": "=1+1"}), "'=1+1' is not one of Female/Male"),
    ("formula_in_apoe4", record_csv({**RECORD, "APOE4": "@SUM(1+1)*cmd|' /C calc'!A0"}), "is not a number"),
    ("utf16", record_csv(RECORD, encoding="utf-16"), "is UTF-16 text"),
    ("scan_as_record", gzip.compress(b"not a table"), "is gzip-compressed"),
    ("xlsx_as_record", b"PK\x03\x04" + bytes(64), "is a ZIP archive"),
    ("binary", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "NUL bytes"),
    # odd but valid: these must work
    ("utf8_bom_crlf", b"\xef\xbb\xbf" + record_csv(RECORD, newline="\r\n"), None),
    ("semicolons", record_csv(RECORD, delimiter=";"), None),
    ("tabs", record_csv(RECORD, delimiter="\t"), None),
    ("quoted_and_padded", b'"AGE" , "PTGENDER" ,APOE4\n "74" , Female , 1\n\n', None),
    ("cp1252_adnimerge_export_with_other_columns", _CP1252_EXPORT, None),
    ("formula_in_an_ignored_column", b"AGE,PTGENDER,NOTE\n74,Female,=cmd|' /C calc'!A0\n", None),
]


#: (name, cohort.csv content (str or bytes), error fragment or None)
COHORT_CASES: list[tuple[str, str | bytes, str | None]] = [
    ("header_only", _csv([HEADER]), "header but no rows"),
    (
        "no_label_column",
        _csv([HEADER.replace("DX_bl,", ""), ROW_A.replace("CN,", "")]),
        "no diagnosis column",
    ),
    ("duplicate_ptid", _csv([HEADER, ROW_A, ROW_B, ROW_A]), "several baseline"),
    (
        "duplicate_ptid_no_viscode",
        _csv([HEADER.replace("VISCODE,", ""), ROW_A.replace("bl,", ""), ROW_A.replace("bl,", "")]),
        "appears 2 times",
    ),
    ("formula_cell", _csv([HEADER, ROW_A.replace("71.2", '"=HYPERLINK(""http://x"")"')]), "is not a number"),
    ("age_300", _csv([HEADER, ROW_A.replace("71.2", "300")]), "outside the plausible range"),
    ("apoe4_5", _csv([HEADER, ROW_A.replace("Female,16,0", "Female,16,5")]), "outside the plausible range"),
    ("utf16", _csv([HEADER, ROW_A]).encode("utf-16"), "NUL bytes"),
    ("not_a_table", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "NUL bytes"),
    # extra ADNIMERGE columns are ignored, and a cp1252 / latin-1 file is read
    (
        "latin1_extra_column_is_read",
        _csv([HEADER + ",SITE", ROW_A + ",Clínica", ROW_B + ",Hôpital"]).encode("latin-1"),
        None,
    ),
]


# --- the entry check (issue 14): valid NIfTI files that a model cannot read -------------------------------
def _codes_zero() -> bytes:
    def edit(h):
        h.set_sform(None, code=0)
        h.set_qform(None, code=0)

    data, affine = brain()
    return nifti_bytes(data, affine, header=edit)


def _moved(degrees: float = 0.0, shift_mm: float = 0.0) -> bytes:
    """The registered brain rotated about x (through the MNI origin) and shifted along y, on the same grid."""
    data, affine = brain(margin_mm=30.0)
    move = np.eye(4)
    move[:3, :3] = rotation("x", degrees)
    move[1, 3] = shift_mm
    # a voxel at world p shows the template at move⁻¹ p: the brain itself has moved
    return nifti_bytes(_template_on(data.shape, np.linalg.inv(move) @ affine), affine)


def _whole_head() -> bytes:
    """The registered brain inside a 'scalp': a 6–20 mm band of signal around it, as a head without stripping."""
    from scipy import ndimage

    data, affine = brain(margin_mm=30.0)
    inside = data > 0
    band = ndimage.binary_dilation(inside, iterations=10) & ~ndimage.binary_dilation(inside, iterations=3)
    data[band] = np.random.default_rng(2).uniform(60, 110, int(band.sum()))
    return nifti_bytes(data, affine)


def _label_map() -> bytes:
    data, affine = brain()
    return nifti_bytes(np.digitize(data, [1, 40, 70]).astype(np.float32), affine)


def _hounsfield() -> bytes:
    data, affine = brain()
    return nifti_bytes(np.where(data > 0, data * 0.4, -1000.0).astype(np.float32), affine)


def _inverted_contrast() -> bytes:
    data, affine = brain()
    return nifti_bytes(np.where(data > 0, 130.0 - data, 0.0).astype(np.float32), affine)


#: (name, file name, bytes builder, fragment): files every reader accepts, refused by the entry check of
#: predict / explain / the Upload page (each message also names `hyperfusion preprocess`)
ENTRY_CASES: list[tuple[str, str, Callable[[], bytes], str]] = [
    ("unknown_space_codes_0", "scan.nii.gz", lambda: _gz(_codes_zero()), "sform and qform codes are 0"),
    ("rotated_15_degrees", "scan.nii.gz", lambda: _gz(_moved(degrees=15.0)), "not aligned to MNI152"),
    ("shifted_20_mm", "scan.nii.gz", lambda: _gz(_moved(shift_mm=20.0)), "not aligned to MNI152"),
    ("whole_head", "scan.nii.gz", lambda: _gz(_whole_head()), "not skull-stripped"),
    ("label_map", "scan.nii.gz", lambda: _gz(_label_map()), "mask or label map"),
    ("hounsfield_units", "scan.nii.gz", lambda: _gz(_hounsfield()), "Hounsfield"),
    ("inverted_contrast", "scan.nii.gz", lambda: _gz(_inverted_contrast()), "does not look like a T1"),
]


def write_record(folder: Path, record: object) -> Path:
    path = folder / "row.json"
    if isinstance(record, bytes):
        path.write_bytes(record)
    elif isinstance(record, str):
        path.write_text(record)
    else:
        path.write_text(json.dumps(record))
    return path


def write_scan(folder: Path, file_name: str, build: Callable[[], bytes]) -> Path:
    path = folder / file_name
    path.write_bytes(build())
    return path


def write_ok_scan(folder: Path) -> Path:
    return write_scan(folder, "ok.nii.gz", lambda: _gz(_ok_bytes()))


def write_cohort(folder: Path, csv: str | bytes, scans: dict[str, bytes] | None = None) -> Path:
    root = folder / "cohort"
    (root / "images").mkdir(parents=True)
    (root / "cohort.csv").write_bytes(csv if isinstance(csv, bytes) else csv.encode("utf-8"))
    for ptid, raw in (scans or {}).items():
        (root / "images" / f"{ptid}.nii.gz").write_bytes(raw)
    return root


def ok_scan_bytes() -> bytes:
    return _gz(_ok_bytes())
