import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from hyperfusion.data import load_cohort, parse_record
from hyperfusion.errors import DataError


def test_adnimerge_baseline_labels_and_counts(adnimerge_path):
    cohort = load_cohort(adnimerge_path)
    t = cohort.table.set_index("PTID")
    assert cohort.label_column == "DX_bl"
    assert list(t.index) == ["S1", "S2", "S3", "S4", "S5", "S7"]
    assert cohort.dropped_without_label == 1  # S6 has no label
    assert t["DX"].to_dict() == {"S1": "CN", "S2": "MCI", "S3": "MCI", "S4": "CN", "S5": "AD", "S7": "MCI"}
    # baseline visit, not a later one: S1's bl row says 71.2 years, S5's bl row ADAS13 31
    assert t.loc["S1", "AGE"] == 71.2 and t.loc["S5", "ADAS13"] == 31
    # S3 has no 'bl' row: its earliest EXAMDATE is the 'sc' row of 2011, listed second
    assert t.loc["S3", "VISCODE"] == "sc" and t.loc["S3", "APOE4"] == 2
    assert cohort.baseline_rule == {"viscode_bl": 3, "earliest_examdate": 1, "only_row": 3}
    assert cohort.n_rows_read == 11


def test_censored_values_become_bound_and_flag(adnimerge_path):
    t = load_cohort(adnimerge_path).table.set_index("PTID")
    assert t.loc["S1", "ABETA"] == 1700 and t.loc["S1", "ABETA_censored"] == 1
    assert t.loc["S3", "ABETA"] == 200 and t.loc["S3", "ABETA_censored"] == -1
    assert t.loc["S3", "PTAU"] == 8 and t.loc["S3", "PTAU_censored"] == -1
    assert t.loc["S2", "ABETA"] == pytest.approx(640.2) and t.loc["S2", "ABETA_censored"] == 0
    assert t.loc["S1", "PTGENDER"] == 0 and t.loc["S2", "PTGENDER"] == 1


def test_summary_counts(adnimerge_path):
    s = load_cohort(adnimerge_path).summary()
    assert s["subjects"] == 6 and s["dropped_without_label"] == 1
    assert s["class_counts"] == {"CN": 2, "MCI": 3, "AD": 1}
    assert s["missing_rate"]["FDG"] == pytest.approx(2 / 6, abs=1e-4)
    assert s["missing_rate"]["APOE4"] == 0.0 and s["missing_rate"]["AV45"] == pytest.approx(1 / 6, abs=1e-4)
    assert s["censored"]["ABETA"] == {"below": 1, "above": 1}
    assert s["censored"]["PTAU"] == {"below": 1, "above": 0}
    assert s["subjects_with_scan"] == 0
    assert s["source"] == "table" and s["synthetic"] is False


def test_other_label_column(adnimerge_path):
    cohort = load_cohort(adnimerge_path, label_column="DX")
    assert cohort.label_column == "DX"
    assert cohort.table.set_index("PTID").loc["S5", "DX"] == "AD"  # "Dementia" -> AD
    with pytest.raises(DataError, match="label column 'Group' not found"):
        load_cohort(adnimerge_path, label_column="Group")


