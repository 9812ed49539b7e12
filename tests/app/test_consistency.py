"""Same answer everywhere (issue #16 item 2): one (subject, record, model) prediction on every page, and a
change of cohort never keeps an ID that names another person."""

from __future__ import annotations

import json
import os
import re

import pytest
from streamlit.testing.v1 import AppTest

from hyperfusion.data import load_cohort
from hyperfusion.data.cohort import cohort_record, cohort_row
from hyperfusion.inference import Predictor
from hyperfusion.inference.tables import subject_value
from tests.app.helpers import HOME
from tests.app.helpers import table as page_table
from tests.app.report_fixtures import build_brain_age
from tests.conftest import write_image_cohort


def _attribution_predictions(at) -> dict[str, list[float]]:
    """model -> every P(AD) the Attribution page states for it, in the order shown."""
    found: dict[str, list[float]] = {}
    for c in at.caption:
        for model, value in re.findall(r"(\S+) predicts P\(AD\) = ([0-9.]+) for this record", c.value):
            found.setdefault(model, []).append(float(value))
        for value in re.findall(
            r"predicts P\(AD\) = ([0-9.]+) recorded, P\(AD\) = ([0-9.]+) edited", c.value
        ):
            found.setdefault("recorded, edited", []).extend(float(v) for v in value)
    return found


def test_subject_and_attribution_pages_give_one_p_ad_for_an_ensemble_recorded_and_edited(app_env):
    ptid = app_env["ptids"][2]
    at = AppTest.from_file(str(HOME), default_timeout=90).run()
    at.switch_page("views/1_Subject.py").run()
    at.selectbox(key="_subject_widget").select(ptid).run()
    recorded_row = page_table(at, "P(AD)").set_index("model").loc["hyperfusion", "P(AD)"]
    apoe = 0 if at.number_input(key="value_APOE4").value == 2 else 2
    at.number_input(key="value_APOE4").set_value(apoe).run()
    subject_page = page_table(at, "P(AD)").set_index("model").loc["hyperfusion", "P(AD)"]
    edited = at.session_state["edited_record"]["record"]

    at.switch_page("views/2_Attribution.py").run()
    assert not at.exception, at.exception
    at.radio(key="attr_target").set_value("AD").run()
    assert _attribution_predictions(at)["hyperfusion"] == [pytest.approx(subject_page, abs=5e-4)]
    at.radio(key="attr_mode").set_value("records").run()
    assert not at.exception and not at.error
    assert _attribution_predictions(at)["recorded, edited"] == [
        pytest.approx(recorded_row, abs=5e-4),
        pytest.approx(subject_page, abs=5e-4),
    ]

    # The library's one answer, and why the pages used to differ: the tiny model is a 2-member ensemble whose
    # members' plain mean (what the attribution map sums to) is not the inverse-entropy ensemble the Predictor gives
    cohort = load_cohort(app_env["cohort"])
    scan = cohort_row(cohort, ptid)["image_path"]
    predictor = Predictor({"hyperfusion": app_env["models"] / "hyperfusion"})
    value = subject_value(predictor, "hyperfusion", scan, edited, "AD")
    assert value == pytest.approx(subject_page, abs=5e-4)
    members = predictor.predict(scan, edited)["hyperfusion"].member_values[:, 0, 2]
    assert len(members) == 2 and abs(members.mean() - value) > 1e-6  # the plain mean is another number
    assert value != pytest.approx(float(members.mean()), abs=1e-9)
    assert subject_value(
        predictor, "hyperfusion", scan, cohort_record(cohort_row(cohort, ptid))
    ) == pytest.approx(recorded_row, abs=5e-4)


def _second_cohort(root, task: str, seed: int):
    """Another synthetic cohort numbering its (other) subjects with the same PTIDs."""
    cohort_dir = write_image_cohort(root, 6, seed=seed, brain_like=True)
    meta = {"source": "synthetic", "generator": "tests", "task": task, "note": f"seed {seed}"}
    if task == "brain_age":
        meta["label_column"] = "AGE"
    (cohort_dir / "cohort.json").write_text(json.dumps(meta))
    return cohort_dir


def _settings(at, cohort) -> None:
    at.sidebar.text_input[0].set_value(str(cohort))
    next(b for b in at.sidebar.button if b.label == "Apply").click().run()


def test_switching_cohort_drops_a_subject_of_the_previous_one_with_its_edits(app_env, tmp_path):
    other = _second_cohort(tmp_path / "other", "ad", 21)
    ptid = app_env["ptids"][3]
    at = AppTest.from_file(str(HOME), default_timeout=90).run()
    at.switch_page("views/1_Subject.py").run()
    at.selectbox(key="_subject_widget").select(ptid).run()
    assert "SUBJ_0003 · " in at.selectbox(key="_subject_widget").format_func(ptid)
    _settings(at, other)
    assert not at.exception, at.exception
    first = load_cohort(other).table["PTID"].iloc[0]
    assert at.session_state["subject"] == first  # not SUBJ_0003 of the other cohort, another person
    assert any(f"{ptid} was a subject of the previous one" in i.value for i in at.info)
    age = load_cohort(other).table.set_index("PTID").loc[first, "AGE"]
    assert at.number_input(key="value_AGE").value == pytest.approx(age)  # the form holds the new person

    # the same people (same cohort again): the choice is kept
    at.selectbox(key="_subject_widget").select(ptid).run()
    _settings(at, other)
    assert at.session_state["subject"] == ptid
    assert not any("previous one" in i.value for i in at.info)


def test_the_brain_age_page_never_shows_another_person_under_a_kept_id(app_env, tmp_path, monkeypatch):
    demo = build_brain_age(tmp_path / "demo", n=8, report=False)
    monkeypatch.setenv("HYPERFUSION_DEMO_ASSETS", str(demo["assets"]))
    monkeypatch.setenv("HYPERFUSION_MODELS", os.pathsep.join([str(demo["models"]), str(app_env["models"])]))
    other = _second_cohort(tmp_path / "other_brain_age", "brain_age", 23)
    ptid = demo["ptids"][3]
    at = AppTest.from_file(str(HOME), default_timeout=90).run()
    at.switch_page("views/7_Brain_age.py").run()
    assert not at.exception, at.exception
    picker = at.selectbox(key="brain_age_subject")
    picker.select(ptid).run()
    label = at.selectbox(key="brain_age_subject").format_func(ptid)
    row = load_cohort(demo["cohort"]).table.set_index("PTID").loc[ptid]
    assert label.startswith(f"{ptid} · ") and f"{row['AGE']:.0f} y" in label
    assert label.endswith("female" if row["PTGENDER"] == 0 else "male")

    _settings(at, other)  # the dashboard's cohort is now another brain-age cohort with the same PTIDs
    assert not at.exception, at.exception
    shown = at.selectbox(key="brain_age_subject").value
    new = load_cohort(other).table.set_index("PTID")
    assert shown == new.index[0]
    assert any(f"{ptid} was a subject of the previous one" in i.value for i in at.info)
    age = next(c.value for c in at.caption if c.value.startswith("Chronological age"))
    assert f"**{new.loc[shown, 'AGE']:.1f}**" in age  # the person under the ID is this cohort's
