"""Metrics of the paper's protocol (docs/models.md §1 Protocol, §2) and the calibration / uncertainty extras.

Classification: balanced accuracy (BA), macro precision, macro F1, macro one-vs-rest AUC, per-class recall,
confusion matrix, one-vs-rest expected calibration error and Brier score. Regression (brain age): MAE, Pearson
r, R², and the usual linear age-bias correction. Bootstrap confidence intervals and the one-sided Mann–Whitney
U test between repeated runs. Any of them within subgroups (sex, age band). Built on scikit-learn and SciPy.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from hyperfusion.data.schema import CLASS_NAMES

# scipy.stats and sklearn.metrics (0.5 s) are imported in the functions that use them: the Predictor imports
# this module for combine_members, and the dashboard's first predictions must not wait for them.


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str] = CLASS_NAMES
) -> dict[str, float]:
    """BA, macro precision / F1 / OvR AUC, per-class recall, ECE and Brier; ``proba`` is (N, C) softmax."""
    from sklearn import metrics as skm

    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=float)
    labels = list(range(len(class_names)))
    y_pred = proba.argmax(axis=1)
    out = {
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "precision": float(
            skm.precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "auc": macro_ovr_auc(y_true, proba),
        "ece": expected_calibration_error(y_true, proba),
        "brier": brier_score(y_true, proba),
    }
    recall = skm.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    for name, r in zip(class_names, recall):
        out[f"recall_{name}"] = float(r)
    return out


def macro_ovr_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Macro one-vs-rest AUC over the classes present in ``y_true`` (NaN if fewer than two)."""
    from sklearn import metrics as skm

    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    aucs = [skm.roc_auc_score(y_true == c, proba[:, c]) for c in present]
    return float(np.mean(aucs))


