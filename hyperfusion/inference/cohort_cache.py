"""Every model's predictions for every subject of a cohort, produced progressively and kept on disk.

:func:`score_cohort` is what the dashboard's Cohort page runs in the background. It walks the cohort in
batches that grow (1, 2, 4, … ``max_batch`` subjects: the first rows arrive after one subject) and yields
each batch's rows as soon as they are known: the models that read only the record first (milliseconds), then
the image models, through :func:`~hyperfusion.inference.cohort.predict_cohort` (one encoder pass per batch,
then ``Predictor.predict`` per subject, so each number is the one the Subject page shows for that subject,
:func:`~hyperfusion.inference.tables.subject_value`).

Every row is stored in a :class:`ResultStore` (SQLite under the cache root) keyed by the model's files
(:func:`entry_key`: every member's weights sha256 and card), the scan's content (sha256 of its file) and the
record (sha256 of its raw values). A restart finds the rows again without running a network; a retrained
model, a changed scan or an edited cohort row gets new ones. :class:`BackgroundJob` runs such a generator in a
daemon thread and lets a page read what is done so far.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hyperfusion.data.cohort import Cohort, cohort_record, cohort_row, cohort_scan
from hyperfusion.data.nifti import image_sha256
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.errors import DataError, HyperFusionError
from hyperfusion.files import cache_root
from hyperfusion.inference.rows import COLUMNS, NO_SCAN

if TYPE_CHECKING:  # (torch loads with the networks, in the job's thread, not with the page)
    from hyperfusion.inference.predictor import ModelEntry, Predictor

__all__ = [
    "BackgroundJob",
    "ResultStore",
    "cohort_scans",
    "cohort_table",
    "cached_rows",
    "entry_key",
    "files_key",
    "record_key",
    "score_cohort",
    "subject_keys",
]

#: What :func:`score_cohort` stores per (model, scan, record).
PREDICTION = "prediction-v1"


def _cards_key(cards: Iterable[bytes]) -> str:
    return hashlib.sha256(b"\0".join(sorted(cards))).hexdigest()


def entry_key(entry: ModelEntry) -> str:
    """A model (or ensemble) as the numbers depend on it: every member's card.json, which holds its weights'
    sha256 (loading checks the weights against it) and everything else that makes the model."""
    return _cards_key((m.path / "card.json").read_bytes() for m in entry.members)


def files_key(model_dir: str | Path) -> str:
    """:func:`entry_key` of a model or ensemble directory, from its files alone (no network is loaded)."""
    cards = sorted(Path(model_dir).rglob("card.json"))
    if not cards:
        raise DataError(f"{model_dir}: no card.json, so not a model or ensemble directory")
    return _cards_key(c.read_bytes() for c in cards)


def cached_rows(
    cohort: Cohort,
    model_dirs: Mapping[str, str | Path],
    scan_for: Callable[[str], str | None] | None = None,
    store: ResultStore | None = None,
) -> pd.DataFrame:
    """The rows :func:`score_cohort` stored before, for every subject and model, found without loading a
    network or torch (a restarted dashboard shows them at once): record-only models by the record's key,
    image models by the scan's too (``scan_for``: PTID -> an existing scan or None; default the table's)."""
    store = store or ResultStore()
    held = {name: key for name, path in model_dirs.items() if store.holds(PREDICTION, key := files_key(path))}
    if not held:  # nothing stored for these models (a first visit): no subject's keys to compute
        return pd.DataFrame(columns=[*COLUMNS, "cached"])
    ptids = list(cohort.table["PTID"].drop_duplicates())
    subjects = subject_keys(cohort, ptids, scan_for or cohort_scans(cohort))
    hits = []
    for name, model_key in held.items():
        pairs = {
            p: [("", s["key"])] + ([(s["scan_key"], s["key"])] if s["scan_key"] else [])
            for p, s in subjects.items()
        }
        found = store.get(PREDICTION, model_key, [k for ks in pairs.values() for k in ks])
        for ptid, keys in pairs.items():
            hit = next((found[k] for k in keys if k in found), None)
            if hit is not None:
                hits.append({**hit, "PTID": ptid, "model": name, "cached": True})
    return pd.DataFrame(hits).reindex(columns=[*COLUMNS, "cached"])


def record_key(record: Mapping[str, object]) -> str:
    """sha256 of a raw record's values (the key order does not matter)."""
    return hashlib.sha256(json.dumps(dict(record), sort_keys=True, default=str).encode()).hexdigest()


