"""Home: what is loaded, what is missing, where to go; and opening a shared scenario file."""

import time
from pathlib import Path

import dashboard as db
import share
import streamlit as st
from messages import plain
from state import session

from hyperfusion.data.scenario import from_json
from hyperfusion.demo import missing_models
from hyperfusion.errors import HyperFusionError
from hyperfusion.files import shown_path

st.title("HyperFusion")
st.markdown(
    "Brain MRI fused with the patient record: a hypernetwork generates weights of the image network "
    "from the tabular attributes (Duenias et al., *Medical Image Analysis* 2025). Pick a subject, edit the "
    "record and watch every model's prediction and its saliency map change."
)

s = db.settings()
left, right = st.columns(2)
with left:
    st.subheader("Cohort")
    cohort = db.require_cohort()
    summary = cohort.summary()
    st.markdown(
        f"`{shown_path(cohort.path)}` · source **{cohort.source}** · **{len(cohort)}** subjects · label column "
        f"`{cohort.label_column}`"
    )
    st.table({"class": list(summary["class_counts"]), "subjects": list(summary["class_counts"].values())})
    if db.is_demo_cohort(cohort):
        st.caption(
            "A synthetic table: each subject's scan is generated into the cache the first time it is "
            "needed (the first subjects' scans ship with it)."
        )
    elif summary["subjects_with_scan"] < len(cohort):
        st.caption(
            f"{len(cohort) - summary['subjects_with_scan']} of {len(cohort)} subjects have no scan in "
            "images/: only the tabular models score them (the Cohort page's scan column says which)."
        )
with right:
    st.subheader("Models")
    models, problems = db.discover_models(s["models"])
    usable = db.usable_models(cohort)
    if usable:
        st.table([m.row() for m in usable])
    else:
        st.info("No model for this cohort's task was found. Add model directories in the sidebar.")
    other = [m.name for m in models if m not in usable]
    if other:
        st.caption(f"Other tasks' models (shown with their own cohort): {', '.join(other)}")
    if Path(s["models"]).resolve() == (Path(s["assets"]) / "models").resolve():
        missing = missing_models({Path(m.path): m.members for m in models}, Path(s["assets"]))
        if missing:
            st.info("Demo models not built yet (skipped): " + ", ".join(missing))
    for p in problems:
        st.info(p)

st.page_link("views/1_Subject.py", label="Subject and what-if →")
st.page_link("views/3_Cohort.py", label="Cohort table →")

with st.expander("Open a shared scenario (JSON file from “Share this scenario”)"):
    shared = st.file_uploader("Scenario JSON", type=["json"], key="scenario_json")
    if shared is not None:
        try:
            scenario = from_json(shared.getvalue(), shared.name)
        except HyperFusionError as exc:
            st.error(plain(exc))
        else:
            for problem in share.apply_scenario(cohort, scenario):
                st.warning(problem)
            st.page_link("views/1_Subject.py", label=f"Open {scenario.get('subject', 'the subject')} →")
st.caption(f"Page ready in {time.perf_counter() - (session.page_start or time.perf_counter()):.2f} s.")
