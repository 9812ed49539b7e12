"""Explanations over a cohort: the record attributions behind global importance, and partial dependence.

- :func:`record_attributions` yields, subject by subject, :func:`~hyperfusion.explain.tabular.explain_record`'s
  per-attribute attributions of every model (the numbers the Subject page shows for that subject), stored in
  the cohort :class:`~hyperfusion.inference.cohort_cache.ResultStore` so a restart reuses them;
  :func:`hyperfusion.cohort_views.global_importance` turns them into the mean |attribution| per attribute and
  model.
- :func:`cohort_partial_dependence` is :func:`~hyperfusion.explain.whatif.partial_dependence` over a sample
  of the cohort's subjects (each subject's scan encoded once, every grid point a decode).

Large cohorts are sampled (:func:`hyperfusion.cohort_views.sample_subjects`: the same subjects every time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import pandas as pd

from hyperfusion.data.cohort import Cohort
from hyperfusion.errors import DataError, HyperFusionError
from hyperfusion.inference.cohort_cache import ResultStore, cohort_scans, entry_key, subject_keys

if TYPE_CHECKING:  # torch loads with the attributions, not with feature_by_diagnosis
    from hyperfusion.explain.whatif import IceCurves
    from hyperfusion.inference.predictor import Predictor

__all__ = ["cohort_partial_dependence", "record_attributions"]


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
    from hyperfusion.explain import tabular

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
                attributes = dict.fromkeys(tabular.feature_groups(tabular.input_names(member)), 0.0)
            else:
                pair = (s["scan_key"] if member.reads_scan else "", s["key"])
                attributes = store.get(kind, keys[name], [pair]).get(pair)
                if attributes is None:
                    target = class_name if entry.task == "ad" else None
                    try:
                        scan = s["scan"] if member.reads_scan else None
                        result = tabular.explain_record(
                            predictor, name, scan, s["record"], method, target=target
                        )
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
    from hyperfusion.explain.whatif import partial_dependence

    names = list(models or predictor.models)
    image = any(predictor.models[n].members[0].reads_scan for n in names)
    subjects = subject_keys(cohort, ptids, (scan_for or cohort_scans(cohort)) if image else None)
    used = [p for p, s in subjects.items() if s["scan"] is not None or not image]
    if not used:
        raise DataError("no subject of the sample has a readable scan; partial dependence needs one")
    pairs = [(subjects[p]["scan"], subjects[p]["record"]) for p in used]
    return partial_dependence(predictor, pairs, attribute, n_points=n_points, models=names), used
