"""Brain age: predicted against chronological age, the brain-age gap by sex, and one subject's sex what-if.

The page works on a brain-age cohort even while the dashboard's main cohort is the AD one: the dashboard's cohort
when it was made for brain age, else the brain-age demo cohort; the models are those of task brain_age.
"""

import os

import dashboard as db
import numpy as np
import render
import reports as rp
import streamlit as st
from messages import plain
from state import session

from hyperfusion.errors import HyperFusionError
from hyperfusion.files import shown_path
from hyperfusion.inference import models_for_task, paths_of
from hyperfusion.pages import reports as P

st.title("Brain age")
st.markdown(
    "The **brain age** is the age a model reads from the T1 scan; the **gap** (predicted − chronological age) is "
    "positive when the brain looks older than its years. The paper's brain-age HyperFusion lets the subject's "
    "**sex** generate the weights of the network's last layers."
)

s = db.settings()
try:
    current = db.cohort()
except (HyperFusionError, OSError):
    current = None
cohort, cohort_source = P.brain_age_cohort(current, s["assets"], db.cohort_at)
models = models_for_task(db.discover_models(s["models"])[0], "brain_age")
found, _ = rp.reports_of(s["assets"], task="brain_age")
if (cohort is None or not models) and not found:
    roots = ", ".join(map(shown_path, s["models"].split(os.pathsep)))
    what = (
        f"no brain-age cohort ({cohort_source})"
        if cohort is None
        else f"no brain-age model (none among {roots})"
    )
    st.info(f"Nothing to show yet: {what}. " + P.BRAIN_AGE_BUILD_HINT)
    st.stop()
if cohort is not None:
    synthetic = " · **SYNTHETIC** subjects" if cohort.is_synthetic else ""
    st.caption(
        f"Cohort: {cohort_source}, `{shown_path(cohort.path)}` · {len(cohort)} subjects{synthetic} · brain-age "
        f"models: {', '.join(m.name for m in models) or 'none'}"
    )
if not models:
    st.info(
        "No brain-age model among the model directories: only the evaluation report is shown. "
        + P.BRAIN_AGE_BUILD_HINT
    )

st.subheader("Predicted versus chronological age")
sources = [f"evaluation report '{r.name}' (held-out test subjects)" for r in found]
if cohort is not None and models:
    sources.append("compute now on this cohort's first subjects")
source = st.radio("Predictions from", sources, key="brain_age_source", horizontal=True)
frame, corrected, said = None, {}, []
if source.startswith("evaluation report"):
    report = found[sources.index(source)]
    if report.synthetic:
        st.caption(f"Report `{shown_path(report.path)}`, measured on SYNTHETIC data.")
    frame, corrected, said = P.report_ages(report, *rp.report_cohort(report, s["assets"]))
else:
    n = st.number_input(
        "Subjects to predict (the cohort's first N)",
        1,
        len(cohort),
        min(20, len(cohort)),
        key="brain_age_n",
        help="about 0.1 s per subject and model once the scan is read",
    )
    key = (str(cohort.path), paths_of(models))
    if st.button(f"Predict the first {n} subjects with {len(models)} model(s)", key="brain_age_predict"):
        bar = st.progress(0.0, text="predicting …")
        done = P.predict_ages(db.predictor_for(key[1]), cohort, models, n, db.scan_path, bar.progress)
        session.brain_age_computed[key] = done
    frame, corrected, skipped = session.brain_age_computed.get(key, (None, {}, []))
    said = P.computed_ages_note(frame, skipped)
render.show(said)
if frame is not None and len(frame):
    render.show(P.age_blocks(frame, corrected))

st.subheader("One subject: what if the sex were the other one?")
if cohort is None or not models:
    st.info("This needs a brain-age cohort and brain-age models. " + P.BRAIN_AGE_BUILD_HINT)
    st.stop()
subject = db.subject_picker(cohort, with_scan=False, key="brain_age_subject")  # an upload is offered first
recorded, sex = subject.recorded, subject.recorded.get("PTGENDER")
age = float(recorded["AGE"]) if recorded.get("AGE") is not None else float("nan")
if not np.isfinite(age):
    st.info(f"{subject.id} has no age in its record: the brain-age gap needs the chronological age.")
    st.stop()
st.caption(
    f"Chronological age **{age:.1f}** · recorded sex **{sex or 'not recorded'}**"
    + (f" · diagnosis {subject.truth}" if subject.truth else "")
)
scan = subject.scan if subject.uploaded else db.scan_path(cohort, subject.id)
if scan is None:
    st.info(f"No scan for {subject.id}: brain-age models read the scan.")
    st.stop()
try:
    render.show(P.sex_whatif(db.predictor_for(paths_of(models)), scan, recorded))
except HyperFusionError as exc:
    st.error(plain(exc))
