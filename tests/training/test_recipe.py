"""The training recipe: presets, learning-rate schedule, collapse detection, resuming, image-branch init."""

import warnings

import numpy as np
import pytest
import torch

from hyperfusion.data import ad_box, load_cohort
from hyperfusion.data.volume_cache import VolumeCache
from hyperfusion.errors import DataError
from hyperfusion.models import build_model
from hyperfusion.training.fold import (
    RECIPES,
    CollapseWarning,
    TrainConfig,
    collapse_report,
    recipe_config,
    train_fold,
)
from hyperfusion.training.module import FusionModule
from tests.conftest import write_image_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return load_cohort(write_image_cohort(tmp_path_factory.mktemp("cohort"), 60, seed=5))


def test_presets_keep_the_paper_and_name_the_cpu_recipe():
    paper = recipe_config("paper", model="hyperfusion")
    assert paper == TrainConfig(model="hyperfusion", preset="paper")  # the paper's settings are the defaults
    cpu = recipe_config("cpu", model="concat", lr=3e-4, model_overrides={"init_features": 8})
    assert cpu.schedule == "cosine" and cpu.patience == RECIPES["cpu"]["patience"] and cpu.augment == {}
    assert cpu.lr == 3e-4  # an explicit value beats the preset's
    assert cpu.model_overrides["init_features"] == 8 and cpu.model_overrides["head_dropout"] == [0.2, 0.1]
    assert recipe_config("cpu", model="tabular_only").model_overrides == {}
    assert recipe_config("cpu", task="brain_age", model="image_only").model_overrides == {}
    with pytest.raises(ValueError, match="unknown preset"):
        recipe_config("fast")


def test_warmup_then_cosine_decay():
    module = FusionModule(torch.nn.Linear(1, 1), schedule="cosine", warmup_epochs=2, min_lr_ratio=0.01)
    factors = [module.lr_factor(step, total_steps=100, steps_per_epoch=10) for step in range(100)]
    assert factors[0] == pytest.approx(0.05) and factors[19] == pytest.approx(1.0)  # linear warm-up, 20 steps
    assert all(a >= b for a, b in zip(factors[20:], factors[21:]))  # then only down
    assert factors[-1] == pytest.approx(0.01, abs=2e-3)
    flat = FusionModule(torch.nn.Linear(1, 1))
    assert {flat.lr_factor(s, 100, 10) for s in range(100)} == {1.0}  # the paper: a constant rate


def test_collapse_is_flagged_for_one_class_or_constant_outputs():
    rng = np.random.default_rng(0)
    good = rng.dirichlet([1, 1, 1], size=100)
    assert not collapse_report("ad", good)["collapsed"]
    one_class = np.tile([0.2, 0.7, 0.1], (100, 1)) + rng.normal(0, 0.05, (100, 3))
    report = collapse_report("ad", one_class)
    assert report["collapsed"] and "predicted MCI" in report["reasons"][0]
    flat = np.tile([0.34, 0.33, 0.33], (100, 1)) + rng.normal(0, 0.001, (100, 3))
    assert any("nearly constant" in r for r in collapse_report("ad", flat)["reasons"])
    ages = rng.uniform(20, 90, 100)
    assert collapse_report("brain_age", 55 + rng.normal(0, 0.5, 100), ages)["collapsed"]
    assert not collapse_report("brain_age", ages + rng.normal(0, 5, 100), ages)["collapsed"]


def _config(**kw):
    base = dict(
        model="image_only",
        epochs=2,
        batch_size=8,
        geometry=ad_box(4.0).to_dict(),
        model_overrides={"init_features": 4},
        lr=1e-3,
    )
    return TrainConfig(**{**base, **kw})


def test_a_collapsed_run_warns_and_says_so_in_the_card(cohort, tmp_path):
    # lr 0: the network never moves from its initialisation, whose outputs barely depend on the scan
    with pytest.warns(CollapseWarning, match="collapsed"):
        res = train_fold(
            cohort, _config(lr=0.0, epochs=1), tmp_path / "run", cache=VolumeCache(tmp_path / "c"), quiet=True
        )
    assert res.card.collapse["collapsed"] and res.card.collapse["reasons"]


def test_cpu_recipe_trains_with_augmentation_schedule_and_records_it(cohort, tmp_path):
    cfg = recipe_config(
        "cpu", model="image_only", epochs=3, patience=2, batch_size=8, geometry=ad_box(4.0).to_dict()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)
        res = train_fold(cohort, cfg, tmp_path / "run", cache=VolumeCache(tmp_path / "c"), quiet=True)
    training = res.card.training
    assert training["preset"] == "cpu" and training["schedule"] == "cosine" and training["augment"] == {}
    assert 0 <= training["best_epoch"] < 3 and res.card.collapse is not None
    assert res.network.config["shortcut_pool"] is True and res.network.config["head_dropout"] == [0.2, 0.1]
    split = res.card.split
    assert len(split["train"]) == training["train_subjects"] and not set(split["train"]) & set(split["test"])


def test_resuming_refuses_a_changed_configuration(cohort, tmp_path):
    cache = VolumeCache(tmp_path / "c")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)
        train_fold(cohort, _config(epochs=1), tmp_path / "run", cache=cache, quiet=True)
        with pytest.raises(DataError, match="lr differ"):
            train_fold(cohort, _config(epochs=1, lr=5e-4), tmp_path / "run", cache=cache, quiet=True)
        # at a constant rate more epochs continue the run; under a schedule they would change its learning rates
        train_fold(cohort, _config(epochs=2), tmp_path / "run", cache=cache, quiet=True)
        cosine = tmp_path / "cosine"
        train_fold(cohort, _config(epochs=1, schedule="cosine"), cosine, cache=cache, quiet=True)
        with pytest.raises(DataError, match="epochs differ"):
            train_fold(cohort, _config(epochs=2, schedule="cosine"), cosine, cache=cache, quiet=True)


def test_image_branch_starts_from_the_image_only_model():
    source = build_model("image_only", "ad", init_features=4, input_shape=[8, 12, 8])
    for p in source.parameters():
        torch.nn.init.normal_(p)
    target = build_model("hyperfusion", "ad", init_features=4, input_shape=[8, 12, 8])
    from hyperfusion.training.fold import _init_image_branch

    record = _init_image_branch(
        target, source.state_dict(), _config(model="hyperfusion", init_image_from="x")
    )
    assert torch.equal(target.stem[0].weight, source.stem[0].weight)
    assert torch.equal(target.block4.conv1.weight, source.block4.conv1.weight)
    assert not torch.equal(target.fc2.weight, source.fc2.weight)  # the head starts fresh
    assert record["from"] == "x" and record["tensors"] > 10
    assert "block4.shortcut" in record["not_copied"]  # the generated shortcut has no image-only counterpart
    tabular = build_model("tabular_only", "ad")
    with pytest.raises(DataError, match="no image branch"):
        _init_image_branch(tabular, source.state_dict(), _config(model="tabular_only"))


def test_brain_age_image_branch_starts_from_its_image_only_model():
    from hyperfusion.training.fold import _init_image_branch

    kw = {"input_shape": [36, 36, 36], "channels": [2, 4, 4]}
    source = build_model("image_only", "brain_age", **kw)
    for p in source.parameters():
        torch.nn.init.normal_(p)
    for name in ("hyperfusion", "concat"):
        target = build_model(name, "brain_age", **kw)
        record = _init_image_branch(target, source.state_dict(), _config(model=name, init_image_from="x"))
        assert record["tensors"] > 0
        assert torch.equal(target.stage1.conv_a.weight, source.stage1.conv_a.weight)