def test_inspect_command_prints_json(adnimerge_path):
    out = subprocess.run(
        [sys.executable, "-m", "hyperfusion.cli", "inspect", "--data", str(adnimerge_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    summary = json.loads(out)
    assert summary["class_counts"] == {"CN": 2, "MCI": 3, "AD": 1}
    assert summary["label_column"] == "DX_bl"


@pytest.mark.parametrize(
    ("column", "bad", "message"),
    [
        ("AGE", "seventy", "not a number"),
        ("AGE", "300", "outside the plausible range"),
        ("APOE4", "1.5", "whole number"),
        ("APOE4", "5", "outside the plausible range"),
        ("PTGENDER", "Other", "not one of Female/Male"),
        ("ABETA", "-5", "outside the plausible range"),
        ("FDG", ">1.2", "only allowed for CSF"),
        ("DX_bl", "Alzheimer", "diagnosis 'Alzheimer'"),
        ("PTEDUCAT", "=cmd|' /C calc'!A0", "not a number"),
    ],
)
def test_malformed_value_names_file_line_column_value(adnimerge_path, column, bad, message):
    lines = adnimerge_path.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[6].split(",")  # line 7 of the file: S4's only row
    row[header.index(column)] = bad
    lines[6] = ",".join(row)
    adnimerge_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        load_cohort(adnimerge_path)
    text = str(exc.value)
    assert message in text and str(adnimerge_path) in text and "line 7" in text and column in text


def test_cohort_directory_with_scans_and_provenance(tmp_path, adnimerge_path):
    root = tmp_path / "cohort"
    (root / "images").mkdir(parents=True)
    rows = [
        line for line in adnimerge_path.read_text().splitlines() if ",bl," in line or line.startswith("RID")
    ]
    (root / "cohort.csv").write_text("\n".join(rows) + "\n")
    (root / "cohort.json").write_text(json.dumps({"source": "synthetic", "label_column": "DX"}))
    (root / "images" / "S1.nii.gz").write_bytes(b"placeholder")
    cohort = load_cohort(root)
    # the placeholder is no scan: the entry check of the cohort's scans reports it as unreadable (it is named
    # again when the subject is used; the rest of the cohort stays usable), and checks nothing else
    check = cohort.scan_check
    assert check["passed"] and check["checked"] == 0 and check["unreadable"][0]["PTID"] == "S1"
    assert "named .nii.gz but not gzip" in check["unreadable"][0]["error"]
    assert cohort.is_synthetic and cohort.label_column == "DX"
    t = cohort.table.set_index("PTID")
    assert t.loc["S1", "image_path"] == str(root / "images" / "S1.nii.gz")
    assert pd.isna(t.loc["S2", "image_path"])
    assert cohort.summary()["subjects_with_scan"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("PTID,AGE\nA1,70\n", "no diagnosis column"),
        ("RID,AGE,DX\n1,70,CN\n", "no PTID column"),
        ("PTID,DX,AGE\nA1,CN,70\nA1,AD,71\n", "appears 2 times"),
        ("PTID,DX,AGE\n../../etc,CN,70\n", "not a usable subject ID"),
        ("PTID,DX,AGE\nA1,,70\n", "no subject has a usable label"),
    ],
)
def test_table_level_errors(tmp_path, content, message):
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_cohort(path)


def test_header_only_and_missing_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("PTID,DX,AGE\n")
    with pytest.raises(DataError, match="header but no rows"):
        load_cohort(path)
    with pytest.raises(DataError, match="no such file"):
        load_cohort(tmp_path / "absent.csv")


def test_latin1_encoding_is_read(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("PTID,DX,AGE,SITE\nA1,CN,70,Zürich\n".encode("latin-1"))
    assert load_cohort(path).table["AGE"].tolist() == [70.0]


def test_parse_record():
    rec = parse_record({"AGE": "70", "PTGENDER": "Male", "ABETA": ">1700", "APOE4": None})
    assert rec["AGE"] == 70 and rec["PTGENDER"] == 1 and rec["ABETA"] == 1700 and rec["ABETA_censored"] == 1
    assert math.isnan(rec["APOE4"]) and math.isnan(rec["FDG"])
    with pytest.raises(DataError, match="unknown field"):
        parse_record({"APOE_4": 1})
    with pytest.raises(DataError, match="plausible range"):
        parse_record({"AGE": 300})
    all_missing = parse_record({})
    assert np.isnan([all_missing[k] for k in ("AGE", "TAU", "AV45")]).all()


def test_brain_age_cohort_targets_age_and_needs_no_diagnosis(tmp_path):
    root = tmp_path / "ages"
    root.mkdir()
    (root / "cohort.csv").write_text("PTID,AGE,PTGENDER\nB1,24.5,Female\nB2,,Male\nB3,88,Male\n")
    (root / "cohort.json").write_text(
        json.dumps({"source": "synthetic", "task": "brain_age", "label_column": "AGE"})
    )
    cohort = load_cohort(root)
    assert cohort.task == "brain_age" and cohort.target_column == "AGE"
    assert cohort.table["PTID"].tolist() == ["B1", "B3"] and cohort.dropped_without_label == 1
    assert cohort.summary()["task"] == "brain_age"
    assert load_cohort(root, label_column="AGE").task == "brain_age"


def test_record_changes_compare_values_as_the_models_read_them():
    from hyperfusion.data.cohort import describe_changes, record_changes

    recorded = {"AGE": 70.0, "PTGENDER": "Female", "APOE4": 1.0, "ABETA": "<200"}
    assert record_changes(recorded, {"AGE": 70, "PTGENDER": "Female", "APOE4": 1, "ABETA": "<200"}) == []
    changes = record_changes(recorded, {**recorded, "APOE4": 2, "ABETA": 200.0, "AGE": None})
    assert [name for name, *_ in changes] == ["AGE", "APOE4", "ABETA"]  # the schema's order
    assert describe_changes(changes) == "AGE 70 → missing, APOE4 1 → 2, ABETA <200 → 200"


def test_rows_are_found_by_ptid_in_a_dictionary_built_once_per_table(tmp_path):
    """cohort_row looks subjects up by position (a cohort of thousands is scanned once, not once per
    subject); the first row of a repeated PTID wins, a new table is indexed anew, an unknown PTID is refused."""
    import pandas as pd

    from hyperfusion.data.cohort import Cohort, cohort_row

    table = pd.DataFrame({"PTID": ["A", "B", "A", "C"], "AGE": [70.0, 71.0, 99.0, 72.0]})
    c = Cohort(table=table, path=tmp_path, label_column="DX", source="table")
    assert cohort_row(c, "A")["AGE"] == 70.0 and cohort_row(c, "C")["AGE"] == 72.0
    assert c.row_position("B") == 1 and c.row_position("Z") is None
    c.table = table.iloc[::-1].reset_index(drop=True)  # another table: positions follow it
    assert cohort_row(c, "A")["AGE"] == 99.0 and c.row_position("C") == 0
    with pytest.raises(DataError, match="no subject 'Z'"):
        cohort_row(c, "Z")
