"""Model cards, upload and model comparison pages, through Streamlit's AppTest (the Cohort page: test_cohort_page)."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

HOME = Path(__file__).resolve().parents[2] / "app" / "Home.py"


def _open(page: str) -> AppTest:
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    return at.switch_page(page).run()


def test_model_cards_show_every_member(app_env):
    at = _open("views/4_Model_cards.py")
    assert not at.exception
    assert len(at.expander) == 2
    headings = [m.value.split("\n")[0] for m in at.markdown if m.value.startswith("#### ")]
    assert (
        headings.count("#### Intended use") == 2 and headings.count("#### Caveats and recommendations") == 2
    )
    details = [m.value for m in at.markdown if m.value.startswith("#### Model details")]
    assert any("2 member(s)" in d for d in details) and any("1 member(s)" in d for d in details)
    assert len(at.json) == 2  # the raw card.json of one member per model, a picker for the others
    assert at.selectbox(key="raw_hyperfusion").options == ["member 0 (fold –)", "member 1 (fold –)"]
    assert not any(str(app_env["models"]) in m.value or "/tmp" in m.value for m in at.markdown)  # no paths


def test_upload_of_a_bad_record_shows_a_message_not_a_traceback(app_env):
    at = _open("views/5_Upload.py")
    assert not at.exception
    # the form: an implausible age
    age = next(t for t in at.text_input if t.label.startswith("AGE"))
    age.input("250")
    at.button[0].click().run()
    assert not at.exception
    assert any("outside the plausible range" in e.value for e in at.error)


def test_comparison_page_reads_results_json(app_env, tmp_path, monkeypatch):
    report = tmp_path / "reports" / "ad"
    report.mkdir(parents=True)
    run = {
        "members": 4,
        "metrics": {"balanced_accuracy": 0.61},
        "ci95": {"balanced_accuracy": {"ci95": [0.5, 0.7]}},
    }
    report.joinpath("results.json").write_text(
        json.dumps(
            {
                "task": "ad",
                "test_subjects": 9,
                "runs": {"hf": run},
                "data": {"path": "/home/builder/hyperfusion/assets/demo/cohorts/ad_test"},
            }
        )
    )
    monkeypatch.setenv("HYPERFUSION_DEMO_ASSETS", str(tmp_path))
    at = _open("views/6_Model_comparison.py")
    assert not at.exception
    assert at.dataframe[0].value.loc[0, "balanced_accuracy"] == "0.610 [0.500, 0.700]"
    # the machine the report was written on, and this one, stay out of the page
    shown = [e.value for kind in ("caption", "info", "markdown", "warning", "code") for e in at.get(kind)]
    assert any("…/cohorts/ad_test" in v for v in shown)
    assert not any("/home/builder" in v or str(tmp_path) in v for v in shown)


def test_upload_of_a_bad_scan_says_what_is_wrong_and_a_good_one_is_predicted(app_env):
    at = _open("views/5_Upload.py")
    at.file_uploader(key="upload_scan").set_value(
        ("scan.nii.gz", b"not a nifti at all", "application/gzip")
    ).run()
    assert not at.exception
    assert any("scan.nii.gz" in e.value for e in at.error)
    good = sorted((Path(app_env["cohort"]) / "images").glob("*.nii.gz"))[0]
    row = b"AGE,PTGENDER,PTEDUCAT,APOE4\n70,Female,16,1\n"
    at.file_uploader(key="upload_scan").set_value((good.name, good.read_bytes(), "application/gzip"))
    at.file_uploader(key="upload_csv").set_value(("row.csv", row, "text/csv")).run()
    assert not at.exception and not at.error
    assert set(at.dataframe[0].value["model"]) == {"hyperfusion", "tabular_only"}


def test_an_uploaded_subject_is_the_current_subject_of_every_page_and_can_be_forgotten(app_env):
    at = _open("views/5_Upload.py")
    good = sorted((Path(app_env["cohort"]) / "images").glob("*.nii.gz"))[1]
    at.file_uploader(key="upload_scan").set_value(("mine.nii.gz", good.read_bytes(), "application/gzip"))
    row = b"AGE,PTGENDER,PTEDUCAT,APOE4,ABETA\n71,Male,12,2,<200\n"
    at.file_uploader(key="upload_csv").set_value(("row.csv", row, "text/csv")).run()
    assert not at.exception and not at.error
    assert "scan" in at.session_state["uploaded"]

    at.switch_page("views/1_Subject.py").run()
    assert not at.exception
    assert at.selectbox(key="_subject_widget").value == "uploaded: mine.nii.gz"
    assert at.number_input(key="value_AGE").value == 71
    assert at.session_state["value_FDG"] is None  # not in the uploaded row: an empty field
    table = next(d.value for d in at.dataframe if "P(AD)" in d.value.columns)
    assert set(table["model"]) == {"hyperfusion", "tabular_only"}

    at.switch_page("views/2_Attribution.py").run()
    assert not at.exception and not at.error
    assert any("Crosshair at x =" in c.value for c in at.caption)
    assert len(at.get("bidi_component")) == 1  # the viewer (app/viewer.js)
    assert at.session_state["upload_maps"]  # the upload's map lives in the session, not the global cache

    at.switch_page("views/5_Upload.py").run()
    import hashlib
    import sys

    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    predictors = list(sys.modules["dashboard"]._PREDICTORS)
    assert any(k[1] == digest for p in predictors for k in p._features)  # the upload's features are cached
    next(b for b in at.button if b.label == "Forget the uploaded subject").click().run()
    assert not at.exception
    assert "uploaded" not in at.session_state
    assert not any(
        k[1] == digest for p in predictors for k in p._features
    )  # ... and gone from every predictor
    at.switch_page("views/1_Subject.py").run()
    assert at.selectbox(key="_subject_widget").value == app_env["ptids"][0]


def test_the_cohort_page_opens_the_uploaded_subject(app_env):
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    scan = sorted((Path(app_env["cohort"]) / "images").glob("*.nii.gz"))[2].read_bytes()
    at.session_state["uploaded"] = {"name": "u.nii.gz", "scan": scan, "record": {"AGE": "70", "APOE4": "1"}}
    at.switch_page("views/3_Cohort.py").run()
    assert any("u.nii.gz" in i.value and "uploaded" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Open the uploaded subject").click().run()
    assert not at.exception
    assert at.session_state["subject"] == "uploaded: u.nii.gz"
    assert at.selectbox(key="_subject_widget").value == "uploaded: u.nii.gz"


def test_the_upload_form_has_no_default_sex_and_keeps_its_record_across_scans_and_pages(app_env):
    at = _open("views/5_Upload.py")
    images = sorted((Path(app_env["cohort"]) / "images").glob("*.nii.gz"))
    at.file_uploader(key="upload_scan").set_value(
        ("a.nii.gz", images[0].read_bytes(), "application/gzip")
    ).run()
    assert at.selectbox(key="upload_value_PTGENDER").value is None  # no default: the user chooses
    at.text_input(key="upload_value_AGE").input("71")
    at.text_input(key="upload_value_APOE4").input("1")
    next(b for b in at.button if b.label == "Use this record").click().run()
    assert any("PTGENDER" in e.value and "no default" in e.value for e in at.error)
    assert not at.dataframe  # nothing predicted without the sex
    at.selectbox(key="upload_value_PTGENDER").select("Male")
    next(b for b in at.button if b.label == "Use this record").click().run()
    assert not at.exception and not at.error
    first = at.dataframe[0].value.set_index("model")["P(AD)"]
    assert at.session_state["uploaded"]["record"]["PTGENDER"] == "Male"

    # a new scan: the record stays in the form and is used for it
    at.file_uploader(key="upload_scan").set_value(
        ("b.nii.gz", images[1].read_bytes(), "application/gzip")
    ).run()
    assert not at.error
    assert at.text_input(key="upload_value_AGE").value == "71"
    assert at.selectbox(key="upload_value_PTGENDER").value == "Male"
    assert at.session_state["uploaded"]["record"] == {**at.session_state["upload_form_record"]}
    second = at.dataframe[0].value.set_index("model")["P(AD)"]
    assert second["tabular_only"] == first["tabular_only"]  # same record, so the record-only model agrees

    # another page and back: the form is filled again
    at.switch_page("views/1_Subject.py").run()
    at.switch_page("views/5_Upload.py").run()
    assert (
        at.text_input(key="upload_value_AGE").value == "71"
        and at.text_input(key="upload_value_APOE4").value == "1"
    )
    assert at.selectbox(key="upload_value_PTGENDER").value == "Male"
