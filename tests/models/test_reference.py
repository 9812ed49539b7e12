"""Import of the authors' checkpoints: built from their key list, compared with a re-implementation of their forward.

``_their_forward`` re-implements, from the modules published at github.com/daniel4725/HyperFusion, what their
networks compute in eval mode, reading their parameter names directly — including their generated-conv loop,
which hands sample k - 1's features to sample k's kernel.
"""

import argparse
import json
import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from hyperfusion.cli import main
from hyperfusion.errors import ModelFileError
from hyperfusion.inference.model_files import load_model
from hyperfusion.models.reference import convert_reference_state_dict, read_reference_checkpoint


def _random_checkpoint(keys: dict, seed: int = 0) -> dict:
    """A Lightning-style checkpoint holding random tensors of the listed shapes, scaled to keep activations O(1)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in keys.items():
        leaf = key.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            value = torch.tensor(7)
        elif leaf == "running_var":
            value = torch.rand(shape, generator=g) + 0.5
        elif leaf == "running_mean":
            value = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 1 and shape[0] == 1:  # PReLU
            value = torch.tensor([0.25])
        elif len(shape) == 1:  # biases, BatchNorm weights and biases
            value = torch.randn(shape, generator=g) * 0.1 + (
                1.0 if ".bn" in key or "batchnorm" in key else 0.0
            )
        else:
            fan_in = math.prod(shape[1:])
            if "weights_gen" in key:  # the generated layer's fan-in, not the generator's
                fan_in *= 128 if "block4" in key else 64
            value = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        state[key] = value
    return {"state_dict": state, "epoch": 3, "global_step": 120, "pytorch-lightning_version": "1.9.0"}


# --- their forward, re-implemented -------------------------------------------------------------------------
def _bn(sd, prefix, x):
    return F.batch_norm(
        x, sd[prefix + "running_mean"], sd[prefix + "running_var"], sd[prefix + "weight"], sd[prefix + "bias"]
    )


def _conv(sd, prefix, x, stride=1, padding=0):
    return F.conv3d(x, sd[prefix + "weight"], sd[prefix + "bias"], stride=stride, padding=padding)


def _their_hyper_conv(sd, prefix, x, tabular, stride):
    """Their HyperConv3dLayer: batched generation, then a loop whose sample k (k ≥ 1) reads x[k - 1]."""
    e = F.linear(tabular, sd[prefix + "embedding_model.0.weight"], sd[prefix + "embedding_model.0.bias"])
    e = F.prelu(_bn(sd, prefix + "embedding_model.1.", e), sd[prefix + "embedding_model.2.weight"])
    weights = F.linear(e, sd[prefix + "weights_gen.weight"], sd[prefix + "weights_gen.bias"])
    biases = F.linear(e, sd[prefix + "bias_gen.weight"], sd[prefix + "bias_gen.bias"])
    c_out, c_in = biases.shape[1], x.shape[1]
    outs = []
    for k in range(x.shape[0]):
        source = x[max(k - 1, 0) : max(k - 1, 0) + 1]  # their indexing: x[0] for k = 0, else x[k - 1]
        outs.append(F.conv3d(source, weights[k].view(c_out, c_in, 1, 1, 1), biases[k], stride=stride))
    return torch.cat(outs)


def _their_block(sd, prefix, x, stride, tabular=None, modulation=None):
    if (
        prefix + "downsample.0.layer.hyper_net.weights_gen.weight" in sd
    ):  # HyperPreactivResBlock, hyper shortcut
        hyper = prefix + "downsample.0.layer.hyper_net."
        identity = _bn(sd, prefix + "downsample.1.", _their_hyper_conv(sd, hyper, x, tabular, stride))
    else:
        identity = _conv(sd, prefix + "downsample.1.", _bn(sd, prefix + "downsample.0.", x), stride)
    if modulation is not None:  # FilmBase.rescale_features
        aux_in = tabular if modulation == "film" else torch.cat([x.mean(dim=(2, 3, 4)), tabular], dim=1)
        att = F.linear(
            F.relu(F.linear(aux_in, sd[prefix + "aux.aux_base.weight"])), sd[prefix + "aux.aux_out.weight"]
        )
        scale, shift = att.split(x.shape[1], dim=1)
        x = scale[..., None, None, None] * x + shift[..., None, None, None]
    layer = ".layer." if prefix + "conv1.layer.weight" in sd else "."
    out = _conv(sd, prefix + "conv1" + layer, F.relu(_bn(sd, prefix + "bn1.", x)), stride, 1)
    out = _conv(sd, prefix + "conv2" + layer, F.relu(_bn(sd, prefix + "bn2.", out)), 1, 1)
    return out + identity


def _their_ad_forward(sd, arch, image, tabular):
    if arch == "MLP_8_bn_prl":
        h = F.prelu(
            _bn(sd, "mlp.1.", F.linear(tabular, sd["mlp.0.weight"], sd["mlp.0.bias"])), sd["mlp.2.weight"]
        )
        return F.linear(h, sd["mlp.3.weight"], sd["mlp.3.bias"])
    stem = "conv1." if arch == "Film_preactive" else "conv_bn_relu."
    x = F.max_pool3d(F.relu(_bn(sd, stem + "1.", _conv(sd, stem + "0.", image, 1, 1))), 2)
    for i, stride in ((1, 1), (2, 2), (3, 2)):
        x = _their_block(sd, f"block{i}.", x, stride)
    if arch in ("DAFT_preactive", "Film_preactive"):
        x = _their_block(sd, "blockX.", x, 2, tabular, "daft" if arch == "DAFT_preactive" else "film")
    else:
        x = _their_block(sd, "block4.", x, 2, tabular)
    x = x.mean(dim=(2, 3, 4))
    if arch == "RES_Tab_concat1":
        x = torch.cat([x, tabular], dim=1)
    fc = ".layer." if "fc1.layer.weight" in sd else "."
    return _conv_free_linear(sd, "fc2" + fc, F.relu(_conv_free_linear(sd, "fc1" + fc, x)))


def _conv_free_linear(sd, prefix, x):
    return F.linear(x, sd[prefix + "weight"], sd[prefix + "bias"])


def _their_brain_age_forward(sd, arch, image, tabular):
    x = image
    for i in (1, 2, 3):
        x = F.relu(_conv(sd, f"conv{i}_b.", F.relu(_conv(sd, f"conv{i}_a.", x))))
        x = _bn(sd, f"batchnorm{i}.", F.max_pool3d(x, 2))
    x = x.flatten(1)
    for name, last in (("linear1", False), ("linear2", False), ("linear3", False), ("final_layer", True)):
        if arch == "Brainage_concat" and name == "linear2":
            x = torch.cat([x, tabular], dim=1)
        if arch == "HyperFusion_Brainage":  # their HyperLinearLayer: a per-sample loop, correctly indexed
            p = name + ".layer.hyper_net."
            rows = []
            for b in range(x.shape[0]):
                e = F.linear(tabular[b], sd[p + "embedding_model.weight"], sd[p + "embedding_model.bias"])
                w = F.linear(e, sd[p + "weights_gen.weight"], sd[p + "weights_gen.bias"])
                bias = F.linear(e, sd[p + "bias_gen.weight"], sd[p + "bias_gen.bias"])
                rows.append(F.linear(x[b], w.view(bias.shape[0], -1), bias))
            x = torch.stack(rows)
        else:
            x = _conv_free_linear(sd, name + ".", x)
        if not last:
            x = F.relu(x)
    return x[:, 0]


def _their_forward(state_dict, arch, image, tabular):
    sd = {k.removeprefix("model."): v for k, v in state_dict.items()}
    with torch.no_grad():
        if "Brainage" in arch or "brainage" in arch:
            return _their_brain_age_forward(sd, arch, image, tabular)
        return _their_ad_forward(sd, arch, image, tabular)


def _inputs(task, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    if task == "brain_age":
        image = torch.randn(batch, 1, 90, 120, 99, generator=g)
        tabular = F.one_hot(torch.arange(batch) % 2, 2).float()
    else:
        image = torch.randn(batch, 1, 64, 96, 64, generator=g)
        tabular = torch.randn(batch, 16, generator=g)
    return image, tabular


def _authors_geometry() -> dict:
    """The authors' crop as the data layer describes it, or the command's stand-in where that is not built."""
    try:
        from hyperfusion.data.geometry import authors_crop
    except ImportError:
        from hyperfusion.cli import _AUTHORS_CROP

        assert _AUTHORS_CROP["crop_start"] == [25, 55, 21] and _AUTHORS_CROP["crop_stop"] == [89, 151, 149]
        return _AUTHORS_CROP
    return authors_crop().to_dict()


# --- tests -------------------------------------------------------------------------------------------------
def test_imported_model_matches_their_forward_at_batch_size_1(reference_arch, tmp_path):
    authors_name, task, name, keys = reference_arch
    checkpoint = _random_checkpoint(keys)
    path = tmp_path / "authors.ckpt"
    torch.save(checkpoint, path)
    weights, facts = read_reference_checkpoint(path)
    assert facts["epoch"] == 3 and not any(k.startswith("model.") for k in weights)
    model = convert_reference_state_dict(weights, authors_name)
    assert (model.task, model.name) == (task, name) and not model.training
    image, tabular = _inputs(task, 1)
    with torch.no_grad():
        ours = model(image if model.reads_scan else None, tabular)
    theirs = _their_forward(checkpoint["state_dict"], authors_name, image, tabular)
    if task == "brain_age":
        ours = ours[:, 0]
    assert ours.abs().max() > 1e-3  # a meaningful comparison, not two zeros
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_their_batch_bug_is_not_imported(reference_keys):
    """At batch size 2 their generated conv gives sample 1 sample 0's features; ours stays per-sample."""
    authors_name, task = "HyperFusion_AD", "ad"
    checkpoint = _random_checkpoint(reference_keys[authors_name], seed=1)
    model = convert_reference_state_dict(
        {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}, authors_name
    )
    image, tabular = _inputs(task, 2, seed=3)
    image[1] = image[1] * 4 + 2  # two very different scans, so reading the wrong one shows
    with torch.no_grad():
        ours = model(image, tabular)
        one_by_one = torch.cat([model(image[i : i + 1], tabular[i : i + 1]) for i in range(2)])
    theirs = _their_forward(checkpoint["state_dict"], authors_name, image, tabular)
    torch.testing.assert_close(ours, one_by_one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-5, rtol=1e-5)
    assert (ours[1] - theirs[1]).abs().max() > 1e-2


