"""The Cohort page's scoring: progressive batches, the same numbers as one subject at a time (subject_value),
a disk cache keyed by model files, scans and records, the wide table's disagreement and error columns, and
the background job."""

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from hyperfusion.data import load_cohort
from hyperfusion.data.cohort import cohort_record
from hyperfusion.inference.cohort import NO_SCAN
from hyperfusion.inference.cohort_cache import (
    BackgroundJob,
    ResultStore,
    cached_rows,
    cohort_table,
    score_cohort,
)
from hyperfusion.inference.model_files import save_model
from hyperfusion.inference.predictor import Predictor
from hyperfusion.inference.tables import subject_value
from hyperfusion.models import build_model
from tests.inference.test_predictor import G, setup  # noqa: F401

MODELS = ("hyperfusion", "concat", "tabular_only", "hf_ensemble")


def _all(frames) -> pd.DataFrame:
    return pd.concat(list(frames), ignore_index=True)


def test_rows_arrive_in_growing_batches_record_models_first_and_equal_subject_value(setup, tmp_path):  # noqa: F811
    cohort, _, dirs = setup
    ptids = list(cohort.table["PTID"][:7])
    predictor = Predictor({m: dirs[m] for m in MODELS})
    store = ResultStore(tmp_path / "store.sqlite")
    frames = list(score_cohort(predictor, cohort, ptids=ptids, store=store, max_batch=4))
    # batches of 1, 2, 4 subjects; per batch the record-only model's rows first, then the image models'
    assert [sorted(set(f["model"])) for f in frames[:2]] == [
        ["tabular_only"],
        ["concat", "hf_ensemble", "hyperfusion"],
    ]
    assert [f["PTID"].nunique() for f in frames] == [1, 1, 2, 2, 4, 4]
    rows = _all(frames)
    assert len(rows) == len(ptids) * len(MODELS) and not rows["cached"].any()
    assert (rows["error"] == "").all()
    table = cohort.table.set_index("PTID", drop=False)
    for r in rows.sample(10, random_state=0).itertuples():
        scan = table.loc[r.PTID, "image_path"]
        for c in ("CN", "MCI", "AD"):
            expected = subject_value(predictor, r.model, scan, cohort_record(table.loc[r.PTID]), c)
            assert getattr(r, f"p_{c}") == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_the_disk_cache_is_reused_after_a_restart_and_invalidated_by_a_changed_model_scan_or_record(
    setup,  # noqa: F811
    tmp_path,
):
    cohort, pre, dirs = setup
    ptids = list(cohort.table["PTID"][:3])
    store = ResultStore(tmp_path / "store.sqlite")
    first = _all(score_cohort(Predictor({m: dirs[m] for m in MODELS}), cohort, ptids=ptids, store=store))
    # "a restart": a new Predictor and store object on the same file; nothing runs a network
    again = Predictor({m: dirs[m] for m in MODELS})
    for entry in again.models.values():
        for member in entry.members:
            member.network.encode_image = member.network.decode = None  # any network call fails
    second = _all(score_cohort(again, cohort, ptids=ptids, store=ResultStore(store.path)))
    for entry in again.models.values():
        for member in entry.members:
            del member.network.encode_image, member.network.decode
    assert second["cached"].all() and len(second) == len(first)
    # the same rows straight from the files (no network loaded), and score_cohort then yields none again
    dirs_now = {m: dirs[m] for m in MODELS}
    stored = cached_rows(cohort, dirs_now, store=store)
    stored = stored[stored["PTID"].isin(ptids)]
    assert len(stored) == len(first) and stored["cached"].all()
    skip = set(zip(stored["PTID"], stored["model"]))
    assert not list(score_cohort(Predictor(dirs_now), cohort, ptids=ptids, store=store, skip=skip))
    key = ["PTID", "model"]
    a, b = first.set_index(key).sort_index(), second.set_index(key).sort_index()
    np.testing.assert_allclose(
        a[["p_CN", "p_MCI", "p_AD"]].astype(float), b[["p_CN", "p_MCI", "p_AD"]].astype(float)
    )
    assert (a["prediction"] == b["prediction"]).all()

    # the same files under another name are the same model; a retrained model under the old name is not
    renamed = _all(score_cohort(Predictor({"renamed": dirs["concat"]}), cohort, ptids=ptids, store=store))
    assert renamed["cached"].all()
    torch.manual_seed(99)
    card = {"geometry": G.to_dict(), "tabular": {"preprocessing": pre.to_dict()}, "data": {"synthetic": True}}
    net = build_model("concat", "ad", init_features=4, input_shape=list(G.input_shape)).eval()
    retrained = save_model(net, card, tmp_path / "retrained" / "concat")
    rows = _all(score_cohort(Predictor({"concat": retrained}), cohort, ptids=ptids, store=store))
    assert not rows["cached"].any()
    # a changed scan (other bytes) and an edited record: only those subjects are computed again
    work = tmp_path / "cohort"
    shutil.copytree(cohort.path, work)
    changed = work / "images" / f"{ptids[0]}.nii.gz"
    data = changed.read_bytes()
    changed.write_bytes(gzip.compress(gzip.decompress(data), compresslevel=1))  # same image, other bytes
    csv = pd.read_csv(work / "cohort.csv")
    csv.loc[csv["PTID"] == ptids[1], "AGE"] += 1
    csv.to_csv(work / "cohort.csv", index=False)
    edited = load_cohort(work)
    rows = _all(score_cohort(Predictor({m: dirs[m] for m in MODELS}), edited, ptids=ptids, store=store))
    cached = rows.groupby(["PTID", "model"])["cached"].first()
    assert not cached[ptids[1]].any()  # the record changed: every model
    assert not cached[ptids[0]][
        ["hyperfusion", "concat", "hf_ensemble"]
    ].any()  # the scan changed: image models
    assert cached[ptids[0]]["tabular_only"]  # ... but not the record-only one
    assert cached[ptids[2]].all()


