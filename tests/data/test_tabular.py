import json

import numpy as np
import pandas as pd
import pytest

from hyperfusion.data import TabularPreprocessor
from hyperfusion.errors import DataError

PAPER_LAYOUT = [
    "AGE",
    "PTEDUCAT",
    "APOE4",
    "ABETA",
    "TAU",
    "PTAU",
    "FDG",
    "AV45",
    "PTGENDER_Female",
    "PTGENDER_Male",
    "APOE4_missing",
    "ABETA_missing",
    "TAU_missing",
    "PTAU_missing",
    "FDG_missing",
    "AV45_missing",
]


@pytest.mark.parametrize("imputation", ["median", "iterative"])
def test_sixteen_inputs_in_the_paper_layout(cohort_table, imputation):
    pre = TabularPreprocessor(imputation=imputation).fit(cohort_table)
    x = pre.transform(cohort_table)
    assert x.shape == (len(cohort_table), 16) and x.dtype == np.float32
    assert pre.output_names_ == PAPER_LAYOUT
    z = x[:, :8]
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)  # z-scored on the rows it was fitted on
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-4)
    sex = cohort_table["PTGENDER"].to_numpy()
    np.testing.assert_array_equal(x[:, 9], sex == 1)
    np.testing.assert_array_equal(x[:, 8] + x[:, 9], 1)
    np.testing.assert_array_equal(x[:, 11].astype(bool), cohort_table["ABETA"].isna().to_numpy())


def test_statistics_come_from_training_rows_only(cohort_table):
    train, test = cohort_table.iloc[:200], cohort_table.iloc[200:].copy()
    test["AGE"] += 30  # a shifted test set must not move the fitted statistics
    pre = TabularPreprocessor().fit(train)
    assert pre.means_[0] == pytest.approx(train["AGE"].mean())
    assert pre.medians_[3] == pytest.approx(train["ABETA"].median())
    assert pre.n_fit_rows_ == 200
    refit = TabularPreprocessor().fit(pd.concat([train, test]))
    assert refit.means_[0] != pytest.approx(pre.means_[0])
    assert pre.transform(test)[:, 0].mean() > 3  # test ages sit ~4 training SDs above the training mean


def test_median_imputation_and_report(cohort_table):
    pre = TabularPreprocessor().fit(cohort_table)
    row = {"AGE": 70.0, "PTGENDER": 1.0, "PTEDUCAT": 12.0}  # everything else missing
    x, imputed = pre.transform(row, return_imputed=True)
    assert imputed.iloc[0].to_dict() == {
        "AGE": False,
        "PTGENDER": False,
        "PTEDUCAT": False,
        "APOE4": True,
        "ABETA": True,
        "TAU": True,
        "PTAU": True,
        "FDG": True,
        "AV45": True,
    }
    expected_abeta = (pre.medians_[3] - pre.means_[3]) / pre.scales_[3]
    assert x[0, 3] == pytest.approx(expected_abeta, rel=1e-6)
    np.testing.assert_array_equal(x[0, 10:], 1)
    x_all_missing = pre.transform({})
    assert np.isfinite(x_all_missing).all()
    np.testing.assert_array_equal(x_all_missing[0, 8:10], 0)  # unknown sex: (0, 0)


@pytest.mark.parametrize("imputation", ["median", "iterative"])
def test_json_round_trip_is_exact(cohort_table, imputation):
    pre = TabularPreprocessor(imputation=imputation).fit(cohort_table.iloc[:250])
    state = json.loads(json.dumps(pre.to_dict()))
    again = TabularPreprocessor.from_dict(state)
    rows = cohort_table.iloc[250:]
    np.testing.assert_array_equal(again.transform(rows), pre.transform(rows))
    assert again.to_dict() == pre.to_dict()


