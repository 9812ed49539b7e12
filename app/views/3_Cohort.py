"""Cohort: every model's probabilities for every subject (computed in the background, cached on disk), with
disagreement and error; global importance, partial dependence and distributions by diagnosis."""

import cohort_parts as cp
import dashboard as db
import render
import streamlit as st
from state import session

from hyperfusion.data.schema import CLASS_NAMES, FEATURE_NAMES
from hyperfusion.pages import cohort as C
from hyperfusion.pages import plain

st.title("Cohort")

cohort = db.require_cohort()
table = cohort.table
# The shipped demo table gets its scans generated on first need; any other cohort's missing scans are missing
demo = db.is_demo_cohort(cohort)
filters = st.columns([2, 2, 2, 1, 2, 1])
lo, hi = C.age_band(table)
chosen = C.Filters(
    filters[0].text_input("Search PTID"),
    filters[1].multiselect(
        f"Diagnosis ({cohort.label_column})", ["CN", "MCI", "AD"], default=["CN", "MCI", "AD"]
    ),
    filters[2].slider("Age band (years)", lo, hi, (lo, hi)),
    filters[3].selectbox("Sex", ["any", "Female", "Male"]),
    filters[4].multiselect("APOE4 alleles", [0, 1, 2], default=[0, 1, 2]),
    filters[5].checkbox("missing biomarkers"),
)
view = C.filtered(table, chosen, with_scan_column=not demo)
lacking = None if demo else C.missing_scans(table)
if lacking:
    st.info(plain(lacking))

uploaded = db.uploaded_subject()
if uploaded is not None:  # not a cohort row (it has no truth here), but one click from its pages
    up_col, open_col = st.columns([4, 1], vertical_alignment="center")
    up_col.info(plain(f"Also in this session: {uploaded.id} (uploaded, in memory only)."))
    if open_col.button("Open the uploaded subject"):
        session.subject = uploaded.id
        st.switch_page("views/1_Subject.py")

usable = db.usable_models(cohort)
if not usable:
    st.info("No model of this cohort's task is loaded: add model directories in the sidebar's settings.")
    st.dataframe(view.reset_index(drop=True), hide_index=True)
    st.stop()
paths = tuple((m.name, str(m.path)) for m in usable)
key = C.cohort_key(cohort)
ad = all(m.task == "ad" for m in usable)
class_name = (st.segmented_control("Probability of", CLASS_NAMES, default="AD") if ad else None) or "AD"
output = f"P({class_name})" if ad else "the predicted age"
st.caption(f"{len(view)} of {len(table)} subjects shown; {len(usable)} model(s).")
truth = table.set_index("PTID")["DX" if ad else "AGE"]

# Only the open tab is drawn (a tab switch reruns the page): the others' charts and jobs wait until asked for
tabs = st.tabs(C.TABS, key="cohort_tab", on_change="rerun")
job = cp.prediction_job(key, paths, demo, cohort)
if tabs[0].open:
    with tabs[0]:
        job.wait_for_rows(0.5, from_start=True)  # rows already stored show at once, not a refresh later
        cp.refresh_while(not job.finished, cp.predictions_section, job, view, truth, class_name)
if tabs[1].open:
    with tabs[1]:
        n = st.select_slider("Subjects sampled", [10, 20, 50, 100, 200], 20, key="importance_sample")
        importance = cp.importance_job(key, paths, demo, n, class_name, cohort)
        cp.refresh_while(not importance.finished, cp.importance_section, importance, len(table), output)
if tabs[2].open:
    with tabs[2]:
        cp.partial_dependence_tab(key, paths, cohort, job.scans, class_name, output)
if tabs[3].open:
    with tabs[3]:
        left, right = st.columns([2, 2])
        attribute = left.selectbox("Attribute", FEATURE_NAMES, key="dist_attribute")
        kind = right.radio("Plot", ["box", "violin", "histogram"], horizontal=True, key="dist_kind")
        render.show(C.distribution(table, attribute, kind))