class ResultStore:
    """Results on disk, one JSON value per (kind, model key, scan key, record key); SQLite, so several
    threads and processes may read and write it at once.

    Args:
        path: the database file (default ``cache_root("cohort", "results.sqlite")``).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_root("cohort", "results.sqlite")

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        con.execute(
            "CREATE TABLE IF NOT EXISTS results (kind TEXT, model TEXT, scan TEXT, record TEXT, value TEXT, "
            "PRIMARY KEY (kind, model, scan, record))"
        )
        return con

    def holds(self, kind: str, model: str) -> bool:
        """Whether anything of ``kind`` is stored for ``model`` (one indexed lookup)."""
        if not self.path.exists():
            return False
        with contextlib.closing(self._connect()) as con:
            query = "SELECT 1 FROM results WHERE kind=? AND model=? LIMIT 1"
            return con.execute(query, (kind, model)).fetchone() is not None

    def get(self, kind: str, model: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], object]:
        """The stored values of ``keys`` ((scan key, record key) pairs) that exist."""
        wanted = set(keys)
        out: dict[tuple[str, str], object] = {}
        with contextlib.closing(self._connect()) as con:  # one query per model: thousands of subjects at once
            for scan, record, value in con.execute(
                "SELECT scan, record, value FROM results WHERE kind=? AND model=?", (kind, model)
            ):
                if (scan, record) in wanted:
                    out[(scan, record)] = json.loads(value)
        return out

    def put(self, kind: str, model: str, items: Iterable[tuple[str, str, object]]) -> None:
        """Store (scan key, record key, JSON-able value) items, replacing older ones."""
        rows = [(kind, model, s, r, json.dumps(v, default=_plain)) for s, r, v in items]
        with contextlib.closing(self._connect()) as con, con:
            con.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)", rows)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)


def cohort_scans(cohort: Cohort, generate: bool = False) -> Callable[[str], str | None]:
    """PTID -> scan path or None: the table's scan, or for a shipped synthetic table with ``generate``, the
    scan generated into the cache on first use."""
    return lambda ptid: cohort_scan(cohort, ptid, generate=generate)


def subject_keys(
    cohort: Cohort, ptids: Sequence[str], scan_for: Callable[[str], str | None] | None
) -> dict[str, dict]:
    """Per PTID: its scan (None without one, or without ``scan_for``), the scan's key ("" without one), its
    raw record and the record's key, and the error finding or reading the scan raised (else None)."""
    out = {}
    for ptid in ptids:
        scan, error = None, None
        if scan_for is not None:
            try:
                found = scan_for(ptid)
                scan = str(found) if found is not None else None
                scan_key = image_sha256(scan) if scan is not None else ""
            except (HyperFusionError, OSError) as exc:
                scan, scan_key, error = None, "", str(exc)
        else:
            scan_key = ""
        record = cohort_record(cohort_row(cohort, ptid))
        out[ptid] = {"scan": scan, "scan_key": scan_key, "record": record, "key": record_key(record)}
        out[ptid]["error"] = error
    return out


def _batches(items: list[str], first: int, largest: int) -> Iterator[list[str]]:
    start, size = 0, max(1, first)
    while start < len(items):
        yield items[start : start + size]
        start, size = start + size, min(largest, size * 2)


def score_cohort(
    predictor: Predictor,
    cohort: Cohort,
    *,
    models: Sequence[str] | None = None,
    ptids: Sequence[str] | None = None,
    scan_for: Callable[[str], str | Path | None] | None = None,
    store: ResultStore | None = None,
    first_batch: int = 1,
    max_batch: int = 8,
    skip: set[tuple[str, str]] = frozenset(),
) -> Iterator[pd.DataFrame]:
    """Every (subject, model) prediction of the cohort, yielded a few rows at a time.

    Yields tables with :data:`~hyperfusion.inference.rows.COLUMNS` and ``cached`` (True: read from
    ``store``). Rows without an error are written to ``store`` (default :class:`ResultStore`); rows with one
    (a missing or unreadable scan) are not, so they are tried again next time.

    Args:
        predictor, cohort, models, ptids, scan_for: as for :func:`~hyperfusion.inference.cohort.predict_cohort`
            (``scan_for`` default: the table's scans).
        first_batch, max_batch: the batches' sizes: ``first_batch`` subjects, then doubling up to ``max_batch``.
        skip: (PTID, model) pairs not to yield (e.g. those :func:`cached_rows` gave already).
    """

    names = list(models or predictor.models)
    unknown = [n for n in names if n not in predictor.models]
    if unknown:
        raise DataError(f"no model(s) {unknown} loaded; loaded: {list(predictor.models)}")
    known = set(cohort.table["PTID"])
    wanted = list(cohort.table["PTID"].drop_duplicates()) if ptids is None else list(ptids)
    absent = [p for p in wanted if p not in known]
    if absent:
        raise DataError(f"{cohort.path}: no subject(s) {absent[:5]}")
    store = store or ResultStore()
    reads_scan = {n: predictor.models[n].members[0].reads_scan for n in names}
    groups = [g for g in ([n for n in names if not reads_scan[n]], [n for n in names if reads_scan[n]]) if g]
    keys = {n: entry_key(predictor.models[n]) for n in names}
    scan_for = scan_for or cohort_scans(cohort)
    for batch in _batches(wanted, first_batch, max_batch):
        for group in groups:
            image = reads_scan[group[0]]  # the record-only models first: they need no scan
            subjects = subject_keys(cohort, batch, scan_for if image else None)
            yield from _score_group(predictor, cohort, group, image, subjects, keys, store, skip)


