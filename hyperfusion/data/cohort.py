"""ADNI-format cohorts: a cohort directory or a raw ADNIMERGE table -> one row per subject.

Two inputs are accepted (docs/architecture.md, "Cohort on disk"):

* a cohort directory: ``cohort.csv`` (one row per subject, ADNIMERGE column names), ``images/PTID.nii.gz``,
  ``cohort.json`` (provenance), and for synthetic cohorts ``truth/``;
* a raw ADNIMERGE.csv with several visits per subject: the baseline visit is taken (VISCODE ``bl``, else the
  earliest EXAMDATE).

The result is a :class:`Cohort` whose ``table`` has one row per subject: ``PTID``, ``DX`` (CN / MCI / AD), the
nine attributes of the schema as numbers (PTGENDER: 0 = Female, 1 = Male), a censoring flag per CSF value
(``ABETA_censored`` etc.: -1 below the assay range, +1 above, 0 not censored) and ``image_path`` (missing, i.e.
NaN, where there is no scan). Malformed values raise :class:`~hyperfusion.errors.DataError` naming the file, the line, the
column and the value; rows without a usable label are dropped and counted, never guessed.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hyperfusion.data.schema import (
    CLASS_NAMES,
    DIAGNOSIS_MAP,
    FEATURE_NAMES,
    FEATURES,
    LABEL_COLUMNS,
    Feature,
    feature,
)
from hyperfusion.errors import DataError, read_json_object

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "none", "null", "-"})
COGNITIVE_COLUMNS = ("MMSE", "ADAS13", "CDRSB")
#: Columns a record may hold; parse_record reads the attributes and ignores the others.
RECORD_COLUMNS = frozenset({*FEATURE_NAMES, "PTID", "VISCODE", "DX", "DX_bl", "Group", *COGNITIVE_COLUMNS})
_PTID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_CENSORED_RE = re.compile(r"^\s*([<>])\s*=?\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")
_SEX_MAP = {"female": 0.0, "f": 0.0, "male": 1.0, "m": 1.0}
IMAGE_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class Cohort:
    """One row per subject, and where it came from.

    Attributes:
        table: the subjects (see the module docstring for its columns).
        path: the cohort directory or table it was read from.
        label_column: the diagnosis column the labels were taken from ("" if a brain-age table has none).
        source: "synthetic", "ADNI" or "table" (an ADNI-format table of unstated provenance).
        provenance: the contents of ``cohort.json`` (empty for a bare table).
        n_rows_read: rows in the file, all visits included.
        dropped_without_label: subjects whose baseline row had no usable label.
        baseline_rule: how many subjects were taken from VISCODE ``bl`` / the earliest EXAMDATE / their only row.
    """

    table: pd.DataFrame
    path: Path
    label_column: str
    source: str
    provenance: dict = field(default_factory=dict)
    n_rows_read: int = 0
    dropped_without_label: int = 0
    baseline_rule: dict = field(default_factory=dict)
    target_column: str = "DX"  # "AGE" for a brain-age cohort (regression on age; diagnosis optional)
    #: Other diagnosis columns of the table compared with the one used: {column: {"compared", "disagree"}}
    label_agreement: dict = field(default_factory=dict)
    #: The entry check of its scans when it was loaded (``CohortScanCheck.to_dict()``; None: not checked)
    scan_check: dict | None = None
    #: (the table it was built from, PTID -> the position of its first row): see :meth:`row_position`
    _positions: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def row_position(self, ptid: str) -> int | None:
        """The position in ``table`` of subject ``ptid``'s first row (None: no such subject); a dictionary
        built once per table, so that looking up every subject of a large cohort is not quadratic."""
        held = self._positions
        if held is None or held[0] is not self.table or held[1] != len(self.table):
            positions: dict[str, int] = {}
            for i, ptid_i in enumerate(self.table["PTID"].tolist()):
                positions.setdefault(ptid_i, i)
            held = self._positions = (self.table, len(self.table), positions)
        return held[2].get(ptid)

    @property
    def task(self) -> str:
        """ "ad" (diagnosis labels) or "brain_age" (the target is AGE)."""
        return "brain_age" if self.target_column == "AGE" else "ad"

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"

    def __len__(self) -> int:
        return len(self.table)

    def labels(self) -> np.ndarray:
        """Class indices (CN 0, MCI 1, AD 2), shape (N,)."""
        return self.table["DX"].map({c: i for i, c in enumerate(CLASS_NAMES)}).to_numpy(dtype=np.int64)

    def features(self) -> pd.DataFrame:
        """The nine schema attributes as floats (NaN where missing), in schema order."""
        return self.table.loc[:, list(FEATURE_NAMES)].astype(float)

    def summary(self) -> dict:
        """A JSON-able summary: subjects, classes, label column, missing rates, censoring, scans."""
        t = self.table
        feats = self.features()
        censored = {}
        for f in FEATURES:
            if f.censorable:
                flags = t[f"{f.name}_censored"]
                censored[f.name] = {"below": int((flags < 0).sum()), "above": int((flags > 0).sum())}
        return {
            "path": str(self.path),
            "source": self.source,
            "synthetic": self.is_synthetic,
            "label_column": self.label_column,
            "label_agreement": self.label_agreement,
            "task": self.task,
            "rows_read": self.n_rows_read,
            "subjects": len(t),
            "dropped_without_label": self.dropped_without_label,
            "baseline_rule": self.baseline_rule,
            "class_counts": {c: int((t["DX"] == c).sum()) for c in CLASS_NAMES},
            "missing_rate": {n: round(float(feats[n].isna().mean()), 4) if len(t) else 0.0 for n in feats},
            "censored": censored,
            "subjects_with_scan": int(t["image_path"].notna().sum()),
            "scan_check": self.scan_check,
        }

    def scan_warnings(self, dashboard: bool = False) -> list[str]:
        """The warnings that outputs made from this cohort carry when its scans failed the entry check and it
        was loaded anyway (``allow_unregistered``); empty otherwise. ``dashboard``: worded for the dashboard,
        which shows such a cohort marked, with how to fix it."""
        if not self.scan_check or self.scan_check["passed"]:
            return []
        from hyperfusion.data.entry import cohort_problem

        how = "the dashboard shows it, marked" if dashboard else "--allow-unregistered"
        line = f"UNRELIABLE: cohort {self.path}: {cohort_problem(self.scan_check)}; used anyway ({how})"
        return [line + (" " + DASHBOARD_COHORT_FIX if dashboard else "")]

    def label_note(self) -> str:
        """One sentence when the table's other diagnosis columns disagree with the one used, else ""."""
        parts = [
            f"{col} differs for {v['disagree']} of {v['compared']} subjects"
            for col, v in self.label_agreement.items()
            if v["disagree"]
        ]
        if not parts:
            return ""
        return (
            f"Labels from column {self.label_column}; " + "; ".join(parts) + " (choose with --label-column)."
        )


