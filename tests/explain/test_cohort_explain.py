"""Explanations over a cohort: global importance from the per-subject record attributions (cached on disk),
partial dependence over a sample, distributions by diagnosis."""

import numpy as np
import pandas as pd
import pytest

from hyperfusion.cohort_views import (
    feature_by_diagnosis,
    global_importance,
    partial_dependence_frame,
    sample_subjects,
)
from hyperfusion.data.cohort import cohort_record
from hyperfusion.errors import DataError
from hyperfusion.explain.cohort import cohort_partial_dependence, record_attributions
from hyperfusion.explain.tabular import explain_record
from hyperfusion.explain.whatif import ice_curves
from hyperfusion.inference.cohort_cache import ResultStore
from hyperfusion.inference.predictor import Predictor
from tests.inference.test_predictor import setup  # noqa: F401


def test_sample_is_seeded_in_table_order_and_whole_when_small(setup):  # noqa: F811
    cohort, _, _ = setup
    ptids = list(cohort.table["PTID"])
    a = sample_subjects(cohort, 5, seed=1)
    assert a == sample_subjects(cohort, 5, seed=1) and len(set(a)) == 5
    assert a == [p for p in ptids if p in a]  # table order
    assert a != sample_subjects(cohort, 5, seed=2)
    assert sample_subjects(cohort, 100) == ptids
    with pytest.raises(DataError):
        sample_subjects(cohort, 0)


def test_global_importance_is_the_mean_absolute_record_attribution_and_is_cached(setup, tmp_path):  # noqa: F811
    cohort, _, dirs = setup
    predictor = Predictor({m: dirs[m] for m in ("hyperfusion", "tabular_only")})
    ptids = list(cohort.table["PTID"][:3])
    store = ResultStore(tmp_path / "store.sqlite")
    rows = pd.concat(list(record_attributions(predictor, cohort, ptids, store=store)), ignore_index=True)
    assert (rows["error"] == "").all()
    table = cohort.table.set_index("PTID", drop=False)
    # each subject's numbers are explain_record's, as the Subject page computes them
    for ptid in ptids[:2]:
        row = table.loc[ptid]
        expected = explain_record(
            predictor, "hyperfusion", row["image_path"], cohort_record(row), target="AD"
        )
        got = rows[(rows["PTID"] == ptid) & (rows["model"] == "hyperfusion")].set_index("attribute")[
            "attribution"
        ]
        assert got.to_dict() == pytest.approx(expected.attributes, abs=1e-6)
    importance = global_importance(rows)
    hf = importance[importance["model"] == "hyperfusion"].set_index("attribute")
    by_hand = (
        rows[rows["model"] == "hyperfusion"]
        .groupby("attribute")["attribution"]
        .apply(lambda a: a.abs().mean())
    )
    assert hf["mean |attribution|"].to_dict() == pytest.approx(by_hand.to_dict())
    assert (hf["subjects"] == 3).all() and hf["mean |attribution|"].is_monotonic_decreasing
    assert hf["mean |attribution|"].max() > 0
    # a second pass reads the store: no attribution runs
    import hyperfusion.explain.tabular as module

    original = module.explain_record
    module.explain_record = None
    try:
        again = pd.concat(list(record_attributions(predictor, cohort, ptids, store=store)), ignore_index=True)
    finally:
        module.explain_record = original
    np.testing.assert_allclose(again["attribution"], rows["attribution"])


def test_image_only_models_get_zero_importance_and_missing_scans_an_error(setup, tmp_path):  # noqa: F811
    cohort, _, dirs = setup
    predictor = Predictor({m: dirs[m] for m in ("hyperfusion", "tabular_only")})
    ptids = list(cohort.table["PTID"][:2])
    scans = dict(zip(cohort.table["PTID"], cohort.table["image_path"]))
    scans[ptids[0]] = None
    rows = pd.concat(
        list(
            record_attributions(
                predictor, cohort, ptids, scan_for=scans.get, store=ResultStore(tmp_path / "s")
            )
        ),
        ignore_index=True,
    )
    bad = rows[(rows["PTID"] == ptids[0]) & (rows["model"] == "hyperfusion")]
    assert len(bad) == 1 and "no scan" in bad["error"].iloc[0]
    assert (rows[(rows["PTID"] == ptids[0]) & (rows["model"] == "tabular_only")]["error"] == "").all()
    importance = global_importance(rows)
    assert importance.loc[importance["model"] == "hyperfusion", "subjects"].max() == 1


def test_cohort_partial_dependence_is_the_mean_ice_curve(setup):  # noqa: F811
    cohort, _, dirs = setup
    predictor = Predictor({m: dirs[m] for m in ("hyperfusion", "tabular_only")})
    ptids = list(cohort.table["PTID"][:4])
    curves, used = cohort_partial_dependence(
        predictor,
        cohort,
        "AGE",
        ptids,
        scan_for=lambda p: cohort.table.set_index("PTID").loc[p, "image_path"],
        n_points=5,
    )
    assert used == ptids and curves.subjects == 4 and len(curves.values) == 5
    table = cohort.table.set_index("PTID", drop=False)
    one = ice_curves(
        predictor, table.loc[ptids[1], "image_path"], cohort_record(table.loc[ptids[1]]), "AGE", curves.values
    )
    mean, ice = partial_dependence_frame(curves, "AD")
    got = ice[(ice["model"] == "hyperfusion") & (ice["subject"] == 1)]["prediction"].to_numpy()
    np.testing.assert_allclose(got, one.predictions["hyperfusion"][:, 2], rtol=1e-5)
    hf = mean[mean["model"] == "hyperfusion"]
    per_subject = ice[ice["model"] == "hyperfusion"].groupby("value")["prediction"].mean()
    np.testing.assert_allclose(hf["mean"].to_numpy(), per_subject.to_numpy(), rtol=1e-5)
    # without scans only the record-only model can run; with no scan at all and an image model: a message
    _, used = cohort_partial_dependence(predictor, cohort, "AGE", ptids, models=["tabular_only"], n_points=3)
    assert used == ptids
    with pytest.raises(DataError, match="readable scan"):
        cohort_partial_dependence(predictor, cohort, "AGE", ptids, scan_for=lambda p: None, n_points=3)


def test_feature_by_diagnosis_keeps_recorded_values_and_counts_missing(setup):  # noqa: F811
    cohort, _, _ = setup
    table = cohort.table.copy()
    table.loc[table.index[:2], "ABETA"] = np.nan
    values, missing = feature_by_diagnosis(table, "ABETA")
    assert len(values) == table["ABETA"].notna().sum() and set(values.columns) == {"DX", "ABETA"}
    assert sum(missing.values()) == table["ABETA"].isna().sum()
    sexes, _ = feature_by_diagnosis(table, "PTGENDER")
    assert set(sexes["PTGENDER"]) <= {"Female", "Male"}
    with pytest.raises(DataError):
        feature_by_diagnosis(table, "NOT_AN_ATTRIBUTE")