def _score_group(predictor, cohort, group, image, subjects, keys, store, skip) -> Iterator[pd.DataFrame]:
    """The rows of one batch for models that all read a scan (``image``) or all do not: the stored ones,
    then the others, computed and stored."""
    from hyperfusion.inference.cohort import predict_cohort

    pairs = {p: (s["scan_key"] if image else "", s["key"]) for p, s in subjects.items()}
    lookup = [k for k in pairs.values() if k[0] or not image]
    hits, todo = [], []
    for name in group:
        found = store.get(PREDICTION, keys[name], lookup)
        for ptid, pair in pairs.items():
            if pair in found and (ptid, name) in skip:
                continue
            if pair in found:
                hits.append({**found[pair], "PTID": ptid, "model": name, "cached": True})
            elif ptid not in todo:
                todo.append(ptid)
    if hits:
        yield pd.DataFrame(hits).reindex(columns=[*COLUMNS, "cached"])
    if not todo:
        return
    rows = predict_cohort(
        predictor,
        cohort,
        models=group,
        ptids=todo,
        scan_for=lambda p: subjects[p]["scan"],
        batch_size=len(todo),
    )
    have = {(h["PTID"], h["model"]) for h in hits}
    rows = rows[[(p, m) not in have for p, m in zip(rows["PTID"], rows["model"])]].copy()
    for i, row in rows.iterrows():  # a scan that could not be found or read says why, not only "no scan"
        if row["error"] == NO_SCAN and subjects[row["PTID"]]["error"]:
            rows.loc[i, "error"] = subjects[row["PTID"]]["error"]
    ok = rows[rows["error"].fillna("") == ""]
    for name, part in ok.groupby("model"):
        store.put(PREDICTION, keys[name], [(*pairs[r["PTID"]], _stored(r)) for _, r in part.iterrows()])
    rows["cached"] = False
    yield rows.reindex(columns=[*COLUMNS, "cached"])


def _stored(row: pd.Series) -> dict:
    return {c: (None if isinstance(v, float) and np.isnan(v) else v) for c, v in row.items() if c in COLUMNS}


