"""The Brain age page: a tiny brain-age cohort with scans, two brain-age models and their real evaluation report."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from hyperfusion.data import load_cohort
from hyperfusion.inference.predictor import Predictor
from tests.app.helpers import figures, open_page, plotly_array
from tests.app.helpers import table as page_table
from tests.app.report_fixtures import build_brain_age

HOME = Path(__file__).resolve().parents[2] / "app" / "Home.py"
PAGE = "views/7_Brain_age.py"


@pytest.fixture(scope="module")
def brain_age(tmp_path_factory) -> dict:
    return build_brain_age(tmp_path_factory.mktemp("brain_age"))


@pytest.fixture
def ba_env(brain_age, app_env, monkeypatch) -> dict:
    """The dashboard's cohort is the AD one; the brain-age demo layout lives in the assets folder."""
    monkeypatch.setenv("HYPERFUSION_DEMO_ASSETS", str(brain_age["assets"]))
    monkeypatch.setenv(
        "HYPERFUSION_MODELS", os.pathsep.join([str(brain_age["models"]), str(app_env["models"])])
    )
    return brain_age


def test_report_predictions_against_age_coloured_by_sex_with_the_report_metrics(ba_env):
    at = open_page(PAGE)
    result = ba_env["result"]
    assert any("brain-age demo cohort" in c.value for c in at.caption)
    scatter = next(
        f for f in figures(at) if any(t.get("name") == "predicted = chronological" for t in f["data"])
    )
    titles = [a["text"] for a in scatter["layout"]["annotations"]]
    assert [t.split(" · ")[0] for t in titles] == list(result["runs"])
    cohort = load_cohort(ba_env["cohort"]).table.set_index("PTID").loc[result["test_ptids"]]
    female_ages = sorted(cohort.loc[cohort["PTGENDER"] == 0, "AGE"])
    female = [t for t in scatter["data"] if t.get("name") == "Female"]
    assert len(female) == len(result["runs"])  # one per model panel
    assert sorted(plotly_array(female[0]["x"]).tolist()) == pytest.approx(female_ages)
    points = [t for t in scatter["data"] if t["name"] in ("Female", "Male")]
    assert sum(len(plotly_array(t["x"])) for t in points) == 2 * len(cohort)

    metrics = page_table(at, "MAE (years)").set_index("model")
    for label, entry in result["runs"].items():
        assert metrics.loc[label, "MAE (years)"] == pytest.approx(entry["metrics"]["mae"], abs=0.006)
        assert metrics.loc[label, "MAE bias-corrected"] == pytest.approx(
            entry["bias_corrected"]["mae"], abs=0.006
        )
        assert metrics.loc[label, "subjects"] == result["test_subjects"]

    gap = next(f for f in figures(at) if all(t["type"] == "box" for t in f["data"]))
    assert {t["name"] for t in gap["data"]} == {"Female", "Male"}
    assert sum(len(plotly_array(t["y"])) for t in gap["data"]) == 2 * len(cohort)


def test_the_sex_toggle_moves_hyperfusion_and_not_image_only(ba_env):
    at = open_page(PAGE)
    ptid = ba_env["ptids"][3]
    at.selectbox(key="brain_age_subject").select(ptid).run()
    assert not at.exception
    table = page_table(at, "model", "gap, recorded sex").set_index("model")
    assert list(table.index) == ["brain_age/hyperfusion", "brain_age/image_only"]
    diff = next(c for c in table.columns if c.startswith("difference"))
    assert table.loc["brain_age/hyperfusion", diff] != 0  # the hypernetwork reads sex
    assert table.loc["brain_age/image_only", diff] == 0

    # independently: the Predictor on the subject's scan with the recorded and the other sex
    row = load_cohort(ba_env["cohort"]).table.set_index("PTID").loc[ptid]
    sex = "Female" if row["PTGENDER"] == 0 else "Male"
    other = "Male" if sex == "Female" else "Female"
    predictor = Predictor({"hf": ba_env["models"] / "brain_age" / "hyperfusion"})
    record = {"AGE": row["AGE"]}
    records = [{**record, "PTGENDER": sex}, {**record, "PTGENDER": other}]
    p = predictor.predict(row["image_path"], records)["hf"]
    assert table.loc["brain_age/hyperfusion", f"as {sex} (recorded)"] == pytest.approx(p.value[0], abs=0.051)
    assert table.loc["brain_age/hyperfusion", f"as {other}"] == pytest.approx(p.value[1], abs=0.051)