def cohort_identity(cohort: Cohort) -> str:
    """Who the cohort's subjects are, so that a model's stored partition is matched only to its own cohort.

    Real tables: the source ("ADNI", or "table" for an ADNI-format table of unstated provenance), since their
    PTIDs are real people's identities. Synthetic cohorts number their subjects SYN_0001 … whatever the
    generator's settings, so their identity is what draws the subjects (``cohort.json``): task, seed, λ, the
    age range and the generator version. Not N, since a cohort of N is the first N subjects of a larger one
    (a subject's draw does not depend on N), nor the voxel size (the same subjects, rendered finer). Cohorts of
    one seed and task share their subjects' records even when λ or the version differ:
    :func:`synthetic_lineage` names that family.
    """
    if not cohort.is_synthetic:
        return str(cohort.source)
    return synthetic_identity(cohort.provenance)


def subject_namespace(cohort: Cohort) -> str:
    """Which people a PTID names in this cohort: two cohorts with the same namespace give a PTID to the same
    person, so a subject chosen in one may be carried to the other; otherwise the choice must be dropped.

    ADNI and synthetic cohorts: :func:`cohort_identity` (ADNI PTIDs are people's identities; a synthetic
    SYN_0001 is the same draw in every cohort of one generator identity, whatever its N). A table of unstated
    provenance: its path as well, since two such tables may number different people alike.
    """
    identity = cohort_identity(cohort)
    return identity if cohort.source in ("ADNI", "synthetic") else f"{identity}:{Path(cohort.path).resolve()}"


def subject_label(row: pd.Series | Mapping[str, object]) -> str:
    """How a subject picker names a subject: PTID, diagnosis, age and sex (``SYN_0001 · MCI · 83 y · male``);
    a missing value says so."""
    dx, age, sex = row.get("DX"), row.get("AGE"), row.get("PTGENDER")
    if isinstance(sex, int | float | np.integer | np.floating) and not pd.isna(sex):
        sex = feature("PTGENDER").categories[int(sex)]  # a table's code; a raw record says "Female"
    parts = [
        str(row.get("PTID")),
        dx if isinstance(dx, str) and dx else "diagnosis unknown",
        f"{float(age):.0f} y" if age is not None and not pd.isna(age) else "age unknown",
        sex.lower() if isinstance(sex, str) else "sex unknown",
    ]
    return " · ".join(parts)


