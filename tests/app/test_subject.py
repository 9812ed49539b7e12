from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

HOME = Path(__file__).resolve().parents[2] / "app" / "Home.py"


def _predictions(at) -> dict:
    table = next(d.value for d in at.dataframe if "P(AD)" in d.value.columns)
    return table.set_index("model")["P(AD)"].to_dict()


def test_editing_apoe4_changes_the_fusion_prediction_and_reset_restores_it(app_env):
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    at.switch_page("views/1_Subject.py").run()
    assert not at.exception
    at.selectbox(key="_subject_widget").select(app_env["ptids"][2]).run()
    assert at.session_state["subject"] == app_env["ptids"][2]
    before = _predictions(at)
    assert set(before) == {"hyperfusion", "tabular_only"}
    apoe = at.number_input(key="value_APOE4")
    at.number_input(key="value_APOE4").set_value(0 if apoe.value == 2 else 2).run()
    after = _predictions(at)
    assert not at.exception
    assert after["hyperfusion"] != before["hyperfusion"]
    assert after["tabular_only"] != before["tabular_only"]
    at.button[0].click().run()  # reset
    assert _predictions(at) == before


def test_an_emptied_field_is_a_missing_value_that_the_models_impute(app_env):
    """The form has no "missing" boxes: an empty field is a missing value, for numbers and for sex."""
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    at.switch_page("views/1_Subject.py").run()
    at.selectbox(key="_subject_widget").select(app_env["ptids"][2]).run()
    at.number_input(key="value_APOE4").set_value(2).run()
    with_value = _predictions(at)
    at.number_input(key="value_APOE4").set_value(None).run()
    at.selectbox(key="value_PTGENDER").set_value(None).run()
    assert not at.exception
    record = at.session_state["edited_record"]["record"]
    assert record["APOE4"] is None and record["PTGENDER"] is None
    assert sum("missing → imputed" in c.value for c in at.caption) >= 2
    assert _predictions(at)["hyperfusion"] != with_value["hyperfusion"]


def test_attribution_page_shows_three_views_and_the_crosshair_in_mm(app_env):
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    at.switch_page("views/2_Attribution.py").run()
    assert not at.exception, at.exception
    assert at.selectbox[1].options == ["hyperfusion"]  # the tabular model has no saliency map
    assert any("Crosshair at x =" in c.value and "mm" in c.value for c in at.caption)
    at.session_state["attr_cursor"] = "2,-53,-49"  # the viewer's crosshair, as the browser reports it
    at.run()
    assert not at.exception
    assert any("Crosshair at x = 2, y = −53, z = −49 mm" in c.value for c in at.caption)


def test_ice_curves_for_every_model_with_the_current_value_marked(app_env):
    import json

    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    at.switch_page("views/1_Subject.py").run()
    at.selectbox(key="_subject_widget").select(app_env["ptids"][1]).run()
    attribute = next(s for s in at.selectbox if s.label == "Attribute")
    attribute.select("AGE").run()
    assert not at.exception
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    ice = next(
        c for c in charts if c["layout"].get("xaxis", {}).get("title", {}).get("text", "").startswith("AGE")
    )
    assert {t["name"] for t in ice["data"]} == {"hyperfusion", "tabular_only"}
    x = ice["data"][0]["x"]
    if isinstance(x, dict):  # plotly sends arrays as base64 binary
        import base64

        import numpy as np

        x = np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"])
    ages = list(x)
    assert len(ages) == 32 and 40 < min(ages) < max(ages) < 110  # the training rows' support, not 5-110
    assert any(s.get("type") == "line" for s in ice["layout"].get("shapes", []))  # the current value


