"""Model comparison: one evaluation report (hyperfusion evaluate's results.json) at a time, joined with the cohort
it was measured on: the paper's table, confusion matrices, ROC and calibration curves, subgroups, the subjects
fusion and the unimodal models disagree on, and (synthetic data) attribution faithfulness."""

from pathlib import Path

import comparison_tabs as tab
import dashboard as db
import reports as rp
import streamlit as st

from hyperfusion.files import shown_path
from hyperfusion.training import reports as R

st.title("Model comparison")

assets = db.settings()["assets"]
found, problems = rp.reports_of(assets)
for p in problems:
    st.info(p)
if not found:
    st.info(
        f"No evaluation report yet in {Path(assets) / 'reports'} (the demo build writes them when it "
        "finishes; or run `hyperfusion evaluate --data COHORT --models MODEL_DIRS... --out REPORT_DIR`)."
    )
    st.stop()

by_name = {r.name: r for r in found}
name = st.selectbox(
    "Report", list(by_name), format_func=lambda n: by_name[n].title(), key="comparison_report"
)
report = by_name[name]
if report.synthetic:
    st.warning(
        "**SYNTHETIC data**: every number on this page was measured on generated subjects, not patients."
    )
st.caption(
    f"`{shown_path(report.path)}` · measured on `{shown_path(report.cohort_path) or 'an unnamed cohort'}` · "
    "test partition of "
    f"{report.result.get('test_subjects', len(report.test_ptids))} subjects."
)

for subject_note in report.result.get("subjects", {}).get("notes", []):
    st.warning(subject_note)
cohort, note = rp.report_cohort(report, assets)
predictions = report.predictions()
frame = R.subject_frame(report, cohort) if cohort is not None and report.test_ptids else None
if note and cohort is None:
    st.info(
        f"{note} The curves, subgroups and per-subject tables need its table (truth, sex, age); shown "
        "below is what the report holds by itself."
    )
elif note:
    st.caption(note)
if frame is not None and not predictions:
    st.info(
        "This report has no per-subject predictions (written by an older `hyperfusion evaluate`): run it "
        "again for the curves, subgroups and disagreements."
    )
    frame = None

ad = report.task == "ad"
models = list(report.runs)
chosen = models
if ad:
    chosen = st.multiselect(
        "Models shown in the confusion matrices and curves", models, default=models, key="comparison_models"
    )
tab_names = [
    "Summary",
    *(["Confusion", "ROC and calibration"] if ad else []),
    "Subgroups",
    "Modality reliance",
]
tab_names += ["Disagreements"] if ad else []
tab_names += ["Faithfulness"] if report.synthetic and ad else []
tabs = dict(zip(tab_names, st.tabs(tab_names)))

with tabs["Summary"]:
    tab.summary(report, ad)
if ad:
    with tabs["Confusion"]:
        tab.confusion(report, chosen, frame, predictions)
    with tabs["ROC and calibration"]:
        tab.curves(chosen, frame, predictions)
with tabs["Subgroups"]:
    tab.subgroups(report, frame, ad)
with tabs["Modality reliance"]:
    tab.reliance(report, ad)
if ad:
    with tabs["Disagreements"]:
        tab.disagreements(report, frame, predictions, cohort)
if "Faithfulness" in tabs:
    with tabs["Faithfulness"]:
        tab.faithfulness(report)
