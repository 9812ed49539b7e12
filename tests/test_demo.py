"""`hyperfusion demo build | status | verify` at a tiny size: every step, resuming, and RESULTS.md reproduced."""

import json
import re
from pathlib import Path

import pytest

from hyperfusion import demo
from hyperfusion.cli import main
from hyperfusion.data.synthetic import shipped
from hyperfusion.errors import DataError

TINY = {
    **demo.DEMO,
    "ad_cohort": {"task": "ad", "n": 32, "seed": 3, "voxel_size": 4.0, "interaction_strength": 1.0},
    "brain_age_cohort": {
        "task": "brain_age",
        "n": 12,
        "seed": 4,
        "voxel_size": 4.0,
        "whole_brain": True,
        "interaction_strength": 1.0,
    },
    "ad_test_cohort": {"task": "ad", "n": 24, "seed": 9, "voxel_size": 4.0, "interaction_strength": 1.0},
    "ad_voxel_size": 4.0,
    "init_features": 2,
    "epochs": 1,
    "tabular_epochs": 2,
    "pretrain_epochs": 1,
    "brain_age_epochs": 1,
    "four_fold_models": ["tabular_only"],
    "one_fold_models": ["image_only"],
    "brain_age_models": ["image_only"],
    "sweep_lambdas": [0.0],
    "sweep_models": ["image_only"],
    "bootstrap": 20,
    "starter_scans": 3,
    "fail_on_collapse": False,  # one epoch on 32 subjects: collapse is expected; its own test below
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    mp = pytest.MonkeyPatch()
    mp.setattr(demo, "DEMO", TINY)
    mp.setenv("HYPERFUSION_CACHE", str(root / "cache"))
    assets = root / "assets"
    log = demo.build(assets)
    yield assets, log
    mp.undo()


def test_build_makes_every_step_and_ships_tables_not_scans(built):
    assets, log = built
    # every model is trained with its out-of-distribution reference, so the step that adds missing ones is done
    assert {e["step"]: e["status"] for e in log}["ood references"] == "done"
    log = [e for e in log if e["step"] != "ood references"]
    assert [e["status"] for e in log] == ["built"] * len(log)
    names = [e["step"] for e in log]
    assert names[-1] == "RESULTS.md"
    assert sum(n.startswith("train ad/tabular_only/fold") for n in names) == 4
    for d in ("cohorts/ad", "cohorts/brain_age"):  # tables and the first subjects' scans, not the cohort's
        assert {p.name for p in (assets / d).iterdir()} == {"cohort.csv", "cohort.json", shipped.STARTER_DIR}
        assert len(list((assets / d / shipped.STARTER_DIR).iterdir())) == TINY["starter_scans"]
    assert {p.name for p in (assets / "sweep/cohorts/lambda0").iterdir()} == {"cohort.csv", "cohort.json"}
    assert (assets / "sweep/models/lambda0/image_only/model.safetensors").is_file()
    assert not (assets / "models" / "sweep").exists()  # the dashboard lists assets/models only
    text = (assets / "RESULTS.md").read_text()
    assert "SYNTHETIC" in text and "image_only/fold0" in text and "| 0 | image_only |" in text
    assert "Attribution faithfulness (saliency" in text
    # the sweep reports each model's reliance: a BA drop with the scans permuted; image_only reads no record
    row = next(ln for ln in text.splitlines() if ln.startswith("| 0 | image_only |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert re.fullmatch(r"[+-]\d\.\d{3}", cells[4]) and cells[5] == "–", row
    timing = json.loads((assets / "build.json").read_text())["steps"]
    assert set(timing) == set(names) and all(v["wall_s"] >= 0 for v in timing.values())


def test_an_interrupted_build_redoes_only_what_is_missing(built, monkeypatch):
    assets, _ = built
    monkeypatch.setattr(demo, "DEMO", TINY)
    card = assets / "models/ad/image_only/fold0/card.json"
    card.rename(card.with_suffix(".bak"))  # as if the build stopped before this model was saved
    results = assets / "RESULTS.md"
    kept = results.read_text()
    results.unlink()
    status = {e["step"]: e["status"] for e in demo.build(assets, dry_run=True)}
    assert {k for k, v in status.items() if v == "to do"} == {"train ad/image_only/fold0", "RESULTS.md"}
    log = demo.build(assets)
    assert [e["step"] for e in log if e["status"] == "built"] == ["train ad/image_only/fold0", "RESULTS.md"]
    assert card.is_file()
    assert results.read_text().count("|") == kept.count("|")  # the same tables again


def test_verify_reruns_the_evaluate_commands_and_catches_a_changed_number(built, monkeypatch, capsys):
    assets, _ = built
    monkeypatch.setattr(demo, "DEMO", TINY)
    same, diff = demo.verify(assets)
    assert same, diff
    results = assets / "RESULTS.md"
    text = results.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("| tabular_only |"))
    results.write_text(text.replace(line, line.replace("|", "| 0.999 |", 2).replace("| 0.999 |", "|", 1)))
    same, diff = demo.verify(assets)
    assert not same and "0.999" in diff
    results.write_text(text)


def test_evaluate_accepts_a_shipped_table_and_names_single_folds(built, monkeypatch, tmp_path, capsys):
    assets, _ = built
    monkeypatch.setattr(demo, "DEMO", TINY)
    out = tmp_path / "report"
    code = main(
        [
            "evaluate",
            "--data",
            str(assets / "cohorts/ad"),
            "--models",
            str(assets / "models/ad/image_only/fold0"),
            "--out",
            str(out),
            "--bootstrap",
            "20",
        ]
    )
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert list(result["runs"]) == ["image_only/fold0"]
    assert result["data"]["path"] == str((assets / "cohorts/ad").resolve())
    assert f"Test partition of `{assets / 'cohorts/ad'}`" in (out / "results.md").read_text()
    assert Path(shipped.scans_for(assets / "cohorts/ad"), "images").is_dir()  # regenerated into the cache


def test_one_subject_scan_comes_from_the_shipped_starters_or_alone_byte_identical(built, monkeypatch):
    import hyperfusion.data.synthetic as synthetic

    assets, _ = built
    monkeypatch.setattr(demo, "DEMO", TINY)
    table = assets / "cohorts" / "ad"
    starters = sorted(p.name for p in (table / shipped.STARTER_DIR).iterdir())
    assert starters == ["SYN_0001.nii.gz", "SYN_0002.nii.gz", "SYN_0003.nii.gz"]
    full = shipped.scans_for(table) / "images"
    hidden = full.with_name("images_hidden")
    full.rename(hidden)  # as on a machine that never generated the whole cohort
    try:
        original = synthetic.write_subject_scan
        monkeypatch.setattr(
            synthetic, "write_subject_scan", lambda *a: pytest.fail("generated a shipped scan")
        )
        assert shipped.subject_scan(table, "SYN_0002") == table / shipped.STARTER_DIR / "SYN_0002.nii.gz"
        assert (hidden / "SYN_0002.nii.gz").read_bytes() == (
            table / shipped.STARTER_DIR / "SYN_0002.nii.gz"
        ).read_bytes()
        monkeypatch.setattr(synthetic, "write_subject_scan", original)
        alone = shipped.subject_scan(table, "SYN_0010")
        assert alone.parent.parent.name == "subjects"
        assert alone.read_bytes() == (hidden / "SYN_0010.nii.gz").read_bytes()
        assert not full.exists()  # nothing else was generated
        with pytest.raises(DataError, match="SYN_9999"):
            shipped.subject_scan(table, "SYN_9999")
    finally:
        hidden.rename(full)


def test_verify_retrain_reproduces_a_shipped_model(built, monkeypatch):
    assets, _ = built
    monkeypatch.setattr(demo, "DEMO", TINY)
    same, line = demo.retrain("ad/image_only/fold0", assets)
    assert same, line
    assert "shipped" in line and "retrained" in line
    with pytest.raises(FileNotFoundError, match="no shipped demo model"):
        demo.retrain("ad/nothing/fold0", assets)


def test_a_collapsed_model_stops_the_build(built, monkeypatch):
    from hyperfusion.training import fold

    assets, _ = built
    monkeypatch.setattr(demo, "DEMO", {**TINY, "fail_on_collapse": True})
    # a learning rate of 0 leaves the network at its initialisation: its predictions do not tell subjects apart
    monkeypatch.setitem(fold.RECIPES, "cpu", {**fold.RECIPES["cpu"], "lr": 0.0})
    card = assets / "models/ad/image_only/fold0/card.json"
    backup = card.read_bytes()
    card.unlink()
    import shutil

    shutil.rmtree(demo.work_dir() / "training" / "ad/image_only/fold0")  # a new run, not a resumed one
    try:
        with pytest.raises(demo.CollapsedError, match="collapsed"):
            demo.build(assets, only="train ad/image_only/fold0")
        assert not card.exists()  # nothing shipped
    finally:
        card.write_bytes(backup)
