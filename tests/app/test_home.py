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


def test_a_folder_of_different_models_is_not_taken_for_an_ensemble(tmp_path):
    import json
    import sys

    sys.path.insert(0, str(HOME.parent))
    import dashboard as db

    def card(path, arch, task="brain_age"):
        path.mkdir(parents=True)
        path.joinpath("card.json").write_text(json.dumps({"architecture": {"name": arch, "task": task, "config": {}}}))

    for arch in ("hyperfusion", "image_only", "concat"):  # as assets/demo/models/brain_age
        card(tmp_path / "brain_age" / arch, arch)
    for k in range(2):  # folds of one architecture: an ensemble
        card(tmp_path / "ad" / "hyperfusion" / f"fold{k}", "hyperfusion", "ad")
    models, problems = db.discover_models(str(tmp_path))
    found = {m.name: m.members for m in models}
    assert found == {"ad/hyperfusion": 2, "brain_age/concat": 1, "brain_age/hyperfusion": 1,
                     "brain_age/image_only": 1}  # fmt: skip
    assert not problems
