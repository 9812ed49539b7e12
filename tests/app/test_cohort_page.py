"""The Cohort page under AppTest: every model's probabilities for every subject, filled in by a background job
that writes a disk cache (a new server process reads it back), disagreement and error columns, global
importance, partial dependence and distributions."""

import sys
import time

import numpy as np
import pytest

from hyperfusion.data import load_cohort
from hyperfusion.data.cohort import cohort_record
from hyperfusion.inference.predictor import Predictor
from hyperfusion.inference.tables import subject_value
from tests.app.helpers import figures, open_page


@pytest.fixture
def cohort_env(app_env, tmp_path, monkeypatch):
    import cohort_parts

    monkeypatch.setenv("HYPERFUSION_CACHE", str(tmp_path / "cache"))  # a disk cache of this test's own ...
    cohort_parts.prediction_job.clear()  # ... and jobs of its own (they are kept for the whole process)
    cohort_parts.importance_job.clear()
    return app_env


def _settle(at, timeout: float = 240):
    """Rerun the page until both background jobs have finished (AppTest does not run fragment timers)."""
    parts = sys.modules["cohort_parts"]
    deadline = time.monotonic() + timeout
    for job in (*parts._RUNNING["predictions"], *parts._RUNNING["importance"]):
        assert job.wait(max(1.0, deadline - time.monotonic())), "a background job did not finish"
    at.run()
    assert not at.exception, at.exception
    return at


def _open_tab(at, name: str):
    """Open one of the Cohort page's tabs (only the open one is drawn), then let its jobs finish."""
    at.session_state["cohort_tab"] = name
    return _settle(at.run())


def _predictions(at):
    return next(d.value for d in at.dataframe if "P(AD) · hyperfusion" in d.value.columns)


def test_every_subject_gets_every_models_probabilities_equal_to_the_subject_page(cohort_env):
    at = _settle(open_page("views/3_Cohort.py"))
    table = _predictions(at)
    assert sorted(table["PTID"]) == sorted(cohort_env["ptids"])
    for model in ("hyperfusion", "tabular_only"):
        values = table[f"P(AD) · {model}"].to_numpy(dtype=float)
        assert np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()
    assert {"models disagree", "spread P(AD)", "models wrong", "mean 1 − P(truth)"} <= set(table.columns)
    # the Subject page's number (subject_value) for one subject
    cohort = load_cohort(cohort_env["cohort"])
    row = cohort.table.iloc[2]
    predictor = Predictor({"hyperfusion": cohort_env["models"] / "hyperfusion"})
    expected = subject_value(predictor, "hyperfusion", row["image_path"], cohort_record(row), "AD")
    got = table.set_index("PTID").loc[row["PTID"], "P(AD) · hyperfusion"]
    assert got == pytest.approx(expected, abs=1e-6)
    # another class: the columns follow
    at.segmented_control[0].set_value("CN").run()
    table = next(d.value for d in at.dataframe if "P(CN) · hyperfusion" in d.value.columns)
    assert (table["P(CN) · hyperfusion"] >= 0).all()
    # the errors against the diagnosis: a model is wrong where its most probable class is not the diagnosis
    truth = cohort.table.set_index("PTID")["DX"]
    assert table["models wrong"].between(0, 2).all() and truth.isin(["CN", "MCI", "AD"]).all()


def test_global_importance_renders_and_the_filters_narrow_the_table(cohort_env):
    at = _settle(open_page("views/3_Cohort.py"))
    assert not any("mean |attribution|" in str(f["layout"]) for f in figures(at))  # a closed tab: not drawn
    at = _open_tab(at, "Global importance")
    chart = next(f for f in figures(at) if "mean |attribution|" in str(f["layout"]["xaxis"]["title"]))
    assert {t["name"] for t in chart["data"]} == {"hyperfusion", "tabular_only"}
    importance = next(
        d.value for d in at.dataframe if "hyperfusion" in d.value.columns and "PTID" not in d.value
    )
    assert (importance["hyperfusion"] >= 0).all() and importance["tabular_only"].max() > 0
    at = _open_tab(at, "Predictions")
    at.text_input[0].input(cohort_env["ptids"][1]).run()
    assert _predictions(at)["PTID"].tolist() == [cohort_env["ptids"][1]]


def test_a_restart_reads_the_disk_cache(cohort_env):
    _settle(open_page("views/3_Cohort.py"))
    parts = sys.modules["cohort_parts"]
    parts.prediction_job.clear()  # as a new server process: the job is made anew ...
    at = _settle(open_page("views/3_Cohort.py"))
    job = parts._RUNNING["predictions"][0]
    rows, _ = job.snapshot()
    assert len(rows) == 2 * len(cohort_env["ptids"]) and rows["cached"].all()  # ... and reads every row back
    assert any("read from the disk cache" in c.value for c in at.caption)


def test_partial_dependence_and_distributions(cohort_env):
    at = _open_tab(_settle(open_page("views/3_Cohort.py")), "Partial dependence")
    at.button(key="pd_compute").click().run()
    assert not at.exception and not at.error
    pd_fig = next(
        f for f in figures(at) if f["layout"].get("xaxis", {}).get("title", {}).get("text") == "AGE"
    )
    names = {t.get("name") for t in pd_fig["data"]} - {None}
    assert names == {"hyperfusion", "tabular_only"}
    at = _open_tab(at, "Distributions by diagnosis")
    at.radio(key="dist_kind").set_value("violin").run()
    assert any(t["type"] == "violin" for f in figures(at) for t in f["data"])
