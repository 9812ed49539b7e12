import numpy as np
import pytest
import torch

from hyperfusion.data import TabularPreprocessor, ad_box, load_cohort, model_input
from hyperfusion.data.cohort import parse_record
from hyperfusion.inference.model_files import save_model
from hyperfusion.inference.predictor import Predictor
from hyperfusion.models import build_model
from hyperfusion.training.metrics import inverse_entropy_ensemble
from tests.conftest import write_image_cohort

G = ad_box(4.0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pred")
    cohort = load_cohort(write_image_cohort(root / "cohort", 20, seed=8, brain_like=True))
    pre = TabularPreprocessor().fit(cohort.table)
    card = {"geometry": G.to_dict(), "tabular": {"preprocessing": pre.to_dict()}, "data": {"synthetic": True}}
    dirs = {}
    for name, seed in (("hyperfusion", 0), ("concat", 1), ("tabular_only", 2)):
        torch.manual_seed(seed)
        kw = {} if name == "tabular_only" else {"init_features": 4, "input_shape": list(G.input_shape)}
        net = build_model(name, "ad", **kw)
        with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode differs from init
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        dirs[name] = save_model(net.eval(), card, root / "models" / name)
    for k in range(2):  # an ensemble of two hyperfusion members
        torch.manual_seed(10 + k)
        save_model(
            build_model("hyperfusion", "ad", init_features=4, input_shape=list(G.input_shape)).eval(),
            card,
            root / "models" / "hf_ensemble" / f"fold{k}",
        )
    dirs["hf_ensemble"] = root / "models" / "hf_ensemble"
    return cohort, pre, dirs


def _record(cohort, i):
    row = cohort.table.iloc[i]
    return {
        k: (None if (isinstance(row[k], float) and np.isnan(row[k])) else row[k])
        for k in ["AGE", "PTEDUCAT", "APOE4", "ABETA", "TAU", "PTAU", "FDG", "AV45"]
    } | {"PTGENDER": "Male" if row["PTGENDER"] == 1 else "Female"}


def test_prediction_matches_forward_over_both_views(setup):
    cohort, pre, dirs = setup
    predictor = Predictor(dirs)
    scan = cohort.table.loc[3, "image_path"]
    record = _record(cohort, 3)
    preds = predictor.predict(scan, record)
    views = torch.from_numpy(model_input(scan, G))
    tab = torch.from_numpy(pre.transform(parse_record(record)))
    for name in ("hyperfusion", "concat"):
        net = predictor.models[name].members[0].network
        with torch.no_grad():
            expected = net(views, tab.repeat(2, 1)).softmax(-1).mean(0).numpy()
        np.testing.assert_allclose(preds[name].value[0], expected, rtol=1e-5, atol=1e-6)
        assert preds[name].value.sum() == pytest.approx(1, abs=1e-5)
    assert preds["tabular_only"].value.shape == (1, 3)


def test_image_features_are_computed_once(setup, monkeypatch):
    cohort, _, dirs = setup
    predictor = Predictor({"hyperfusion": dirs["hyperfusion"]})
    net = predictor.models["hyperfusion"].members[0].network
    calls = []
    original = net.encode_image
    monkeypatch.setattr(net, "encode_image", lambda x: calls.append(1) or original(x))
    scan = cohort.table.loc[5, "image_path"]
    first = predictor.predict(scan, _record(cohort, 5))["hyperfusion"].value
    edited = predictor.predict(scan, {**_record(cohort, 5), "APOE4": 2, "AGE": 60})["hyperfusion"].value
    assert len(calls) == 1
    assert not np.allclose(first, edited)  # the record changes HyperFusion's prediction


def test_batch_of_records_equals_one_at_a_time(setup):
    cohort, _, dirs = setup
    predictor = Predictor(dirs)
    scan = cohort.table.loc[2, "image_path"]
    base = _record(cohort, 2)
    variants = [{**base, "AGE": age} for age in (58.0, 66.5, 80.0, 90.0)]
    batch = predictor.predict(scan, variants)
    for i, rec in enumerate(variants):
        alone = predictor.predict(scan, rec)
        for name in dirs:
            np.testing.assert_allclose(batch[name].value[i], alone[name].value[0], rtol=1e-5, atol=1e-6)


def test_ensemble_combines_members_and_reports_spread(setup):
    cohort, _, dirs = setup
    predictor = Predictor({"ens": dirs["hf_ensemble"]})
    pred = predictor.predict(cohort.table.loc[1, "image_path"], _record(cohort, 1))["ens"]
    assert pred.member_values.shape == (2, 1, 3)
    np.testing.assert_allclose(pred.value, inverse_entropy_ensemble(pred.member_values))
    assert (pred.spread > 0).any()


def test_models_are_shared_by_weights_hash(setup):
    _, _, dirs = setup
    a = Predictor({"x": dirs["concat"]}).models["x"].members[0]
    b = Predictor({"y": dirs["concat"]}).models["y"].members[0]
    assert a is b


def test_same_weights_with_another_card_are_another_model(setup, tmp_path):
    import json
    import shutil

    cohort, _, dirs = setup
    other = tmp_path / "concat_other_preprocessing"
    shutil.copytree(dirs["concat"], other)
    card = json.loads((other / "card.json").read_text())
    refit = TabularPreprocessor().fit(cohort.table.iloc[:10])
    card["tabular"]["preprocessing"] = refit.to_dict()
    (other / "card.json").write_text(json.dumps(card))
    a = Predictor({"x": dirs["concat"]}).models["x"].members[0]
    b = Predictor({"y": other}).models["y"].members[0]
    assert a is not b and a.card.weights_sha256 == b.card.weights_sha256
    assert b.preprocessor.n_fit_rows_ == 10


def test_forget_drops_only_that_scans_features(setup):
    cohort, _, dirs = setup
    predictor = Predictor({"hyperfusion": dirs["hyperfusion"], "concat": dirs["concat"]})
    a = open(cohort.table.loc[1, "image_path"], "rb").read()  # an upload arrives as bytes
    b = cohort.table.loc[2, "image_path"]
    predictor.predict(a, _record(cohort, 1))
    predictor.predict(b, _record(cohort, 2))
    assert predictor.forget(a) == 2  # one entry per image model
    assert predictor.forget(a) == 0
    assert len(predictor._features) == 2  # the other scan's features stay


def test_a_model_already_loaded_is_not_read_from_disk_again(setup, monkeypatch):
    from hyperfusion.inference import predictor as P

    _, _, dirs = setup
    first = P.load_shared(dirs["concat"])

    def no_reading(*args, **kwargs):
        raise AssertionError("the weights were read again")

    monkeypatch.setattr(P, "load_model", no_reading)
    assert P.load_shared(dirs["concat"]) is first
    assert Predictor({"concat": dirs["concat"]}).models["concat"].members[0] is first
