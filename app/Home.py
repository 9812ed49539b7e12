"""HyperFusion dashboard, first page (placeholder until the dashboard issue lands)."""

import streamlit as st

st.set_page_config(page_title="HyperFusion", layout="wide")
st.warning("Research use only. Not for clinical decisions. All demo data and demo models are SYNTHETIC.")
st.title("HyperFusion")
st.write(
    "The dashboard is being built. Meanwhile the library and the `hyperfusion` command work: "
    "`hyperfusion inspect --data COHORT` summarises an ADNI-format cohort."
)
