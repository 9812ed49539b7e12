"""Modality reliance: does a model use the scan, the record? Scores with either permuted among the subjects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hyperfusion.data import TabularPreprocessor, ad_box, load_cohort
from hyperfusion.data.geometry import model_input
from hyperfusion.models import build_model
from hyperfusion.models.network import FusionNetwork
from hyperfusion.training import metrics as M
from hyperfusion.training.evaluate import (
    Member,
    Run,
    encode_subjects,
    modality_reliance,
    predict_subjects,
    reliance_markdown,
    score_runs,
    summarise,
)
from hyperfusion.training.module import predict_views
from tests.conftest import write_image_cohort

G = ad_box(4.0)


class ScanReader(FusionNetwork):
    """Reads the scan only where the test cohort's 'hippocampus' blob is: its brightness over the view's
    mean, classified by the nearest class centre (set from the cohort). The record enters with weight 0, so
    the network formally reads both inputs but uses only the scan."""

    def __init__(self, n_tabular: int) -> None:
        super().__init__()
        self.n_tabular = n_tabular
        self.register_buffer("centres", torch.zeros(3))
        self.record_weight = nn.Parameter(torch.zeros(n_tabular))

    def encode_image(self, image):
        d, h, w = image.shape[2:]
        core = image[:, 0, d // 2 - 1 : d // 2 + 2, h // 2 - 1 : h // 2 + 2, w // 2 - 2 : w // 2 + 2]
        return ((core.mean(dim=(1, 2, 3)) - image[:, 0].mean(dim=(1, 2, 3)))[:, None],)

    def decode(self, features, tabular):
        f = features[0] + (tabular @ self.record_weight)[:, None]
        return -50.0 * (f - self.centres) ** 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliance")
    cohort = load_cohort(write_image_cohort(root / "cohort", 60, seed=3))
    pre = TabularPreprocessor().fit(cohort.table)
    card = {
        "geometry": G.to_dict(),
        "tabular": {"preprocessing": pre.to_dict()},
        "architecture": {"name": "scan_reader", "task": "ad", "config": {}},
    }
    rows = np.arange(len(cohort.table))
    y = cohort.labels()
    reader = ScanReader(pre.n_outputs).eval()
    member = Member(reader, card)
    f = encode_subjects(member, cohort, rows).features[0].reshape(len(rows), -1).mean(axis=1).numpy()
    with torch.no_grad():  # the class centres of the blob brightness: a nearest-centroid classifier
        reader.centres.copy_(torch.tensor([f[y == c].mean() for c in range(3)]))
    torch.manual_seed(0)
    concat = build_model(
        "concat", "ad", init_features=4, input_shape=list(G.input_shape), n_tabular=pre.n_outputs
    )
    with torch.no_grad():
        for p in concat.parameters():  # larger random weights, so the record visibly moves the output
            p.add_(0.3 * torch.randn_like(p))
        concat.fc1.linear.weight[:, : concat.fc1.in_features] = 0.0  # the image path zeroed: ignores the scan
    concat_card = {**card, "architecture": concat.architecture}
    tabular = build_model("tabular_only", "ad", n_tabular=pre.n_outputs).eval()
    runs = [
        Run("reads the scan", [Member(reader, card)]),
        Run("scan zeroed", [Member(concat.eval(), concat_card)]),
        Run("tabular", [Member(tabular, {**card, "architecture": tabular.architecture})]),
    ]
    score_runs(cohort, runs, rows=rows, permutations=5)
    return cohort, runs, rows, y


def test_encode_once_then_decode_is_the_networks_own_prediction(setup):
    cohort, runs, rows, _ = setup
    member = runs[1].members[0]
    pre = TabularPreprocessor.from_dict(member.card.preprocessing)
    for i in (0, 7):
        views = torch.from_numpy(model_input(cohort.table["image_path"].iloc[i], G))
        tab = torch.from_numpy(np.asarray(pre.transform(cohort.table.iloc[[i]]), dtype=np.float32))
        with torch.no_grad():
            expected = predict_views(member.network, views[None], tab, "ad")[0].numpy()
        np.testing.assert_allclose(runs[1].predictions[i], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict_subjects(member, cohort, rows[:5]), runs[1].predictions[:5], atol=1e-6)


def test_a_model_that_ignores_its_scan_is_flagged_and_one_that_uses_it_is_not(setup):
    _, runs, _, y = setup
    reader, zeroed, tabular = (modality_reliance(run, y) for run in runs)
    # the scan reader is accurate, and much less so with another subject's scan
    assert M.classification_metrics(y, runs[0].predictions)["balanced_accuracy"] > 0.8
    assert reader["scan"]["balanced_accuracy"]["drop"] > 0.3 and reader["scan"]["uses"]
    assert reader["scan"]["seeds"] == 5 and len(reader["scan"]["auc"]["values"]) == 5
    assert (
        reader["record"]["balanced_accuracy"]["drop"] == pytest.approx(0.0) and not reader["record"]["uses"]
    )
    # the zeroed image path: permuting scans changes nothing, permuting records does
    assert (
        zeroed["scan"]["balanced_accuracy"]["values"]
        == [zeroed["scan"]["balanced_accuracy"]["unpermuted"]] * 5
    )
    assert zeroed["scan"]["balanced_accuracy"]["drop"] == 0.0 and not zeroed["scan"]["uses"]
    assert any(not np.allclose(p, runs[1].predictions) for p in runs[1].permuted["record"])
    # a tabular-only network reads no scan: not computed, said so
    assert (
        tabular["scan"] == {"applicable": False, "note": tabular["scan"]["note"]}
        and "scan" in tabular["scan"]["note"]
    )
    assert "scan" not in runs[2].permuted


def test_permuted_scores_are_the_permuted_subjects_scores(setup):
    """The permutation gives subject i the scan of subject perm[i]: for the scan reader (which uses nothing
    else) that is exactly its unpermuted prediction for subject perm[i]."""
    from hyperfusion.training.evaluate import permutation

    _, runs, rows, _ = setup
    for seed in range(5):
        order = permutation(len(rows), seed, "scan")
        np.testing.assert_allclose(runs[0].permuted["scan"][seed], runs[0].predictions[order], atol=1e-6)


def test_reliance_in_the_summary_and_its_table(setup):
    cohort, runs, rows, _ = setup
    result = summarise(cohort, runs, rows, n_boot=10)
    assert result["runs"]["reads the scan"]["reliance"]["scan"]["uses"]
    md = reliance_markdown(result, "ad")
    assert "### Modality reliance" in md and "| scan zeroed |" in md
    assert "reads no scan" in md  # the tabular-only row
    flagged = md.strip().splitlines()[-1]
    assert "scan zeroed (scan)" in flagged and "reads the scan (record)" in flagged
    assert "reads the scan (scan)" not in flagged
