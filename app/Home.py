"""HyperFusion dashboard: the entry point (``streamlit run app/Home.py``). It lays out what every page shares
(notices, settings, the share panel) around the page the navigation chose; each page in ``views/`` only lays
out its widgets, and every computation is a call to the hyperfusion library."""

import time

_START = time.perf_counter()

import dashboard as db  # noqa: E402
import streamlit as st  # noqa: E402
from in_memory import keep_uploads_in_memory  # noqa: E402
from state import session  # noqa: E402

st.set_page_config(page_title="HyperFusion", layout="wide")
keep_uploads_in_memory()  # process-wide, before any file uploader is shown
session.page_start = _START
page = st.navigation(
    {
        "Start": [
            st.Page("views/0_Start.py", title="Home", url_path="Start", default=True),
            st.Page("views/5_Upload.py", title="Upload", url_path="Upload"),
        ],
        "One subject": [
            st.Page("views/1_Subject.py", title="Subject and what-if", url_path="Subject"),
            st.Page("views/2_Attribution.py", title="Attribution", url_path="Attribution"),
        ],
        "Cohort and models": [
            st.Page("views/3_Cohort.py", title="Cohort", url_path="Cohort"),
            st.Page("views/4_Model_cards.py", title="Model cards", url_path="Model_cards"),
            st.Page("views/6_Model_comparison.py", title="Model comparison", url_path="Model_comparison"),
            st.Page("views/7_Brain_age.py", title="Brain age", url_path="Brain_age"),
        ],
    }
)
db.furniture()
page.run()
db.footer()
