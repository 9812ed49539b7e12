"""Explanations over a cohort: global importance of the record's attributes, partial dependence, and the
attributes' distributions by diagnosis.

- :func:`record_attributions` yields, subject by subject, :func:`~hyperfusion.explain.tabular.explain_record`'s
  per-attribute attributions of every model (the numbers the Subject page shows for that subject), stored in
  the cohort :class:`~hyperfusion.inference.cohort_cache.ResultStore` so a restart reuses them;
  :func:`global_importance` turns them into the mean |attribution| per attribute and model.
- :func:`cohort_partial_dependence` is :func:`~hyperfusion.explain.whatif.partial_dependence` over a sample
  of the cohort's subjects (each subject's scan encoded once, every grid point a decode).
- :func:`feature_by_diagnosis` gives an attribute's values per diagnosis, for a box or violin plot.

Large cohorts are sampled (:func:`sample_subjects`: a seeded sample, so the same subjects every time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from hyperfusion.data.cohort import Cohort
from hyperfusion.data.schema import FEATURE_NAMES
from hyperfusion.errors import DataError, HyperFusionError
from hyperfusion.explain.tabular import explain_record, feature_groups, input_names
from hyperfusion.explain.whatif import IceCurves, partial_dependence
from hyperfusion.inference.cohort_cache import ResultStore, cohort_scans, entry_key, subject_keys
from hyperfusion.inference.predictor import Predictor

__all__ = [
    "cohort_partial_dependence",
    "feature_by_diagnosis",
    "global_importance",
    "partial_dependence_frame",
    "record_attributions",
    "sample_subjects",
]


def sample_subjects(cohort: Cohort, n: int, seed: int = 0, ptids: Sequence[str] | None = None) -> list[str]:
    """``n`` subjects drawn without replacement with ``seed`` (all of them when there are at most ``n``), in
    the table's order; from ``ptids`` when given."""
    pool = list(dict.fromkeys(cohort.table["PTID"] if ptids is None else ptids))
    if n < 1:
        raise DataError(f"the sample needs at least one subject (got {n})")
    if len(pool) <= n:
        return pool
    picked = set(np.random.default_rng(seed).choice(len(pool), n, replace=False).tolist())
    return [p for i, p in enumerate(pool) if i in picked]


def record_attributions(
    predictor: Predictor,
    cohort: Cohort,
    ptids: Sequence[str],
    *,
    models: Sequence[str] | None = None,
    scan_for: Callable[[str], str | None] | None = None,
    class_name: str = "AD",
    method: str = "integrated_gradients",
    store: ResultStore | None = None,
) -> Iterator[pd.DataFrame]:
    """Per subject, a table (PTID, model, attribute, attribution, error) of every model's record
    attributions for P(``class_name``) (the predicted age for brain-age models), against the training-mean
    record, with ``method``'s default settings. A model that does not read the record gets 0 for every
    attribute without running; a subject whose scan is missing or unreadable gets one row per image model
    with the error."""
    names = list(models or predictor.models)
    store = store or ResultStore()
    scan_for = scan_for or cohort_scans(cohort)
    kind = f"record-attribution-v1:{method}:{class_name}"
    keys = {n: entry_key(predictor.models[n]) for n in names}
    for ptid in ptids:
        s = subject_keys(cohort, [ptid], scan_for)[ptid]
        rows = []
        for name in names:
            entry = predictor.models[name]
            member = entry.members[0]
            if member.reads_scan and s["scan"] is None:
                rows.append({"PTID": ptid, "model": name, "error": s["error"] or "no scan for this subject"})
                continue
            if not member.reads_record:
                attributes = dict.fromkeys(feature_groups(input_names(member)), 0.0)
            else:
                pair = (s["scan_key"] if member.reads_scan else "", s["key"])
                attributes = store.get(kind, keys[name], [pair]).get(pair)
                if attributes is None:
                    target = class_name if entry.task == "ad" else None
                    try:
                        scan = s["scan"] if member.reads_scan else None
                        result = explain_record(predictor, name, scan, s["record"], method, target=target)
                    except HyperFusionError as exc:
                        rows.append({"PTID": ptid, "model": name, "error": str(exc)})
                        continue
                    attributes = result.attributes
                    store.put(kind, keys[name], [(*pair, attributes)])
            rows.extend(
                {"PTID": ptid, "model": name, "attribute": a, "attribution": float(v), "error": ""}
                for a, v in attributes.items()
            )
        yield pd.DataFrame(rows).reindex(columns=["PTID", "model", "attribute", "attribution", "error"])


