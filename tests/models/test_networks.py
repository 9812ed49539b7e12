import json
import math
import warnings
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from captum.attr import DeepLift, IntegratedGradients, LayerAttribution, LayerGradCam

from hyperfusion.errors import DataError
from hyperfusion.models import ModelConfigError, build_model, concat_features, select_features


def _n_outputs(model) -> int:
    return 3 if model.task == "ad" else 1


def test_forward_is_decode_of_encode(tiny_model, random_inputs):
    model = tiny_model.eval()
    image, tabular = random_inputs(model, 3)
    with torch.no_grad():
        logits = model(image, tabular)
        features = model.encode_image(image)
        assert logits.shape == (3, _n_outputs(model))
        assert isinstance(features, tuple) and all(f.shape[0] == 3 for f in features)
        torch.testing.assert_close(model.decode(features, tabular), logits, atol=1e-5, rtol=1e-5)
        # cached features of single images, joined again, decode to the same logits
        joined = concat_features(
            [model.encode_image(image[i : i + 1] if image is not None else None) for i in range(3)]
        )
        torch.testing.assert_close(model.decode(joined, tabular), logits, atol=1e-5, rtol=1e-5)
        if features:
            torch.testing.assert_close(model.decode(select_features(features, 1), tabular[1:2]), logits[1:2])


def test_batch_equals_samples_one_at_a_time(tiny_model, random_inputs):
    model = tiny_model.eval()
    image, tabular = random_inputs(model, 4, seed=1)
    with torch.no_grad():
        batch = model(image, tabular)
        single = torch.cat(
            [model(image[i : i + 1] if image is not None else None, tabular[i : i + 1]) for i in range(4)]
        )
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


def test_record_matters_exactly_when_the_network_reads_it(tiny_model, random_inputs):
    model = tiny_model.eval()
    image, tabular = random_inputs(model, 2)
    # not the other sex for brain age: its embeddings start at weight [1, 1], so both sexes start out equal
    other = tabular * 2 + 0.5
    with torch.no_grad():
        changed = not torch.allclose(model(image, tabular), model(image, other))
    assert changed == model.reads_record


def test_no_module_runs_twice_in_one_forward(tiny_model, random_inputs):
    model = tiny_model.eval()
    calls = Counter()
    hooks = [
        m.register_forward_hook(lambda *_, n=name: calls.update([n]))
        for name, m in model.named_modules()
        if name
    ]
    image, tabular = random_inputs(model, 2)
    model(image, tabular)
    for h in hooks:
        h.remove()
    assert calls and max(calls.values()) == 1, [n for n, c in calls.items() if c > 1]