def cohort_table(
    rows: pd.DataFrame, truth: Mapping[str, object] | pd.Series, class_name: str = "AD"
) -> pd.DataFrame:
    """One row per scored subject: each model's P(``class_name``) (or predicted age), and how the models
    disagree and err.

    Columns (AD): ``P(class) · model`` per model; ``models disagree`` (their predicted classes differ);
    ``spread P(class)`` (largest minus smallest across models); ``majority`` (the most predicted class);
    ``models wrong`` (how many predict another class than the diagnosis) and ``mean 1 − P(truth)`` (the
    probability the models put elsewhere than on the diagnosis), both empty where the diagnosis is unknown.
    Brain age: ``age · model``, ``spread (years)`` and ``mean |error| (years)`` against ``truth`` (the age).
    Rows with an error are left out (the caller lists them). Indexed by PTID, in the order of ``rows``.
    """
    truth = pd.Series(truth, dtype=object) if not isinstance(truth, pd.Series) else truth
    ok = rows[rows["error"].fillna("") == ""]
    if ok.empty:
        return pd.DataFrame()
    order = list(dict.fromkeys(ok["PTID"]))
    models = list(dict.fromkeys(ok["model"]))
    brain_age = (ok["task"] == "brain_age").all()
    value = "predicted_age" if brain_age else f"p_{class_name}"
    label = "age" if brain_age else f"P({class_name})"
    wide = ok.pivot_table(index="PTID", columns="model", values=value, aggfunc="first").reindex(order)
    out = pd.DataFrame(index=pd.Index(order, name="PTID"))
    for m in models:
        out[f"{label} · {m}"] = wide[m].astype(float) if m in wide else np.nan
    values = out.to_numpy(dtype=float)
    spread = np.nanmax(values, axis=1) - np.nanmin(values, axis=1)
    known = truth.reindex(order)
    if brain_age:
        out["spread (years)"] = spread
        age = pd.to_numeric(known, errors="coerce").to_numpy(dtype=float)
        out["mean |error| (years)"] = np.nanmean(np.abs(values - age[:, None]), axis=1)
        return out
    predicted = ok.pivot_table(index="PTID", columns="model", values="prediction", aggfunc="first").reindex(
        order
    )
    out["models disagree"] = predicted.nunique(axis=1, dropna=True).to_numpy() > 1
    out[f"spread {label}"] = spread
    out["majority"] = predicted.mode(axis=1)[0].to_numpy() if len(predicted) else []
    is_class = known.isin(CLASS_NAMES).to_numpy()
    wrong = predicted.ne(known, axis=0).sum(axis=1).astype(float).to_numpy()
    out["models wrong"] = np.where(is_class, wrong, np.nan)
    off = []
    for ptid, dx in zip(order, known):
        if dx not in CLASS_NAMES:
            off.append(np.nan)
            continue
        p = ok.loc[ok["PTID"] == ptid, f"p_{dx}"].astype(float)
        off.append(float((1 - p).mean()))
    out["mean 1 − P(truth)"] = off
    return out


class BackgroundJob:
    """Runs a generator of tables in a daemon thread (lowered in priority where the system allows), keeping
    every table it yields; a page reads :meth:`snapshot` while it runs.

    Args:
        frames: a function returning the generator (called in the thread).
        total: how many units the job has (e.g. subject × model pairs), for the progress bar.
        count: table -> units it completes (default its rows).
    """

    def __init__(
        self,
        frames: Callable[[], Iterable[pd.DataFrame]],
        total: int,
        count: Callable[[pd.DataFrame], int] = len,
    ) -> None:
        self.total = total
        self._frames, self._count = frames, count
        self._parts: list[pd.DataFrame] = []
        self._done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.error: str | None = None
        self.started: float | None = None  # time.monotonic() at start
        self.thread = threading.Thread(target=self._run, daemon=True, name="hyperfusion-cohort")

    def start(self) -> BackgroundJob:
        self.started = time.monotonic()
        self.thread.start()
        _LIVE.add(self)
        return self

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: a thread has its own nice value
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            for frame in self._frames():
                with self._lock:
                    self._parts.append(frame)
                    self._done += self._count(frame)
                if self._stop.is_set():
                    return
        except (HyperFusionError, OSError, ValueError) as exc:
            self.error = str(exc)

    def stop(self) -> None:
        """Ask the job to stop after the current table."""
        self._stop.set()

    @property
    def done(self) -> int:
        """Units done so far (without joining the tables, as :meth:`snapshot` does)."""
        return self._done

    @property
    def finished(self) -> bool:
        return self.thread.ident is not None and not self.thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the job to end; True if it did."""
        self.thread.join(timeout)
        return self.finished

    def wait_for_rows(self, timeout: float, from_start: bool = False) -> bool:
        """Wait up to ``timeout`` seconds for the first units (or the end); True when some are done. A page
        that waits a moment shows rows already stored at once instead of on its next refresh. With
        ``from_start`` the seconds count from the job's start: a page that waits on each of its refreshes is
        held only while the job is new, not every second on a machine too slow to give rows in time."""
        start = self.started if from_start and self.started is not None else time.monotonic()
        deadline = start + timeout
        while self._done == 0 and not self.finished and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._done > 0

    def snapshot(self) -> tuple[pd.DataFrame, int]:
        """(every row so far as one table, units done)."""
        with self._lock:
            parts, done = list(self._parts), self._done
        return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()), done


_LIVE: weakref.WeakSet[BackgroundJob] = weakref.WeakSet()  # jobs started in this process


@atexit.register
def _stop_jobs(timeout: float = 20.0) -> None:
    """At exit, ask running jobs to stop and give them ``timeout`` seconds in all to finish their current table:
    a daemon thread still inside torch while the interpreter shuts down can abort the process."""
    import time

    jobs = [job for job in list(_LIVE) if not job.finished]
    for job in jobs:
        job.stop()
    deadline = time.monotonic() + timeout
    for job in jobs:
        job.wait(max(0.0, deadline - time.monotonic()))
