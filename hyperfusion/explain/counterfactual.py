"""Counterfactual records: the smallest change to a subject's record that moves the prediction to a class.

The scan stays as it is; only editable attributes change, inside their ranges (the schema's plausible range,
by default narrowed to the training support, mean ± 3 SD), with their types (counts whole, e.g. APOE4 0 / 1
/ 2), and never the immutable ones (sex by default; age is editable, as a what-if, unless listed). Missing
values stay missing: filling one in would be a new measurement, not a change. The size of a change is
``Σ |Δ_j| / SD_j`` over the changed attributes, SD the training standard deviation (an L1 distance in SD
units, which favours changing few attributes).

Search (every step one batched ``Predictor.predict``: image features are cached, so each costs a decode):

1. each attribute alone over a grid of its range, and random changes of random subsets of attributes
   (a "growing spheres"-like sampling, Laugel et al. 2018), seeded;
2. from the smallest change that reaches the class: undo whole attribute changes while the class holds
   (sparsity), then move each remaining value back toward the subject's own along a grid, twice refined;
3. round continuous values to the schema's step, away from the subject's value, if the class still holds;
4. verify: the returned record is predicted again, and ``found`` is true only if its predicted class is the
   target.

:func:`nearest_subject` finds the real cohort subject of a class closest to a record (same sex, similar age).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hyperfusion.data.cohort import Cohort, cohort_record, parse_record
from hyperfusion.data.schema import CLASS_NAMES, FEATURE_NAMES, feature
from hyperfusion.errors import DataError
from hyperfusion.explain.whatif import SUPPORTS, training_preprocessor
from hyperfusion.inference.predictor import Predictor

__all__ = [
    "MARGIN_WARNING",
    "MIN_SHARED",
    "Counterfactual",
    "Robustness",
    "counterfactual",
    "nearest_subject",
    "robustness",
]

#: A counterfactual whose target class leads the next class by less than this (in probability) is fragile.
#: The demo models' probabilities are off by 0.065-0.109 on average (expected calibration error on the demo's
#: 1000-subject test cohort, assets/demo/reports/ad_test), so a lead under 0.05 is well inside the
#: probabilities' own error: the two classes are tied as far as the model can tell. An ensemble is also
#: checked member by member (:func:`robustness`): its members' class probabilities differ by a standard
#: deviation of 0.08 for a typical demo subject (median over 20), so a member may disagree at any margin.
MARGIN_WARNING = 0.05

#: The nearest real subject must share at least this many measured attributes with the record (sex aside):
#: with fewer, "nearest" rests on one or two numbers (age and education are nearly always measured, so this asks
#: for at least two biomarker or genetic values as well).
MIN_SHARED = 4

DEFAULT_IMMUTABLE = ("PTGENDER",)


@dataclass(frozen=True)
class Counterfactual:
    """The result of :func:`counterfactual`.

    Attributes:
        model: the model's name.
        target, target_name: the class asked for.
        found: True when ``record`` is predicted as ``target`` (checked by a final prediction).
        record: the counterfactual raw record (the subject's record where nothing changed); when not found,
            the closest attempt (highest target probability).
        changes: attribute -> (the subject's value, the counterfactual value), attribute units.
        distance: Σ |Δ| / training SD over the changes.
        probabilities: (C,) the model's prediction for ``record``.
        original_probabilities: (C,) its prediction for the subject's own record.
        editable: the attributes the search could change.
        evaluated: how many records were predicted.
        nearest: the nearest real cohort subject of the target class (:func:`nearest_subject`), if a cohort
            was given and one exists.
        message: what happened, in words.
    """

    model: str
    target: int
    target_name: str
    found: bool
    record: dict[str, Any]
    changes: dict[str, tuple[float, float]]
    distance: float
    probabilities: np.ndarray
    original_probabilities: np.ndarray
    editable: list[str]
    evaluated: int
    nearest: dict[str, Any] | None
    message: str

    @property
    def margin(self) -> float:
        """P(target) − the highest other class's probability for ``record``: how far past the decision
        boundary the counterfactual lies (negative when not found)."""
        p = np.asarray(self.probabilities, dtype=float)
        return float(p[self.target] - np.delete(p, self.target).max())


@dataclass(frozen=True)
class Robustness:
    """How much to trust a counterfactual (:func:`robustness`).

    Attributes:
        margin: :attr:`Counterfactual.margin`.
        members: networks in the model (1 for a single model).
        members_agreeing: how many of them predict the target class for the counterfactual record.
        spread: standard deviation of P(target) across the members (0 for one network).
        fragile: the margin is below :data:`MARGIN_WARNING` or a member disagrees.
        message: the verdict in words, with the threshold.
    """

    margin: float
    members: int
    members_agreeing: int
    spread: float
    fragile: bool
    message: str


def robustness(
    predictor: Predictor, cf: Counterfactual, scan, threshold: float = MARGIN_WARNING
) -> Robustness:
    """The counterfactual's margin and whether the ensemble's members agree on it (one batched prediction)."""
    pred = predictor.predict(scan, cf.record, models=[cf.model])[cf.model]
    members = pred.member_values[:, 0]  # (M, C)
    agreeing = int((members.argmax(axis=1) == cf.target).sum())
    spread = float(members[:, cf.target].std())
    margin = cf.margin
    reasons = []
    if margin < threshold:
        reasons.append(f"P({cf.target_name}) leads the next class by only {margin:.3f} (below {threshold:g})")
    if agreeing < len(members):
        reasons.append(f"only {agreeing} of the {len(members)} members predict {cf.target_name}")
    if reasons:
        message = "Fragile: " + "; ".join(reasons) + ". A slightly different model or value could undo it."
    else:
        message = (
            f"Margin {margin:.3f} (at least {threshold:g})"
            + (f"; all {len(members)} members predict {cf.target_name}" if len(members) > 1 else "")
            + "."
        )
    return Robustness(margin, len(members), agreeing, spread, bool(reasons), message)


class _Search:
    """The subject, the editable attributes and their bounds; evaluates candidate value vectors in batches."""

    def __init__(self, predictor, model, scan, record, target, editable, support) -> None:
        self.predictor, self.model, self.scan, self.record, self.target = (
            predictor,
            model,
            scan,
            dict(record),
            target,
        )
        parsed = parse_record(record)
        pre = training_preprocessor(predictor)
        self.names = list(editable)
        self.x0 = np.array([parsed[n] for n in self.names], dtype=float)
        lo, hi, sd = [], [], []
        for n in self.names:
            f = feature(n)
            a, b = f.plausible_range
            scale = (b - a) / 4
            if pre is not None and n in pre.numeric_features:
                j = pre.numeric_features.index(n)
                scale = pre.scales_[j]
                if support == "training":
                    a, b = max(a, pre.means_[j] - 3 * scale), min(b, pre.means_[j] + 3 * scale)
            if f.type == "count":
                a, b = math.ceil(a), math.floor(b)
            # The subject's own value stays reachable even outside the training support.
            x = parsed[n]
            lo.append(min(a, x))
            hi.append(max(b, x))
            sd.append(scale if scale > 0 else 1.0)
        self.lo, self.hi, self.sd = np.array(lo), np.array(hi), np.array(sd)
        self.count = np.array([feature(n).type == "count" for n in self.names])
        self.evaluated = 0

    def legal(self, x: np.ndarray) -> np.ndarray:
        x = np.clip(x, self.lo, self.hi)
        return np.where(self.count, np.round(x), x)

    def cost(self, x: np.ndarray) -> np.ndarray:
        return (np.abs(x - self.x0) / self.sd).sum(axis=-1)

    def records(self, xs: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for x in xs:
            rec = dict(self.record)
            for n, v, v0 in zip(self.names, x, self.x0):
                if v != v0:  # unchanged values keep their original form (e.g. a censored ">1700")
                    rec[n] = int(v) if feature(n).type == "count" else float(v)
            out.append(rec)
        return out

    def predict(self, xs: np.ndarray) -> np.ndarray:
        """(N, C) probabilities for candidate vectors (N, K)."""
        xs = np.atleast_2d(xs)
        self.evaluated += len(xs)
        pred = self.predictor.predict(self.scan, self.records(xs), models=[self.model])[self.model]
        return pred.value

    def hits(self, xs: np.ndarray) -> np.ndarray:
        return self.predict(xs).argmax(axis=1) == self.target


def _single_attribute_grid(s: _Search, points: int) -> np.ndarray:
    rows = []
    for j in range(len(s.names)):
        values = np.arange(s.lo[j], s.hi[j] + 1) if s.count[j] else np.linspace(s.lo[j], s.hi[j], points)
        for v in values:
            x = s.x0.copy()
            x[j] = v
            rows.append(x)
    return np.array(rows).reshape(-1, len(s.names))


def _random_candidates(s: _Search, n: int, rng: np.random.Generator) -> np.ndarray:
    k = len(s.names)
    xs = np.repeat(s.x0[None], n, axis=0)
    size = rng.integers(1, k + 1, n)
    for i in range(n):
        chosen = rng.choice(k, size[i], replace=False)
        xs[i, chosen] = rng.uniform(s.lo[chosen], s.hi[chosen])
    return s.legal(xs)


def _sparsify(s: _Search, x: np.ndarray) -> np.ndarray:
    """Undo whole attribute changes, largest first, while the class holds."""
    while True:
        changed = np.flatnonzero(x != s.x0)
        if len(changed) <= 1:
            return x
        trials = np.repeat(x[None], len(changed), axis=0)
        trials[np.arange(len(changed)), changed] = s.x0[changed]
        ok = s.hits(trials)
        if not ok.any():
            return x
        saved = np.abs(x[changed] - s.x0[changed]) / s.sd[changed]
        x = trials[np.flatnonzero(ok)[np.argmax(saved[ok])]]


def _shrink(s: _Search, x: np.ndarray, points: int = 16, rounds: int = 2) -> np.ndarray:
    """Move each changed value back toward the subject's own along a grid, keeping the class."""
    for j in np.flatnonzero(x != s.x0):
        far, near = x[j], s.x0[j]  # far hits the class; near (the subject's value) does not
        for _ in range(rounds if not s.count[j] else 1):
            if s.count[j]:
                step = 1.0 if far > near else -1.0
                grid = np.arange(near + step, far, step)
            else:
                grid = np.linspace(near, far, points + 2)[1:-1]
            if len(grid) == 0:
                break
            trials = np.repeat(x[None], len(grid), axis=0)
            trials[:, j] = grid
            ok = s.hits(trials)
            if not ok.any():
                if s.count[j]:
                    break
                near = grid[-1]
                continue
            first = np.flatnonzero(ok)[0]
            far = grid[first]
            near = grid[first - 1] if first > 0 else near
            x = x.copy()
            x[j] = far
    return x


def _round_to_steps(s: _Search, x: np.ndarray) -> np.ndarray:
    """Continuous values on the schema's step grid, rounded away from the subject's value."""
    y = x.copy()
    for j in np.flatnonzero((x != s.x0) & ~s.count):
        step = feature(s.names[j]).step
        up = x[j] > s.x0[j]
        y[j] = (math.ceil if up else math.floor)(x[j] / step) * step
    return np.clip(y, s.lo, s.hi)


def counterfactual(
    predictor: Predictor,
    model: str,
    scan: str | Path | bytes | None,
    record: Mapping[str, object],
    target: int | str,
    *,
    immutable: Sequence[str] = DEFAULT_IMMUTABLE,
    editable: Sequence[str] | None = None,
    support: str = "training",
    grid_points: int = 32,
    n_random: int = 512,
    seed: int = 0,
    cohort: Cohort | None = None,
    age_window_years: float = 5.0,
) -> Counterfactual:
    """The smallest change to ``record`` that makes ``model`` predict ``target`` for ``scan``.

    Args:
        predictor, model, scan, record: as for ``Predictor.predict`` (an AD classifier or ensemble).
        target: the class to reach, index or name ("AD").
        immutable: attributes never changed (default sex).
        editable: the attributes that may change (default every attribute not immutable); missing ones
            are left missing.
        support: "training" (mean ± 3 SD of the training rows, inside the plausible range) or "plausible".
        grid_points: values per continuous attribute in the one-attribute sweep.
        n_random: random multi-attribute candidates.
        seed: seeds the random candidates.
        cohort: if given, also find the nearest real subject of the target class (same sex, similar age).
        age_window_years: that subject's age may differ by this much (widened if nobody fits).
    """
    entry = predictor.models.get(model)
    if entry is None:
        raise DataError(f"no model {model!r} is loaded; loaded: {list(predictor.models)}")
    if entry.task != "ad":
        raise DataError("counterfactual search moves a class prediction: choose a CN / MCI / AD model")
    if isinstance(target, str):
        if target not in CLASS_NAMES:
            raise DataError(f"unknown class {target!r}; classes: {list(CLASS_NAMES)}")
        target = CLASS_NAMES.index(target)
    target = int(target)
    if support not in SUPPORTS:
        raise DataError(f"support must be one of {SUPPORTS}, not {support!r}")
    unknown = sorted(set(immutable) - set(FEATURE_NAMES)) + sorted(set(editable or ()) - set(FEATURE_NAMES))
    if unknown:
        raise DataError(f"unknown attribute(s) {unknown}; attributes: {list(FEATURE_NAMES)}")
    parsed = parse_record(record)
    candidates = [n for n in (editable or FEATURE_NAMES) if n not in immutable]
    names = [n for n in candidates if not np.isnan(parsed[n])]
    left_missing = [n for n in candidates if np.isnan(parsed[n])]
    nearest = nearest_subject(cohort, record, target, age_window_years=age_window_years) if cohort else None
    s = _Search(predictor, model, scan, record, target, names, support)
    original = s.predict(s.x0[None])[0] if names else _predict_one(predictor, model, scan, record)
    note = f" ({', '.join(left_missing)} missing, left missing)" if left_missing else ""

    def result(found, x, probabilities, message) -> Counterfactual:
        changes = {n: (float(a), float(b)) for n, a, b in zip(s.names, s.x0, x) if a != b}
        return Counterfactual(
            model=model,
            target=target,
            target_name=CLASS_NAMES[target],
            found=found,
            record=s.records(x[None])[0],
            changes=changes,
            distance=float(s.cost(x)),
            probabilities=probabilities,
            original_probabilities=original,
            editable=names,
            evaluated=s.evaluated,
            nearest=nearest,
            message=message + note,
        )

    if original.argmax() == target:
        return result(True, s.x0, original, f"already predicted {CLASS_NAMES[target]}: nothing to change")
    if not names:
        return result(False, s.x0, original, "no attribute may change")
    rng = np.random.default_rng(seed)
    pool = np.concatenate([_single_attribute_grid(s, grid_points), _random_candidates(s, n_random, rng)])
    probabilities = s.predict(pool)
    hit = probabilities.argmax(axis=1) == target
    if not hit.any():
        best = int(np.argmax(probabilities[:, target]))
        return result(
            False,
            pool[best],
            probabilities[best],
            f"no change within the {support} ranges of {', '.join(names)} reached {CLASS_NAMES[target]}; "
            "this is the closest attempt (highest probability)",
        )
    x = pool[np.flatnonzero(hit)[np.argmin(s.cost(pool[hit]))]]
    x = _shrink(s, _sparsify(s, x))
    rounded = _round_to_steps(s, x)
    if not np.array_equal(rounded, x) and s.hits(rounded[None])[0]:
        x = rounded
    final = s.predict(x[None])[0]
    found = bool(final.argmax() == target)
    message = (
        f"{len(np.flatnonzero(x != s.x0))} attribute(s) changed; predicted {CLASS_NAMES[target]}"
        if found
        else "the refined change no longer reaches the class (numerical edge); try another seed"
    )
    return result(found, x, final, message)


def _predict_one(predictor, model, scan, record) -> np.ndarray:
    return predictor.predict(scan, record, models=[model])[model].value[0]


def nearest_subject(
    cohort: Cohort,
    record: Mapping[str, object],
    diagnosis: int | str,
    *,
    age_window_years: float = 5.0,
    exclude: Sequence[str] = (),
    min_shared: int = MIN_SHARED,
) -> dict[str, Any] | None:
    """The real cohort subject of class ``diagnosis`` nearest to ``record``, of the same sex and similar age.

    Candidates have the record's sex (if known) and an age within ``age_window_years`` (doubled until someone
    fits, up to 40 years). Among them, the nearest by root-mean-square difference over the attributes both
    have, each in cohort standard deviations, among those sharing at least ``min_shared`` measured attributes
    with the record (sex aside). Returns {"PTID", "DX", "distance", "age_difference", "image_path", "record",
    "shared" (the attributes compared), "min_shared"} or None if the class has nobody of that sex who shares
    enough measured values.
    """
    name = CLASS_NAMES[diagnosis] if isinstance(diagnosis, int | np.integer) else diagnosis
    if name not in CLASS_NAMES:
        raise DataError(f"unknown class {diagnosis!r}; classes: {list(CLASS_NAMES)}")
    parsed = parse_record(record)
    table = cohort.table
    pool = table[(table["DX"] == name) & ~table["PTID"].isin(list(exclude))]
    if not np.isnan(parsed["PTGENDER"]):
        pool = pool[pool["PTGENDER"] == parsed["PTGENDER"]]
    numeric = [n for n in FEATURE_NAMES if n != "PTGENDER"]
    mine = np.array([parsed[n] for n in numeric])
    pool = pool[(pool[numeric].notna().to_numpy() & np.isfinite(mine)).sum(axis=1) >= max(min_shared, 1)]
    if pool.empty:
        return None
    age = parsed["AGE"]
    if not np.isnan(age):
        window = age_window_years
        while window <= 40 and (pool["AGE"] - age).abs().le(window).sum() == 0:
            window *= 2
        near_age = pool[(pool["AGE"] - age).abs() <= window]
        pool = near_age if not near_age.empty else pool
    values = pool[numeric].to_numpy(dtype=float)
    sd = table[numeric].astype(float).std().to_numpy()
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    z = (values - mine) / sd
    both = np.isfinite(z)
    distance = np.sqrt(np.where(both, z**2, 0).sum(axis=1) / np.maximum(both.sum(axis=1), 1))
    i = int(np.argmin(distance))
    row = pool.iloc[i]
    path = row.get("image_path")
    return {
        "PTID": row["PTID"],
        "DX": name,
        "distance": float(distance[i]),
        "age_difference": None if np.isnan(age) else float(row["AGE"] - age),
        "image_path": path if isinstance(path, str) else None,
        "record": cohort_record(row),
        "shared": [n for n, ok in zip(numeric, both[i]) if ok],
        "min_shared": min_shared,
    }