class _RecordOnly(torch.nn.Module):
    """Captum passes the attributed inputs first: a network without an image is called as f(tabular)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tabular):
        return self.model(None, tabular)


def test_captum_attributions_run_and_are_finite(tiny_model, random_inputs):
    model = tiny_model.eval()
    image, tabular = random_inputs(model, 2)
    target = 1 if model.task == "ad" else 0
    if not model.reads_scan:
        forward, inputs, extra = _RecordOnly(model), (tabular,), None
    elif model.reads_record:
        forward, inputs, extra = model, (image, tabular), None
    else:
        forward, inputs, extra = model, (image,), (tabular,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Captum's "set requires_grad" notices
        maps = {
            "ig": IntegratedGradients(forward).attribute(
                inputs, target=target, additional_forward_args=extra, n_steps=8
            ),
            "deeplift": DeepLift(forward).attribute(inputs, target=target, additional_forward_args=extra),
        }
        cam = LayerGradCam(forward, model.gradcam_layer).attribute(
            inputs, target=target, additional_forward_args=extra, attr_dim_summation=model.reads_scan
        )
    for method, attributions in maps.items():
        for a, x in zip(attributions, inputs):
            assert a.shape == x.shape and torch.isfinite(a).all(), method
    if model.reads_scan:
        cam = LayerAttribution.interpolate(cam, tuple(image.shape[2:]), "trilinear")
    assert cam.shape == inputs[0].shape and torch.isfinite(cam).all()
    assert any(a.abs().sum() > 0 for a in maps["ig"])


def test_trains_on_random_data(tiny_model, random_inputs):
    torch.manual_seed(0)
    model = tiny_model.train()
    image, tabular = random_inputs(model, 8, seed=2)
    if model.task == "ad":
        target = torch.arange(8) % 3
        loss_fn = F.cross_entropy
    else:
        target = torch.randn(8, 1)
        loss_fn = F.mse_loss
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        optimiser.zero_grad()
        loss = loss_fn(model(image, tabular), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses


def test_config_is_json_and_rebuilds_the_same_network(tiny_model):
    config = tiny_model.config
    assert json.loads(json.dumps(config)) == config
    rebuilt = build_model(tiny_model.name, tiny_model.task, **config)
    shapes = {k: v.shape for k, v in tiny_model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    assert tiny_model.architecture == {"name": tiny_model.name, "task": tiny_model.task, "config": config}


PAPER_PARAMETERS = {  # docs/models.md: HyperFusion-AD ≈ 3.86 M, ≈ 0.30 M of it in the generators
    ("ad", "hyperfusion"): (3.86e6, 0.30e6),
}


def test_parameter_counts_match_the_paper_and_the_authors_checkpoints(reference_arch):
    _, task, name, keys = reference_arch
    model = build_model(name, task)
    authors = sum(
        math.prod(shape)
        for key, shape in keys.items()
        if not key.rsplit(".", 1)[1].startswith(("running", "num_batches"))
    )
    counts = model.parameter_counts()
    assert counts["total"] == authors
    if (task, name) in PAPER_PARAMETERS:
        total, generators = PAPER_PARAMETERS[task, name]
        assert counts["total"] == pytest.approx(total, rel=0.01)
        assert counts["generators"] == pytest.approx(generators, rel=0.02)


def test_hyperfusion_ad_caches_block4_main_branch(build_tiny, random_inputs):
    model = build_tiny("ad", "hyperfusion").eval()
    image, tabular = random_inputs(model, 2)
    main, shortcut_input = model.encode_image(image)
    assert main.shape == (2, 64, 1, 2, 1)  # block 4's main branch output, 16f channels
    assert shortcut_input.shape == (2, 32, 1, 2, 1)  # the voxels the 1³ stride-2 shortcut reads
    ran = []
    hooks = [m.register_forward_hook(lambda *_, n=n: ran.append(n)) for n, m in model.named_modules() if n]
    model.decode((main, shortcut_input), tabular)
    for h in hooks:
        h.remove()
    convs = [n for n in ran if isinstance(model.get_submodule(n), torch.nn.Conv3d)]
    assert convs == [] and "block4.add" in ran and "fc2" in ran


def test_which_layers_are_generated_is_configuration(build_tiny, random_inputs):
    model = build_tiny("ad", "hyperfusion", hyper_layers=["block2.conv1", "block3.shortcut", "fc2"]).eval()
    assert [name for name, _ in model.hyper_layers()] == ["block2.conv1", "block3.shortcut.conv", "fc2"]
    image, tabular = random_inputs(model, 2)
    features = model.encode_image(image)
    assert features[0].shape[1] == 8  # split inside block 2, after its pre-activation
    with torch.no_grad():
        torch.testing.assert_close(model.decode(features, tabular), model(image, tabular))
    with pytest.raises(ModelConfigError, match="unknown hyper layer"):
        build_tiny("ad", "hyperfusion", hyper_layers=["block5.conv1"])
    with pytest.raises(ModelConfigError, match="not both"):
        build_tiny("ad", "film", hyper_layers=["block4.shortcut"])


def test_init_hyper_heads_uses_the_measured_variance(build_tiny):
    model = build_tiny("ad", "hyperfusion")
    model.init_hyper_heads(4.0)
    assert model.config["hyper_input_variance"] == 4.0
    layer = model.block4.shortcut.conv
    bound = math.sqrt(3 / (layer.fan_in * 8 * 4.0))
    assert layer.weight_head.weight.abs().max() <= bound + 1e-7
    assert layer.weight_head.weight.abs().max() > 0.9 * bound


def test_load_tabular_embedding(build_tiny):
    tabular = build_tiny("ad", "tabular_only")
    model = build_tiny("ad", "hyperfusion", hyper_layers=["block4.shortcut", "fc1"])
    model.load_tabular_embedding(tabular)
    for _, layer in model.hyper_layers():
        for (k, a), b in zip(tabular.embedding.state_dict().items(), layer.embedding.state_dict().values()):
            assert torch.equal(a, b), k
    assert model.block4.shortcut.conv.embedding is not model.fc1.embedding  # each layer owns its embedding


def test_tabular_only_needs_no_image(build_tiny):
    model = build_tiny("ad", "tabular_only").eval()
    assert model.encode_image(None) == ()
    assert model(None, torch.randn(2, 16)).shape == (2, 3)
    assert model.gradcam_layer is model.record


def test_wrong_inputs_are_refused_with_clear_errors(build_tiny):
    model = build_tiny("ad", "concat").eval()
    with pytest.raises(DataError, match="input_shape"):
        model(torch.randn(1, 1, 16, 24, 18), torch.randn(1, 16))
    with pytest.raises(DataError, match=r"\(B, 1, D, H, W\)"):
        model(torch.randn(1, 16, 24, 16), torch.randn(1, 16))
    with pytest.raises(DataError, match="record of 15 values"):
        model(torch.randn(1, 1, 16, 24, 16), torch.randn(1, 15))
    with pytest.raises(DataError, match="tabular batch"):
        model(torch.randn(2, 1, 16, 24, 16), torch.randn(1, 16))


def test_registry_refuses_unknown_names_and_overrides():
    with pytest.raises(ModelConfigError, match="available"):
        build_model("resnet50", "ad")
    with pytest.raises(ModelConfigError, match="tasks"):
        build_model("hyperfusion", "survival")
    with pytest.raises(ModelConfigError, match="does not take"):
        build_model("concat", "brain_age", init_features=4)
    with pytest.raises(ModelConfigError, match="too small"):
        build_model("image_only", "brain_age", input_shape=[30, 40, 40])
