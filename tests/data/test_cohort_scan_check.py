"""Loading a cohort runs the entry check on (a sample of) its scans: a cohort of scans a model cannot read is
refused in one line naming ``hyperfusion preprocess``, or loaded with a warning when allowed; the results are
remembered per file, so loading it again opens no scan."""

from __future__ import annotations

import json
import os

import pytest

from hyperfusion.cli import main
from hyperfusion.data import load_cohort
from hyperfusion.data.entry import ScanCheckMemo, check_cohort_scans, cohort_problem
from hyperfusion.errors import DataError
from tests.conftest import write_image_cohort


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERFUSION_CACHE", str(tmp_path / "cache"))


def _refusing(root):
    """A noise-box cohort without the test helper's ``allow_unregistered`` (as a user's cohort would be)."""
    meta = json.loads((root / "cohort.json").read_text())
    meta.pop("allow_unregistered")
    (root / "cohort.json").write_text(json.dumps(meta))
    return root


def test_a_cohort_of_scans_a_model_cannot_read_is_refused_in_one_line_unless_allowed(tmp_path):
    root = _refusing(write_image_cohort(tmp_path / "noise", 20))
    with pytest.raises(DataError) as info:
        load_cohort(root)
    message = str(info.value)
    assert "fails the entry check" in message and "hyperfusion preprocess" in message
    assert "--allow-unregistered" in message and "\n" not in message
    # one failing scan is enough: the sample's check stops there
    assert "1 of its 20 scans checked, stopping at the first that fails" in message
    cohort = load_cohort(root, allow_unregistered=True)
    check = cohort.scan_check
    assert not check["passed"] and check["checked"] == 1 and len(check["failed"]) == 1
    assert check["remembered"] == 1  # the refused load's result was remembered
    assert cohort.scan_warnings() and cohort.scan_warnings()[0].startswith("UNRELIABLE: cohort ")
    assert cohort.summary()["scan_check"] == check
    off = load_cohort(root, check_scans="off")
    assert off.scan_check is None and off.scan_warnings() == []
    # the test helper's cohorts say "allow_unregistered" in cohort.json: loaded, with the same warning
    allowed = load_cohort(write_image_cohort(tmp_path / "declared", 5))
    assert not allowed.scan_check["passed"] and allowed.scan_warnings()


def test_a_registered_cohort_passes_and_a_second_load_opens_no_scan(tmp_path):
    root = write_image_cohort(tmp_path / "brains", 30, brain_like=True)
    first = load_cohort(root).scan_check
    assert first["passed"] and (first["scans"], first["checked"], first["remembered"]) == (30, 12, 0)
    second = load_cohort(root).scan_check
    assert second["passed"] and second["remembered"] == 12 and second["seconds"] < first["seconds"]
    every = load_cohort(root, check_scans="all").scan_check
    assert (every["mode"], every["checked"], every["remembered"]) == ("all", 30, 12)
    assert (tmp_path / "cache" / "scan_checks.json").is_file()


def test_a_rewritten_scan_is_checked_again(tmp_path):
    root = write_image_cohort(tmp_path / "brains", 4, brain_like=True)
    scans = {p.name.split(".")[0]: p for p in (root / "images").glob("*.nii.gz")}
    memo = ScanCheckMemo(tmp_path / "memo.json")
    assert check_cohort_scans(scans, memo=memo).passed
    # one scan replaced by noise (another file content and mtime): its remembered pass must not be reused
    noise = write_image_cohort(tmp_path / "noise", 1)
    victim = sorted(scans)[0]
    scans[victim].write_bytes(next((noise / "images").glob("*.nii.gz")).read_bytes())
    os.utime(scans[victim], ns=(1, 1))
    again = check_cohort_scans(scans, memo=memo, sample=None)
    assert again.remembered == 3 and [f["PTID"] for f in again.failed] == [victim]
    assert cohort_problem(again.to_dict()).startswith(
        f"1 of its 4 scans fail the entry check (e.g. {victim}: "
    )
    # a damaged memo is not trusted: the damaged entries are checked again, nothing raised
    stored = json.loads(memo.path.read_text())
    first = str(scans[victim].resolve())
    stored["files"][first]["check"] = {"passed": "yes"}
    memo.path.write_text(json.dumps(stored))
    redo = check_cohort_scans(scans, memo=memo, sample=None)
    assert redo.remembered == 3 and [f["PTID"] for f in redo.failed] == [victim]
    memo.path.write_text("not json")
    assert check_cohort_scans(scans, memo=memo, sample=None).remembered == 0


def test_train_refuses_and_inspect_reports_a_cohort_of_scans_a_model_cannot_read(tmp_path, capsys):
    root = _refusing(write_image_cohort(tmp_path / "noise", 8))
    rc = main(
        ["train", "--model", "image_only", "--data", str(root), "--out", str(tmp_path / "m"), "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "fails the entry check" in err and "hyperfusion preprocess" in err
    assert not (tmp_path / "m").exists()
    assert main(["inspect", "--data", str(root)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["scan_check"]["passed"] is False and "UNRELIABLE: cohort" in err
