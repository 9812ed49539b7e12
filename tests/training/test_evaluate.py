import json

import numpy as np
import pytest

from hyperfusion.cli import main
from hyperfusion.data import load_cohort
from hyperfusion.training import metrics as M
from hyperfusion.training.evaluate import Member, Run, summarise
from hyperfusion.training.protocol import held_out_rows
from tests.conftest import random_cohort_table

ARCH = {"name": "hyperfusion", "task": "ad", "config": {}}


@pytest.fixture(scope="module")
def table_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    table = random_cohort_table(150, seed=11)
    table["PTGENDER"] = table["PTGENDER"].map({0.0: "Female", 1.0: "Male"})
    path = root / "table.csv"
    table.rename(columns={"DX": "DX_bl"}).to_csv(path, index=False)
    models = root / "models"
    for fold in range(4):  # a tabular-only fold ensemble
        assert (
            main(
                [
                    "train",
                    "--model",
                    "tabular_only",
                    "--data",
                    str(path),
                    "--out",
                    str(models / "tab_ensemble" / f"fold{fold}"),
                    "--fold",
                    str(fold),
                    "--epochs",
                    "5",
                    "--batch-size",
                    "16",
                    "--lr",
                    "0.01",
                    "--quiet",
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "train",
                "--model",
                "tabular_only",
                "--data",
                str(path),
                "--out",
                str(models / "tab_single"),
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--quiet",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    return path, models


def test_evaluate_writes_reproducible_report(table_cohort, tmp_path, capsys):
    path, models = table_cohort
    argv = [
        "evaluate",
        "--data",
        str(path),
        "--models",
        str(models / "tab_ensemble"),
        str(models / "tab_single"),
        "--bootstrap",
        "50",
    ]
    assert main([*argv, "--out", str(tmp_path / "r1")]) == 0
    assert main([*argv, "--out", str(tmp_path / "r2")]) == 0
    capsys.readouterr()
    md1, md2 = (tmp_path / "r1" / "results.md").read_text(), (tmp_path / "r2" / "results.md").read_text()
    assert md1 == md2 and "| tab_ensemble | 4 |" in md1 and "| tab_single | 1 |" in md1
    assert md1.startswith("**Synthetic data.**") is False  # a bare table is not labelled synthetic
    result = json.loads((tmp_path / "r1" / "results.json").read_text())
    cohort = load_cohort(path)
    assert result["test_subjects"] == 30  # partition 4 of 150
    ens = result["runs"]["tab_ensemble"]
    lo, hi = ens["ci95"]["balanced_accuracy"]["ci95"]
    assert lo <= ens["metrics"]["balanced_accuracy"] <= hi
    assert len(ens["member_metrics"]) == 4
    # the ensemble is the inverse-entropy combination of its members' test predictions
    y = cohort.labels()[[cohort.table["PTID"].tolist().index(p) for p in result["test_ptids"]]]
    assert np.array(ens["confusion"]).sum() == 30
    assert ens["metrics"]["balanced_accuracy"] == pytest.approx(
        M.classification_metrics(y, np.array(result["predictions"]["tab_ensemble"]))["balanced_accuracy"]
    )
    for name in ("confusion.png", "roc.png", "calibration.png"):
        assert (tmp_path / "r1" / name).stat().st_size > 1000


def test_ensemble_combines_members(table_cohort):
    from hyperfusion.evaluation import load_run as _load_run
    from hyperfusion.training.evaluate import score_runs

    path, models = table_cohort
    cohort = load_cohort(path)
    run = _load_run(str(models / "tab_ensemble"))
    score_runs(cohort, [run])
    expected = M.inverse_entropy_ensemble(np.stack(run.member_predictions))
    np.testing.assert_allclose(run.predictions, expected)
    assert not np.allclose(run.predictions, np.mean(run.member_predictions, axis=0))


def test_runs_on_different_splits_are_refused(table_cohort):
    path, _ = table_cohort
    cohort = load_cohort(path)
    runs = [
        Run("a", [Member(None, {"training": {"split_seed": 0}, "architecture": ARCH})]),
        Run("b", [Member(None, {"training": {"split_seed": 1}, "architecture": ARCH})]),
    ]
    with pytest.raises(Exception, match="different split seeds"):
        held_out_rows(cohort, runs)


def test_mann_whitney_between_repeated_runs(table_cohort):
    path, _ = table_cohort
    cohort = load_cohort(path)
    test, _ = held_out_rows(
        cohort, [Run("x", [Member(None, {"training": {"split_seed": 0}, "architecture": ARCH})])]
    )
    y = cohort.labels()[test]
    rng = np.random.default_rng(0)

    def run(label, arch, accuracy):
        pred = np.where(rng.random(len(y)) < accuracy, y, rng.integers(0, 3, len(y)))
        r = Run(label, [Member(None, {"architecture": {"name": arch, "task": "ad", "config": {}}})])
        r.predictions = np.eye(3)[pred] * 0.9 + 0.1 / 3
        r.member_predictions = [r.predictions]
        return r

    runs = [run(f"hf{i}", "hyperfusion", 0.95) for i in range(4)] + [
        run(f"io{i}", "image_only", 0.3) for i in range(4)
    ]
    result = summarise(cohort, runs, test, n_boot=20)
    p = result["significance"]["hyperfusion > image_only"]["balanced_accuracy"]
    assert p < 0.05
    assert result["groups"]["hyperfusion"]["mean"]["balanced_accuracy"] > 0.8


def test_evaluate_adds_attribution_faithfulness_on_synthetic_cohorts(tmp_path, capsys, monkeypatch):
    import nibabel as nib
    import torch

    from hyperfusion.data import TabularPreprocessor, ad_box
    from hyperfusion.data.geometry import box_affine
    from hyperfusion.inference.model_files import save_model
    from hyperfusion.models import build_model
    from tests.conftest import write_image_cohort

    monkeypatch.setenv("HYPERFUSION_CACHE", str(tmp_path / "cache"))
    g = ad_box(4.0)
    root = write_image_cohort(tmp_path / "cohort", 40, seed=9)
    (root / "truth").mkdir()
    cohort = load_cohort(root)
    truth = np.zeros(g.box_shape, np.float32)
    truth[4:12, 8:16, 4:12] = -0.3  # a planted "atrophy" block in the right hemisphere
    for ptid in cohort.table["PTID"]:
        nib.save(nib.Nifti1Image(truth, box_affine(g)), root / "truth" / f"{ptid}.nii.gz")
    torch.manual_seed(1)  # not the control's seed 0
    net = build_model("concat", "ad", init_features=4, input_shape=list(g.input_shape)).eval()
    card = {
        "geometry": g.to_dict(),
        "tabular": {"preprocessing": TabularPreprocessor().fit(cohort.table).to_dict()},
        "training": {"split_seed": 0},
    }
    model = save_model(net, card, tmp_path / "concat")
    out = tmp_path / "report"
    argv = [
        "evaluate",
        "--data",
        str(root),
        "--models",
        str(model),
        "--out",
        str(out),
        "--bootstrap",
        "20",
        "--faithfulness",
        "saliency",
        "--faithfulness-subjects",
        "3",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    faith = json.loads((out / "results.json").read_text())["faithfulness"]
    scores = faith["mean"]["concat"]
    assert faith["method"] == "saliency" and 1 <= len(faith["subjects"]) <= 3
    from hyperfusion.data.geometry import split_views
    from hyperfusion.explain.faithfulness import brain_mask

    brain = brain_mask(g)  # the planted block's share of the template brain on the model grid
    assert scores["volume_share"] == pytest.approx((split_views(truth < 0, g) & brain).sum() / brain.sum())
    assert scores["mask_share"] == pytest.approx(scores["volume_share"])
    assert 0 <= scores["mass_share"] <= 1 and 0 <= scores["auroc"] <= 1
    assert 0 <= scores["top_decile_outside_brain"] <= 1 and scores["lattice"] >= 1
    control = faith["untrained"]["concat"]  # the untrained network of the same configuration
    assert set(control) == {"top_decile_enrichment", "top_decile_outside_brain", "lattice"}
    assert control["lattice"] != scores["lattice"]  # another network: another map
    assert faith["stride"]["concat"] == [16, 16, 16]  # stem pool 2 x three stride-2 blocks
    md = (out / "results.md").read_text()
    assert "Attribution faithfulness (saliency" in md and "top-decile enrichment" in md
    # no longer synthetic: refused with a message (its noise scans still loaded with the entry check's warning)
    (root / "cohort.json").write_text('{"allow_unregistered": true}')
    assert main([*argv[:-4], "--faithfulness", "saliency"]) == 2
    assert "needs a synthetic cohort" in capsys.readouterr().err


def test_brain_age_bias_correction_is_per_member_and_never_reads_the_test_ages():
    from hyperfusion.training.evaluate import _bias_corrected

    rng = np.random.default_rng(3)
    age = rng.uniform(50, 90, 40)
    biases = [
        {"slope": 0.6, "intercept": 28.0},
        {"slope": 0.8, "intercept": 12.0},
    ]  # each member's validation fit
    preds = [b["slope"] * age + b["intercept"] + rng.normal(0, 1, 40) for b in biases]
    run = Run(
        "ba",
        [
            Member(
                None,
                {
                    "architecture": {"name": "hyperfusion", "task": "brain_age", "config": {}},
                    "metrics": {"age_bias": b},
                },
            )
            for b in biases
        ],
    )
    run.member_predictions = preds
    expected = np.mean([(p - b["intercept"]) / b["slope"] for p, b in zip(preds, biases)], axis=0)
    assert _bias_corrected(run, age) == M.regression_metrics(age, expected)
    assert _bias_corrected(run, age)["mae"] < 1.5  # each member's own bias removed
    # one member's slope is too flat to invert: no corrected figure rather than a blown-up one
    flat = run.members[1].card.replace(metrics={"age_bias": {"slope": 0.02, "intercept": 70.0}})
    run.members[1] = Member(None, flat)
    assert _bias_corrected(run, age) is None
