import pytest

from hyperfusion.errors import DataError
from hyperfusion.explain.tabular import explain_record, feature_groups

ATTRIBUTES = ["AGE", "PTEDUCAT", "APOE4", "ABETA", "TAU", "PTAU", "FDG", "AV45", "PTGENDER"]


def test_groups_join_values_with_their_indicator_and_the_sex_one_hot(env):
    groups = feature_groups(env.pre.output_names_)
    names = env.pre.output_names_
    assert list(groups) == ATTRIBUTES
    assert [names[i] for i in groups["APOE4"]] == ["APOE4", "APOE4_missing"]
    assert [names[i] for i in groups["PTGENDER"]] == ["PTGENDER_Female", "PTGENDER_Male"]
    assert [names[i] for i in groups["AGE"]] == ["AGE"]


@pytest.mark.parametrize("model", ["hyperfusion", "concat", "tabular_only"])
def test_record_attributions_sum_to_the_output_change(env, model):
    scan, record = env.subject(3)
    ig = explain_record(env.predictor, model, scan, record, "integrated_gradients", target=2)
    gap = ig.output - ig.baseline_output
    assert sum(ig.attributes.values()) == pytest.approx(gap, abs=2e-3 * max(1.0, abs(gap)))
    assert sum(ig.columns.values()) == pytest.approx(sum(ig.attributes.values()), abs=1e-6)
    assert list(ig.attributes) == ATTRIBUTES
    shapley = explain_record(
        env.predictor, model, scan, record, "shapley_sampling", target=2, settings={"n_samples": 8}
    )
    # every sampled permutation's marginal contributions add up to the gap exactly
    assert sum(shapley.attributes.values()) == pytest.approx(gap, abs=1e-5)
    assert shapley.output == pytest.approx(ig.output)


def test_image_versus_record_split(env):
    scan, record = env.subject(4)
    hyper = explain_record(env.predictor, "hyperfusion", scan, record, target=1, image_baseline="blur")
    assert 0 <= hyper.record_share <= 1 and hyper.image_share == pytest.approx(1 - hyper.record_share)
    # the two Shapley values add up to the change from (baseline scan, baseline record) to the subject
    assert hyper.image_baseline == {"kind": "blur", "sigma_mm": 8.0}
    image_only = explain_record(env.predictor, "image_only", scan, record, target=1)
    assert image_only.record_share == 0 and all(v == 0 for v in image_only.attributes.values())
    tabular_only = explain_record(env.predictor, "tabular_only", scan, record, target=1)
    assert tabular_only.image_contribution == 0 and tabular_only.record_share == pytest.approx(1.0)
    assert tabular_only.record_contribution == pytest.approx(
        tabular_only.output - tabular_only.baseline_output
    )


def test_a_record_can_be_the_baseline(env):
    scan, record = env.subject(5)
    same = explain_record(env.predictor, "hyperfusion", scan, record, target=0, record_baseline=record)
    assert all(abs(v) < 1e-7 for v in same.attributes.values())
    apoe = explain_record(
        env.predictor, "apoe4", None, {**record, "APOE4": 2}, target=2, record_baseline={**record, "APOE4": 0}
    )
    assert max(apoe.attributes, key=lambda a: abs(apoe.attributes[a])) == "APOE4"
    with pytest.raises(DataError, match="unknown record attribution method"):
        explain_record(env.predictor, "hyperfusion", scan, record, "lime")


def test_an_edit_costs_no_image_encoding_the_zero_scan_is_encoded_once_per_model(env, monkeypatch):
    scan, record = env.subject(4)
    first = explain_record(env.predictor, "hyperfusion", scan, record, target="AD")
    network = env.predictor.models["hyperfusion"].members[0].network
    calls = []
    original = network.encode_image
    monkeypatch.setattr(network, "encode_image", lambda x: calls.append(x.shape) or original(x))
    edited = explain_record(env.predictor, "hyperfusion", scan, {**record, "APOE4": 2}, target="AD")
    again = explain_record(env.predictor, "hyperfusion", scan, record, target="AD")
    assert calls == []  # the scan's features and the zero scan's come from caches
    assert again.record_contribution == pytest.approx(first.record_contribution, abs=1e-7)
    assert again.image_contribution == pytest.approx(first.image_contribution, abs=1e-7)
    assert edited.attributes["APOE4"] != pytest.approx(first.attributes["APOE4"])
    blur = explain_record(env.predictor, "hyperfusion", scan, record, target="AD", image_baseline="blur")
    assert len(calls) == 1 and blur.image_baseline["kind"] == "blur"  # a scan-derived baseline is not kept