def test_missing_and_broken_scans_give_error_rows_that_are_not_cached(setup, tmp_path):  # noqa: F811
    cohort, _, dirs = setup
    ptids = list(cohort.table["PTID"][:3])
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    scans = dict(zip(cohort.table["PTID"], cohort.table["image_path"]))
    scans[ptids[0]], scans[ptids[1]] = None, str(broken)
    store = ResultStore(tmp_path / "store.sqlite")
    predictor = Predictor({m: dirs[m] for m in ("hyperfusion", "tabular_only")})
    rows = _all(score_cohort(predictor, cohort, ptids=ptids, scan_for=scans.get, store=store))
    by = rows.set_index(["PTID", "model"])["error"]
    assert by[(ptids[0], "hyperfusion")] == NO_SCAN and by[(ptids[0], "tabular_only")] == ""
    assert by[(ptids[1], "hyperfusion")] not in ("", NO_SCAN) and by[(ptids[1], "tabular_only")] == ""
    assert by[(ptids[2], "hyperfusion")] == ""
    again = _all(score_cohort(predictor, cohort, ptids=ptids, scan_for=scans.get, store=store))
    cached = again.set_index(["PTID", "model"])["cached"]
    assert not cached[(ptids[0], "hyperfusion")] and not cached[(ptids[1], "hyperfusion")]
    assert cached[(ptids[2], "hyperfusion")] and cached[(ptids[0], "tabular_only")]


def _rows(values: dict) -> pd.DataFrame:
    """Long rows from {(PTID, model): (p_CN, p_MCI, p_AD)}."""
    out = []
    for (ptid, model), p in values.items():
        out.append(
            {
                "PTID": ptid,
                "model": model,
                "task": "ad",
                "error": "",
                "prediction": "CN MCI AD".split()[int(np.argmax(p))],
            }
            | {f"p_{c}": v for c, v in zip(("CN", "MCI", "AD"), p)}
        )
    return pd.DataFrame(out)