class _Payload:
    """An object whose unpickling would run code: it creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoints_needing_arbitrary_unpickling_are_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "with_objects.ckpt"
    torch.save(
        {"state_dict": {"model.mlp.0.weight": torch.zeros(8, 16)}, "hyper_parameters": _Payload(marker)}, path
    )
    with pytest.raises(ModelFileError, match="arbitrary Python objects") as info:
        read_reference_checkpoint(path)
    assert "weights_only" in str(info.value)  # says how to extract the weights from a trusted file
    assert not marker.exists()
    hparams = tmp_path / "namespace.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": argparse.Namespace(lr=1e-4)}, hparams)
    with pytest.raises(ModelFileError, match=r"arbitrary Python objects \(argparse.Namespace\)"):
        read_reference_checkpoint(hparams)


def test_unreadable_files_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        read_reference_checkpoint(tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="cannot read .* refused rather than unpickled"):
        read_reference_checkpoint(junk)
    no_tensors = tmp_path / "no_tensors.ckpt"
    torch.save({"epoch": 3}, no_tensors)
    with pytest.raises(ModelFileError, match="no state dict"):
        read_reference_checkpoint(no_tensors)


def test_checkpoints_of_another_architecture_are_refused(reference_arch):
    authors_name, _, _, keys = reference_arch
    state = {k.removeprefix("model."): v for k, v in _random_checkpoint(keys)["state_dict"].items()}
    with pytest.raises(ModelFileError, match="unknown architecture"):
        convert_reference_state_dict(state, "ResNet50")
    other = "MLP_8_bn_prl" if authors_name != "MLP_8_bn_prl" else "PreactivResNet"
    with pytest.raises(ModelFileError, match="Check --arch"):
        convert_reference_state_dict(state, other)


@pytest.mark.parametrize(
    "authors_name, task, name",
    [
        ("HyperFusion_AD", "ad", "hyperfusion"),
        ("HyperFusion_Brainage", "brain_age", "hyperfusion"),
        ("MLP_8_bn_prl", "ad", "tabular_only"),
    ],
)
def test_import_reference_command_writes_a_loadable_model(
    tmp_path, reference_keys, capsys, authors_name, task, name
):
    checkpoint = _random_checkpoint(reference_keys[authors_name], seed=5)
    path = tmp_path / "authors.ckpt"
    torch.save(checkpoint, path)
    out = tmp_path / "imported"
    assert (
        main(["import-reference", "--checkpoint", str(path), "--arch", authors_name, "--out", str(out)]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["architecture"]["name"] == name
    model, card = load_model(out)
    assert card.task == task and card.preprocessing is None and card.extra["preprocessing"] is None
    assert any("no fitted tabular preprocessing" in note for note in card.extra["notes"])
    assert card.extra["provenance"]["checkpoint"]["file"] == "authors.ckpt"
    assert len(card.extra["provenance"]["checkpoint"]["sha256"]) == 64
    if authors_name == "HyperFusion_AD":
        assert card.geometry == _authors_geometry() and card.class_names == ("CN", "MCI", "AD")
    else:
        assert card.geometry is None
    image, tabular = _inputs(task, 1, seed=6)
    with torch.no_grad():
        ours = model(image if model.reads_scan else None, tabular)
    theirs = _their_forward(checkpoint["state_dict"], authors_name, image, tabular)
    torch.testing.assert_close(ours.reshape(theirs.shape), theirs, atol=1e-5, rtol=1e-5)


def test_import_reference_command_refuses_with_one_line(tmp_path, capsys):
    path = tmp_path / "pickled.ckpt"
    with path.open("wb") as f:
        pickle.dump({"state_dict": _Payload(tmp_path / "marker")}, f)
    code = main(
        [
            "import-reference",
            "--checkpoint",
            str(path),
            "--arch",
            "HyperFusion_AD",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "refused" in err
    assert not (tmp_path / "marker").exists() and not (tmp_path / "o").exists()
