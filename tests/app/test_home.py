from pathlib import Path

from streamlit.testing.v1 import AppTest

HOME = Path(__file__).resolve().parents[2] / "app" / "Home.py"


def test_home_page_renders_with_research_and_synthetic_notice(app_env):
    at = AppTest.from_file(str(HOME), default_timeout=30).run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "Research use only" in warnings and "SYNTHETIC" in warnings
    assert at.title[0].value == "HyperFusion"
    models = at.table[1].value
    assert set(models["model"]) == {"hyperfusion", "tabular_only"}
    assert models.set_index("model").loc["hyperfusion", "members"] == 2


def test_home_page_reports_an_unreadable_cohort_without_a_traceback(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("HYPERFUSION_COHORT", str(tmp_path / "nowhere"))
    at = AppTest.from_file(str(HOME), default_timeout=30).run()
    assert not at.exception
    assert "could not be read" in at.error[0].value
