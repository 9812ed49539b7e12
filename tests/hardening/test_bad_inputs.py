"""The bad-input corpus (tests/hardening/corpus.py) through the library and through the ``hyperfusion`` command.

Every refused case must give one line that contains its fragment, exit status 2, no traceback, and leave no
file behind (neither next to the inputs, nor in the working directory, nor at the output path). Every odd but
valid case must work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hyperfusion.cli import main
from hyperfusion.data import load_cohort
from hyperfusion.data.cohort import parse_record
from hyperfusion.data.geometry import ad_box, model_input
from hyperfusion.data.nifti import load_nifti
from hyperfusion.errors import DataError
from tests.hardening.corpus import (
    COHORT_CASES,
    ENTRY_CASES,
    HEADER,
    MODEL,
    RECORD,
    RECORD_CASES,
    ROW_A,
    ROW_B,
    SCAN_CASES,
    ok_scan_bytes,
    write_cohort,
    write_ok_scan,
    write_record,
    write_scan,
)

REPO = Path(__file__).resolve().parents[2]


def _files(*folders: Path) -> set[Path]:
    return {p for folder in folders for p in folder.rglob("*")}


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """(inputs folder, empty working directory); the working directory is the process's cwd."""
    inputs, cwd = tmp_path / "inputs", tmp_path / "cwd"
    inputs.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return inputs, cwd


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _assert_refused(rc: int, out: str, err: str, fragment: str) -> None:
    assert rc == 2, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert fragment in lines[0], lines[0]
    assert lines[0].startswith("hyperfusion ") and ": error: " in lines[0]


# --- scans -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "file_name", "build", "fragment"), SCAN_CASES, ids=[c[0] for c in SCAN_CASES]
)
def test_scan_corpus_through_the_library(tmp_path, name, file_name, build, fragment):
    path = write_scan(tmp_path, file_name, build)
    if fragment is None:
        views = model_input(path, ad_box(2.0))
        assert views.shape == (2, 1, 32, 48, 32) and np.isfinite(views).all()
        return
    with pytest.raises(DataError, match=None) as info:
        model_input(path, ad_box(2.0))
    assert fragment in str(info.value)
    # the same bytes as an upload (in memory, under the user's file name) give the same refusal; only a
    # path must carry a NIfTI suffix
    if name != "wrong_suffix":
        with pytest.raises(DataError) as info:
            model_input(load_nifti(path.read_bytes(), name=file_name), ad_box(2.0))
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("name", "file_name", "build", "fragment"), SCAN_CASES, ids=[c[0] for c in SCAN_CASES]
)
def test_scan_corpus_through_the_cli(workspace, capsys, name, file_name, build, fragment):
    inputs, cwd = workspace
    scan = write_scan(inputs, file_name, build)
    row = write_record(inputs, RECORD)
    before = _files(inputs, cwd)
    out_map = inputs / "map.nii.gz"
    rc, out, err = _run_cli(
        ["predict", "--model", str(MODEL), "--image", str(scan), "--tabular", str(row)], capsys
    )
    if fragment is None:
        assert rc == 0, err
        probs = json.loads(out)["probabilities"]
        assert abs(sum(probs.values()) - 1) < 1e-5
    else:
        _assert_refused(rc, out, err, fragment)
        assert str(scan) in err  # the message names the file, also for the checks against the model's box
        rc, out, err = _run_cli(
            [
                "explain",
                "--model",
                str(MODEL),
                "--image",
                str(scan),
                "--tabular",
                str(row),
                "--method",
                "saliency",
                "--out",
                str(out_map),
                "--quiet",
            ],
            capsys,
        )
        _assert_refused(rc, out, err, fragment)
        assert not out_map.exists()
    assert _files(inputs, cwd) == before


# --- records ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "record", "fragment"), RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
def test_record_corpus_through_the_cli(workspace, capsys, name, record, fragment):
    inputs, cwd = workspace
    scan, row = write_ok_scan(inputs), write_record(inputs, record)
    before = _files(inputs, cwd)
    rc, out, err = _run_cli(
        ["predict", "--model", str(MODEL), "--image", str(scan), "--tabular", str(row)], capsys
    )
    if fragment is None:
        assert rc == 0, err
    else:
        _assert_refused(rc, out, err, fragment)
    assert _files(inputs, cwd) == before


LIBRARY_RECORDS = [c for c in RECORD_CASES if isinstance(c[1], dict) and c[0] != "every_value_missing"]


@pytest.mark.parametrize(("name", "record", "fragment"), LIBRARY_RECORDS, ids=[c[0] for c in LIBRARY_RECORDS])
def test_record_corpus_through_the_library(name, record, fragment):
    if fragment is None:
        parsed = parse_record(record)
        assert parsed["ABETA_censored"] == -1 and parsed["PTAU_censored"] == 1
        return
    with pytest.raises(DataError) as info:
        parse_record(record, source="form")
    assert fragment in str(info.value) and str(info.value).startswith("form")


