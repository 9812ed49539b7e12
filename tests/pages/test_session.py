"""hyperfusion.pages.session: the dashboard's session state over a plain dict (as a notebook or a test has it)."""

from __future__ import annotations

import pytest

from hyperfusion.data import load_cohort
from hyperfusion.data.cohort import cohort_record, subject_namespace
from hyperfusion.pages import UPLOAD_PREFIX, Subject
from hyperfusion.pages.session import MAIN_PICKER, Session, carried_subject, subject_options
from tests.conftest import write_image_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return load_cohort(write_image_cohort(tmp_path_factory.mktemp("session") / "c", 3, seed=4))


def test_values_live_in_the_store_under_their_names_with_defaults_on_first_read():
    store: dict = {}
    session = Session(store)
    assert session.subject is None and "subject" not in store  # no default: nothing stored
    assert session.report_parts == {} and store["report_parts"] == {}  # a default is stored once read
    assert set(session.settings) == {"cohort", "models", "assets"}
    session.subject = "S1"
    assert store["subject"] == "S1"
    del session.subject
    assert "subject" not in store and session.subject is None
    session.uploaded = {"name": "u.nii.gz", "scan": b"x", "record": {"AGE": "70"}}
    assert session.upload.id == UPLOAD_PREFIX + "u.nii.gz" and session.upload.warnings == []


def test_record_of_gives_the_edits_of_this_subject_only():
    session = Session({})
    session.edited_record = {"PTID": "A", "record": {"AGE": 80}}
    assert session.record_of("A", {"AGE": 70}) == {"AGE": 80}
    assert session.record_of("B", {"AGE": 70}) == {"AGE": 70}


def test_carried_subject_drops_another_cohorts_subject_with_a_note_and_keeps_an_upload():
    options = [UPLOAD_PREFIX + "u.nii.gz", "A", "B"]
    assert carried_subject(options, "ns1", "B", "ns1") == ("B", None)
    chosen, note = carried_subject(options, "ns2", "B", "ns1")  # the same ID names another person here
    assert chosen == options[0] and "The cohort changed: B" in note
    assert carried_subject(options, "ns2", options[0], "ns1") == (options[0], None)  # an upload is no PTID
    assert carried_subject(["A", "B"], "ns1", None, None, fallback=("B", "ns1")) == ("B", None)
    assert carried_subject(["A", "B"], "ns1", None, None, fallback=("B", "ns2")) == ("A", None)


def test_the_main_picker_drops_the_edits_when_its_subject_is_replaced():
    store = {"form_subject": "A"}
    session = Session(store)
    session.subject, session.subject_namespace = "A", "ns"
    session.edited_record = {"PTID": "A", "record": {"AGE": 90}}
    assert session.pick_subject(["A", "B"], "ns") == ("A", None)
    assert session.edited_record is not None and store[MAIN_PICKER] == "A"  # the same subject keeps its edits
    assert session.pick_subject(["B", "C"], "ns") == ("B", None)  # A is gone (a changed table)
    assert session.edited_record is None and "form_subject" not in store and store[MAIN_PICKER] == "B"
    session.edited_record = {"PTID": "B", "record": {}}
    chosen, note = session.pick_subject(["A", "B"], "other")  # a new cohort: B is another person there
    assert chosen == "A" and note and session.edited_record is None and session.subject_namespace == "other"
    assert session.subject == "A"


def test_another_picker_keeps_its_own_choice_else_takes_the_main_subject():
    store: dict = {}
    session = Session(store)
    session.subject, session.subject_namespace = "B", "ns"
    assert session.pick_subject(["A", "B"], "ns", key="brain_age_subject") == ("B", None)
    store["brain_age_subject"] = "A"
    assert session.pick_subject(["A", "B"], "ns", key="brain_age_subject") == ("A", None)
    assert session.subject == "B" and session.brain_age_namespace == "ns"  # the main choice is untouched


def test_a_scenario_applied_to_a_session_reads_back_the_same(cohort):
    store: dict = {}
    session = Session(store)
    ptid = cohort.table["PTID"].iloc[1]
    problems = session.apply_scenario(
        cohort, {"subject": ptid, "AGE": "77", "method": "saliency", "zoom": "2"}
    )
    assert problems == []
    assert session.subject == ptid and session.subject_namespace == subject_namespace(cohort)
    assert session.edited_record["record"]["AGE"] == "77" and session.form_from_link == session.edited_record
    assert store["attr_method"] == "saliency" and store["attr_zoom"] == "2"
    scenario = session.scenario(cohort)
    assert scenario["subject"] == ptid and scenario["AGE"] == "77" and scenario["method"] == "saliency"
    del store["attr_method"]  # a page that does not show the widget drops its state ...
    session.restore_choices()
    assert store["attr_method"] == "saliency"  # ... and it comes back from the choices kept


def test_subject_options_put_the_upload_first_and_subject_of_cohort_reads_the_row(cohort):
    ptid = cohort.table["PTID"].iloc[0]
    subject = Subject.of_cohort(cohort, ptid)
    assert subject.id == ptid and subject.scan is None and not subject.uploaded
    assert subject.recorded == cohort_record(cohort.table.iloc[0])
    upload = Subject(
        UPLOAD_PREFIX + "u.nii.gz", b"", {"AGE": 70.0, "PTGENDER": "Female"}, None, uploaded=True
    )
    options = subject_options(cohort, upload)
    assert list(options)[0] == upload.id and list(options)[1:] == list(cohort.table["PTID"])
    assert options[upload.id].startswith(upload.id)


def test_share_files_are_made_from_the_last_scenario_followed_not_the_one_drawn(cohort):
    """The share panel is drawn by a full run; an edit on the Subject page reruns only its fragment, which
    follows the scenario again: a download clicked then holds the edit (and its report parts)."""
    import json

    session = Session({})
    ptid = cohort.table["PTID"].iloc[0]
    session.subject = ptid
    session.report_part("record", [{"attribute": "AGE", "recorded": 70, "edited": 70}])
    session.follow_scenario(cohort)
    files = {label: (name, make, mime) for label, name, make, mime, _ in session.share_files(synthetic=True)}
    assert files["Scenario (JSON)"][0] == f"{ptid}.json" and files["Report (HTML)"][0] == f"{ptid}.html"
    assert "AGE" not in json.loads(files["Scenario (JSON)"][1]())  # no edit yet

    session.edited_record = {"PTID": ptid, "record": {**cohort_record(cohort.table.iloc[0]), "AGE": 91.5}}
    session.report_part("record", [{"attribute": "AGE", "recorded": 70, "edited": 91.5}])
    session.follow_scenario(cohort)  # the fragment's rerun; the panel is not drawn again
    assert json.loads(files["Scenario (JSON)"][1]())["AGE"] == "91.5"
    html = files["Report (HTML)"][1]()
    assert "<td>AGE</td><td>70</td><td>91.5</td>" in html and "synthetic" in html.lower()

    session.subject = "someone else"  # another subject's parts are not in its report
    session.follow_scenario(cohort)
    assert "91.5" not in files["Report (HTML)"][1]()
