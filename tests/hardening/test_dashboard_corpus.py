"""The bad-input corpus (tests/hardening/corpus.py) through the dashboard, with Streamlit's AppTest.

Every scan and record case is uploaded on the Upload page of ONE long-lived session: a refused case must show
one message with its fragment (no exception, no prediction, and the refused upload never becomes the session's
subject); an odd but valid case must be predicted; after each case a good scan and record are uploaded again
and must be predicted, so the same session is shown to keep working. Every cohort case is pointed at through
the settings: Home and Cohort pages must say what is wrong, and the sidebar must lead back to a good cohort.
Throughout, nothing may be written to disk: HOME, XDG_CACHE_HOME, the temporary folder and the working
directory are empty folders of the test, and they, the cohorts and the models are compared before and after.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from hyperfusion.data.cohort import record_from_csv
from hyperfusion.inference.cohort import NO_SCAN
from tests.app.conftest import tiny_setup  # noqa: F401  (the dashboard tests' tiny cohort and models)
from tests.hardening.corpus import (
    COHORT_CASES,
    CSV_RECORD_CASES,
    ENTRY_CASES,
    HEADER,
    RECORD,
    ROW_A,
    ROW_B,
    SCAN_CASES,
    ok_scan_bytes,
    record_csv,
    write_cohort,
)

HOME_PAGE = str(Path(__file__).resolve().parents[2] / "app" / "Home.py")
GOOD_SCAN = ("good.nii.gz", ok_scan_bytes(), "application/gzip")
GOOD_ROW = ("good.csv", record_csv(RECORD), "text/csv")
MODELS = {"hyperfusion", "tabular_only"}


def shown(value: str) -> str:
    """A message as the user reads it: the pages backslash-escape Markdown characters of quoted input."""
    return re.sub(r"\\(.)", r"\1", value)


def errors(at: AppTest) -> list[str]:
    return [shown(e.value) for e in at.error]


def snapshot(folders: list[Path]) -> dict[Path, tuple[int, int]]:
    """Every file and folder under ``folders`` with its size and modification time."""
    out = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            stat = path.stat()
            out[path] = (stat.st_size, stat.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def watched(tiny_setup, tmp_path_factory) -> Iterator[list[Path]]:  # noqa: F811
    """Point HOME, XDG_CACHE_HOME, TMPDIR (and tempfile's cached choice) and the cwd at empty folders for this
    module, and the dashboard at the tiny cohort and models; yields the folders nothing may be written to."""
    root = tmp_path_factory.mktemp("sandbox")
    home, cache, tmp, cwd = (root / name for name in ("home", "cache", "tmp", "cwd"))
    for folder in (home, cache, tmp, cwd):
        folder.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CACHE_HOME", str(cache))
        mp.setenv("TMPDIR", str(tmp))
        mp.setattr(tempfile, "tempdir", str(tmp))
        mp.delenv("HYPERFUSION_CACHE", raising=False)
        mp.setenv("HYPERFUSION_COHORT", str(tiny_setup["cohort"]))
        mp.setenv("HYPERFUSION_MODELS", str(tiny_setup["models"]))
        mp.chdir(cwd)
        yield [home, cache, tmp, cwd, Path(tiny_setup["cohort"]), Path(tiny_setup["models"])]


def unchanged(before: dict, after: dict, watched: list[Path]) -> bool:
    """Nothing of ``before`` changed or went missing, and nothing new appeared except caches meant to be
    written: the Cohort page's disk cache of predictions (``~/.cache/hyperfusion/cohort``) and matplotlib's
    font list (matplotlib is imported by Captum, which the Cohort page's record attributions use), and the
    folders that gain them."""
    home, cache = watched[0], watched[1]
    allowed = [
        home / ".cache" / "hyperfusion" / "cohort",
        home / ".config" / "matplotlib",
        cache / "matplotlib",
    ]

    def a_cache(path: Path) -> bool:
        return any(path == c or c in path.parents or path in c.parents for c in allowed)

    if any(not a_cache(path) for path in after.keys() - before.keys()):
        return False
    return all(a_cache(path) or after.get(path) == stat for path, stat in before.items())


def predicted_models(at: AppTest) -> set[str]:
    tables = [d.value for d in at.dataframe if "model" in d.value.columns]
    return set(tables[0]["model"]) if tables else set()


def upload(
    at: AppTest, scan: tuple[str, bytes, str] | None = None, row: tuple[str, bytes, str] | None = None
) -> None:
    """Give the Upload page a scan and / or a record file (name, bytes, type) and run it."""
    if scan is not None:
        at.file_uploader(key="upload_scan").set_value(scan)
    if row is not None:
        at.file_uploader(key="upload_csv").set_value(row)
    at.run()
    assert not at.exception, at.exception


def assert_predicts_the_good_upload(at: AppTest) -> None:
    """The session still works: a good scan and record give every model's prediction and become the subject."""
    upload(at, GOOD_SCAN, GOOD_ROW)
    assert errors(at) == []
    assert predicted_models(at) == MODELS
    assert at.session_state["uploaded"]["name"] == "good.nii.gz"
    assert at.session_state["uploaded"]["record"] == {k: str(v) for k, v in RECORD.items()}


@pytest.fixture(scope="module")
def session(watched) -> AppTest:
    """One dashboard session on the Upload page, shared by every case of this module (as one user would)."""
    at = AppTest.from_file(HOME_PAGE, default_timeout=60).run()
    at.switch_page("views/5_Upload.py").run()
    assert not at.exception
    assert_predicts_the_good_upload(at)
    return at


# --- scans -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "file_name", "build", "fragment"), ENTRY_CASES, ids=[c[0] for c in ENTRY_CASES]
)
def test_entry_corpus_on_the_upload_page(session, watched, name, file_name, build, fragment):
    """A valid file a model cannot read is refused with one line naming `hyperfusion preprocess`; with
    'predict anyway' it is predicted, and the page and every row of the predictions say it is unreliable."""
    at = session
    before = snapshot(watched)
    uploaded_as = f"{name}.{file_name}"
    upload(at, (uploaded_as, build(), "application/octet-stream"), GOOD_ROW)
    assert len(errors(at)) == 1, errors(at)
    message = errors(at)[0]
    assert fragment in message and uploaded_as in message and "hyperfusion preprocess" in message
    assert predicted_models(at) == set() and at.session_state["uploaded"]["name"] == "good.nii.gz"
    at.toggle(key="upload_anyway").set_value(True).run()
    assert errors(at) == [] and predicted_models(at) == MODELS
    table = next(d.value for d in at.dataframe if "model" in d.value.columns)
    assert set(table["warning"]) == {"UNRELIABLE: the scan failed the entry check"}
    assert any(fragment in shown(w.value) for w in at.warning)
    assert at.session_state["uploaded"]["warnings"]
    at.toggle(key="upload_anyway").set_value(False).run()
    assert_predicts_the_good_upload(at)
    assert "warning" not in next(d.value for d in at.dataframe if "model" in d.value.columns).columns
    assert snapshot(watched) == before


@pytest.mark.parametrize(
    ("name", "file_name", "build", "fragment"), SCAN_CASES, ids=[c[0] for c in SCAN_CASES]
)
def test_scan_corpus_on_the_upload_page(session, watched, name, file_name, build, fragment):
    at = session
    before = snapshot(watched)
    uploaded_as = f"{name}.{file_name}"  # keeps the case's suffix, which some cases are about
    upload(at, (uploaded_as, build(), "application/octet-stream"), GOOD_ROW)
    if fragment is None:
        assert errors(at) == []
        assert predicted_models(at) == MODELS
        assert at.session_state["uploaded"]["name"] == uploaded_as
    else:
        assert len(errors(at)) == 1, errors(at)
        message = errors(at)[0]
        assert fragment in message and uploaded_as in message and "\n" not in message
        assert predicted_models(at) == set()
        assert at.session_state["uploaded"]["name"] == "good.nii.gz"  # a refused scan is never the subject
        assert not at.success  # nor announced as read
    assert_predicts_the_good_upload(at)
    assert snapshot(watched) == before


# --- records ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "raw", "fragment"), CSV_RECORD_CASES, ids=[c[0] for c in CSV_RECORD_CASES])
def test_record_corpus_on_the_upload_page(session, watched, name, raw, fragment):
    at = session
    before = snapshot(watched)
    uploaded_as = f"{name}.csv"
    upload(at, GOOD_SCAN, (uploaded_as, raw, "text/csv"))
    if fragment is None:
        assert errors(at) == []
        assert predicted_models(at) == MODELS
        assert at.session_state["uploaded"]["record"] == record_from_csv(raw, name=uploaded_as)[0]
    else:
        assert len(errors(at)) == 1, errors(at)
        message = errors(at)[0]
        assert fragment in message and message.startswith(uploaded_as) and "\n" not in message
        assert predicted_models(at) == set()
        assert at.session_state["uploaded"]["name"] == "good.nii.gz"
        assert at.session_state["uploaded"]["record"] == {k: str(v) for k, v in RECORD.items()}
    assert_predicts_the_good_upload(at)
    assert snapshot(watched) == before


def test_other_columns_of_a_record_are_ignored_with_a_note(session):
    at = session
    upload(
        at, GOOD_SCAN, ("export.csv", record_csv({"RID": 3, "SITE": "=HYPERLINK()", **RECORD}), "text/csv")
    )
    assert errors(at) == [] and predicted_models(at) == MODELS
    notes = [shown(i.value) for i in at.info]
    assert "export.csv: ignored 2 column(s) the models do not read: RID, SITE" in notes


def test_a_message_quoting_markdown_is_shown_as_written(session):
    at = session
    upload(
        at,
        GOOD_SCAN,
        ("$x$ *draft*.csv", record_csv({**RECORD, "AGE": "[a](javascript:x) :red[$5]"}), "text/csv"),
    )
    (raw,) = [e.value for e in at.error]
    # every Markdown character of the quoted input is escaped, so it renders as the text the user wrote
    assert re.search(r"(?<!\\)[$*\[\]:<>]", raw) is None
    assert shown(raw).startswith(
        "$x$ *draft*.csv, field AGE: value '[a](javascript:x) :red[$5]' is not a number"
    )
    assert_predicts_the_good_upload(at)


def test_plain_escapes_what_markdown_would_render():
    from hyperfusion.pages import plain

    assert plain("1. $x$ <b>*y*</b> [a](b) :red[c]") == r"1\. \$x\$ \<b\>\*y\*\</b\> \[a\](b) \:red\[c\]"
    assert plain("- item\n# title") == "\\- item\n\\# title"
    assert plain("sub-01.nii.gz: no") == "sub-01.nii.gz\\: no"
    assert shown(plain("a*b_c\\d")) == "a*b_c\\d"


def test_the_session_subject_is_the_last_good_upload_on_every_page(session):
    """After the whole corpus, the Subject page of the same session shows the last good upload."""
    at = session
    at.switch_page("views/1_Subject.py").run()
    assert not at.exception and errors(at) == []
    assert at.selectbox(key="_subject_widget").value == "uploaded: good.nii.gz"
    assert at.number_input(key="value_AGE").value == RECORD["AGE"]
    at.switch_page("views/5_Upload.py").run()
    assert not at.exception


# --- cohorts ---------------------------------------------------------------------------------------------
def open_home(cohort: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("HYPERFUSION_COHORT", str(cohort))
    at = AppTest.from_file(HOME_PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def point_settings_at(at: AppTest, cohort: Path) -> None:
    """The sidebar's settings form, as a user would fill it in."""
    at.sidebar.text_input[0].input(str(cohort))
    next(b for b in at.sidebar.button if b.label == "Apply").click().run()
    assert not at.exception, at.exception


@pytest.mark.parametrize(("name", "csv", "fragment"), COHORT_CASES, ids=[c[0] for c in COHORT_CASES])
def test_cohort_corpus_on_the_home_and_cohort_pages(watched, tmp_path, monkeypatch, name, csv, fragment):
    root = write_cohort(tmp_path, csv)
    before = snapshot([*watched, root])
    at = open_home(root, monkeypatch)
    for page in ("Home", "views/3_Cohort.py"):
        if page != "Home":
            at.switch_page(page).run()
            assert not at.exception, at.exception
        if fragment is None:
            assert errors(at) == []
            if page == "Home":
                assert sum(at.table[0].value["subjects"]) == 2
            else:
                assert sorted(at.dataframe[0].value["PTID"]) == ["S1", "S2"]
        else:
            assert len(errors(at)) == 1, errors(at)
            message = errors(at)[0]
            assert message.startswith("The cohort could not be read: ") and fragment in message
            assert str(root / "cohort.csv") in message
            assert any("sidebar" in i.value for i in at.info)
    # the same session goes on with a good cohort, chosen in the sidebar
    good = watched[4]  # the tiny cohort of the dashboard tests (6 subjects)
    point_settings_at(at, good)
    assert errors(at) == []
    assert len(at.dataframe[0].value) == 6
    assert unchanged(before, snapshot([*watched, root]), watched)


def test_a_cohort_path_that_does_not_exist_is_a_message(watched, tmp_path, monkeypatch):
    at = open_home(tmp_path / "no_such_cohort", monkeypatch)
    assert len(errors(at)) == 1 and "could not be read" in errors(at)[0]
    at.switch_page("views/3_Cohort.py").run()
    assert not at.exception and len(errors(at)) == 1


def test_scans_listed_but_missing_leave_the_rest_of_the_cohort_usable(watched, tmp_path, monkeypatch):
    # S1 has a scan, S2 is listed in cohort.csv but has none, S3's scan is corrupt
    rows = [HEADER, ROW_A, ROW_B, ROW_B.replace("S2", "S3")]
    root = write_cohort(
        tmp_path, "\n".join(rows) + "\n", {"S1": ok_scan_bytes(), "S3": b"\x1f\x8bnot really"}
    )
    before = snapshot([*watched, root])
    at = open_home(root, monkeypatch)
    assert errors(at) == []
    assert any("1 of 3 subjects have no scan in images/" in c.value for c in at.caption)

    at.switch_page("views/3_Cohort.py").run()
    assert not at.exception and errors(at) == []
    assert any(
        shown(i.value).startswith("1 subject(s) listed in the cohort table have no scan in images/: S2.")
        for i in at.info
    )
    table = at.dataframe[0].value
    assert dict(zip(table["PTID"], table["scan"])) == {"S1": "yes", "S2": "missing", "S3": "yes"}
    for job in sys.modules["cohort_parts"]._RUNNING["predictions"]:  # the background job scores them all
        assert job.wait(240), "the Cohort page's predictions did not finish"
    at.run()
    assert not at.exception and errors(at) == []
    # the subject with a good scan is scored by every model, the one without by the tabular model only; a
    # corrupt scan leaves the image models unscored, the record-only model still scores the subject
    scored = at.dataframe[0].value.set_index("PTID")
    assert 0 <= scored.loc["S1", "P(AD) · hyperfusion"] <= 1
    for ptid in ("S2", "S3"):
        assert pd.isna(scored.loc[ptid, "P(AD) · hyperfusion"])
        assert 0 <= scored.loc[ptid, "P(AD) · tabular_only"] <= 1
    # the pairs not scored are listed with their reason: the missing scan and the corrupt one named
    unscored = next(d.value for d in at.dataframe if "error" in d.value.columns)
    reasons = dict(zip(zip(unscored["PTID"], unscored["model"]), unscored["error"]))
    assert set(reasons) == {("S2", "hyperfusion"), ("S3", "hyperfusion")}
    assert reasons["S2", "hyperfusion"] == NO_SCAN
    assert "S3.nii.gz" in reasons["S3", "hyperfusion"] and "corrupt" in reasons["S3", "hyperfusion"]

    # opening each subject says what is missing or broken, and the good one is predicted
    for ptid, message in [
        ("S2", "No scan for S2"),
        ("S3", "S3.nii.gz: corrupt or truncated gzip stream"),
        ("S1", None),
    ]:
        at.session_state["subject"] = ptid
        at.switch_page("views/1_Subject.py").run()
        assert not at.exception, at.exception
        if ptid == "S2":
            assert any(message in i.value for i in at.info)
            assert predicted_models(at) == {"tabular_only"}
        elif ptid == "S3":
            assert len(errors(at)) == 1 and message in shown(errors(at)[0])
        else:
            assert errors(at) == [] and predicted_models(at) == MODELS
    assert unchanged(before, snapshot([*watched, root]), watched)
