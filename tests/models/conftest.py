"""Shared fixtures of the model tests: tiny networks of every (task, name), random inputs, the authors' key list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hyperfusion.models import available_models, build_model

# Tiny sizes: AD at init_features 4 on a 2 mm-ish hemisphere crop; brain age at the smallest input its three
# conv-conv-pool stages take, with few channels
TINY = {
    "ad": {"init_features": 4, "input_shape": [16, 24, 16]},
    "brain_age": {"input_shape": [38, 42, 38], "channels": [4, 4, 8], "hidden": [8, 8, 8]},
}
ALL_MODELS = [(task, name) for task, names in available_models().items() for name in names]

# Parameter names and shapes of the authors' Lightning checkpoints (a copy of shared/reference_checkpoint_keys.json)
REFERENCE_KEYS = json.loads((Path(__file__).parent / "data" / "reference_checkpoint_keys.json").read_text())
# The key list's name of each checkpoint -> (the authors' class name, our task, our model name)
REFERENCE_ARCHS = {
    "HyperFusion_AD": ("HyperFusion_AD", "ad", "hyperfusion"),
    "PreactivResNet (imaging only)": ("PreactivResNet", "ad", "image_only"),
    "MLP_8_bn_prl (tabular only)": ("MLP_8_bn_prl", "ad", "tabular_only"),
    "RES_Tab_concat1 (concatenation)": ("RES_Tab_concat1", "ad", "concat"),
    "DAFT_preactive": ("DAFT_preactive", "ad", "daft"),
    "Film_preactive": ("Film_preactive", "ad", "film"),
    "HyperFusion_Brainage": ("HyperFusion_Brainage", "brain_age", "hyperfusion"),
    "Imaging_only_brainage": ("Imaging_only_brainage", "brain_age", "image_only"),
    "Brainage_concat": ("Brainage_concat", "brain_age", "concat"),
}


def _build_tiny(task: str, name: str, **extra):
    overrides = {} if name == "tabular_only" else dict(TINY[task])
    return build_model(name, task, **{**overrides, **extra})


def _random_inputs(model, batch: int, seed: int = 0) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(image or None, tabular) fitting ``model``: z-scored-like AD records, sex one-hots for brain age."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 1, *model.input_shape, generator=g) if model.reads_scan else None
    if model.task == "brain_age":
        tabular = torch.nn.functional.one_hot(torch.randint(0, 2, (batch,), generator=g), 2).float()
    else:
        tabular = torch.randn(batch, model.config["n_tabular"], generator=g)
    return image, tabular


@pytest.fixture
def build_tiny():
    """build_tiny(task, name, **extra overrides) -> a tiny network."""
    return _build_tiny


@pytest.fixture
def random_inputs():
    """random_inputs(model, batch, seed=0) -> (image or None, tabular)."""
    return _random_inputs


@pytest.fixture(params=ALL_MODELS, ids=[f"{t}-{n}" for t, n in ALL_MODELS])
def tiny_model(request):
    torch.manual_seed(0)
    return _build_tiny(*request.param)


@pytest.fixture
def reference_keys():
    """{authors' class name: {parameter name: shape}} of every checkpoint in the key list."""
    return {
        authors: REFERENCE_KEYS["architectures"][listed]
        for listed, (authors, _, _) in REFERENCE_ARCHS.items()
    }


@pytest.fixture(params=list(REFERENCE_ARCHS))
def reference_arch(request):
    """(authors' class name, task, our name, {parameter name: shape}) of one checkpoint in the key list."""
    authors_name, task, name = REFERENCE_ARCHS[request.param]
    return authors_name, task, name, REFERENCE_KEYS["architectures"][request.param]