def test_cohort_table_disagreement_and_error_columns():
    rows = _rows(
        {
            ("S1", "a"): (0.7, 0.2, 0.1),
            ("S1", "b"): (0.6, 0.3, 0.1),
            ("S2", "a"): (0.1, 0.2, 0.7),
            ("S2", "b"): (0.2, 0.5, 0.3),
            ("S3", "a"): (0.3, 0.3, 0.4),
            ("S3", "b"): (0.2, 0.2, 0.6),
        }
    )
    t = cohort_table(rows, {"S1": "CN", "S2": "AD", "S3": None}, "AD")
    assert list(t.index) == ["S1", "S2", "S3"]
    assert t["P(AD) · b"].tolist() == pytest.approx([0.1, 0.3, 0.6])
    assert t["models disagree"].tolist() == [False, True, False]
    assert t["spread P(AD)"].tolist() == pytest.approx([0.0, 0.4, 0.2])
    assert t.loc["S1", "models wrong"] == 0 and t.loc["S2", "models wrong"] == 1
    assert np.isnan(t.loc["S3", "models wrong"]) and np.isnan(t.loc["S3", "mean 1 − P(truth)"])
    assert t.loc["S1", "mean 1 − P(truth)"] == pytest.approx(1 - 0.65)
    assert t.loc["S2", "mean 1 − P(truth)"] == pytest.approx(1 - 0.5)
    cn = cohort_table(rows, {"S1": "CN"}, "CN")
    assert cn["P(CN) · a"].tolist() == pytest.approx([0.7, 0.1, 0.3])
    # rows with an error are left out
    rows.loc[0, "error"] = "no scan"
    assert np.isnan(cohort_table(rows, {}, "AD").loc["S1", "P(AD) · a"])


def test_background_job_collects_frames_and_reports_errors():
    def frames():
        for i in range(3):
            yield pd.DataFrame({"x": range(i + 1)})

    job = BackgroundJob(frames, total=6).start()
    assert job.wait(10)
    rows, done = job.snapshot()
    assert done == job.done == 6 and len(rows) == 6 and job.error is None

    def failing():
        yield pd.DataFrame({"x": [1]})
        raise ValueError("scan unreadable")

    job = BackgroundJob(failing, total=2).start()
    assert job.wait(10)
    assert job.snapshot()[1] == job.done == 1 and job.error == "scan unreadable"


def test_jobs_still_running_at_exit_are_stopped_and_joined():
    # a daemon thread left inside torch while the interpreter shuts down can abort the process: the exit hook
    # asks every running job to stop and waits for it
    import time

    import pandas as pd

    from hyperfusion.inference import cohort_cache

    def endless():
        while True:
            time.sleep(0.02)
            yield pd.DataFrame({"x": [1]})

    job = cohort_cache.BackgroundJob(endless, total=10**9).start()
    time.sleep(0.1)
    assert not job.finished
    cohort_cache._stop_jobs(timeout=5)
    assert job.finished and job.snapshot()[1] >= 1


def test_waiting_for_the_first_rows_returns_when_they_come_or_at_the_timeout():
    import time

    import pandas as pd

    from hyperfusion.inference.cohort_cache import BackgroundJob

    def slow(delay):
        def frames():
            time.sleep(delay)
            yield pd.DataFrame({"x": [1, 2]})

        return frames

    job = BackgroundJob(slow(0.2), total=2).start()
    t0 = time.monotonic()
    assert job.wait_for_rows(5.0) and time.monotonic() - t0 < 2.0  # returned when the rows came
    late = BackgroundJob(slow(3.0), total=2).start()
    t0 = time.monotonic()
    assert not late.wait_for_rows(0.3) and time.monotonic() - t0 < 1.5  # gave up at its timeout
    # counted from the job's start: a page refreshing every second is held only while the job is new
    time.sleep(0.4)
    t0 = time.monotonic()
    assert not late.wait_for_rows(0.5, from_start=True) and time.monotonic() - t0 < 0.2
    late.wait()


def test_a_store_without_rows_for_the_models_is_answered_without_touching_a_scan(setup, tmp_path):  # noqa: F811
    """A first visit (nothing stored for these model files): no subject's scan is looked for or hashed."""
    cohort, pre, dirs = setup
    store = ResultStore(tmp_path / "store.sqlite")
    looked = []
    scan_for = lambda ptid: looked.append(ptid)  # noqa: E731
    assert not store.holds("prediction", "any model")  # no file yet
    empty = cached_rows(cohort, {m: dirs[m] for m in MODELS}, scan_for=scan_for, store=store)
    assert empty.empty and list(empty.columns)[-1] == "cached" and looked == []
    ptid = cohort.table["PTID"].iloc[0]
    _all(score_cohort(Predictor({"tabular_only": dirs["tabular_only"]}), cohort, ptids=[ptid], store=store))
    found = cached_rows(cohort, {m: dirs[m] for m in MODELS}, scan_for=scan_for, store=store)
    assert set(found["model"]) == {"tabular_only"} and list(found["PTID"]) == [ptid] and looked
