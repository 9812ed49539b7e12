"""Home: what is loaded, what is missing, where to go; and opening a shared scenario file."""

import time

import dashboard as db
import render
import streamlit as st
from state import session

from hyperfusion.data.scenario import from_json
from hyperfusion.errors import HyperFusionError
from hyperfusion.pages import plain
from hyperfusion.pages import start as H

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
    render.show(H.cohort_overview(cohort, db.is_demo_cohort(cohort)))
with right:
    st.subheader("Models")
    models, problems = db.discover_models(s["models"])
    render.show(H.models_overview(models, db.usable_models(cohort), problems, s["models"], s["assets"]))

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
            for problem in session.apply_scenario(cohort, scenario):
                st.warning(problem)
            st.page_link("views/1_Subject.py", label=f"Open {scenario.get('subject', 'the subject')} →")
st.caption(f"Page ready in {time.perf_counter() - (session.page_start or time.perf_counter()):.2f} s.")