def global_importance(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean |attribution| per (model, attribute) over the subjects of ``rows``
    (:func:`record_attributions`'s tables, concatenated): columns model, attribute, mean |attribution|,
    subjects; the attributes of each model from most to least important."""
    ok = rows[rows["error"].fillna("") == ""].dropna(subset=["attribute"])
    if ok.empty:
        return pd.DataFrame(columns=["model", "attribute", "mean |attribution|", "subjects"])
    ok = ok.assign(magnitude=ok["attribution"].astype(float).abs())
    out = (
        ok.groupby(["model", "attribute"], sort=False)
        .agg(**{"mean |attribution|": ("magnitude", "mean"), "subjects": ("PTID", "nunique")})
        .reset_index()
    )
    return out.sort_values(
        ["model", "mean |attribution|"], ascending=[True, False], kind="stable"
    ).reset_index(drop=True)


def cohort_partial_dependence(
    predictor: Predictor,
    cohort: Cohort,
    attribute: str,
    ptids: Sequence[str],
    *,
    models: Sequence[str] | None = None,
    scan_for: Callable[[str], str | None] | None = None,
    n_points: int = 24,
) -> tuple[IceCurves, list[str]]:
    """Partial dependence of every model on ``attribute`` over the subjects ``ptids`` (those with a scan
    when an image model is included), and the subjects it used. Raises DataError if none can be used."""
    names = list(models or predictor.models)
    image = any(predictor.models[n].members[0].reads_scan for n in names)
    subjects = subject_keys(cohort, ptids, (scan_for or cohort_scans(cohort)) if image else None)
    used = [p for p, s in subjects.items() if s["scan"] is not None or not image]
    if not used:
        raise DataError("no subject of the sample has a readable scan; partial dependence needs one")
    pairs = [(subjects[p]["scan"], subjects[p]["record"]) for p in used]
    return partial_dependence(predictor, pairs, attribute, n_points=n_points, models=names), used


def partial_dependence_frame(curves: IceCurves, class_name: str = "AD") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the mean curve per model: model, value, mean, sd; every subject's ICE curve: model, subject, value,
    prediction), for P(``class_name``) or the predicted age (brain age)."""
    means, ice = [], []
    for model, mean in curves.predictions.items():
        column = None if curves.tasks[model] != "ad" else curves.class_names[model].index(class_name)
        pick = (lambda a: a) if column is None else (lambda a, c=column: a[..., c])  # noqa: E731
        means.append(
            pd.DataFrame(
                {"model": model, "value": curves.values, "mean": pick(mean), "sd": pick(curves.spread[model])}
            )
        )
        for i, curve in enumerate(pick(curves.curves[model])):
            ice.append(
                pd.DataFrame({"model": model, "subject": i, "value": curves.values, "prediction": curve})
            )
    return pd.concat(means, ignore_index=True), pd.concat(ice, ignore_index=True)


def feature_by_diagnosis(table: pd.DataFrame, attribute: str, label: str = "DX") -> tuple[pd.DataFrame, dict]:
    """(the attribute's recorded values with each subject's diagnosis: columns ``label``, ``attribute``,
    subjects without either left out; per diagnosis, how many subjects lack the value). Sex is shown by its
    category names."""
    if attribute not in FEATURE_NAMES or attribute not in table:
        raise DataError(f"unknown attribute {attribute!r}; attributes: {list(FEATURE_NAMES)}")
    if label not in table:
        raise DataError(f"the cohort table has no diagnosis column {label!r}")
    known = table[table[label].notna()]
    missing = known[known[attribute].isna()].groupby(label).size().to_dict()
    values = known.loc[known[attribute].notna(), [label, attribute]].reset_index(drop=True)
    if attribute == "PTGENDER":
        values[attribute] = values[attribute].map({0.0: "Female", 1.0: "Male"})
    return values, {str(k): int(v) for k, v in missing.items()}