# --- cohorts ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "csv", "fragment"), COHORT_CASES, ids=[c[0] for c in COHORT_CASES])
def test_cohort_corpus_through_the_cli_and_library(workspace, capsys, name, csv, fragment):
    inputs, cwd = workspace
    root = write_cohort(inputs, csv)
    before = _files(inputs, cwd)
    rc, out, err = _run_cli(["inspect", "--data", str(root)], capsys)
    if fragment is None:
        assert rc == 0, err
        assert json.loads(out)["subjects"] == 2
    else:
        _assert_refused(rc, out, err, fragment)
        with pytest.raises(DataError, match=None) as info:
            load_cohort(root)
        assert fragment in str(info.value)
    assert _files(inputs, cwd) == before


def test_a_scan_listed_but_missing_leaves_the_rest_of_the_cohort_usable(workspace, capsys):
    inputs, cwd = workspace
    # S1 has a scan, S2 is listed in cohort.csv but has none, S3's scan is corrupt
    rows = [HEADER, ROW_A, ROW_B, ROW_B.replace("S2", "S3")]
    root = write_cohort(inputs, "\n".join(rows) + "\n", {"S1": ok_scan_bytes(), "S3": b"\x1f\x8bnot really"})
    cohort = load_cohort(root)
    assert len(cohort) == 3 and cohort.summary()["subjects_with_scan"] == 2
    before = _files(inputs, cwd)
    args = ["predict", "--model", str(MODEL), "--data", str(root), "--subject"]
    rc, out, err = _run_cli([*args, "S2"], capsys)
    _assert_refused(rc, out, err, "subject S2 is listed in cohort.csv but has no scan in images/")
    rc, out, err = _run_cli([*args, "S3"], capsys)
    _assert_refused(rc, out, err, "S3.nii.gz: corrupt or truncated gzip stream")
    rc, out, err = _run_cli([*args, "S1"], capsys)
    assert rc == 0 and json.loads(out)["predicted_class"] in ("CN", "MCI", "AD")
    assert _files(inputs, cwd) == before


# --- a real process: exit status, one line on stderr, nothing written -------------------------------------
SUBPROCESS_CASES = ["not_gzip_named_gz", "gzip_bomb_after_valid_volume", "not_registered_scanner_space"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_the_command_fails_cleanly_in_a_fresh_process(tmp_path, name):
    _, file_name, build, fragment = next(c for c in SCAN_CASES if c[0] == name)
    inputs, cwd, home = tmp_path / "inputs", tmp_path / "cwd", tmp_path / "home"
    for d in (inputs, cwd, home):
        d.mkdir()
    record = RECORD
    if fragment is None:  # a valid scan: the record is what is wrong here
        record, fragment = {**RECORD, "AGE": "=1+1"}, "'=1+1' is not a number"
    scan, row = write_scan(inputs, file_name, build), write_record(inputs, record)
    before = _files(inputs)
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hyperfusion.cli",
            "predict",
            "--model",
            str(MODEL),
            "--image",
            str(scan),
            "--tabular",
            str(row),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _assert_refused(proc.returncode, proc.stdout, proc.stderr, fragment)
    assert _files(inputs) == before and not any(cwd.iterdir()) and not any(home.iterdir())


# --- the entry check (issue 14) ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "file_name", "build", "fragment"), ENTRY_CASES, ids=[c[0] for c in ENTRY_CASES]
)
def test_entry_corpus_through_the_cli(workspace, capsys, name, file_name, build, fragment):
    inputs, cwd = workspace
    scan = write_scan(inputs, file_name, build)
    row = write_record(inputs, RECORD)
    out_map = inputs / "map.nii.gz"
    before = _files(inputs, cwd)
    args = ["--model", str(MODEL), "--image", str(scan), "--tabular", str(row)]
    for command in (["predict"], ["explain", "--method", "saliency", "--out", str(out_map), "--quiet"]):
        rc, out, err = _run_cli([*command, *args], capsys)
        _assert_refused(rc, out, err, fragment)
        assert "hyperfusion preprocess" in err and str(scan) in err
    assert _files(inputs, cwd) == before
    # --allow-unregistered predicts anyway, and the answer carries the warning
    rc, out, err = _run_cli(["predict", *args, "--allow-unregistered"], capsys)
    assert rc == 0, err
    result = json.loads(out)
    assert result["warnings"] and fragment in result["warnings"][0] and not result["scan_check"]["passed"]
    assert "warning: UNRELIABLE" in err
