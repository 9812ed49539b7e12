from pathlib import Path

from streamlit.testing.v1 import AppTest

HOME = Path(__file__).resolve().parents[2] / "app" / "Home.py"


def _predictions(at) -> dict:
    table = next(d.value for d in at.dataframe if "P(AD)" in d.value.columns)
    return table.set_index("model")["P(AD)"].to_dict()


def test_editing_apoe4_changes_the_fusion_prediction_and_reset_restores_it(app_env):
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    at.switch_page("pages/1_Subject.py").run()
    assert not at.exception
    at.selectbox(key="_subject_widget").select(app_env["ptids"][2]).run()
    assert at.session_state["subject"] == app_env["ptids"][2]
    before = _predictions(at)
    assert set(before) == {"hyperfusion", "tabular_only"}
    apoe = at.number_input(key="value_APOE4")
    at.checkbox(key="missing_APOE4").uncheck().run()
    at.number_input(key="value_APOE4").set_value(0 if apoe.value == 2 else 2).run()
    after = _predictions(at)
    assert not at.exception
    assert after["hyperfusion"] != before["hyperfusion"]
    assert after["tabular_only"] != before["tabular_only"]
    at.button[0].click().run()  # reset
    assert _predictions(at) == before


def test_attribution_page_shows_three_views_and_the_crosshair_in_mm(app_env):
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    at.switch_page("pages/2_Attribution.py").run()
    assert not at.exception, at.exception
    assert at.selectbox[1].options == ["hyperfusion"]  # the tabular model has no saliency map
    assert any("Crosshair at x =" in c.value and "mm" in c.value for c in at.caption)
    at.slider(key="cursor_z").set_value(at.slider(key="cursor_z").max).run()
    assert not at.exception
