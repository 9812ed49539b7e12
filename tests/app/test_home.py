from pathlib import Path

from streamlit.testing.v1 import AppTest

HOME = Path(__file__).resolve().parents[2] / "app" / "Home.py"


def test_home_page_renders_with_research_and_synthetic_notice():
    at = AppTest.from_file(str(HOME), default_timeout=30).run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "Research use only" in warnings and "SYNTHETIC" in warnings
    assert at.title[0].value == "HyperFusion"
