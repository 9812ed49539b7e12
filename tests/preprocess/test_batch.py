"""Batch mode of ``hyperfusion preprocess``: parallel, resumable, a failing subject reported without stopping
the rest, and the result a cohort directory ``load_cohort`` reads."""

from __future__ import annotations

import csv
import json

import nibabel as nib

from hyperfusion.cli import main
from hyperfusion.data import load_cohort
from hyperfusion.data.preprocess.template import template
from tests.preprocess.conftest import moved


def test_a_table_of_subjects_becomes_a_cohort_and_a_rerun_resumes(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    nib.save(moved(template(2)), raw / "a.nii.gz")  # skull-stripped already: registration only
    (raw / "b.nii").write_bytes(b"not a scan")
    table = tmp_path / "subjects.csv"
    table.write_text("PTID,DX_bl,AGE,PTGENDER,scan\nS1,CN,70,Female,raw/a.nii.gz\nS2,AD,75,Male,raw/b.nii\n")
    out = tmp_path / "cohort"
    args = [
        "preprocess",
        "--input",
        str(table),
        "--out",
        str(out),
        "--no-skull-strip",
        "--workers",
        "2",
        "--quiet",
    ]
    assert main(args) == 1  # one subject failed
    report = json.loads(capsys.readouterr().out)
    assert (report["done"], report["failed"], report["failed_subjects"]) == (1, 1, ["S2"])
    rows = {r["PTID"]: r for r in csv.DictReader((out / "preprocess" / "summary.csv").open())}
    assert rows["S1"]["status"] == "done" and "QC passed" in rows["S1"]["qc"]
    assert rows["S2"]["status"] == "failed" and "not a NIfTI file" in rows["S2"]["error"]
    cohort = load_cohort(out)
    assert cohort.table.set_index("PTID").loc["S1", "image_path"].endswith("images/S1.nii.gz")
    assert (out / "preprocess" / "S1" / "qc.png").is_file()
    # a second run skips the finished subject and tries the failed one again
    stamp = (out / "images" / "S1.nii.gz").stat().st_mtime_ns
    assert main(args) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["skipped"], report["failed"]) == (1, 1)
    assert (out / "images" / "S1.nii.gz").stat().st_mtime_ns == stamp
