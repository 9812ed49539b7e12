"""Out-of-distribution reference and check (hyperfusion/training/ood.py) on a tiny cohort and network."""

import numpy as np
import pytest
import torch

from hyperfusion.data import TabularPreprocessor, ad_box, load_cohort
from hyperfusion.data.cohort import parse_record
from hyperfusion.data.datasets import CohortDataset
from hyperfusion.data.volume_cache import VolumeCache
from hyperfusion.inference.model_files import save_model
from hyperfusion.inference.predictor import Predictor
from hyperfusion.models import build_model
from hyperfusion.training.ood import NO_REFERENCE, ood_check, ood_reference, summary
from tests.conftest import write_image_cohort

G = ad_box(4.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ood")
    cohort = load_cohort(write_image_cohort(root / "cohort", 24, seed=2, brain_like=True))
    noise = load_cohort(write_image_cohort(root / "noise", 3, seed=4))  # noise boxes: not brains
    pre = TabularPreprocessor().fit(cohort.table)
    torch.manual_seed(0)
    net = build_model("hyperfusion", "ad", init_features=4, input_shape=list(G.input_shape)).eval()
    ds = CohortDataset(
        cohort,
        range(len(cohort.table)),
        preprocessor=pre,
        geometry=G,
        views="all",
        cache=VolumeCache(root / "cache"),
    )
    ref = ood_reference(net, ds, cohort.table)
    card = {"geometry": G.to_dict(), "tabular": {"preprocessing": pre.to_dict()}, "data": {"synthetic": True}}
    with_ref = save_model(net, {**card, "ood": ref}, root / "models" / "with_ref")
    without = save_model(net, card, root / "models" / "without")
    return cohort, noise, net, ds, ref, Predictor({"with": with_ref, "without": without})


def _record(cohort, i, **changes):
    row = cohort.table.iloc[i]
    rec = {k: (None if np.isnan(row[k]) else float(row[k])) for k in ["AGE", "PTEDUCAT", "APOE4", "FDG"]}
    return {**rec, "PTGENDER": "Male" if row["PTGENDER"] == 1 else "Female", **changes}


def test_reference_holds_the_training_ranges_and_a_99th_percentile_threshold(trained):
    cohort, _, net, ds, ref, _ = trained
    assert ref["records"]["AGE"] == [cohort.table["AGE"].min(), cohort.table["AGE"].max()]
    assert ref["ages"] == ref["records"]["AGE"] and ref["n_train"] == 24
    image = ref["image"]
    assert image["n_scans"] == 24 and len(image["mean"]) == len(image["scale"])
    # at the 99th percentile of 24 training scans at most one of them lies beyond the threshold
    flags = [ood_check(ref, [{}], net.encode_image(ds.image(i)))[0]["inside"] for i in range(len(ds))]
    assert sum(not f for f in flags) <= 1
    import json

    json.dumps(ref)  # it goes into card.json


def test_prediction_says_why_its_input_is_outside(trained):
    cohort, noise, _, _, ref, predictor = trained
    scan = cohort.table["image_path"].iloc[0]
    young = _record(cohort, 0, AGE=ref["records"]["AGE"][0] - 10)
    preds = predictor.predict(scan, [_record(cohort, 0), young])
    inside, outside = preds["with"].extras["ood"]
    assert inside["inside"] is True and inside["reasons"] == []
    assert outside["inside"] is False
    assert any(
        r.startswith(f"AGE {young['AGE']:g} is outside the training range") for r in outside["reasons"]
    )
    # a noise box (not a brain) lies far from the training scans' image features
    far = predictor.predict(noise.table["image_path"].iloc[0], _record(cohort, 0))["with"].extras["ood"][0]
    assert far["inside"] is False and far["image_distance"] > far["image_threshold"]
    assert "image features lie far" in summary(far)
    # a model file without the reference says so, rather than guessing
    unknown = preds["without"].extras["ood"][0]
    assert unknown["inside"] is None and summary(unknown) == NO_REFERENCE


def test_predicted_brain_age_outside_the_training_ages_is_flagged():
    ref = {"records": {"AGE": [40.0, 80.0]}, "ages": [40.0, 80.0]}
    records = [parse_record({"AGE": 60, "PTGENDER": "Male"})] * 2
    ok, old = ood_check(ref, records, None, np.array([70.0, 93.5]))
    assert ok["inside"] is True
    assert (
        old["inside"] is False
        and "predicted brain age 93.5 is outside the training ages 40–80" in old["reasons"][0]
    )
