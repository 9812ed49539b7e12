"""Brain age: predicted against chronological age, the brain-age gap by sex, and one subject's sex what-if.

The page works on a brain-age cohort even while the dashboard's main cohort is the AD one: the dashboard's cohort
when it was made for brain age, else the brain-age demo cohort; the models are those of task brain_age.
"""

import os

import dashboard as db
import numpy as np
import pandas as pd
import reports as rp
import streamlit as st
from messages import plain
from state import session

from hyperfusion.data.cohort import subject_labels, subject_namespace
from hyperfusion.errors import HyperFusionError
from hyperfusion.files import shown_path
from hyperfusion.training import figures as F
from hyperfusion.training import reports as R

OTHER_SEX = {"Female": "Male", "Male": "Female"}

st.title("Brain age")
st.markdown(
    "The **brain age** is the age a model reads from the T1 scan; the **gap** (predicted − chronological age) is "
    "positive when the brain looks older than its years. The paper's brain-age HyperFusion lets the subject's "
    "**sex** generate the weights of the network's last layers."
)

s = db.settings()
cohort, cohort_source = rp.brain_age_cohort(s)
models = rp.task_models(s["models"], "brain_age")
found, _ = rp.reports_of(s["assets"], task="brain_age")
BUILD_HINT = (
    "Build the demo's brain-age cohort, models and report with `hyperfusion demo build`, or train your own with "
    "`hyperfusion train --task brain_age --model hyperfusion --data COHORT --out MODEL_DIR` and add MODEL_DIR in "
    "the sidebar's settings."
)
if (cohort is None or not models) and not found:
    what = "no brain-age cohort" if cohort is None else "no brain-age model"
    st.info(
        f"Nothing to show yet: {what} ({cohort_source if cohort is None else 'none among ' + ', '.join(map(shown_path, s['models'].split(os.pathsep)))}). "
        + BUILD_HINT
    )
    st.stop()
if cohort is not None:
    synthetic = " · **SYNTHETIC** subjects" if cohort.is_synthetic else ""
    st.caption(
        f"Cohort: {cohort_source}, `{shown_path(cohort.path)}` · {len(cohort)} subjects{synthetic} · brain-age models: "
        f"{', '.join(m.name for m in models) or 'none'}"
    )
if not models:
    st.info(
        "No brain-age model among the model directories: only the evaluation report is shown. " + BUILD_HINT
    )


st.subheader("Predicted versus chronological age")
sources = [f"evaluation report '{r.name}' (held-out test subjects)" for r in found]
if cohort is not None and models:
    sources.append("compute now on this cohort's first subjects")
source = st.radio("Predictions from", sources, key="brain_age_source", horizontal=True)
frame: pd.DataFrame | None = None
corrected: dict[str, dict | None] = {}
if source.startswith("evaluation report"):
    report = found[sources.index(source)]
    if report.synthetic:
        st.caption(f"Report `{shown_path(report.path)}`, measured on SYNTHETIC data.")
    report_cohort, note = rp.report_cohort(report, s["assets"])
    predictions = report.predictions()
    if report_cohort is None or not predictions:
        why = note if report_cohort is None else "it holds no per-subject predictions (an older report)"
        st.info(
            f"This report cannot be plotted: {why}. Compute the predictions instead (the other source above)."
        )
    else:
        if note:
            st.caption(note)
        frame = R.age_frame(R.subject_frame(report, report_cohort), predictions)
        corrected = {label: entry.get("bias_corrected") for label, entry in report.runs.items()}
        st.caption(
            f"The report's test partition: {len(report.test_ptids)} subjects no model was trained or "
            "validated on."
        )
else:
    frame, corrected = rp.computed_age_frame(cohort, models)

if frame is not None and len(frame):
    st.plotly_chart(F.scatter_figure(frame), width="stretch", key="brain_age_scatter")
    metrics = R.age_metrics(frame, corrected)
    st.dataframe(metrics, hide_index=True, key="brain_age_metrics")
    st.caption(
        "Points on the dotted line: predicted = chronological age. MAE: mean absolute error; r: Pearson "
        "correlation; mean gap: the average over-estimate. Bias-corrected: after the linear correction of "
        "the models' pull towards the mean age, fitted on their validation subjects (Smith et al. 2019)."
    )
    st.subheader("Brain-age gap by sex")
    st.plotly_chart(F.gap_figure(frame), width="stretch", key="brain_age_gap")
    st.caption(
        "Boxes: median and quartiles, dashed: mean; each point is one subject. A model fair to both sexes "
        "has both boxes centred at the same height."
    )

# --- one subject: the sex what-if ----------------------------------------------------------------------------
st.subheader("One subject: what if the sex were the other one?")
if cohort is None or not models:
    st.info("This needs a brain-age cohort and brain-age models. " + BUILD_HINT)
    st.stop()
uploaded = db.uploaded_subject()  # this session's upload, if any, is offered first
labels = {**({uploaded.id: uploaded.id} if uploaded else {}), **subject_labels(cohort)}
ptids, here = list(labels), subject_namespace(cohort)
stored = st.session_state.get("brain_age_subject")
if stored not in ptids or session.brain_age_namespace not in (None, here):  # the dashboard's subject if the
    shared = (
        session.subject if session.subject_namespace == here else None
    )  # same person here, else the first
    new = db.carry_subject(cohort, stored, session.brain_age_namespace, ptids) if stored else ptids[0]
    st.session_state["brain_age_subject"] = shared if shared in ptids and stored not in ptids else new
session.brain_age_namespace = here
ptid = st.selectbox(
    "Subject", ptids, key="brain_age_subject", format_func=labels.get, help="ID · diagnosis · age · sex"
)
if uploaded is not None and ptid == uploaded.id:
    subject = uploaded
else:
    subject = db.subject_of(cohort, ptid, with_scan=False)
recorded = subject.recorded
sex = recorded.get("PTGENDER")
first = sex if sex in OTHER_SEX else "Female"
second = OTHER_SEX[first]
age = float(recorded["AGE"]) if recorded.get("AGE") is not None else float("nan")
if not np.isfinite(age):
    st.info(f"{ptid} has no age in its record: the brain-age gap needs the chronological age.")
    st.stop()
dx = subject.truth
st.caption(
    f"Chronological age **{age:.1f}** · recorded sex **{sex or 'not recorded'}**"
    + (f" · diagnosis {dx}" if isinstance(dx, str) else "")
)
scan = subject.scan if subject.uploaded else db.scan_path(cohort, ptid)
if scan is None:
    st.info(f"No scan for {ptid}: brain-age models read the scan.")
    st.stop()
predictor = db.predictor_for(tuple((m.name, m.path) for m in models))
try:
    preds = predictor.predict(scan, [{**recorded, "PTGENDER": first}, {**recorded, "PTGENDER": second}])
except HyperFusionError as exc:
    st.error(plain(exc))
    st.stop()
table = pd.DataFrame(R.sex_whatif_rows(preds, first, second, age, recorded=bool(sex)))
st.plotly_chart(F.sex_whatif_figure(preds, first, second, age), width="stretch", key="sex_whatif")
st.dataframe(table, hide_index=True, key="sex_whatif_table")
st.caption(
    "A model that does not read sex (image_only) gives the same age both ways. The difference is what "
    "the model attributes to sex alone for this scan."
)
