import numpy as np
import pandas as pd
import pytest
import torch

from hyperfusion.data import TabularPreprocessor, ad_box, load_cohort
from hyperfusion.data.volume_cache import VolumeCache
from hyperfusion.models import measure_input_variance
from hyperfusion.training.fold import TrainConfig, train_fold
from tests.conftest import write_image_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return load_cohort(write_image_cohort(tmp_path_factory.mktemp("cohort"), 60, seed=5))


def _config(**kw):
    base = dict(
        model="hyperfusion",
        epochs=2,
        batch_size=8,
        pretrain_epochs=2,
        geometry=ad_box(4.0).to_dict(),
        model_overrides={"init_features": 4},
        lr=1e-3,
    )
    return TrainConfig(**{**base, **kw})


def test_hyperfusion_fold_card_and_protocol(cohort, tmp_path):
    cache = VolumeCache(tmp_path / "cache")
    res = train_fold(cohort, _config(), tmp_path / "run", cache=cache, quiet=True)
    card = res.card
    training = card.training
    assert training["train_subjects"] + training["val_subjects"] + training["test_subjects"] == 60
    assert training["epochs_run"] >= 1 and training["pretrain"]["epochs"] == 2
    assert card.synthetic is True and card.class_names == ("CN", "MCI", "AD") and card.weights_sha256 is None
    assert card.geometry == ad_box(4.0).to_dict()
    # the preprocessing was fitted on the fold's training rows only and travels in the card
    pre = TabularPreprocessor.from_dict(card.preprocessing)
    assert pre.n_fit_rows_ == training["train_subjects"]
    # the out-of-distribution reference (hyperfusion/training/ood.py) comes from the same training rows
    assert card.ood["n_train"] == card.ood["image"]["n_scans"] == training["train_subjects"]
    from hyperfusion.data.splits import fold_indices, make_partitions

    train_idx, _, _ = fold_indices(make_partitions(cohort.table, 0), 0)
    expected = TabularPreprocessor().fit(cohort.table.iloc[train_idx])
    np.testing.assert_allclose(pre.means_, expected.means_)
    # the principled init used the variance measured on those rows
    v = measure_input_variance(torch.from_numpy(expected.transform(cohort.table.iloc[train_idx])))
    assert res.network.config["hyper_input_variance"] == pytest.approx(v)
    assert not res.network.training
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    logs = list((tmp_path / "run" / "logs").rglob("metrics.csv"))
    assert logs and "val_balanced_accuracy" in pd.read_csv(logs[0]).columns
    assert np.isfinite(res.best_score)


def test_training_resumes_from_last_checkpoint(cohort, tmp_path):
    cache = VolumeCache(tmp_path / "cache")
    cfg = _config(model="image_only", model_overrides={"init_features": 4})
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    train_fold(cohort, cfg, tmp_path / "run", cache=cache, quiet=True)
    steps_two_epochs = torch.load(last, weights_only=True)["global_step"]
    cfg.epochs = 3
    res = train_fold(cohort, cfg, tmp_path / "run", cache=cache, quiet=True)
    # the second run trained only the epoch it was missing: 3/2 of the optimiser steps in total
    assert torch.load(last, weights_only=True)["global_step"] == steps_two_epochs * 3 // 2
    assert res.card.training["epochs_run"] == 3


def test_tabular_only_trains_from_table_alone(tmp_path):
    from tests.conftest import random_cohort_table

    table = random_cohort_table(80, seed=2)
    table["PTGENDER"] = table["PTGENDER"].map({0.0: "Female", 1.0: "Male"})
    path = tmp_path / "table.csv"
    table.rename(columns={"DX": "DX_bl"}).to_csv(path, index=False)
    res = train_fold(
        load_cohort(path),
        _config(model="tabular_only", model_overrides={}, epochs=20),
        tmp_path / "r",
        quiet=True,
    )
    assert res.best_score > 0.45  # the random table's biomarkers carry the label
