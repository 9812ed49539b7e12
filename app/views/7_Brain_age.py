"""Brain age: predicted against chronological age, the brain-age gap by sex, and one subject's sex what-if.

The page works on a brain-age cohort even while the dashboard's main cohort is the AD one: the dashboard's cohort
when it was made for brain age, else the brain-age demo cohort; the models are those of task brain_age.
"""

import dashboard as db
import render
import streamlit as st
from state import session

from hyperfusion.errors import HyperFusionError
from hyperfusion.files import shown_path
from hyperfusion.inference import models_for_task, paths_of
from hyperfusion.pages import plain
from hyperfusion.pages import reports as P
from hyperfusion.training import reports as R

st.title("Brain age")
st.markdown(P.BRAIN_AGE_INTRO)
s = db.settings()
cohort, cohort_source = P.brain_age_cohort(db.cohort_or_none(), s["assets"], db.cohort_at)
models = models_for_task(db.discover_models()[0], "brain_age")
found, _ = db.reports_of(s["assets"], task="brain_age")
render.show(P.brain_age_sources(cohort, cohort_source, models, s["models"], found))
if (cohort is None or not models) and not found:
    st.stop()

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
    frame, corrected, said = P.report_ages(report, *R.report_cohort(report, s["assets"], load=db.cohort_at))
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
age, said = P.chronological_age(subject.id, subject.recorded, subject.truth)
render.show(said)
if age is None:
    st.stop()
scan = subject.scan if subject.uploaded else db.scan_path(cohort, subject.id)
if scan is None:
    st.info(f"No scan for {subject.id}: brain-age models read the scan.")
    st.stop()
try:
    render.show(P.sex_whatif(db.predictor_for(paths_of(models)), scan, subject.recorded))
except HyperFusionError as exc:
    st.error(plain(exc))