def test_counterfactual_found_applied_to_the_form_moves_the_prediction_and_nearest_subject_opens(app_env):
    at = AppTest.from_file(str(HOME), default_timeout=120).run()
    at.switch_page("views/1_Subject.py").run()
    at.selectbox(key="_subject_widget").select(app_env["ptids"][0]).run()
    at.selectbox(key="cf_model").select("tabular_only").run()
    target = at.selectbox(key="cf_target").value
    table = next(d.value for d in at.dataframe if "P(AD)" in d.value.columns).set_index("model")
    assert table.loc["tabular_only", "predicted"] != target  # the target is another class
    next(b for b in at.button if b.label.startswith("Find the smallest change")).click().run()
    assert not at.exception
    cf = at.session_state["counterfactual"][1]
    assert cf.found, cf.message
    assert "PTGENDER" not in cf.changes  # kept fixed by default
    changes = next(d.value for d in at.dataframe if "counterfactual" in d.value.columns)
    trust = [m.value for m in [*at.warning, *at.caption] if m.value.startswith(("Fragile", "Margin"))]
    assert len(trust) == 1 and f"{cf.margin:.3f}" in trust[0]  # the margin, flagged when below 0.05
    assert trust[0].startswith("Fragile") == (cf.margin < 0.05)
    assert set(changes["attribute"]) == set(cf.changes)
    next(b for b in at.button if b.label == "Put these values in the form").click().run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "P(AD)" in d.value.columns).set_index("model")
    assert table.loc["tabular_only", "predicted"] == target  # the form now holds the counterfactual record
    assert any("edited · recorded" in c.value for c in at.caption)

    nearest = next(m.value for m in at.markdown if m.value.startswith("Nearest real"))
    shared = next(c.value for c in at.caption if "values both have measured" in c.value)
    assert "at least 4" in shared
    other = nearest.split("**")[3]
    assert other in app_env["ptids"] and other != app_env["ptids"][0]
    next(b for b in at.button if b.label == f"Open {other}").click().run()
    assert at.session_state["subject"] == other
    assert at.selectbox(key="_subject_widget").value == other


def test_the_record_waterfall_adds_up_and_follows_an_edit(app_env):
    from hyperfusion.data import load_cohort
    from hyperfusion.data.cohort import cohort_row
    from hyperfusion.explain import explain_record
    from hyperfusion.inference import Predictor
    from tests.app.helpers import figures

    ptid = app_env["ptids"][1]
    at = AppTest.from_file(str(HOME), default_timeout=90).run()
    at.switch_page("views/1_Subject.py").run()
    at.selectbox(key="_subject_widget").select(ptid).run()
    assert at.selectbox(key="record_model").value == "hyperfusion"  # the model the record's weights come from

    def waterfall() -> dict:
        trace = next(f["data"][0] for f in figures(at) if f["data"][0]["type"] == "waterfall")
        return dict(zip(trace["y"], trace["x"]))

    before = waterfall()
    bars = {k: v for k, v in before.items() if k not in ("baseline record", "this record")}
    assert "APOE4" in bars and "PTGENDER" in bars
    assert sum(bars.values()) == pytest.approx(before["this record"] - before["baseline record"], abs=0.02)
    apoe = 0 if at.number_input(key="value_APOE4").value == 2 else 2
    at.number_input(key="value_APOE4").set_value(apoe).run()
    after = waterfall()
    assert after["APOE4"] != pytest.approx(before["APOE4"])  # updated with the edit
    # independently: the library's attributions for the edited record on the same scan
    edited = at.session_state["edited_record"]["record"]
    scan = cohort_row(load_cohort(app_env["cohort"]), ptid)["image_path"]
    ra = explain_record(
        Predictor({"hyperfusion": app_env["models"] / "hyperfusion"}),
        "hyperfusion",
        scan,
        edited,
        target="AD",
    )
    assert after["APOE4"] == pytest.approx(ra.attributes["APOE4"], abs=1e-5)
    assert after["this record"] == pytest.approx(ra.output, abs=1e-5)
    assert any("record's share" in c.value and "ensemble" in c.value for c in at.caption)


def test_without_a_model_the_form_is_still_shown_and_the_page_says_where_to_add_one(
    app_env, monkeypatch, tmp_path
):
    monkeypatch.setenv("HYPERFUSION_MODELS", str(tmp_path / "no_models"))
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    at.switch_page("views/1_Subject.py").run()
    assert not at.exception
    assert any("No model for this cohort" in i.value for i in at.info)
    assert at.number_input(key="value_AGE").value is not None  # the record is there to read and edit
    at.number_input(key="value_AGE").set_value(66.0).run()
    assert not at.exception and at.session_state["edited_record"]["record"]["AGE"] == 66.0