def test_without_a_report_the_predictions_are_computed_on_request(ba_env, monkeypatch, tmp_path):
    # the dashboard's own cohort is a brain-age cohort: the page uses it; no report in these assets
    monkeypatch.setenv("HYPERFUSION_COHORT", str(ba_env["cohort"]))
    monkeypatch.setenv("HYPERFUSION_DEMO_ASSETS", str(tmp_path))
    at = open_page(PAGE)
    assert any("the dashboard's cohort" in c.value for c in at.caption)
    assert at.radio(key="brain_age_source").options == ["compute now on this cohort's first subjects"]
    assert not any(t.get("name") == "predicted = chronological" for f in figures(at) for t in f["data"])
    at.number_input(key="brain_age_n").set_value(6).run()
    at.button(key="brain_age_predict").click().run()
    assert not at.exception
    metrics = page_table(at, "MAE (years)")
    assert metrics["model"].tolist() == ["brain_age/hyperfusion", "brain_age/image_only"]
    assert metrics["subjects"].tolist() == [6, 6]
    assert "MAE bias-corrected" in metrics.columns  # from the cards' age-bias fit
    assert any(t.get("name") == "predicted = chronological" for f in figures(at) for t in f["data"])


def test_without_brain_age_models_or_cohort_the_page_says_what_to_build(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("HYPERFUSION_DEMO_ASSETS", str(tmp_path))  # no brain-age cohort, models or report
    at = open_page(PAGE)
    text = " ".join(i.value for i in at.info)
    assert "hyperfusion demo build" in text and "hyperfusion train --task brain_age" in text


def test_the_comparison_page_shows_a_brain_age_report_by_sex_and_age_band(ba_env):
    at = AppTest.from_file(str(HOME), default_timeout=90).run()
    at.switch_page("views/6_Model_comparison.py").run()
    assert not at.exception
    result = ba_env["result"]
    by_sex = page_table(at, "sex", "subjects")
    assert by_sex["subjects"].iloc[:-1].sum() == result["test_subjects"]
    cohort = load_cohort(ba_env["cohort"]).table.set_index("PTID").loc[result["test_ptids"]]
    female = (cohort["PTGENDER"] == 0).to_numpy()
    predicted = np.asarray(result["predictions"]["hyperfusion"])
    mae = float(np.abs(predicted[female] - cohort["AGE"].to_numpy()[female]).mean())
    assert by_sex.set_index("sex").loc["Female", "hyperfusion"] == pytest.approx(mae, abs=1e-3)
    assert page_table(at, "age band", "subjects")["subjects"].iloc[:-1].sum() == result["test_subjects"]
    paper = page_table(at, "members", "mae")
    assert paper.loc[0, "mae"].startswith(f"{result['runs']['hyperfusion']['metrics']['mae']:.2f} [")


def test_an_uploaded_whole_brain_scan_gets_the_sex_what_if(ba_env):
    at = AppTest.from_file(str(HOME), default_timeout=90).run()
    row = load_cohort(ba_env["cohort"]).table.iloc[2]
    scan = Path(row["image_path"]).read_bytes()
    at.session_state["uploaded"] = {
        "name": "mine.nii.gz",
        "scan": scan,
        "record": {"AGE": "61", "PTGENDER": "Male"},
    }
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.selectbox(key="brain_age_subject").value == "uploaded: mine.nii.gz"  # offered first
    assert any("Chronological age **61.0**" in c.value for c in at.caption)
    table = page_table(at, "model", "gap, recorded sex").set_index("model")
    p = Predictor({"hf": ba_env["models"] / "brain_age" / "hyperfusion"}).predict(
        scan, [{"AGE": 61, "PTGENDER": "Male"}, {"AGE": 61, "PTGENDER": "Female"}]
    )["hf"]
    assert table.loc["brain_age/hyperfusion", "as Male (recorded)"] == pytest.approx(p.value[0], abs=0.051)
    assert table.loc["brain_age/hyperfusion", "as Female"] == pytest.approx(p.value[1], abs=0.051)