def subject_labels(cohort: Cohort) -> dict[str, str]:
    """:func:`subject_label` of every subject, by PTID, in the table's order."""
    rows = cohort.table[[c for c in ("PTID", "DX", "AGE", "PTGENDER") if c in cohort.table]].to_dict(
        "records"
    )
    return {str(row["PTID"]): subject_label(row) for row in rows}  # (iterrows: 8x slower, every rerun)


def synthetic_identity(provenance: Mapping) -> str:
    """:func:`cohort_identity` of a synthetic cohort from its ``cohort.json`` content."""
    knobs = provenance.get("knobs")
    if not isinstance(knobs, Mapping) and "seed" not in provenance:
        # a synthetic table of another generator: its whole description
        digest = hashlib.sha256(
            json.dumps(dict(provenance), sort_keys=True, default=str).encode()
        ).hexdigest()
        return f"synthetic:{provenance.get('generator', 'unknown')}:{digest[:12]}"
    knobs = knobs if isinstance(knobs, Mapping) else {}
    return (
        f"synthetic:{knobs.get('task', provenance.get('task'))}:seed={knobs.get('seed', provenance.get('seed'))}:"
        f"lambda={knobs.get('interaction_strength')}:ages={knobs.get('age_range')}:"
        f"v{provenance.get('generator_version')}"
    )


def synthetic_lineage(provenance: Mapping) -> str | None:
    """Generator, task and seed of a synthetic cohort (None if unknown): cohorts that share it hold the same
    subjects' records, whatever their λ or generator version."""
    knobs = provenance.get("knobs")
    if provenance.get("source") != "synthetic" or not isinstance(knobs, Mapping):
        return None
    return f"{provenance.get('generator')}:{knobs.get('task')}:seed{knobs.get('seed')}"


# --- values ------------------------------------------------------------------------------------------------
def _where(file: Path | str, line: int | None, column: str) -> str:
    return f"{file}, line {line}, column {column}" if line is not None else f"{file}, field {column}"


def parse_value(raw: object, feat: Feature, *, file: Path | str, line: int | None) -> tuple[float, int]:
    """Parse one cell of attribute ``feat``: returns (value or NaN, censoring flag -1 / 0 / +1).

    Raises DataError naming the file, line, column and value when it is malformed or implausible.
    """
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return math.nan, 0
    text = str(raw).strip()
    if text.lower() in MISSING_TOKENS:
        return math.nan, 0
    where = _where(file, line, feat.name)
    if feat.categories:
        value = _SEX_MAP.get(text.lower())
        if value is None:
            raise DataError(f"{where}: value {text!r} is not one of {'/'.join(feat.categories)}")
        return value, 0
    flag = 0
    match = _CENSORED_RE.match(text)
    if match:
        if not feat.censorable:
            raise DataError(f"{where}: censored value {text!r} is only allowed for CSF measures")
        flag = -1 if match.group(1) == "<" else 1
        text = match.group(2)
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: value {text!r} is not a number; fix or empty the cell") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: value {text!r} is not a finite number")
    lo, hi = feat.plausible_range
    if not lo <= value <= hi:
        unit = f" {feat.unit}" if feat.unit else ""
        raise DataError(
            f"{where}: value {text}{unit} is outside the plausible range [{lo:g}, {hi:g}] for {feat.meaning}"
        )
    if feat.type == "count" and value != round(value):
        raise DataError(f"{where}: value {text!r} must be a whole number ({feat.meaning})")
    return value, flag


def parse_record(record: Mapping[str, object], *, source: str = "record") -> dict[str, float]:
    """Parse one subject's record (ADNIMERGE names -> raw values, e.g. from JSON or a form).

    Returns every schema attribute as a float (NaN where missing or absent) plus ``NAME_censored`` flags.
    Unknown keys are refused so that a typo (``APOE_4``) is not silently treated as a missing value.
    """
    if not isinstance(record, Mapping):
        raise DataError(
            f"{source}: a record must be an object of column -> value, got {type(record).__name__}"
        )
    unknown = sorted(str(k) for k in record if k not in RECORD_COLUMNS)
    if unknown:
        raise DataError(
            f"{source}: unknown field(s) {unknown}; expected ADNIMERGE names {list(FEATURE_NAMES)}"
        )
    out: dict[str, float] = {}
    for f in FEATURES:
        value, flag = parse_value(record.get(f.name), f, file=source, line=None)
        out[f.name] = value
        if f.censorable:
            out[f"{f.name}_censored"] = flag
    return out