def test_iterative_matches_scikit_learn(cohort_table):
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    train, test = cohort_table.iloc[:220], cohort_table.iloc[220:]
    pre = TabularPreprocessor(imputation="iterative", random_state=3).fit(train)
    cols = pre.numeric_features
    ref = IterativeImputer(initial_strategy="median", max_iter=10, random_state=3, keep_empty_features=True)
    ref.fit(train[cols].to_numpy(float))
    expected = ref.transform(test[cols].to_numpy(float))
    np.testing.assert_allclose(pre._impute(test[cols].to_numpy(float)), expected, rtol=1e-10, atol=1e-9)
    # the imputer uses the other attributes: a subject's imputed TAU follows its PTAU
    low = pre.transform({"PTAU": 12.0, "PTGENDER": 0})[0, 4]
    high = pre.transform({"PTAU": 60.0, "PTGENDER": 0})[0, 4]
    assert high > low + 1


def test_subset_of_features_and_missing_only_indicators(cohort_table):
    pre = TabularPreprocessor(features=["AGE", "PTGENDER", "FDG"], indicators="missing-only").fit(
        cohort_table
    )
    assert pre.output_names_ == ["AGE", "FDG", "PTGENDER_Female", "PTGENDER_Male", "FDG_missing"]


def test_bad_state_and_bad_fit_are_refused(cohort_table):
    pre = TabularPreprocessor().fit(cohort_table)
    state = pre.to_dict()
    state["state"]["scales"][0] = -1.0
    with pytest.raises(DataError, match="non-positive"):
        TabularPreprocessor.from_dict(state)
    with pytest.raises(DataError, match="malformed"):
        TabularPreprocessor.from_dict({"type": "TabularPreprocessor", "version": 1, "params": {}})
    with pytest.raises(DataError, match="lacks"):
        TabularPreprocessor().fit(cohort_table.assign(FDG=np.nan))
    with pytest.raises(RuntimeError, match="not fitted"):
        TabularPreprocessor().transform(cohort_table)


def test_records_become_the_same_feature_frame_as_a_table_of_them():
    import math

    import pandas as pd

    from hyperfusion.data.cohort import feature_frame
    from hyperfusion.data.schema import FEATURE_NAMES

    records = [
        {"AGE": 71, "PTGENDER": 1.0, "APOE4": None, "ABETA": math.nan, "EXTRA": "ignored"},
        {"AGE": 80.5, "PTEDUCAT": 12, "TAU": 300.25},  # absent keys are missing
        {},
    ]
    fast = feature_frame(records)
    assert list(fast.columns) == list(FEATURE_NAMES) and all(d == "float64" for d in fast.dtypes)
    pd.testing.assert_frame_equal(fast, feature_frame(pd.DataFrame(records)))
    assert fast.loc[0, "AGE"] == 71.0 and math.isnan(fast.loc[0, "APOE4"]) and math.isnan(fast.loc[2, "AGE"])
    pd.testing.assert_frame_equal(feature_frame(records[0]), fast.iloc[:1])
    with pytest.raises(ValueError):
        feature_frame([{"AGE": "old"}])


def test_records_and_their_table_give_the_same_model_inputs(cohort_table):
    """The transform's path for parsed records (no pandas, used on every dashboard edit) equals the table path,
    imputed values and missing indicators included."""
    import numpy as np

    pre = TabularPreprocessor().fit(cohort_table)
    table = cohort_table.head(12).copy()
    table.loc[table.index[:4], "ABETA"] = np.nan  # some values missing, so imputation and indicators act
    table.loc[table.index[2], "AGE"] = np.nan
    records = table.to_dict("records")
    from_table, imputed_table = pre.transform(table, return_imputed=True)
    from_records, imputed_records = pre.transform(records, return_imputed=True)
    np.testing.assert_array_equal(from_records, from_table)
    assert imputed_records.equals(imputed_table) and imputed_records["ABETA"].sum() >= 4
    np.testing.assert_array_equal(pre.transform(records[3]), from_table[3:4])
    complete = np.flatnonzero(table[pre.numeric_features].notna().all(axis=1).to_numpy())
    assert len(complete), "the fixture needs one complete row"
    i = complete[0]  # each numeric input of a complete row is its attribute standardized
    for j, name in enumerate(pre.numeric_features):
        expected = (table[name].iloc[i] - pre.means_[j]) / pre.scales_[j]
        assert from_records[i, j] == pytest.approx(expected, rel=1e-5), name
