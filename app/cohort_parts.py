"""The Cohort page's parts: its background jobs (one per cohort and set of models for the whole server
process, so a second session or a rerun finds the job running or done) and the sections that show them.
Every number is a hyperfusion call: scoring and its disk cache in ``hyperfusion.inference.cohort_cache``,
importance, partial dependence and distributions in ``hyperfusion.explain.cohort``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import streamlit as st
from messages import plain

from hyperfusion.data.cohort import Cohort

REFRESH_S = 1.0  # how often a running job's rows are shown anew
_RUNNING: dict[str, list] = {"predictions": [], "importance": []}  # kind -> jobs started (older ones stopped)
_LOCK = threading.Lock()


def cohort_key(c: Cohort) -> tuple[str, float]:
    """The cohort as a job key: its path and its table's modification time (an edited table, a new job)."""
    path = Path(c.path)
    table = path / "cohort.csv" if path.is_dir() else path
    return path.as_posix(), table.stat().st_mtime if table.exists() else 0.0


def _started(kind: str, job):
    with _LOCK:  # one job of each kind runs at a time: a new cohort or model set stops the previous one
        for old in _RUNNING[kind]:
            old.stop()
        _RUNNING[kind] = [job]
    return job.start()


@st.cache_resource(show_spinner=False, max_entries=4)
def prediction_job(key: tuple, paths: tuple[tuple[str, str], ...], generate: bool, _cohort: Cohort):
    """Every model's predictions for every subject, in a background thread, through the disk cache."""
    from hyperfusion.inference.cohort_cache import BackgroundJob, cached_rows, cohort_scans, score_cohort

    scans = cohort_scans(_cohort, generate)

    def frames():  # the models load in the thread too: the page shows at once
        stored = cached_rows(_cohort, dict(paths))  # read back without torch (not yet generated scans: later)
        yield stored
        from hyperfusion.inference.predictor import Predictor

        job.predictor = Predictor(dict(paths), threads=1)  # networks shared with the page's; features not
        skip = set(zip(stored["PTID"], stored["model"]))
        yield from score_cohort(job.predictor, _cohort, scan_for=scans, skip=skip)

    job = BackgroundJob(frames, len(_cohort) * len(paths))
    job.predictor, job.scans = None, scans
    return _started("predictions", job)


@st.cache_resource(show_spinner=False, max_entries=4)
def importance_job(key: tuple, paths: tuple, generate: bool, n: int, class_name: str, _cohort: Cohort):
    """Record attributions of a seeded sample of ``n`` subjects, in the background, once the predictions'
    first batches are done (the first rows come first)."""
    from hyperfusion.cohort_views import sample_subjects
    from hyperfusion.inference.cohort_cache import BackgroundJob

    first = prediction_job(key, paths, generate, _cohort)
    ptids = sample_subjects(_cohort, n)

    def frames():
        while first.predictor is None or first.snapshot()[1] < min(first.total, 15 * len(paths)):
            if first.finished:
                return
            time.sleep(0.5)
        from hyperfusion.explain.cohort import record_attributions

        yield from record_attributions(
            first.predictor, _cohort, ptids, scan_for=first.scans, class_name=class_name
        )

    job = BackgroundJob(
        frames, len(ptids) * len(paths), count=lambda f: f[["PTID", "model"]].drop_duplicates().shape[0]
    )
    job.ptids = ptids
    return _started("importance", job)


def progress(job, what: str) -> bool:
    """A progress bar of ``job``; True while it runs."""
    _, done = job.snapshot()
    running = not job.finished
    state = "computing in the background" if running else "done"
    st.progress(min(done / max(job.total, 1), 1.0), text=f"{what}: {done} of {job.total} ({state})")
    if job.error:
        st.error(plain(f"The background computation stopped: {job.error}"))
    return running


def refresh_while(running: bool, section, *args) -> None:
    """Draw ``section(*args)`` in a fragment that redraws itself every ``REFRESH_S`` while ``running``, and
    reruns the page once when the job has finished (so that the refreshing stops)."""

    def body():
        still = section(*args)
        if running and not still:
            st.rerun()

    st.fragment(body, run_every=REFRESH_S if running else None)()


def predictions_section(job, view: pd.DataFrame, truth: pd.Series, class_name: str) -> bool:
    """The rows done so far: the shown subjects with every model's P(class), disagreement and error."""
    from hyperfusion.inference.cohort_cache import cohort_table

    running = progress(job, "subject × model predictions")
    rows, _ = job.snapshot()
    if rows.empty:  # the subjects at once; the models' columns fill in as they are computed
        st.caption("The models' probabilities appear here as soon as the first rows are computed.")
        st.dataframe(view.reset_index(drop=True), hide_index=True, key="cohort_table")
        return running
    scores = cohort_table(rows, truth, class_name)
    table = view[["PTID", "DX"]].merge(scores, left_on="PTID", right_index=True, how="left")
    table = table.merge(view.drop(columns=["DX"]), on="PTID").reset_index(drop=True)
    cached = int(rows["cached"].fillna(False).astype(bool).sum())
    st.caption(
        f"{scores.shape[0]} subjects scored so far ({cached} predictions read from the disk cache). Sort by "
        "clicking a column's header; click a row to open the subject."
    )
    event = st.dataframe(
        table, hide_index=True, on_select="rerun", selection_mode="single-row", key="cohort_table"
    )
    errors = rows[rows["error"].fillna("").ne("")]
    if len(errors):
        with st.expander(f"{len(errors)} subject × model pair(s) not scored"):
            shown = errors[["PTID", "model", "error"]]
            st.dataframe(shown, hide_index=True)
    st.download_button(
        "Download every class's probabilities (CSV)",
        rows.drop(columns=["cached"]).to_csv(index=False),
        "cohort_predictions.csv",
        "text/csv",
    )
    if event.selection.rows:
        from state import session

        session.subject = table["PTID"].iloc[event.selection.rows[0]]
        st.switch_page("views/1_Subject.py")
    return running


def importance_section(job, n_cohort: int, output: str) -> bool:
    """Global importance: mean |record attribution| per attribute and model, over the sample so far."""
    from hyperfusion.cohort_views import global_importance, importance_figure

    running = progress(job, "subject × model record attributions")
    rows, _ = job.snapshot()
    sample = (
        f"a seeded sample of {len(job.ptids)} of {n_cohort} subjects" if len(job.ptids) < n_cohort else ""
    )
    st.caption(
        f"Mean |record attribution| to {output} per attribute, per model (integrated gradients against the "
        f"training-mean record, as the Subject page computes them), over {sample or 'every subject'}; "
        "image-only models read no record and get 0."
    )
    importance = global_importance(rows) if not rows.empty else pd.DataFrame()
    if importance.empty:
        return running
    st.plotly_chart(importance_figure(importance, output), width="stretch", key="global_importance")
    wide = importance.pivot_table(index="attribute", columns="model", values="mean |attribution|")
    st.dataframe(wide.round(4), key="global_importance_table")
    return running
