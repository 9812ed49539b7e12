"""The Model comparison page on a real report (hyperfusion.training.evaluate.write_report on a small cohort)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.data.synthetic.generator import GENERATOR_VERSION
from tests.app.helpers import open_page
from tests.app.helpers import table as page_table
from tests.app.report_fixtures import build_ad_report

HOME = Path(__file__).resolve().parents[2] / "app" / "Home.py"
PAGE = "views/6_Model_comparison.py"


@pytest.fixture(scope="module")
def ad_report(tmp_path_factory) -> dict:
    return build_ad_report(tmp_path_factory.mktemp("comparison"))


@pytest.fixture
def report_env(ad_report, monkeypatch) -> dict:
    """The dashboard pointed at the report's own cohort and models."""
    monkeypatch.setenv("HYPERFUSION_COHORT", str(ad_report["cohort"]))
    monkeypatch.setenv("HYPERFUSION_MODELS", str(ad_report["models"]))
    monkeypatch.setenv("HYPERFUSION_DEMO_ASSETS", str(ad_report["assets"]))
    return ad_report


def _charts(at) -> dict[str, dict]:
    """Plotly figures of the page by title."""
    out = {}
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        title = spec["layout"].get("title", {})
        out[title.get("text", "") if isinstance(title, dict) else title] = spec
    return out


def _has_table(at, *columns: str) -> bool:
    return any(set(columns) <= set(d.value.columns) for d in at.dataframe)


def _truth(ad_report) -> np.ndarray:
    table = ad_report["table"].set_index("PTID").loc[ad_report["result"]["test_ptids"]]
    return table["DX"].map({c: i for i, c in enumerate(CLASS_NAMES)}).to_numpy()


def test_paper_table_group_spread_and_significance(report_env):
    at = open_page(PAGE)
    result = report_env["result"]
    table = page_table(at, "members", "balanced_accuracy").set_index("model")
    assert list(table.index) == list(result["runs"])
    for label, entry in result["runs"].items():
        lo, hi = entry["ci95"]["balanced_accuracy"]["ci95"]
        assert table.loc[label, "balanced_accuracy"] == (
            f"{entry['metrics']['balanced_accuracy']:.3f} [{lo:.3f}, {hi:.3f}]"
        )
    groups = page_table(at, "runs", "architecture").set_index("architecture")
    hf = result["groups"]["hyperfusion"]
    assert groups.loc["hyperfusion", "balanced_accuracy"] == (
        f"{hf['mean']['balanced_accuracy']:.3f} ± {hf['std']['balanced_accuracy']:.3f}"
    )
    significance = page_table(at, "comparison").set_index("comparison")
    p = result["significance"]["hyperfusion > image_only"]["auc"]
    assert significance.loc["hyperfusion > image_only", "auc"] == pytest.approx(p, abs=1e-4)
    assert significance.loc["hyperfusion > image_only", "smallest possible p"] == pytest.approx(
        1 / 6, abs=1e-4
    )
    assert any("SYNTHETIC" in w.value for w in at.warning)


def test_confusion_roc_and_calibration_have_one_trace_per_model(report_env):
    at = open_page(PAGE)
    result = report_env["result"]
    charts = _charts(at)
    for label, entry in result["runs"].items():  # one heatmap per model, the report's counts as text
        cm = np.asarray(entry["confusion"])
        text = charts[label]["data"][0]["text"]
        assert [[int(t.split("<br>")[0]) for t in row] for row in text] == cm.tolist()
    roc, calibration = (
        charts["ROC: AD vs the other classes"],
        charts["Reliability: is P(AD) the observed rate?"],
    )
    assert len(roc["data"]) == len(result["runs"]) == len(calibration["data"])
    y = _truth(report_env)
    for trace, label in zip(roc["data"], result["runs"]):
        auc = roc_auc_score(y == 2, np.asarray(result["predictions"][label])[:, 2])
        assert trace["name"] == f"{label} (AUC {auc:.2f})"
    at.multiselect(key="comparison_models").set_value(["hyperfusion", "tabular_only"]).run()
    at.selectbox(key="comparison_class").select("CN").run()
    charts = _charts(at)
    assert [t["name"].split(" ")[0] for t in charts["ROC: CN vs the other classes"]["data"]] == [
        "hyperfusion",
        "tabular_only",
    ]
    assert "image_only" not in charts


