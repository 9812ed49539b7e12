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


def test_a_cohort_whose_scans_fail_the_entry_check_is_shown_with_a_warning_and_nothing_written(
    app_env, monkeypatch, tmp_path
):
    import json

    from tests.conftest import write_image_cohort

    root = write_image_cohort(tmp_path / "noise", 4)  # noise boxes, not brains
    meta = json.loads((root / "cohort.json").read_text())
    meta.pop("allow_unregistered")  # as a user's cohort would be
    (root / "cohort.json").write_text(json.dumps(meta))
    cache = tmp_path / "cache"
    monkeypatch.setenv("HYPERFUSION_CACHE", str(cache))
    monkeypatch.setenv("HYPERFUSION_COHORT", str(root))
    at = AppTest.from_file(str(HOME), default_timeout=30).run()
    assert not at.exception and not at.error
    shown = [w.value.replace("\\", "") for w in at.warning]  # Markdown escapes removed
    warning = next(w for w in shown if "UNRELIABLE: cohort" in w)
    assert "fails the entry check" in warning and "hyperfusion preprocess" in warning
    assert not (cache / "scan_checks.json").exists()  # the dashboard remembers the checks in memory only


def test_the_first_page_imports_neither_torch_nor_the_explain_package(app_env):
    """Startup budget (first page within 3 s of `hyperfusion app`): the Home page and what every page shares
    (notices, settings, share panel) must not import torch, which alone takes about a second here."""
    import os
    import subprocess
    import sys

    script = (
        "import sys\nfrom streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(HOME)!r}, default_timeout=60).run()\n"
        "assert not at.exception, at.exception\n"
        "print(sorted(m for m in ('torch', 'hyperfusion.explain') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=os.environ.copy(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
