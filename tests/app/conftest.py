"""Tiny cohort and models for the dashboard's tests; the app is pointed at them through its environment
variables, so no test needs the demo build."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from hyperfusion.data import TabularPreprocessor, ad_box, load_cohort
from hyperfusion.inference.model_files import save_model
from hyperfusion.models import build_model
from tests.conftest import write_image_cohort

APP = Path(__file__).resolve().parents[2] / "app"
sys.path.insert(0, str(APP))  # the pages import the app's helper modules as Streamlit does


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory) -> dict:
    """A 6-subject 4 mm cohort, a 2-member HyperFusion ensemble and a tabular-only model."""
    root = tmp_path_factory.mktemp("dashboard")
    cohort_dir = write_image_cohort(root / "cohort", 6, seed=3, brain_like=True)
    cohort = load_cohort(cohort_dir)
    g = ad_box(4.0)
    pre = TabularPreprocessor().fit(cohort.table)
    card = {"geometry": g.to_dict(), "tabular": {"preprocessing": pre.to_dict()}, "data": {"synthetic": True}}
    for k in range(2):
        torch.manual_seed(k)
        net = build_model("hyperfusion", "ad", init_features=4, input_shape=list(g.input_shape))
        with torch.no_grad():  # larger weights, so the record visibly moves the output
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        save_model(net.eval(), card, root / "models" / "hyperfusion" / f"fold{k}")
    torch.manual_seed(5)
    save_model(build_model("tabular_only", "ad").eval(), card, root / "models" / "tabular_only")
    return {"cohort": cohort_dir, "models": root / "models", "ptids": cohort.table["PTID"].tolist()}


@pytest.fixture
def app_env(tiny_setup, monkeypatch) -> dict:
    monkeypatch.setenv("HYPERFUSION_COHORT", str(tiny_setup["cohort"]))
    monkeypatch.setenv("HYPERFUSION_MODELS", str(tiny_setup["models"]))
    return tiny_setup


@pytest.fixture(scope="session")
def image_only_model(tiny_setup, tmp_path_factory) -> Path:
    """An image-only network on the same geometry, a second image model to compare with (kept out of
    ``tiny_setup`` so the other pages' tests see the models they expect)."""
    root = tmp_path_factory.mktemp("dashboard_more_models")
    cohort = load_cohort(tiny_setup["cohort"])
    g = ad_box(4.0)
    pre = TabularPreprocessor().fit(cohort.table)
    card = {"geometry": g.to_dict(), "tabular": {"preprocessing": pre.to_dict()}, "data": {"synthetic": True}}
    torch.manual_seed(11)
    net = build_model("image_only", "ad", init_features=4, input_shape=list(g.input_shape))
    save_model(net.eval(), card, root / "image_only")
    return root / "image_only"  # a model directory as a root: the model is named after it


@pytest.fixture
def app_env_two_image_models(app_env, image_only_model, monkeypatch) -> dict:
    """``app_env`` with the image-only model as a second model root."""
    monkeypatch.setenv("HYPERFUSION_MODELS", os.pathsep.join([str(app_env["models"]), str(image_only_model)]))
    return {**app_env, "image_only": image_only_model}