def test_subgroup_counts_add_up_and_match_an_independent_computation(report_env):
    at = open_page(PAGE)
    result = report_env["result"]
    table = report_env["table"].set_index("PTID").loc[result["test_ptids"]]
    y = _truth(report_env)
    proba = np.asarray(result["predictions"]["hyperfusion"])
    by_sex = page_table(at, "sex", "subjects")
    groups = by_sex[by_sex["sex"] != "all test subjects"]
    assert groups["subjects"].sum() == result["test_subjects"]
    female = (table["PTGENDER"] == 0).to_numpy()
    row = groups.set_index("sex").loc["Female"]
    assert row["subjects"] == female.sum()
    expected = balanced_accuracy_score(y[female], proba[female].argmax(1))
    assert row["hyperfusion"] == pytest.approx(expected, abs=1e-3)
    by_band = page_table(at, "age band", "subjects")
    bands = by_band[by_band["age band"] != "all test subjects"]
    assert bands["subjects"].sum() == result["test_subjects"]
    assert set(bands["age band"]) <= {"<65", "65–75", "75–85", "≥85"}
    assert all((n < 10) == (note != "") for n, note in zip(bands["subjects"], bands["note"]))
    assert set(by_sex.columns) >= set(result["runs"])  # every model


def test_disagreements_list_exactly_the_differing_subjects_and_a_click_opens_one(report_env):
    at = open_page(PAGE)
    result = report_env["result"]
    predicted = {k: np.asarray(v).argmax(1) for k, v in result["predictions"].items()}
    differ = (predicted["hyperfusion"] != predicted["image_only"]) | (
        predicted["hyperfusion"] != predicted["tabular_only"]
    )
    expected = [p for p, d in zip(result["test_ptids"], differ) if d]
    assert expected, "the fixture's models should disagree on someone"
    table = at.dataframe(key="disagreement_table").value
    assert table["PTID"].tolist() == expected
    truth = dict(zip(result["test_ptids"], (CLASS_NAMES[i] for i in _truth(report_env))))
    assert table["truth"].tolist() == [truth[p] for p in expected]
    first = result["test_ptids"].index(expected[0])
    assert table.loc[0, "image_only"] == CLASS_NAMES[predicted["image_only"][first]]

    y = dict(zip(result["test_ptids"], _truth(report_env)))
    hf = dict(zip(result["test_ptids"], predicted["hyperfusion"]))
    at.radio(key="disagree_filter").set_value("hyperfusion right").run()
    right = at.dataframe(key="disagreement_table").value["PTID"].tolist()
    assert right == [p for p in expected if hf[p] == y[p]]
    at.radio(key="disagree_filter").set_value("hyperfusion wrong").run()
    assert at.dataframe(key="disagreement_table").value["PTID"].tolist() == [
        p for p in expected if p not in right
    ]
    at.radio(key="disagree_filter").set_value("all of them").run()

    # a click on a row (the dataframe's selection state) opens that subject on the Subject page
    at.session_state["disagreement_table"] = {"selection": {"rows": [len(expected) - 1], "columns": []}}
    at.run()
    assert not at.exception
    assert at.session_state["subject"] == expected[-1]
    assert at.title[0].value == "Subject and what-if"
    assert at.selectbox(key="_subject_widget").value == expected[-1]


