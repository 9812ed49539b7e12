import dataclasses
import json
import pickle

import numpy as np
import pytest
import torch

from hyperfusion.errors import ModelFileError
from hyperfusion.inference.model_files import file_sha256, load_model, save_model
from hyperfusion.models import build_model

CARD = {
    "task": "ad",
    "class_names": ["CN", "MCI", "AD"],
    "geometry": {"mode": "mni_box", "voxel_size_mm": 2.0},
    "provenance": {"source": "synthetic", "split_seed": 0, "fold": 1},
    "metrics": {"balanced_accuracy": np.float64(0.61), "confusion": np.array([[1, 2], [3, 4]])},
}


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = build_model("hyperfusion", "ad", init_features=4, input_shape=[16, 24, 16])
    # move BatchNorm statistics off their defaults so a round trip that lost buffers would show
    net.train()
    net(torch.randn(4, 1, 16, 24, 16), torch.randn(4, 16))
    return net.eval()


@pytest.fixture
def model_dir(model, tmp_path):
    return save_model(model, CARD, tmp_path / "model")


def _rewrite_card(model_dir, **changes):
    card = json.loads((model_dir / "card.json").read_text())
    card.update(changes)
    (model_dir / "card.json").write_text(json.dumps(card))


def test_round_trip_gives_the_same_network(model, model_dir):
    assert sorted(p.name for p in model_dir.iterdir()) == ["card.json", "model.safetensors"]
    loaded, card = load_model(model_dir)
    assert not loaded.training
    image, tabular = torch.randn(2, 1, 16, 24, 16), torch.randn(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, tabular), model(image, tabular), rtol=0, atol=0)
    assert card.architecture.to_dict() == model.architecture and card.task == "ad"
    assert card.weights_sha256 == file_sha256(model_dir / "model.safetensors")
    assert card.class_names == ("CN", "MCI", "AD") and card.extra["provenance"]["fold"] == 1
    assert card.metrics == {"balanced_accuracy": 0.61, "confusion": [[1, 2], [3, 4]]}
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.metrics = {}  # a loaded card is read, never edited in place
    # every key of card.json survives the typed card: written back, it is the same JSON
    assert card.to_dict() == json.loads((model_dir / "card.json").read_text())


def test_saving_again_replaces_the_model(model, model_dir):
    with torch.no_grad():
        model.fc2.bias.add_(1.0)
    save_model(model, {**CARD, "notes": ["retrained"]}, model_dir)
    loaded, card = load_model(model_dir)
    assert card.extra["notes"] == ["retrained"] and torch.equal(loaded.fc2.bias, model.fc2.bias)
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_missing_files_are_refused(model_dir, tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nowhere")
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ModelFileError, match="model.safetensors missing"):
        load_model(model_dir)
    with pytest.raises(ModelFileError, match="card.json, model.safetensors missing. .* ensemble"):
        load_model(tmp_path)  # a folder of model directories


def test_an_ensemble_directory_is_named_as_such(model, tmp_path):
    for fold in range(2):
        save_model(model, CARD, tmp_path / "ensemble" / f"fold_{fold}")
    with pytest.raises(ModelFileError, match="ensemble"):
        load_model(tmp_path / "ensemble")


def test_changed_weights_are_refused(model_dir):
    weights = model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # one flipped byte in the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match its card"):
        load_model(model_dir)


class _Payload:
    """Unpickling it would create a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_in_place_of_safetensors_is_refused(model, model_dir, tmp_path):
    marker = tmp_path / "unpickled"
    torch.save(model.state_dict(), model_dir / "model.safetensors")
    _rewrite_card(model_dir, weights_sha256=file_sha256(model_dir / "model.safetensors"))
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(model_dir)
    (model_dir / "model.safetensors").write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    _rewrite_card(model_dir, weights_sha256=file_sha256(model_dir / "model.safetensors"))
    with pytest.raises(ModelFileError, match="unpickling can run code"):
        load_model(model_dir)
    assert not marker.exists()


def test_checkpoints_beside_a_missing_weights_file_get_a_hint(model, tmp_path):
    folder = tmp_path / "trained"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "best.ckpt")
    (folder / "card.json").write_text("{}")
    with pytest.raises(ModelFileError, match="import-reference"):
        load_model(folder)


def test_unknown_architecture_is_refused(model_dir):
    _rewrite_card(model_dir, architecture={"name": "transformer", "task": "ad", "config": {}})
    with pytest.raises(ModelFileError, match="unknown or invalid architecture 'transformer'"):
        load_model(model_dir)
    _rewrite_card(model_dir, architecture={"name": "hyperfusion", "task": "ad"})
    with pytest.raises(ModelFileError, match="no architecture"):
        load_model(model_dir)


def test_weights_that_do_not_fit_the_architecture_are_refused(model, model_dir):
    config = {**model.config, "init_features": 8}  # the card now promises a wider network
    _rewrite_card(model_dir, architecture={"name": "hyperfusion", "task": "ad", "config": config})
    with pytest.raises(ModelFileError, match="do not fit .* has shape"):
        load_model(model_dir)
    config = {**model.config, "hyper_layers": ["block4.shortcut", "fc2"]}  # more tensors than the file holds
    _rewrite_card(model_dir, architecture={"name": "hyperfusion", "task": "ad", "config": config})
    with pytest.raises(ModelFileError, match="missing fc2.embedding.0.weight"):
        load_model(model_dir)


def test_damaged_card_is_refused(model_dir):
    (model_dir / "card.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(model_dir)
    (model_dir / "card.json").write_text(json.dumps({"architecture": {}}))
    with pytest.raises(ModelFileError, match="no architecture"):
        load_model(model_dir)
    arch = {"name": "tabular_only", "task": "ad", "config": {}}
    (model_dir / "card.json").write_text(json.dumps({"architecture": arch}))
    with pytest.raises(ModelFileError, match="no weights_sha256"):
        load_model(model_dir)
    (model_dir / "card.json").write_text(json.dumps({"architecture": arch, "training": [1]}))
    with pytest.raises(ModelFileError, match="training must be a JSON object"):
        load_model(model_dir)


def test_every_shipped_demo_card_loads_as_a_typed_card():
    from pathlib import Path

    from hyperfusion.inference import find_models

    models, problems = find_models(str(Path(__file__).resolve().parents[2] / "assets" / "demo" / "models"))
    assert not problems and len(models) >= 7
    for info in models:
        for card in info.cards:
            assert card.task in ("ad", "brain_age") and card.weights_sha256 and card.split is not None


def test_saving_refuses_what_cannot_be_rebuilt_or_written(model, tmp_path):
    from hyperfusion.models.ad import TabularMLP

    with pytest.raises(ModelFileError, match="build_model"):
        save_model(TabularMLP(), {}, tmp_path / "bare")
    with pytest.raises(ModelFileError, match="JSON"):
        save_model(model, {"when": object()}, tmp_path / "bad_card")
    assert not (tmp_path / "bad_card" / "model.safetensors").exists()
