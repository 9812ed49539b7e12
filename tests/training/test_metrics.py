import numpy as np
import pytest

from hyperfusion.training import metrics as m


def test_perfect_and_chance_classifiers():
    y = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[y]
    res = m.classification_metrics(y, perfect)
    assert res["balanced_accuracy"] == 1 and res["auc"] == 1 and res["f1"] == 1
    assert res["brier"] == 0 and res["ece"] == 0
    always_mci = np.tile([0.2, 0.6, 0.2], (6, 1))
    res = m.classification_metrics(y, always_mci)
    assert res["balanced_accuracy"] == pytest.approx(1 / 3)
    assert res["recall_MCI"] == 1 and res["recall_CN"] == 0 and res["auc"] == 0.5


def test_balanced_accuracy_ignores_class_imbalance():
    y = np.array([0] * 90 + [1] * 10)
    proba = np.tile([0.9, 0.1, 0.0], (100, 1))
    assert m.classification_metrics(y, proba)["balanced_accuracy"] == pytest.approx(0.5)


def test_confusion_and_calibration():
    y = np.array([0, 1, 2, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]])
    np.testing.assert_array_equal(m.confusion(y, proba), [[1, 0, 0], [0, 0, 1], [1, 0, 1]])
    # an overconfident model has a larger ECE than a calibrated one
    rng = np.random.default_rng(0)
    p_true = rng.uniform(0.2, 0.8, 5000)
    labels = (rng.random(5000) < p_true).astype(int)
    calibrated = np.stack([1 - p_true, p_true], 1)
    sharp = np.stack([1 - (p_true > 0.5), (p_true > 0.5)], 1).astype(float) * 0.98 + 0.01
    assert m.expected_calibration_error(labels, calibrated) < 0.03
    assert m.expected_calibration_error(labels, sharp) > 0.15


def test_regression_and_age_bias_correction():
    rng = np.random.default_rng(1)
    age = rng.uniform(20, 90, 500)
    predicted = 0.7 * age + 16 + rng.normal(0, 2, 500)  # regression to the mean
    slope, intercept = m.fit_age_bias(age, predicted)
    assert slope == pytest.approx(0.7, abs=0.02)
    corrected = m.correct_age_bias(predicted, slope, intercept)  # the true ages are not an argument
    assert m.regression_metrics(age, corrected)["mae"] < m.regression_metrics(age, predicted)["mae"]
    assert abs(np.corrcoef(age, corrected - age)[0, 1]) < 0.1  # the gap no longer tracks age
    # each subject's corrected age depends on its own prediction only: shuffling the others changes nothing
    order = rng.permutation(500)
    np.testing.assert_allclose(m.correct_age_bias(predicted[order], slope, intercept), corrected[order])
    with pytest.raises(ValueError, match="too flat"):
        m.correct_age_bias(predicted, 0.01, intercept)


def test_bootstrap_ci_covers_estimate_and_narrows_with_n():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 2000)
    proba = np.eye(3)[np.where(rng.random(2000) < 0.7, y, rng.integers(0, 3, 2000))]

    def ba(a, b):
        return m.classification_metrics(a, b)["balanced_accuracy"]

    lo, hi = m.bootstrap_ci(ba, y, proba, n_boot=200)
    lo_s, hi_s = m.bootstrap_ci(ba, y[:200], proba[:200], n_boot=200)
    assert lo < ba(y, proba) < hi
    assert hi - lo < hi_s - lo_s


def test_mann_whitney_one_sided():
    better, worse = [0.67, 0.68, 0.66, 0.69, 0.67], [0.60, 0.61, 0.59, 0.62, 0.60]
    assert m.mann_whitney_greater(better, worse) < 0.01
    assert m.mann_whitney_greater(worse, better) > 0.9


def test_inverse_entropy_ensemble_trusts_confident_member():
    confident = np.array([[[0.96, 0.02, 0.02]]])
    unsure = np.array([[[0.2, 0.5, 0.3]]])
    mix = m.inverse_entropy_ensemble(np.concatenate([confident, unsure]))
    assert mix.shape == (1, 3) and mix.sum() == pytest.approx(1)
    assert mix[0, 0] > 0.7  # plain averaging would give 0.58
    same = m.inverse_entropy_ensemble(np.concatenate([unsure, unsure]))
    np.testing.assert_allclose(same, unsure[0])


def test_age_bands_hold_their_lower_edge_and_mark_missing_ages():
    bands = m.age_bands(np.array([50.0, 64.9, 65.0, 74.99, 75.0, 85.0, 97.0, np.nan]))
    assert bands.tolist() == ["<65", "<65", "65–75", "65–75", "75–85", "≥85", "≥85", "unknown"]
    assert m.band_names() == ["<65", "65–75", "75–85", "≥85"]
    assert m.band_names((40, 60)) == ["<40", "40–60", "≥60"]


def test_metrics_by_group_matches_the_metric_on_each_subset():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 60)
    proba = rng.dirichlet(np.ones(3), 60)
    sex = np.where(rng.random(60) < 0.4, "Female", "Male")
    out = m.metrics_by_group(sex, m.classification_metrics, y, proba, order=["Female", "Male", "unknown"])
    assert list(out) == ["Female", "Male"]  # an empty group is left out
    assert out["Female"]["n"] + out["Male"]["n"] == 60
    female = m.classification_metrics(y[sex == "Female"], proba[sex == "Female"])
    assert out["Female"]["balanced_accuracy"] == pytest.approx(female["balanced_accuracy"])
    age = rng.uniform(50, 90, 60)
    by_band = m.metrics_by_group(m.age_bands(age), m.regression_metrics, age, age + 2.0)
    assert all(v["mae"] == pytest.approx(2.0) for v in by_band.values())
    assert sum(v["n"] for v in by_band.values()) == 60
