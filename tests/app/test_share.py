"""The scenario as a link (query parameters), a JSON file and an HTML report."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

HOME = Path(__file__).resolve().parents[2] / "app" / "Home.py"


def _subject_page(query: dict | None = None) -> AppTest:
    """Open the dashboard (with a link's query parameters) and go to the subject page; the link's warnings
    are shown on the first page opened, kept in ``at.link_warnings``."""
    at = AppTest.from_file(str(HOME), default_timeout=60)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    at.link_warnings = " ".join(w.value for w in at.warning)
    return at.switch_page("views/1_Subject.py").run()


def test_the_address_bar_follows_the_subject_and_its_edits(app_env):
    at = _subject_page()
    ptid = app_env["ptids"][2]
    at.selectbox(key="_subject_widget").select(ptid).run()
    assert at.query_params["subject"] == [ptid] or at.query_params["subject"] == ptid
    assert "APOE4" not in at.query_params  # nothing edited yet
    at.number_input(key="value_APOE4").set_value(2).run()
    at.number_input(key="value_AGE").set_value(66.5).run()
    params = {k: at.query_params[k] for k in at.query_params}
    params = {k: v[0] if isinstance(v, list) else v for k, v in params.items()}
    assert params["APOE4"] == "2" and params["AGE"] == "66.5"
    assert set(params) - {"subject", "APOE4", "AGE"} == set()


def test_a_link_opens_the_subject_with_its_edits_and_reports_bad_values(app_env):
    ptid = app_env["ptids"][3]
    at = _subject_page({"subject": ptid, "APOE4": "2", "FDG": "missing", "AGE": "300", "colour": "red"})
    assert not at.exception
    assert at.selectbox(key="_subject_widget").value == ptid
    assert at.number_input(key="value_APOE4").value == 2
    assert at.number_input(key="value_FDG").value is None  # empty: missing
    warnings = at.link_warnings
    assert "AGE" in warnings and "plausible range" in warnings  # age 300 left as recorded, and said so
    assert "colour" in warnings
    recorded_age = at.number_input(key="value_AGE").value
    assert recorded_age != 300
    # the predictions are for the linked record: the edited caption is shown
    assert any("edited · recorded" in c.value for c in at.caption)


def test_a_link_to_an_unknown_subject_says_so_and_keeps_the_page_working(app_env):
    at = _subject_page({"subject": "NOPE_1"})
    assert not at.exception
    assert "NOPE_1" in at.link_warnings
    assert at.selectbox(key="_subject_widget").value == app_env["ptids"][0]


def test_home_page_opens_a_scenario_json_and_rejects_a_bad_one(app_env):
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    ptid = app_env["ptids"][4]
    scenario = {"subject": ptid, "APOE4": "0", "cohort": str(app_env["cohort"])}
    at.file_uploader(key="scenario_json").set_value(
        ("s.json", json.dumps(scenario).encode(), "application/json")
    ).run()
    assert not at.exception and len(at.warning) == 1  # the research notice only
    assert at.session_state["subject"] == ptid
    at.switch_page("views/1_Subject.py").run()
    assert at.number_input(key="value_APOE4").value == 0
    at.switch_page("views/0_Start.py").run()
    at.file_uploader(key="scenario_json").set_value(("s.json", b"[1, 2", "application/json")).run()
    assert not at.exception
    assert any("not a scenario file" in e.value for e in at.error)


def test_a_link_restores_the_attribution_choices_and_the_address_keeps_them_on_other_pages(app_env):
    ptid = app_env["ptids"][1]
    at = AppTest.from_file(str(HOME), default_timeout=120)
    for k, v in {"subject": ptid, "method": "integrated_gradients", "target": "CN", "model": "nope"}.items():
        at.query_params[k] = v
    at.run()
    at.switch_page("views/2_Attribution.py").run()
    assert not at.exception
    assert at.selectbox(key="attr_method").value == "integrated_gradients"
    assert at.radio(key="attr_target").value == "CN"
    assert at.selectbox(key="attr_model").value == "hyperfusion"  # "nope" is not offered: the first model
    at.switch_page("views/1_Subject.py").run()
    at.switch_page("views/2_Attribution.py").run()  # widget state is dropped between pages: re-seeded
    assert at.selectbox(key="attr_method").value == "integrated_gradients"
    params = {k: at.query_params[k] for k in at.query_params}
    params = {k: v[0] if isinstance(v, list) else v for k, v in params.items()}
    assert params["method"] == "integrated_gradients" and params["model"] == "hyperfusion"


def test_a_link_carries_the_attribution_view_and_opens_it(app_env):
    """The view (cursor, zoom, pan, threshold, sign, colour map, overlays, orientation, opacity) goes into the
    link, and the same link opened in a new session restores it into the viewer."""
    ptid = app_env["ptids"][1]
    view = {
        "cursor": "-26,-25,-13",
        "zoom": "3",
        "centre": "-10,-20,-10",
        "threshold": "75%",
        "sign": "positive",
        "cmap": "viridis",
        "layers": "map,atlas",
        "orientation": "neurological",
        "opacity": "0.5",
    }
    at = AppTest.from_file(str(HOME), default_timeout=60)
    for k, v in {"subject": ptid, **view}.items():
        at.query_params[k] = v
    at.run()
    at.switch_page("views/2_Attribution.py").run()
    assert not at.exception
    assert not [w.value for w in at.warning if "view" in w.value or "unknown" in w.value]
    (component,) = at.get("bidi_component")
    shown = json.loads(component.proto.json)
    assert shown["view"]["cursor"] == [-26, -25, -13] and shown["view"]["zoom"] == 3
    assert shown["view"]["radiological"] is False and shown["rows"][0]["sign"] == "positive"
    assert at.slider(key="vw_percentile").value == 75 and at.selectbox(key="vw_cmap").value == "viridis"
    params = {k: at.query_params[k] for k in at.query_params}
    params = {k: v[0] if isinstance(v, list) else v for k, v in params.items()}
    assert {k: params[k] for k in view} == view and params["subject"] == ptid  # the address bar keeps it