def cohort_record(row: pd.Series | Mapping[str, object]) -> dict[str, object]:
    """A cohort table row -> the raw record :func:`parse_record` reads back: numbers, None where missing, sex
    as its category, censored CSF values as the assay reports them (">1700", "<200"). A cohort subject and a
    hand-written ``ROW.json`` then take the same path."""
    out: dict[str, object] = {}
    for f in FEATURES:
        value = row.get(f.name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[f.name] = None
            continue
        if f.categories:
            out[f.name] = f.categories[int(value)]
            continue
        flag = row.get(f"{f.name}_censored", 0) if f.censorable else 0
        flag = 0 if flag is None or (isinstance(flag, float) and math.isnan(flag)) else int(flag)
        value = float(value)
        out[f.name] = f"{'<' if flag < 0 else '>'}{value:g}" if flag else value
    return out


def cohort_row(cohort: Cohort, ptid: str) -> pd.Series:
    """The table row of subject ``ptid``; an unknown PTID is refused with a sample of the cohort's."""
    position = cohort.row_position(ptid)
    if position is None:
        sample = ", ".join(cohort.table["PTID"].head(5))
        raise DataError(f"{cohort.path}: no subject {ptid!r}; PTIDs look like {sample}")
    return cohort.table.iloc[position]


def cohort_scan(cohort: Cohort, ptid: str, *, generate: bool = False) -> str | None:
    """The scan path of subject ``ptid``, or None. ``generate``: for a shipped synthetic table (scans made on
    demand), that subject's scan, generated into the cache if needed
    (:func:`hyperfusion.data.synthetic.shipped.subject_scan`); otherwise only a scan the table finds."""
    path = cohort_row(cohort, ptid).get("image_path")
    if isinstance(path, str):
        return path
    if generate and cohort.is_synthetic:
        from hyperfusion.data.synthetic.shipped import subject_scan

        scan = subject_scan(cohort.path, ptid)
        return str(scan) if scan is not None else None
    return None


def cohort_subject(
    cohort: Cohort, ptid: str, *, generate: bool = False
) -> tuple[str | None, dict[str, object]]:
    """(scan path or None, raw record) of the subject ``ptid`` (``generate``: see :func:`cohort_scan`)."""
    return cohort_scan(cohort, ptid, generate=generate), cohort_record(cohort_row(cohort, ptid))


def record_changes(
    recorded: Mapping[str, object], edited: Mapping[str, object]
) -> list[tuple[str, object, object]]:
    """(attribute, recorded, edited) for each value that differs between two raw records, compared as the
    models read them (parsed), so 70 and 70.0, or a censored "<200" kept as recorded, are no change."""
    a = parse_record(recorded, source="the recorded values")
    b = parse_record(edited, source="the edited record")

    def same(u: float, v: float) -> bool:
        return (math.isnan(u) and math.isnan(v)) or u == v

    changes = []
    for f in FEATURES:
        names = (f.name, f"{f.name}_censored") if f.censorable else (f.name,)
        if any(not same(a[n], b[n]) for n in names):
            changes.append((f.name, recorded.get(f.name), edited.get(f.name)))
    return changes


def describe_changes(changes: list[tuple[str, object, object]]) -> str:
    """ "APOE4 0 → 2, ABETA missing → <200": :func:`record_changes` as one line."""

    def show(v: object) -> str:
        return "missing" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{name} {show(before)} → {show(after)}" for name, before, after in changes)


def require_some_value(parsed: Mapping[str, float], source: str, example: str = "") -> None:
    """Refuse a parsed record whose every attribute is missing: its prediction would rest on imputation only."""
    if all(value != value for name, value in parsed.items() if not name.endswith("_censored")):
        raise DataError(
            f"{source}: every value of the record is missing, so a prediction would rest on imputed values "
            "only. Give at least AGE and PTGENDER" + (f", e.g. {example}" if example else "")
        )


_DELIMITERS = (",", ";", "\t")  # spreadsheets in some locales write ";" (decimal commas); "Text" exports tabs


def _looks_like_attribute(column: str) -> tuple[str, bool] | None:
    """The attribute a column name is probably a misspelling of, and whether it is the same name but for case
    and punctuation ('APOE_4', 'age') rather than merely close ('PTGENDR'); None if it looks like none."""
    plain = re.sub(r"[^a-z0-9]", "", column.lower())
    for name in FEATURE_NAMES:
        if plain == name.lower():
            return name, True
    # A typo changes a character or two; ADNIMERGE's own relatives of the attributes (ABETA42, PTEDUCAT_bl)
    # are longer by more than that and are ignored like any other column
    near = [n for n in FEATURE_NAMES if abs(len(n) - len(column)) <= 1]
    close = difflib.get_close_matches(column.upper(), near, n=1, cutoff=0.8)
    return (close[0], False) if close else None


def record_from_csv(raw: bytes, *, name: str) -> tuple[dict[str, str], list[str]]:
    """One subject's record from a CSV file: a header line of ADNIMERGE column names and one line of values.

    Returns (record, ignored): the values of the columns a record may hold (text as written, checked as by
    :func:`parse_record`) and the names of the other columns, which are ignored (a row exported from
    ADNIMERGE has a hundred). A column that looks like a misspelt attribute ('APOE_4', 'age') is refused,
    not ignored, so that a typo never turns a value into a missing one. UTF-8 (with or without BOM),
    Windows-1252 and Latin-1 are read; ``,``, ``;`` and tab separators are recognised from the header line.

    Raises:
        DataError: not a text CSV, no header or no row, several rows, a row longer or shorter than the header,
            a repeated column, a misspelt attribute column, a malformed value, or every value missing.
    """
    text = decode_table(raw, name)
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first:
        raise DataError(f"{name}: the file is empty; give a header line of column names and a line of values")
    delimiter = max(_DELIMITERS, key=first.count)  # a tie (one column): ","
    try:
        rows = [
            [cell.strip() for cell in row]
            for row in csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
            if len(row) > 1 or (row and row[0].strip())  # blank lines are not rows
        ]
    except csv.Error as exc:
        raise DataError(f"{name}: cannot be read as CSV ({exc})") from None
    header, values = rows[0], rows[1:]
    if not values:
        raise DataError(f"{name}: a header line but no values; put the subject's values on the second line")
    if len(values) > 1:
        raise DataError(
            f"{name}: holds {len(values)} rows; upload one subject's record (a header line and one row of values)"
        )
    row = values[0]
    if len(row) != len(header):
        raise DataError(
            f"{name}: the row has {len(row)} values but the header names {len(header)} columns; "
            f"check the separators (found {delimiter!r}) and quote values that contain one"
        )
    repeated = sorted({c for c in header if c and header.count(c) > 1})
    if repeated:
        raise DataError(f"{name}: column {repeated[0]!r} appears {header.count(repeated[0])} times; keep one")
    record: dict[str, str] = {}
    ignored: list[str] = []
    for column, value in zip(header, row):
        if column in RECORD_COLUMNS:
            record[column] = value
        elif column:
            ignored.append(column)
        elif value:
            raise DataError(f"{name}: the value {value!r} has no column name in the header; name its column")
    for column in ignored:
        match = _looks_like_attribute(column)
        if match is None:
            continue
        meant, same_name = match
        if meant not in record:
            raise DataError(
                f"{name}: column {column!r} is not an ADNIMERGE name; did you mean {meant!r}? Rename the column "
                "(as it is, the value would be ignored and taken as missing)"
            )
        if same_name:  # 'APOE_4' beside 'APOE4': which one holds the value meant is anybody's guess
            raise DataError(f"{name}: columns {column!r} and {meant!r} both name {meant}; keep one of them")
    require_some_value(parse_record(record, source=name), name)
    return record, ignored


def map_diagnosis(raw: object, *, file: Path | str, line: int, column: str) -> str | None:
    """ADNIMERGE diagnosis string -> CN / MCI / AD; None when empty; DataError when unknown."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    text = str(raw).strip()
    if text.lower() in MISSING_TOKENS:
        return None
    label = DIAGNOSIS_MAP.get(text.upper())
    if label is None:
        raise DataError(
            f"{_where(file, line, column)}: diagnosis {text!r} is not one of "
            f"{sorted(DIAGNOSIS_MAP)}; fix it or empty the cell to drop the subject"
        )
    return label


# --- tables ------------------------------------------------------------------------------------------------
def decode_table(raw: bytes, label: str | Path) -> str:
    """The text of a CSV file: UTF-8 (a BOM is dropped), else Windows-1252 / Latin-1, as spreadsheets write it.

    Raises DataError for what is not a text table at all (a gzip file, a ZIP / .xlsx workbook, UTF-16 text or
    other binary data holding NUL bytes), saying how to save it instead.
    """
    if raw[:2] == b"\x1f\x8b":
        raise DataError(f"{label}: is gzip-compressed (a scan?), not a CSV text file; give the table as .csv")
    if raw[:4] == b"PK\x03\x04":
        raise DataError(
            f"{label}: is a ZIP archive (an Excel .xlsx?), not a CSV text file; save it as CSV UTF-8"
        )
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(
            f"{label}: is UTF-16 text (it holds NUL bytes), e.g. Excel's 'Unicode Text'; save it as CSV UTF-8"
        )
    text = ""
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):  # latin-1 decodes any byte: the loop always ends
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if "\x00" in text:
        raise DataError(f"{label}: not a text CSV file (it holds NUL bytes)")
    return text


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: no such file; give a cohort directory or an ADNIMERGE-format .csv")
    text = decode_table(path.read_bytes(), path)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot be read as CSV ({str(exc).strip().splitlines()[0]})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if "PTID" not in df.columns:
        raise DataError(f"{path}: no PTID column; an ADNIMERGE-format table names subjects in PTID")
    if df.empty:
        raise DataError(f"{path}: the table has a header but no rows")
    return df


def _pick_label_column(df: pd.DataFrame, requested: str | None, path: Path) -> str:
    if requested is not None:
        if requested not in df.columns:
            raise DataError(f"{path}: label column {requested!r} not found; the table has {list(df.columns)}")
        return requested
    for col in LABEL_COLUMNS:
        if col in df.columns:
            return col
    raise DataError(f"{path}: no diagnosis column; expected one of {list(LABEL_COLUMNS)}")


def _baseline_rows(df: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, dict]:
    """One row per PTID: VISCODE 'bl' if present, else the earliest EXAMDATE."""
    df = df.assign(_line=np.arange(len(df)) + 2)  # +2: the header is line 1
    counts = df["PTID"].value_counts()
    if (counts == 1).all():
        return df, {"only_row": len(df)}
    if "VISCODE" not in df.columns and "EXAMDATE" not in df.columns:
        dup = counts[counts > 1].index[0]
        raise DataError(
            f"{path}: PTID {dup!r} appears {counts[dup]} times and the table has no VISCODE or EXAMDATE "
            "to choose the baseline visit; keep one row per subject"
        )
    rule = {"viscode_bl": 0, "earliest_examdate": 0, "only_row": 0}
    viscode = df["VISCODE"].str.strip().str.lower() if "VISCODE" in df.columns else None
    dates = None
    if "EXAMDATE" in df.columns:
        dates = pd.to_datetime(df["EXAMDATE"].str.strip(), errors="coerce", format="mixed")
    keep = []
    for _ptid, idx in df.groupby("PTID", sort=False).indices.items():
        if len(idx) == 1:
            keep.append(idx[0])
            rule["only_row"] += 1
            continue
        if viscode is not None:
            bl = [i for i in idx if viscode.iat[i] == "bl"]
            if len(bl) > 1:
                lines = ", ".join(str(df["_line"].iat[i]) for i in bl)
                raise DataError(f"{path}: PTID {_ptid!r} has several baseline (bl) rows, lines {lines}")
            if bl:
                keep.append(bl[0])
                rule["viscode_bl"] += 1
                continue
        if dates is None or dates.iloc[idx].isna().all():
            raise DataError(
                f"{path}: PTID {_ptid!r} has {len(idx)} visits, none with VISCODE 'bl' or a readable "
                "EXAMDATE; cannot tell which is the baseline"
            )
        keep.append(idx[int(np.nanargmin(dates.iloc[idx].to_numpy(dtype="datetime64[ns]").astype(float)))])
        rule["earliest_examdate"] += 1
    return df.iloc[sorted(keep)], rule


def _parse_table(
    df: pd.DataFrame, path: Path, label_column: str | None, images_dir: Path | None, regression: bool = False
) -> tuple:
    rows = []
    dropped = 0
    for rec in df.to_dict("records"):
        line = int(rec["_line"])
        ptid = str(rec["PTID"]).strip()
        if not _PTID_RE.match(ptid):
            raise DataError(
                f"{_where(path, line, 'PTID')}: {ptid!r} is not a usable subject ID "
                "(letters, digits, '_', '.', '-'; at most 64 characters)"
            )
        if label_column:
            label = map_diagnosis(rec.get(label_column), file=path, line=line, column=label_column)
            if label is None and not regression:
                dropped += 1
                continue
            source = str(rec[label_column]).strip()
        else:
            label, source = None, ""
        row: dict[str, object] = {"PTID": ptid, "DX": label, "DX_source": source}
        for f in FEATURES:
            value, flag = parse_value(rec.get(f.name), f, file=path, line=line)
            row[f.name] = value
            if f.censorable:
                row[f"{f.name}_censored"] = flag
        for col in COGNITIVE_COLUMNS:
            text = str(rec.get(col, "")).strip()
            try:
                row[col] = float(text) if text.lower() not in MISSING_TOKENS else math.nan
            except ValueError:
                raise DataError(f"{_where(path, line, col)}: value {text!r} is not a number") from None
        for col in ("VISCODE", "EXAMDATE"):
            if col in rec:
                row[col] = str(rec[col]).strip()
        row["image_path"] = _find_image(images_dir, ptid)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        raise DataError(f"{path}: no subject has a usable label in column {label_column!r}")
    if regression:
        lacking = int(table["AGE"].isna().sum())
        if lacking:
            table = table[table["AGE"].notna()]
            dropped += lacking
        if table.empty:
            raise DataError(f"{path}: no subject has an AGE, the brain-age target")
    dup = table["PTID"][table["PTID"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: duplicate PTID {dup.iloc[0]!r}; keep one row per subject")
    for f in FEATURES:
        if f.censorable:
            table[f"{f.name}_censored"] = table[f"{f.name}_censored"].astype(np.int8)
    return table.reset_index(drop=True), dropped


def _find_image(images_dir: Path | None, ptid: str) -> str | None:
    if images_dir is None:
        return None
    for suffix in IMAGE_SUFFIXES:
        candidate = images_dir / f"{ptid}{suffix}"
        if candidate.is_file():
            return str(candidate)
    return None


#: A cohort directory's metadata file: provenance, and a synthetic cohort's generator settings
METADATA_FILE = "cohort.json"


def read_cohort_metadata(cohort_dir: str | Path) -> dict:
    """The JSON object in ``cohort_dir/cohort.json`` (the one reader of it); ``{}`` where there is none. A
    damaged file raises :class:`~hyperfusion.errors.DataError` naming it."""
    path = Path(cohort_dir) / METADATA_FILE
    return read_json_object(path) if path.is_file() else {}


#: What loading a cohort does with its scans: check an even sample of them, all of them, or none.
SCAN_CHECK_MODES = ("sample", "all", "off")


def load_cohort(
    path: str | Path,
    *,
    label_column: str | None = None,
    images_dir: str | Path | None = None,
    check_scans: str = "sample",
    allow_unregistered: bool = False,
    remember_checks: bool = True,
) -> Cohort:
    """Read a cohort directory or an ADNIMERGE-format table; one row per subject.

    Args:
        path: a cohort directory (``cohort.csv`` inside) or a CSV table (e.g. ADNIMERGE.csv).
        label_column: ``DX_bl``, ``DX`` or ``Group``; default: ``cohort.json``'s choice, else the first of
            those the table has.
        images_dir: where ``PTID.nii.gz`` scans are; default: ``images/`` beside ``cohort.csv``.
        check_scans: the entry check of its scans (:func:`hyperfusion.data.entry.check_cohort_scans`):
            ``"sample"`` (default) checks an even spread of 12 of them, ``"all"`` every one, ``"off"`` none.
            Results are remembered by file (path, size, mtime) in the cache folder, so a second load opens no
            scan; ``remember_checks=False`` writes nothing (the dashboard).
        allow_unregistered: load a cohort whose checked scans fail (not skull-stripped, not registered to
            MNI152, not a T1) all the same; ``Cohort.scan_warnings()`` then says so. Without it such a cohort
            raises :class:`DataError`, one line naming the first problem and ``hyperfusion preprocess``. A
            ``cohort.json`` holding ``"allow_unregistered": true`` does the same for that cohort.
    """
    if check_scans not in SCAN_CHECK_MODES:
        raise DataError(f"check_scans={check_scans!r}: use one of {', '.join(SCAN_CHECK_MODES)}")
    path = Path(path)
    provenance: dict = {}
    if path.is_dir():
        table_path = path / "cohort.csv"
        if not table_path.is_file():
            raise DataError(f"{path}: a cohort directory must hold cohort.csv (and images/, cohort.json)")
        provenance = read_cohort_metadata(path)
        default_images = path / "images"
    else:
        table_path = path
        default_images = path.parent / "images"
    images = Path(images_dir) if images_dir is not None else default_images
    df = _read_csv(table_path)
    requested = label_column or provenance.get("label_column")
    # A brain-age cohort names AGE as its target (cohort.json "label_column": "AGE"); its diagnosis, if any,
    # is still read from the usual columns but is not required
    regression = requested == "AGE" or provenance.get("task") == "brain_age"
    if regression:
        if "AGE" not in df.columns:
            raise DataError(f"{table_path}: a brain-age cohort needs an AGE column")
        label_column = next((c for c in LABEL_COLUMNS if c in df.columns), None)
    else:
        label_column = _pick_label_column(df, requested, table_path)
    baseline, rule = _baseline_rows(df, table_path)
    agreement = _label_agreement(baseline, label_column) if label_column and not regression else {}
    table, dropped = _parse_table(
        baseline, table_path, label_column, images if images.is_dir() else None, regression=regression
    )
    source = str(provenance.get("source", "table"))
    scan_check = None
    scans = table.set_index("PTID")["image_path"].dropna().to_dict()
    if check_scans != "off" and scans:
        from hyperfusion.data.entry import COHORT_FIX, COHORT_SAMPLE, ScanCheckMemo, check_cohort_scans

        memo = ScanCheckMemo(persist=remember_checks)
        check = check_cohort_scans(
            scans, sample=COHORT_SAMPLE if check_scans == "sample" else None, memo=memo
        )
        scan_check = check.to_dict()
        if not check.passed and not (allow_unregistered or provenance.get("allow_unregistered") is True):
            raise DataError(f"{path}: {check.problem()}. {COHORT_FIX}")
    return Cohort(
        table=table,
        path=path,
        label_column=label_column or "",
        target_column="AGE" if regression else "DX",
        source=source,
        provenance=provenance,
        n_rows_read=len(df),
        dropped_without_label=dropped,
        baseline_rule=rule,
        label_agreement=agreement,
        scan_check=scan_check,
    )


def _label_agreement(df: pd.DataFrame, used: str) -> dict:
    """How the table's other diagnosis columns compare with ``used``, over the rows where both map to a class
    (values that are missing or unknown in the other column are not compared: they never become labels)."""

    def mapped(column: str) -> pd.Series:
        text = df[column].astype(str).str.strip().str.upper()
        return text.map(DIAGNOSIS_MAP)

    ours = mapped(used)
    out = {}
    for col in LABEL_COLUMNS:
        if col == used or col not in df.columns:
            continue
        theirs = mapped(col)
        both = ours.notna() & theirs.notna()
        out[col] = {"compared": int(both.sum()), "disagree": int((ours[both] != theirs[both]).sum())}
    return out


def feature_array(rows: pd.DataFrame | Mapping[str, object] | list[Mapping[str, object]]) -> np.ndarray:
    """The nine attributes as a float array (N, 9), columns in ``FEATURE_NAMES`` order, NaN where missing.

    Parsed records (a prediction's few, on every edit in the dashboard) become numbers without pandas."""
    if isinstance(rows, Mapping):
        rows = [rows]
    if isinstance(rows, pd.DataFrame):
        return feature_frame(rows).to_numpy()
    values = [[math.nan if pd.isna(v := r.get(n)) else float(v) for n in FEATURE_NAMES] for r in rows]
    return np.asarray(values, dtype=float).reshape(len(values), len(FEATURE_NAMES))


def feature_frame(rows: pd.DataFrame | Mapping[str, object] | list[Mapping[str, object]]) -> pd.DataFrame:
    """The nine attributes as a float frame from a cohort table, one parsed record or a list of them."""
    if not isinstance(rows, pd.DataFrame):
        return pd.DataFrame(feature_array(rows), columns=list(FEATURE_NAMES))
    frame = rows
    missing = [n for n in FEATURE_NAMES if n not in frame.columns]
    frame = frame.assign(**{n: math.nan for n in missing})
    return frame.loc[:, list(FEATURE_NAMES)].astype(float)


__all__ = [
    "Cohort",
    "cohort_record",
    "cohort_row",
    "cohort_scan",
    "cohort_subject",
    "describe_changes",
    "record_changes",
    "read_cohort_metadata",
    "cohort_identity",
    "subject_label",
    "subject_labels",
    "subject_namespace",
    "load_cohort",
    "parse_record",
    "parse_value",
    "record_from_csv",
    "require_some_value",
    "decode_table",
    "map_diagnosis",
    "feature_array",
    "feature_frame",
    "feature",
]


DASHBOARD_COHORT_FIX = (
    "Its predictions and maps are unreliable: preprocess the raw scans with `hyperfusion preprocess --input "
    "RAW_FOLDER_OR_TABLE --out NEW_COHORT_DIR` and point the sidebar at that cohort."
)


def table_mtime(path: str | Path) -> float:
    """When the cohort's table at ``path`` (a cohort directory or a table) last changed; 0 when it is missing.
    A cache of cohorts keyed by (path, table_mtime) reads a changed table again."""
    path = Path(path).expanduser()
    table = path / "cohort.csv" if path.is_dir() else path
    return table.stat().st_mtime if table.exists() else 0.0
