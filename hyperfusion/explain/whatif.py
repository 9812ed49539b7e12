"""What-if curves: individual conditional expectation (ICE) and partial dependence for one attribute.

An ICE curve holds a subject's scan and every other value of the record fixed and sweeps one attribute over
a grid; all grid points of all loaded models run as one batched ``Predictor.predict`` call, which decodes
cached image features only (docs/architecture.md budget: 64 points × 7 demo models ≤ 1 s). Partial dependence is the
mean of the ICE curves of many subjects (Friedman 2001), each subject's scan encoded once.

The grid spans the attribute's plausible range from the schema (what a form accepts) or its training support
(mean ± 3 SD of the model's training rows, inside the plausible range): counts take whole values, sex its
two categories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hyperfusion.data.cohort import parse_record
from hyperfusion.data.schema import FEATURE_NAMES, feature
from hyperfusion.data.tabular import TabularPreprocessor
from hyperfusion.errors import DataError
from hyperfusion.inference.predictor import Predictor

__all__ = ["IceCurves", "attribute_grid", "ice_curves", "partial_dependence", "training_preprocessor"]

SUPPORTS = ("plausible", "training")


def training_preprocessor(predictor: Predictor) -> TabularPreprocessor | None:
    """The fitted tabular preprocessing of the first loaded model that has one (its training statistics)."""
    for entry in predictor.models.values():
        for member in entry.members:
            if member.preprocessor is not None:
                return member.preprocessor
    return None


def attribute_grid(
    attribute: str,
    n_points: int = 64,
    support: str = "plausible",
    preprocessor: TabularPreprocessor | None = None,
) -> np.ndarray:
    """The values an ICE curve visits, float64 (P,), in the attribute's units.

    Args:
        attribute: a schema attribute (ADNIMERGE name).
        n_points: grid size for continuous attributes (counts give each whole value, at most ``n_points``).
        support: "plausible" (the schema's range) or "training" (mean ± 3 SD of the training rows, from the
            fitted ``preprocessor``, inside the plausible range).
        preprocessor: the model's fitted tabular preprocessing (for ``support="training"``).
    """
    if attribute not in FEATURE_NAMES:
        raise DataError(f"unknown attribute {attribute!r}; attributes: {list(FEATURE_NAMES)}")
    if support not in SUPPORTS:
        raise DataError(f"support must be one of {SUPPORTS}, not {support!r}")
    if n_points < 2:
        raise DataError(f"an ICE curve needs at least 2 points, not {n_points}")
    f = feature(attribute)
    lo, hi = f.plausible_range
    if f.type == "binary":
        return np.array([lo, hi])
    if support == "training":
        if preprocessor is None or attribute not in preprocessor.numeric_features:
            raise DataError(
                f"no fitted preprocessing gives the training support of {attribute}; use 'plausible'"
            )
        j = preprocessor.numeric_features.index(attribute)
        mean, sd = preprocessor.means_[j], preprocessor.scales_[j]
        lo, hi = max(lo, mean - 3 * sd), min(hi, mean + 3 * sd)
    if f.type == "count":
        values = np.arange(np.ceil(lo), np.floor(hi) + 1)
        if len(values) > n_points:
            values = np.unique(np.round(np.linspace(values[0], values[-1], n_points)))
        return values.astype(float)
    return np.linspace(lo, hi, n_points)


def _raw_value(attribute: str, value: float) -> Any:
    f = feature(attribute)
    return f.categories[int(value)] if f.categories else float(value)


@dataclass(frozen=True)
class IceCurves:
    """Predictions along one attribute for every model.

    Attributes:
        attribute: the attribute varied.
        values: (P,) its grid, in its units (sex: 0 = Female, 1 = Male).
        predictions: model -> (P, C) class probabilities or (P,) predicted ages (years); for partial
            dependence the mean over subjects.
        spread: model -> the ensemble members' standard deviation, same shape (zeros for single models); for
            partial dependence the standard deviation across subjects.
        tasks: model -> "ad" or "brain_age".
        class_names: model -> class names (AD) or None.
        current: the subject's own value of the attribute (None if missing, or for partial dependence).
        curves: partial dependence only: model -> every subject's curve, (S, P, C) or (S, P).
    """

    attribute: str
    values: np.ndarray
    predictions: dict[str, np.ndarray]
    spread: dict[str, np.ndarray]
    tasks: dict[str, str]
    class_names: dict[str, list[str] | None]
    current: float | None = None
    curves: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def subjects(self) -> int:
        return next(iter(self.curves.values())).shape[0] if self.curves else 1


def _grid(predictor, attribute, values, n_points, support) -> np.ndarray:
    if values is not None:
        values = np.asarray(values, dtype=float)
        if values.ndim != 1 or len(values) == 0:
            raise DataError("ICE values must be a non-empty list of numbers")
        return values
    return attribute_grid(attribute, n_points, support, training_preprocessor(predictor))


def ice_curves(
    predictor: Predictor,
    scan: str | Path | bytes | None,
    record: Mapping[str, object],
    attribute: str,
    values: Sequence[float] | None = None,
    *,
    n_points: int = 64,
    support: str = "plausible",
    models: Sequence[str] | None = None,
) -> IceCurves:
    """Every model's prediction for ``scan`` as ``attribute`` sweeps ``values``, all else as in ``record``.

    One batched call: each model decodes its cached image features with all P records at once.

    Args:
        predictor, scan, record: as for ``Predictor.predict``.
        attribute: the attribute to vary (ADNIMERGE name).
        values: the grid (attribute units); default :func:`attribute_grid` (``n_points``, ``support``).
        models: the models to include (default all loaded).
    """
    grid = _grid(predictor, attribute, values, n_points, support)
    variants = [{**record, attribute: _raw_value(attribute, v)} for v in grid]
    preds = predictor.predict(scan, variants, models=models)
    current = parse_record(record)[attribute]
    return IceCurves(
        attribute=attribute,
        values=grid,
        predictions={name: p.value for name, p in preds.items()},
        spread={name: p.spread for name, p in preds.items()},
        tasks={name: p.task for name, p in preds.items()},
        class_names={name: p.class_names for name, p in preds.items()},
        current=None if np.isnan(current) else float(current),
    )


def partial_dependence(
    predictor: Predictor,
    subjects: Sequence[tuple[str | Path | bytes | None, Mapping[str, object]]],
    attribute: str,
    values: Sequence[float] | None = None,
    *,
    n_points: int = 64,
    support: str = "plausible",
    models: Sequence[str] | None = None,
) -> IceCurves:
    """The mean ICE curve over ``subjects`` (scan, raw record) pairs, and every subject's curve.

    See :func:`hyperfusion.data.cohort.cohort_record` to turn cohort rows into records.
    """
    if not subjects:
        raise DataError("partial dependence needs at least one subject")
    grid = _grid(predictor, attribute, values, n_points, support)
    curves = [
        ice_curves(predictor, scan, record, attribute, grid, models=models) for scan, record in subjects
    ]
    first = curves[0]
    stacked = {name: np.stack([c.predictions[name] for c in curves]) for name in first.predictions}
    return IceCurves(
        attribute=attribute,
        values=grid,
        predictions={name: s.mean(axis=0) for name, s in stacked.items()},
        spread={name: s.std(axis=0) for name, s in stacked.items()},
        tasks=first.tasks,
        class_names=first.class_names,
        curves=stacked,
    )
