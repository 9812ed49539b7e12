"""The Cohort page's background jobs (one per cohort and set of models for the whole server process, so a
second session or a rerun finds the job running or done) and the sections that show them, redrawn while they
run (the jobs and tables: :mod:`hyperfusion.pages.cohort`)."""

from __future__ import annotations

import threading

import dashboard as db
import render
import streamlit as st
from state import session

from hyperfusion.data.cohort import Cohort
from hyperfusion.data.schema import FEATURE_NAMES
from hyperfusion.errors import HyperFusionError
from hyperfusion.pages import cohort as C
from hyperfusion.pages import plain

REFRESH_S = 1.0  # how often a running job's rows are shown anew
FIRST_ROWS_S = 3.0  # until a job is this old, its tab waits for the first rows (then it refreshes instead)
_RUNNING: dict[str, list] = {"predictions": [], "importance": []}  # kind -> jobs started (older ones stopped)
_LOCK = threading.Lock()


def _started(kind: str, job):
    with _LOCK:  # one job of each kind runs at a time: a new cohort or model set stops the previous one
        for old in _RUNNING[kind]:
            old.stop()
        _RUNNING[kind] = [job]
    return job.start()


@st.cache_resource(show_spinner=False, max_entries=4)
def prediction_job(key: tuple, paths: tuple[tuple[str, str], ...], generate: bool, _cohort: Cohort):
    """Every model's predictions for every subject, in a background thread, through the disk cache."""
    return _started("predictions", C.prediction_job(_cohort, paths, generate))


@st.cache_resource(show_spinner=False, max_entries=4)
def importance_job(key: tuple, paths: tuple, generate: bool, n: int, class_name: str, _cohort: Cohort):
    """Record attributions of a seeded sample of ``n`` subjects, once the first predictions are done."""
    first = prediction_job(key, paths, generate, _cohort)
    return _started("importance", C.importance_job(_cohort, paths, n, class_name, first))


def progress(job, what: str) -> bool:
    """A progress bar of ``job``; True while it runs."""
    st.progress(*C.progress_text(job, what))
    if job.error:
        st.error(plain(f"The background computation stopped: {job.error}"))
    return not job.finished


def refresh_while(running: bool, section, *args) -> None:
    """Draw ``section(*args)`` in a fragment that redraws itself every ``REFRESH_S`` while ``running``, and
    reruns the page once when the job has finished (so that the refreshing stops)."""

    def body():
        still = section(*args)
        if running and not still:
            st.rerun()

    st.fragment(body, run_every=REFRESH_S if running else None)()


def predictions_section(job, view, truth, class_name: str) -> bool:
    """The rows done so far (a click on a row opens the subject); before the first rows, the subjects at once,
    replaced by the models' columns as soon as they are computed (waiting up to ``FIRST_ROWS_S``)."""
    if job.done == 0 and not job.finished:
        with (holder := st.empty()).container():
            progress(job, "subject × model predictions")
            st.caption("The models' probabilities appear here as soon as the first rows are computed.")
            st.dataframe(view.reset_index(drop=True), hide_index=True, key="cohort_subjects")
        if not job.wait_for_rows(FIRST_ROWS_S, from_start=True):
            return True
        holder.empty()
    running = progress(job, "subject × model predictions")
    rows, _ = job.snapshot()  # after the bar: a bar that says "done" has every row below it
    if rows.empty:  # the job stopped before any row (the bar says why)
        return running
    table, text, errors = C.predictions(rows, view, truth, class_name)
    st.caption(text)
    event = st.dataframe(
        table, hide_index=True, on_select="rerun", selection_mode="single-row", key="cohort_table"
    )
    if len(errors):
        with st.expander(f"{len(errors)} subject × model pair(s) not scored"):
            st.dataframe(errors, hide_index=True)
    csv = rows.drop(columns=["cached"]).to_csv(index=False)
    st.download_button(
        "Download every class's probabilities (CSV)", csv, "cohort_predictions.csv", "text/csv"
    )
    if event.selection.rows:
        session.subject = table["PTID"].iloc[event.selection.rows[0]]
        st.switch_page("views/1_Subject.py")
    return running


def importance_section(job, n_cohort: int, output: str) -> bool:
    """Global importance: mean |record attribution| per attribute and model, over the sample so far."""
    running = progress(job, "subject × model record attributions")
    render.show(C.importance(job.snapshot()[0], len(job.ptids), n_cohort, output))
    return running


def partial_dependence_tab(key, paths, cohort: Cohort, scans, class_name: str, output: str) -> None:
    """Partial dependence (with ICE curves) of one attribute over a sample of subjects, on request."""
    left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    attribute = left.selectbox(
        "Attribute", FEATURE_NAMES, index=FEATURE_NAMES.index("AGE"), key="pd_attribute"
    )
    n_pd = middle.select_slider("Subjects sampled", [5, 10, 20, 50], 10, key="pd_sample")
    pd_key = (key, paths, attribute, n_pd, class_name)
    if right.button("Compute", key="pd_compute"):
        with st.spinner(f"Partial dependence on {attribute} over {n_pd} subjects …"):
            try:
                found = C.partial_dependence(
                    db.predictor_for(paths), cohort, attribute, n_pd, scans, class_name
                )
                session.cohort_scores["pd"] = (pd_key, *found)
            except HyperFusionError as exc:
                st.error(plain(f"Partial dependence could not be computed: {exc}"))
    done = session.cohort_scores.get("pd")
    if done and done[0] == pd_key:
        render.show(C.partial_dependence_blocks(*done[1:], attribute, output))
    else:
        st.caption("Choose an attribute and press Compute (a few seconds per ten subjects).")
