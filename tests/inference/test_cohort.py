"""Cohort inference: batched with loader threads, the same numbers as one subject at a time, resumable,
errors per subject; ``hyperfusion predict --cohort``; the Predictor's device path on the CPU."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from hyperfusion.cli import main
from hyperfusion.data import load_cohort
from hyperfusion.data.cohort import cohort_record
from hyperfusion.errors import DataError
from hyperfusion.inference.cohort import COLUMNS, NO_SCAN, predict_cohort
from hyperfusion.inference.predictor import Predictor
from tests.inference.test_predictor import setup  # noqa: F401

MODELS = ("hyperfusion", "concat", "tabular_only", "hf_ensemble")


def _one_at_a_time(dirs, cohort, ptids):
    predictor = Predictor({m: dirs[m] for m in MODELS})
    table = cohort.table.set_index("PTID", drop=False)
    out = {}
    for ptid in ptids:
        preds = predictor.predict(table.loc[ptid, "image_path"], cohort_record(table.loc[ptid]))
        out.update({(ptid, m): p.value[0] for m, p in preds.items()})
    return out


@pytest.mark.parametrize("batch_size, workers", [(3, 1), (4, 2)])
def test_cohort_predictions_equal_one_subject_at_a_time(setup, batch_size, workers):  # noqa: F811
    cohort, _, dirs = setup
    ptids = list(cohort.table["PTID"][:7])
    predictor = Predictor({m: dirs[m] for m in MODELS})
    calls = []
    net = predictor.models["hyperfusion"].members[0].network
    original = net.encode_image
    net.encode_image = lambda x: calls.append(x.shape[0]) or original(x)
    try:
        ticks = []
        rows = predict_cohort(
            predictor,
            cohort,
            ptids=ptids,
            batch_size=batch_size,
            workers=workers,
            progress=lambda done, total: ticks.append((done, total)),
        )
    finally:
        del net.encode_image
    assert list(rows.columns) == list(COLUMNS)
    assert len(rows) == len(ptids) * len(MODELS) and (rows["error"].fillna("") == "").all()
    # batched: one encoder pass per batch of subjects (2 views each), not one per subject
    assert calls == [2 * len(ptids[i : i + batch_size]) for i in range(0, len(ptids), batch_size)]
    assert ticks[-1] == (len(ptids), len(ptids))
    expected = _one_at_a_time(dirs, cohort, ptids)
    for _, row in rows.iterrows():
        probs = row[["p_CN", "p_MCI", "p_AD"]].to_numpy(dtype=float)
        np.testing.assert_allclose(probs, expected[(row["PTID"], row["model"])], rtol=1e-4, atol=1e-6)
        assert row["prediction"] == ("CN", "MCI", "AD")[int(np.argmax(probs))]


def test_cohort_csv_resumes_and_keeps_going_past_bad_scans(setup, tmp_path):  # noqa: F811
    cohort, _, dirs = setup
    ptids = list(cohort.table["PTID"][:6])
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file")
    scans = dict(zip(cohort.table["PTID"], cohort.table["image_path"]))
    scans[ptids[1]] = str(broken)
    scans[ptids[2]] = None
    out = tmp_path / "predictions.csv"
    models = ["hyperfusion", "tabular_only"]
    predictor = Predictor({m: dirs[m] for m in models})
    first = predict_cohort(predictor, cohort, ptids=ptids[:4], scan_for=scans.get, out=out, batch_size=2)
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == len(first) == 8
    bad = table[table["error"] != ""]
    assert set(zip(bad["PTID"], bad["model"])) == {(ptids[1], "hyperfusion"), (ptids[2], "hyperfusion")}
    assert NO_SCAN in set(bad["error"])
    assert (table.loc[table["model"] == "tabular_only", "error"] == "").all()  # scored without a scan
    # the rerun scores the two new subjects and retries only the failed pairs
    scans[ptids[1]] = cohort.table.set_index("PTID").loc[ptids[1], "image_path"]
    second = predict_cohort(predictor, cohort, ptids=ptids, scan_for=scans.get, out=out, batch_size=2)
    assert set(zip(second["PTID"], second["model"])) == (
        {(p, m) for p in ptids[4:] for m in models} | {(ptids[1], "hyperfusion"), (ptids[2], "hyperfusion")}
    )
    third = predict_cohort(predictor, cohort, ptids=ptids, scan_for=scans.get, out=out, batch_size=2)
    assert list(third["PTID"]) == [ptids[2]]  # only the subject without a scan is tried again


def test_cohort_arguments_are_checked(setup, tmp_path):  # noqa: F811
    cohort, _, dirs = setup
    predictor = Predictor({"hyperfusion": dirs["hyperfusion"]})
    with pytest.raises(DataError, match="no subject"):
        predict_cohort(predictor, cohort, ptids=["nobody"])
    with pytest.raises(DataError, match="no model"):
        predict_cohort(predictor, cohort, models=["concat"])
    with pytest.raises(DataError, match="at least 1"):
        predict_cohort(predictor, cohort, workers=0)
    wrong = tmp_path / "other.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="lacks the column"):
        predict_cohort(predictor, cohort, out=wrong)


def test_predict_cohort_command(setup, tmp_path, capsys):  # noqa: F811
    cohort, _, dirs = setup
    root = tmp_path / "cohort"
    shutil.copytree(cohort.path, root)
    out = tmp_path / "p.csv"
    args = [
        "predict",
        "--cohort",
        str(root),
        "--models",
        str(dirs["concat"]),
        str(dirs["tabular_only"]),
        "--out",
        str(out),
        "--quiet",
        "--batch-size",
        "8",
        "--workers",
        "2",
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    n = len(load_cohort(root))
    assert report["scored_now"] == n and report["errors"] == 0 and report["subjects_per_second"] > 0
    assert len(pd.read_csv(out)) == 2 * n
    assert main(args) == 0  # resumed: nothing left to do
    assert json.loads(capsys.readouterr().out)["scored_now"] == 0
    assert main(["predict", "--cohort", str(root), "--out", str(out)]) == 2
    assert "--models" in capsys.readouterr().err


def test_predictor_device_path_on_the_cpu(setup, monkeypatch):  # noqa: F811
    """The device code path (network copy per device, inputs moved, answers back on the host) on "cpu"."""
    cohort, _, dirs = setup
    scan, record = cohort.table.loc[4, "image_path"], cohort_record(cohort.table.iloc[4])
    plain = Predictor({"hyperfusion": dirs["hyperfusion"]}).predict(scan, record)["hyperfusion"].value
    monkeypatch.setenv("HYPERFUSION_DEVICE", "cpu")
    predictor = Predictor({"hyperfusion": dirs["hyperfusion"]})
    assert predictor.device == torch.device("cpu")
    member = predictor.models["hyperfusion"].members[0]
    assert member.network_on("cpu") is member.network
    np.testing.assert_allclose(predictor.predict(scan, record)["hyperfusion"].value, plain, rtol=1e-6)
    monkeypatch.setenv("HYPERFUSION_DEVICE", "cuda:7")
    if not torch.cuda.is_available():
        with pytest.raises(DataError, match="no CUDA GPU"):
            Predictor({"hyperfusion": dirs["hyperfusion"]})


def test_record_only_models_load_no_scan(setup):  # noqa: F811
    cohort, _, dirs = setup
    predictor = Predictor({"tabular_only": dirs["tabular_only"]})
    asked = []
    rows = predict_cohort(predictor, cohort, scan_for=lambda p: asked.append(p) or "/nonexistent.nii.gz")
    assert len(rows) == len(cohort) and (rows["error"].fillna("") == "").all()
    assert rows["p_AD"].notna().all() and asked == []


def test_a_small_feature_cache_grows_to_hold_a_batch(setup):  # noqa: F811
    cohort, _, dirs = setup
    predictor = Predictor({"hyperfusion": dirs["hyperfusion"]}, max_feature_entries=1)
    net = predictor.models["hyperfusion"].members[0].network
    calls = []
    original = net.encode_image
    net.encode_image = lambda x: calls.append(x.shape[0]) or original(x)
    try:
        rows = predict_cohort(predictor, cohort, ptids=list(cohort.table["PTID"][:6]), batch_size=3)
    finally:
        del net.encode_image
    assert calls == [6, 6] and (rows["error"] == "").all()  # no subject encoded again one at a time