def test_a_subject_of_another_cohort_is_opened_after_switching_the_dashboard_to_it(
    report_env, app_env, monkeypatch
):
    monkeypatch.setenv("HYPERFUSION_COHORT", str(app_env["cohort"]))  # the dashboard shows another cohort
    at = open_page(PAGE)
    ptid = at.dataframe(key="disagreement_table").value["PTID"].iloc[0]
    at.session_state["disagreement_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    assert at.title[0].value == "Model comparison"  # not opened: the subject is not in the dashboard's cohort
    assert any("not the report's" in i.value for i in at.info)
    at.button(key="open_in_report_cohort").click().run()
    assert not at.exception
    assert at.title[0].value == "Subject and what-if"
    assert at.session_state["settings"]["cohort"] == str(report_env["cohort"])
    assert at.selectbox(key="_subject_widget").value == ptid


def _copy_report(ad_report, name: str, change) -> Path:
    src = Path(ad_report["report"])
    out = src.parent.parent / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    result = json.loads(src.read_text())
    change(result)
    (out / "results.json").write_text(json.dumps(result))
    return out


def test_modality_reliance_says_how_much_each_model_uses_the_scan_and_the_record(report_env):
    at = open_page(PAGE)
    result = report_env["result"]
    table = page_table(at, "permuted", "verdict")
    rows = {(r["model"], r["permuted"]): r for _, r in table.iterrows()}
    assert len(rows) == 2 * len(result["runs"])  # every model, both inputs
    for label, entry in result["runs"].items():
        for modality, rel in entry["reliance"].items():
            row = rows[(label, modality)]
            if not rel["applicable"]:
                assert row["verdict"].startswith(f"reads no {modality}")
                continue
            ba = rel["balanced_accuracy"]
            assert row["BA"] == pytest.approx(ba["unpermuted"], abs=1e-3)
            assert row["BA permuted"] == f"{ba['permuted_mean']:.3f} ± {ba['permuted_sd']:.3f}"
            assert row["BA drop"] == pytest.approx(ba["drop"], abs=1e-3)
            assert row["verdict"] == ("uses the " if rel["uses"] else "barely uses the ") + modality
    assert rows[("tabular_only", "scan")]["verdict"].startswith("reads no scan")
    assert rows[("image_only", "record")]["verdict"].startswith("reads no record")
    assert any("5 random permutations" in c.value for c in at.caption)


def test_the_reports_notes_on_its_subjects_are_shown(report_env):
    def note(result):
        result["subjects"] = {
            "mode": "recomputed",
            "notes": ["The model file(s) of x do not record their partition"],
        }

    out = _copy_report(report_env, "ad_noted", note)
    try:
        at = open_page(PAGE)
        at.selectbox(key="comparison_report").select("ad_noted").run()
        assert any("do not record their partition" in w.value for w in at.warning)
    finally:
        shutil.rmtree(out)


def test_faithfulness_scores_or_the_command_that_adds_them(report_env):
    scores = {
        "mass_share": 0.4,
        "volume_share": 0.1,
        "enrichment": 4.0,
        "auroc": 0.8,
        "pointing_game": 1.0,
        "top_decile_enrichment": 2.6,
        "top_decile_outside_brain": 0.04,
        "lattice": 1.5,
    }

    def add(result):
        result["faithfulness"] = {
            "method": "saliency",
            "subjects": ["A", "B"],
            "mean": {"hyperfusion": scores},
            "untrained": {
                "hyperfusion": {
                    "top_decile_enrichment": 1.4,
                    "top_decile_outside_brain": 0.22,
                    "lattice": 9.0,
                }
            },
        }

    out = _copy_report(report_env, "ad_faithful", add)
    try:
        at = open_page(PAGE)
        assert at.selectbox(key="comparison_report").value == "ad"
        assert any("--faithfulness saliency" in c.value for c in at.code)  # the plain report: the command
        at.selectbox(key="comparison_report").select("ad_faithful").run()
        assert not at.exception
        table = page_table(at, "enrichment")
        assert table.loc[0, "model"] == "hyperfusion" and table.loc[0, "enrichment"] == 4.0
        assert (
            table.loc[0, "top_decile_enrichment"] == 2.6
            and table.loc[0, "untrained top_decile_enrichment"] == 1.4
        )
        assert table.loc[0, "lattice"] == 1.5 and table.loc[0, "untrained lattice"] == 9.0
        assert any("saliency" in m.value and "2 AD test subjects" in m.value for m in at.markdown)
    finally:
        shutil.rmtree(out)


def test_a_report_whose_cohort_is_missing_shows_what_needs_no_table(report_env):
    def move(result):
        result["data"]["path"] = "/nowhere/cohort"

    out = _copy_report(report_env, "elsewhere", move)
    try:
        at = open_page(PAGE)
        at.selectbox(key="comparison_report").select("elsewhere").run()
        assert not at.exception
        assert any("/nowhere/cohort" in i.value and "not on this machine" in i.value for i in at.info)
        assert len(page_table(at, "members", "balanced_accuracy")) == 5
        charts = _charts(at)
        assert "hyperfusion" in charts  # the confusion matrices come from the report itself
        assert not any(t.startswith("ROC") for t in charts)
        assert not _has_table(at, "sex")  # no subgroups without the table …
        assert _has_table(at, "PTID", "hyperfusion")  # … but the predictions alone still disagree
    finally:
        shutil.rmtree(out)


def test_a_demo_report_joins_the_shipped_copy_of_its_generated_cohort(report_env, tmp_path, monkeypatch):
    """The demo's reports name the cohort generated in the build machine's cache; the shipped table stands in."""
    assets = tmp_path / "assets"
    shipped = assets / "cohorts" / "ad"
    shipped.mkdir(parents=True)
    shutil.copy(Path(report_env["cohort"]) / "cohort.csv", shipped / "cohort.csv")
    knobs = {
        "n": 50,
        "seed": 3,
        "task": "ad",
        "voxel_size": 4.0,
        "whole_brain": False,
        "interaction_strength": 1.0,
        "age_range": None,
    }
    meta = {"source": "synthetic", "generator_version": GENERATOR_VERSION, "knobs": knobs, "task": "ad"}
    (shipped / "cohort.json").write_text(json.dumps(meta))
    result = json.loads(Path(report_env["report"]).read_text())
    result["data"]["path"] = "/build-machine/.cache/hyperfusion/demo/cohorts/ad_seed3_l1"
    (assets / "reports" / "ad").mkdir(parents=True)
    (assets / "reports" / "ad" / "results.json").write_text(json.dumps(result))
    monkeypatch.setenv("HYPERFUSION_DEMO_ASSETS", str(assets))
    monkeypatch.setenv("HYPERFUSION_COHORT", str(shipped))
    # no models: the Subject page then needs no scan (a demo table's scans would be generated into the cache)
    (tmp_path / "no_models").mkdir()
    monkeypatch.setenv("HYPERFUSION_MODELS", str(tmp_path / "no_models"))
    monkeypatch.setenv("HYPERFUSION_CACHE", str(tmp_path / "cache"))
    at = open_page(PAGE)
    assert any("shipped copy" in c.value for c in at.caption)
    assert page_table(at, "sex", "subjects")["subjects"].iloc[-1] == result["test_subjects"]
    # the dashboard's cohort is the shipped table: a click opens the subject directly
    at.session_state["disagreement_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    assert at.title[0].value == "Subject and what-if"


def test_a_shipped_demo_report_is_joined_from_another_checkout(report_env, tmp_path, monkeypatch):
    """Demo reports are written in the build's checkout (…/assets/demo/cohorts/ad); another checkout reads its own."""
    assets = tmp_path / "checkout" / "assets" / "demo"
    shipped = assets / "cohorts" / "ad"
    shipped.mkdir(parents=True)
    shutil.copy(Path(report_env["cohort"]) / "cohort.csv", shipped / "cohort.csv")
    result = json.loads(Path(report_env["report"]).read_text())
    result["data"]["path"] = "/build-machine/repo/assets/demo/cohorts/ad"
    (assets / "reports" / "ad").mkdir(parents=True)
    (assets / "reports" / "ad" / "results.json").write_text(json.dumps(result))
    monkeypatch.setenv("HYPERFUSION_DEMO_ASSETS", str(assets))
    at = open_page(PAGE)
    assert not any("not on this machine" in i.value for i in at.info)
    assert page_table(at, "sex", "subjects")["subjects"].iloc[-1] == result["test_subjects"]
