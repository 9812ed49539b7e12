"""Finding models on disk without loading them: models, ensembles of folds, folders of different models."""

import json

import pytest

from hyperfusion.errors import ModelFileError
from hyperfusion.inference import find_models, member_dirs


def _card(path, arch, task="brain_age"):
    path.mkdir(parents=True)
    path.joinpath("card.json").write_text(
        json.dumps({"architecture": {"name": arch, "task": task, "config": {}}})
    )


def test_a_folder_of_different_models_is_not_taken_for_an_ensemble(tmp_path):
    for arch in ("hyperfusion", "image_only", "concat"):  # as assets/demo/models/brain_age
        _card(tmp_path / "brain_age" / arch, arch)
    for k in range(2):  # folds of one architecture: an ensemble
        _card(tmp_path / "ad" / "hyperfusion" / f"fold{k}", "hyperfusion", "ad")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "card.json").write_text("{not json")
    models, problems = find_models(str(tmp_path))
    found = {m.name: m.members for m in models}
    assert found == {
        "ad/hyperfusion": 2,
        "brain_age/concat": 1,
        "brain_age/hyperfusion": 1,
        "brain_age/image_only": 1,
    }
    assert len(problems) == 1 and "broken" in problems[0] and "not valid JSON" in problems[0]
    ensemble = next(m for m in models if m.name == "ad/hyperfusion")
    assert ensemble.task == "ad" and ensemble.architecture == "hyperfusion" and not ensemble.synthetic
    assert [d.name for d in member_dirs(tmp_path / "ad" / "hyperfusion")] == ["fold0", "fold1"]
    with pytest.raises(ModelFileError, match="neither a model directory"):
        member_dirs(tmp_path / "nowhere")