def confusion(y_true: np.ndarray, proba: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Confusion matrix (rows: truth, columns: prediction), int (C, C)."""
    from sklearn import metrics as skm

    return skm.confusion_matrix(y_true, np.asarray(proba).argmax(axis=1), labels=list(range(n_classes)))


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> float:
    """One-vs-rest ECE: the mean over classes of the bin-weighted |observed frequency - mean confidence|."""
    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    per_class = []
    for c in range(proba.shape[1]):
        p, hit = proba[:, c], (y_true == c).astype(float)
        bins = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
        ece = 0.0
        for b in range(n_bins):
            m = bins == b
            if m.any():
                ece += m.mean() * abs(hit[m].mean() - p[m].mean())
        per_class.append(ece)
    return float(np.mean(per_class))


def brier_score(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Multi-class Brier score: mean over samples of the squared distance to the one-hot truth."""
    proba = np.asarray(proba, dtype=float)
    onehot = np.eye(proba.shape[1])[np.asarray(y_true, dtype=int)]
    return float(((proba - onehot) ** 2).sum(axis=1).mean())


def regression_metrics(age: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE (years), Pearson r and R² of predicted against chronological age."""
    from scipy import stats
    from sklearn import metrics as skm

    age = np.asarray(age, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    r = float(stats.pearsonr(age, predicted)[0]) if len(age) > 2 and np.std(predicted) > 0 else float("nan")
    return {
        "mae": float(np.mean(np.abs(predicted - age))),
        "r": r,
        "r2": float(skm.r2_score(age, predicted)) if len(age) > 1 else float("nan"),
    }


def fit_age_bias(age: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """The linear age-bias model predicted = slope · age + intercept, fitted on validation subjects."""
    slope, intercept = np.polyfit(np.asarray(age, float), np.asarray(predicted, float), 1)
    return float(slope), float(intercept)


#: An age-bias slope flatter than this is not inverted: the correction would multiply the error by > 10
MIN_AGE_BIAS_SLOPE = 0.1


def correct_age_bias(predicted: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Bias-corrected prediction (predicted − intercept) / slope: the age at which the validation fit
    (predicted = slope · age + intercept) expects this prediction.

    It uses nothing about the subject's true age, unlike the other common form, predicted − (slope · age +
    intercept) + age, which reads the test subject's age and so cannot be a prediction. Refuses (ValueError) a
    slope flatter than :data:`MIN_AGE_BIAS_SLOPE`: inverting it would blow the error up.
    """
    if not abs(slope) >= MIN_AGE_BIAS_SLOPE:
        raise ValueError(f"age-bias slope {slope:.3f} is too flat to invert (below {MIN_AGE_BIAS_SLOPE})")
    return (np.asarray(predicted, float) - intercept) / slope


def bootstrap_ci(
    metric: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(*arrays)`` resampling subjects with replacement."""
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = metric(*(np.asarray(a)[idx] for a in arrays))
        if np.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_cis(
    metrics: Callable[..., dict[str, float]],
    keys: Sequence[str],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """:func:`bootstrap_ci` of several keys of one metrics function in one pass over the resamples: the same
    resamples, hence the same intervals, as one :func:`bootstrap_ci` call per key with the same seed."""
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    values: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        out = metrics(*(np.asarray(a)[idx] for a in arrays))
        for k in keys:
            if np.isfinite(out[k]):
                values[k].append(out[k])
    intervals = {}
    for k, v in values.items():
        lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2]) if v else (float("nan"), float("nan"))
        intervals[k] = (float(lo), float(hi))
    return intervals


def mann_whitney_greater(a: Sequence[float], b: Sequence[float]) -> float:
    """One-sided Mann–Whitney U p-value that runs ``a`` score higher than runs ``b`` (as the paper)."""
    from scipy import stats

    return float(stats.mannwhitneyu(a, b, alternative="greater").pvalue)


def inverse_entropy_ensemble(member_proba: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """The paper's fold ensemble: softmax outputs weighted per sample by the inverse of their entropy.

    ``member_proba`` is (M, N, C); returns (N, C), rows summing to 1. A confident member (low entropy) weighs
    more; ``eps`` keeps a one-hot member finite.
    """
    p = np.asarray(member_proba, dtype=float)
    entropy = -(p * np.log(np.clip(p, eps, 1.0))).sum(axis=2)  # (M, N)
    weights = 1.0 / (entropy + eps)
    weights /= weights.sum(axis=0, keepdims=True)
    return (weights[..., None] * p).sum(axis=0)


def combine_members(task: str, member_predictions: Sequence[np.ndarray]) -> np.ndarray:
    """An ensemble's prediction from its members' (the one fold-ensemble rule): the paper's inverse-entropy
    weighting of class probabilities (AD), the mean predicted age (brain age, as the paper averages its
    brain-age models). ``member_predictions``: M arrays (N, C) or (N,); a single member is returned as is."""
    stack = np.stack([np.asarray(p) for p in member_predictions])
    if task == "ad":
        return inverse_entropy_ensemble(stack) if len(stack) > 1 else stack[0]
    return stack.mean(axis=0)


#: Age-band edges (years) of the subgroup tables: <65, 65–75, 75–85, ≥85.
AGE_BAND_EDGES = (65.0, 75.0, 85.0)


def age_bands(age: np.ndarray, edges: Sequence[float] = AGE_BAND_EDGES) -> np.ndarray:
    """Each age's band label ("<65", "65–75", …, "≥85"; "unknown" where the age is missing), object (N,).

    A band holds its lower edge: 65.0 is in "65–75".
    """
    age = np.asarray(age, dtype=float)
    names = band_names(edges)
    index = np.searchsorted(np.asarray(edges, dtype=float), age, side="right")
    return np.array([names[i] if np.isfinite(a) else "unknown" for i, a in zip(index, age)], dtype=object)


def band_names(edges: Sequence[float] = AGE_BAND_EDGES) -> list[str]:
    """The labels :func:`age_bands` gives, youngest first."""
    e = [f"{x:g}" for x in edges]
    return [f"<{e[0]}", *(f"{a}–{b}" for a, b in zip(e, e[1:])), f"≥{e[-1]}"]


def metrics_by_group(
    groups: Sequence[Hashable],
    metric: Callable[..., dict[str, float]],
    *arrays: np.ndarray,
    order: Sequence[Hashable] | None = None,
) -> dict[Hashable, dict[str, float]]:
    """``metric(*arrays)`` within each group of subjects, with the group's size as "n".

    Args:
        groups: each subject's group (e.g. sex, or :func:`age_bands`), length N.
        metric: e.g. :func:`classification_metrics` or :func:`regression_metrics`.
        arrays: the metric's arguments, each with N rows.
        order: the groups to report, in this order (default: as they first appear); empty groups are left out.
    """
    groups = np.asarray(groups, dtype=object)
    keys = list(dict.fromkeys(groups.tolist())) if order is None else list(order)
    out: dict[Hashable, dict[str, float]] = {}
    for key in keys:
        mask = groups == key
        if not mask.any():
            continue
        with warnings.catch_warnings():
            # a small group often lacks a class the predictions name: scikit-learn warns, the value stands
            warnings.simplefilter("ignore", UserWarning)
            values = metric(*(np.asarray(a)[mask] for a in arrays))
        out[key] = {"n": int(mask.sum()), **values}
    return out
