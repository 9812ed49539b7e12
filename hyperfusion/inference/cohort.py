"""Predictions for a whole cohort: batched, scans loaded by worker threads, resumable, one CSV row per
(subject, model).

:func:`predict_cohort` is what ``hyperfusion predict --cohort DIR`` and the dashboard's Cohort page run. For
each batch of subjects it has :meth:`~hyperfusion.inference.predictor.Predictor.prefetch` load the scans
(``workers`` threads, through the volume cache) and encode them in one pass per model, then asks
``Predictor.predict`` for each subject, which finds the image features cached and only decodes the record:
so every number is the one ``hyperfusion predict`` gives for that subject alone. With ``out`` the rows of
each batch are appended to a CSV as soon as they are known, and a rerun skips the (subject, model) pairs the
file already holds: an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hyperfusion.data.cohort import Cohort
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.errors import DataError, HyperFusionError
from hyperfusion.inference.predictor import Predictor
from hyperfusion.inference.rows import COLUMNS, NO_SCAN
from hyperfusion.training.ood import summary

__all__ = ["COLUMNS", "NO_SCAN", "predict_cohort"]


def _default_scan(cohort: Cohort) -> Callable[[str], str | None]:
    paths = dict(zip(cohort.table["PTID"], cohort.table.get("image_path", [None] * len(cohort))))

    def scan(ptid: str) -> str | None:
        path = paths.get(ptid)
        return path if isinstance(path, str) else None

    return scan


def _done_pairs(out: Path) -> set[tuple[str, str]]:
    """(PTID, model) pairs already in ``out`` without an error (those with one are tried again)."""
    if not out.is_file() or out.stat().st_size == 0:
        return set()
    try:
        done = pd.read_csv(out, dtype={"PTID": str, "model": str, "error": str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{out}: not a predictions CSV this command wrote ({exc}); give another --out"
        ) from None
    missing = {"PTID", "model", "error"} - set(done.columns)
    if missing:
        raise DataError(
            f"{out}: lacks the column(s) {sorted(missing)} of a predictions CSV; give another --out or remove it"
        )
    ok = done[done["error"] == ""]
    return set(zip(ok["PTID"], ok["model"]))


def _row(ptid: str, name: str, pred) -> dict:
    row: dict = {"PTID": ptid, "model": name, "task": pred.task, "error": ""}
    ood = pred.extras["ood"][0]
    row["in_distribution"] = ood.get("inside")
    row["ood_summary"] = summary(ood)
    if pred.task == "ad":
        probs = pred.value[0]
        row["prediction"] = CLASS_NAMES[int(np.argmax(probs))]
        row.update({f"p_{c}": float(p) for c, p in zip(CLASS_NAMES, probs)})
        row["spread"] = float(pred.spread[0].max())
    else:
        row["prediction"] = float(pred.value[0])
        row["predicted_age"] = float(pred.value[0])
        row["brain_age_gap"] = float(pred.extras["brain_age_gap"][0])
        row["spread"] = float(pred.spread[0])
    return row


def predict_cohort(
    predictor: Predictor,
    cohort: Cohort,
    *,
    models: Sequence[str] | None = None,
    ptids: Sequence[str] | None = None,
    scan_for: Callable[[str], str | Path | None] | None = None,
    out: str | Path | None = None,
    batch_size: int = 8,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Every (subject, model) prediction of a cohort, as a table with :data:`COLUMNS`.

    Args:
        predictor: holds the models (and the volume cache scans are read through).
        cohort: the subjects (their records are the cohort table's rows).
        models: names in ``predictor.models`` (default all).
        ptids: the subjects to score, in this order (default every subject of the cohort).
        scan_for: PTID -> scan path or None (default the table's ``image_path``; the dashboard passes its
            own, which generates a shipped synthetic table's scans on demand).
        out: a CSV to append each batch's rows to; (subject, model) pairs already in it are skipped, so a
            rerun resumes. The returned table holds the new rows only.
        batch_size: subjects encoded in one pass per model.
        workers: threads loading scans (and filling the volume cache): the next batch loads while one encodes.
        progress: called as ``progress(subjects_done, subjects_total)`` after each batch.

    A subject whose scan cannot be read gets a row with the error for each model that reads scans (a
    subject without a scan: :data:`NO_SCAN`); the others are still scored.
    """
    from hyperfusion.data.cohort import cohort_record

    if batch_size < 1 or workers < 1:
        raise DataError(f"batch_size and workers must be at least 1 (got {batch_size}, {workers})")
    names = list(models or predictor.models)
    unknown = [n for n in names if n not in predictor.models]
    if unknown:
        raise DataError(f"no model(s) {unknown} loaded; loaded: {list(predictor.models)}")
    table = cohort.table.drop_duplicates("PTID").set_index("PTID", drop=False)
    wanted = list(table.index) if ptids is None else list(ptids)
    absent = [p for p in wanted if p not in table.index]
    if absent:
        raise DataError(f"{cohort.path}: no subject(s) {absent[:5]}; PTIDs look like {list(table.index[:3])}")
    scan_for = scan_for or _default_scan(cohort)
    out_path = Path(out) if out is not None else None
    done = _done_pairs(out_path) if out_path is not None else set()
    todo = [p for p in wanted if any((p, n) not in done for n in names)]
    reads_scan = {n: predictor.models[n].members[0].reads_scan for n in names}
    # a batch's features must all stay cached until its subjects are predicted: grow the cache if needed
    members = sum(len(predictor.models[n].members) for n in names if reads_scan[n])
    predictor._max_features = max(predictor._max_features, batch_size * members)
    rows: list[dict] = []
    finished = len(wanted) - len(todo)
    if progress is not None:
        progress(finished, len(wanted))
    image_models = [n for n in names if reads_scan[n]]
    scans: dict[str, str | None] = {}

    def batches():  # read one batch ahead by encode_stream: scan_for runs here, in the calling thread
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            for p in batch:  # (models that read only the record need no scan)
                found = scan_for(p) if image_models else None
                scans[p] = str(found) if found is not None else None
            yield [(p, scans[p] if image_models else None) for p in batch]

    for status in predictor.encode_stream(batches(), models=image_models, workers=workers):
        batch, errors = list(status), status
        new: list[dict] = []
        for ptid in batch:
            runnable = []
            for name in (n for n in names if (ptid, n) not in done):
                if reads_scan[name] and scans[ptid] is None:
                    new.append({"PTID": ptid, "model": name, "error": NO_SCAN})
                elif reads_scan[name] and errors.get(ptid):
                    new.append({"PTID": ptid, "model": name, "error": errors[ptid]})
                else:
                    runnable.append(name)
            if not runnable:
                continue
            scan = scans[ptid] if any(reads_scan[n] for n in runnable) else None
            try:  # one call for the subject's models: the image features are cached, only decode runs
                preds = predictor.predict(scan, cohort_record(table.loc[ptid]), models=runnable)
            except HyperFusionError as exc:
                new.extend({"PTID": ptid, "model": name, "error": str(exc)} for name in runnable)
                continue
            new.extend(_row(ptid, name, preds[name]) for name in runnable)
        frame = pd.DataFrame(new).reindex(columns=list(COLUMNS))
        if out_path is not None and len(frame):
            out_path.parent.mkdir(parents=True, exist_ok=True)
            header = not out_path.is_file() or out_path.stat().st_size == 0
            frame.to_csv(out_path, mode="a", header=header, index=False)
        rows.extend(new)
        finished += len(batch)
        if progress is not None:
            progress(finished, len(wanted))
    return pd.DataFrame(rows).reindex(columns=list(COLUMNS))
