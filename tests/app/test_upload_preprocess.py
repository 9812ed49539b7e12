"""The Upload page preprocesses a raw scan on request, shows its QC, and predicts from the result."""

import gzip

import pytest
from streamlit.testing.v1 import AppTest

from hyperfusion.data.preprocess.template import template
from tests.app.test_pages import HOME
from tests.preprocess.conftest import moved


def test_a_raw_scan_is_refused_then_preprocessed_and_predicted(app_env):
    pytest.importorskip("deepbet", reason="deepbet absent: pip install --no-deps -r requirements-nodeps.txt")
    raw = gzip.compress(moved(template(2)).to_bytes(), compresslevel=1)  # the template in 'scanner' space
    at = AppTest.from_file(str(HOME), default_timeout=300).run()
    at.switch_page("views/5_Upload.py").run()
    at.file_uploader(key="upload_scan").set_value(("raw.nii.gz", raw, "application/gzip"))
    at.file_uploader(key="upload_csv").set_value(("row.csv", b"AGE,PTGENDER\n70,Female\n", "text/csv")).run()
    assert not at.exception
    assert any("not aligned to MNI152" in e.value for e in at.error)
    at.button(key="upload_preprocess").click().run()
    at.run()  # the page reruns itself after preprocessing (st.rerun), as a browser session would
    assert not at.exception and not at.error, [e.value for e in at.error]
    done = at.session_state["upload_preprocessed"]
    assert done["name"] == "raw_preprocessed.nii.gz" and done["qc"]["verdict"]["passed"]
    tables = [d.value for d in at.dataframe]
    qc = next(t for t in tables if "brain-mask Dice with the template" in t.columns)
    assert qc.loc[0, "brain-mask Dice with the template"] > 0.9
    assert at.session_state["uploaded"]["name"] == "raw_preprocessed.nii.gz"
    predictions = next(t for t in tables if "model" in t.columns)
    assert set(predictions["model"]) == {"hyperfusion", "tabular_only"} and "training data" in predictions
