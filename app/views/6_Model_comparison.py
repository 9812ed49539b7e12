"""Model comparison: one evaluation report (hyperfusion evaluate's results.json) at a time, joined with the cohort
it was measured on: the paper's table, confusion matrices, ROC and calibration curves, subgroups, modality
reliance, the subjects fusion and the unimodal models disagree on, and (synthetic data) attribution
faithfulness. Each section is one hyperfusion.pages call."""

import dashboard as db
import render
import streamlit as st
from state import session

from hyperfusion.data.cohort import subject_namespace
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.pages import reports as P
from hyperfusion.training import reports as R

st.title("Model comparison")
assets = db.settings()["assets"]
found, problems = db.reports_of(assets)
for p in problems:
    st.info(p)
if not found:
    st.info(P.no_reports(assets))
    st.stop()

by_name = {r.name: r for r in found}
name = st.selectbox(
    "Report", list(by_name), format_func=lambda n: by_name[n].title(), key="comparison_report"
)
report = by_name[name]
render.show(P.report_header(report))
cohort, note = R.report_cohort(report, assets, load=db.cohort_at)
frame, said = P.report_frame(report, cohort, note)
render.show(said)
predictions = report.predictions()
ad, chosen = report.task == "ad", list(report.runs)
if ad:
    chosen = st.multiselect(
        "Models shown in the confusion matrices and curves", chosen, default=chosen, key="comparison_models"
    )
tabs = dict(zip(P.comparison_tabs(report), st.tabs(P.comparison_tabs(report))))
with tabs["Summary"]:
    render.show(P.summary(report))
    if not ad:
        st.page_link(
            "views/7_Brain_age.py", label="Predicted against chronological age, and the sex what-if →"
        )
if ad:
    with tabs["Confusion"]:
        render.show(P.confusion(report, chosen, frame, predictions))
    with tabs["ROC and calibration"]:
        cls = st.selectbox(
            "Class (one vs rest)", CLASS_NAMES, index=len(CLASS_NAMES) - 1, key="comparison_class"
        )
        render.show(P.curves(chosen, frame, predictions, cls))
with tabs["Subgroups"]:
    render.show(P.subgroups(report, frame))
with tabs["Modality reliance"]:
    render.show(P.reliance(report))
if "Faithfulness" in tabs:
    with tabs["Faithfulness"]:
        render.show(P.faithfulness(report))


def disagreements() -> None:
    """The test subjects a fusion model and the unimodal models disagree on; a click opens one."""
    fusions, unimodal, first, default = P.disagreement_defaults(report, predictions)
    if not fusions or not unimodal:
        st.info(P.DISAGREEMENT_NEEDS)
        return
    left, right = st.columns(2)
    fusion = left.selectbox("Fusion model", fusions, index=first, key="disagree_fusion")
    others = right.multiselect("Unimodal models", unimodal, default=default, key="disagree_others")
    if not others:
        return
    table, headline = P.disagreements(report, fusion, others, frame)
    st.markdown(headline)
    if "correct" in table.columns:
        options = ["all of them", f"{fusion} right", f"{fusion} wrong"]
        help_ = "right: predicts the true diagnosis"
        show = st.radio("Show", options, horizontal=True, key="disagree_filter", help=help_)
        table = P.fusion_right(table, fusion, show)
    event = st.dataframe(
        table, hide_index=True, on_select="rerun", selection_mode="single-row", key="disagreement_table"
    )
    st.caption(
        "P(truth): the model's probability of the true diagnosis. Click a row to open the subject (record, "
        "what-if and attribution)."
    )
    if event.selection.rows:
        ptid = table["PTID"].iloc[event.selection.rows[0]]
        current = db.cohort_or_none()
        why = P.open_in_dashboard(ptid, cohort, current and current.path)
        if why is None:
            session.subject = ptid
            st.switch_page("views/1_Subject.py")
        st.info(why)
        if cohort is not None and st.button(
            f"Switch the dashboard to the report's cohort and open {ptid}", key="open_in_report_cohort"
        ):
            session.settings = {**db.settings(), "cohort": str(cohort.path)}
            session.subject, session.subject_namespace = ptid, subject_namespace(cohort)
            st.switch_page("views/1_Subject.py")


if ad:
    with tabs["Disagreements"]:
        disagreements()
