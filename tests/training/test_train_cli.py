import json

import numpy as np
import torch

from hyperfusion.cli import main
from hyperfusion.data import ad_box
from hyperfusion.inference.model_files import load_model
from tests.conftest import write_image_cohort


def test_train_command_writes_a_loadable_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HYPERFUSION_CACHE", str(tmp_path / "cache"))
    data = write_image_cohort(tmp_path / "cohort", 40, seed=3)
    out = tmp_path / "model"
    argv = [
        "train",
        "--model",
        "concat",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--voxel-size",
        "4",
        "--set",
        "init_features=4",
        "--batch-size",
        "8",
        "--quiet",
        "--fold",
        "2",
        "--split-seed",
        "7",
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model_dir"] == str(out)
    network, card = load_model(out)
    assert card.name == "concat" and card.architecture.config["init_features"] == 4
    assert card.geometry == ad_box(4.0).to_dict()
    assert card.fold == 2 and card.split_seed == 7
    assert card.synthetic is True
    x = torch.zeros(2, 1, *ad_box(4.0).input_shape)
    with torch.no_grad():
        proba = network(x, torch.zeros(2, 16)).softmax(-1)
    np.testing.assert_allclose(proba.sum(-1).numpy(), 1, rtol=1e-5)
    assert (out / "training" / "checkpoints" / "best.ckpt").is_file()


def test_train_command_rejects_unknown_model(tmp_path, capsys):
    data = write_image_cohort(tmp_path / "cohort", 10, seed=3)
    assert main(["train", "--model", "resnet9000", "--data", str(data), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet9000'" in err and "hyperfusion" in err
    assert not (tmp_path / "m" / "card.json").exists()


def test_brain_age_training_from_a_cohort_named_by_its_target(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HYPERFUSION_CACHE", str(tmp_path / "cache"))
    data = write_image_cohort(tmp_path / "cohort", 20, seed=4)
    (data / "cohort.json").write_text(
        json.dumps(
            {"source": "synthetic", "task": "brain_age", "label_column": "AGE", "allow_unregistered": True}
        )
    )  # noise boxes: loaded with the entry check's warning
    out = tmp_path / "ba"
    argv = [
        "train",
        "--task",
        "brain_age",
        "--model",
        "hyperfusion",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--voxel-size",
        "4",
        "--batch-size",
        "4",
        "--quiet",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    network, card = load_model(out)
    assert card.task == "brain_age" and card.architecture.config["input_shape"] == [
        45,
        54,
        45,
    ]
    bias = card.age_bias
    assert np.isfinite(bias["slope"]) and np.isfinite(bias["intercept"])
