"""HyperFusion dashboard: the entry point (``streamlit run app/Home.py``). It lays out what every page shares
(notices, settings, the share panel) around the page the navigation chose; each page in ``views/`` only lays
out its widgets, and every computation is a call to the hyperfusion library."""

import time

_START = time.perf_counter()

import os  # noqa: E402

import dashboard as db  # noqa: E402
import share  # noqa: E402
import streamlit as st  # noqa: E402
from state import session  # noqa: E402

from hyperfusion.demo import settings_from_form  # noqa: E402
from hyperfusion.pages import keep_uploads_in_memory  # noqa: E402
from hyperfusion.report import RESEARCH_NOTICE, SYNTHETIC_NOTICE  # noqa: E402
from hyperfusion.serve import after_first_page  # noqa: E402


def _synthetic() -> bool:
    c = db.cohort_or_none()
    return (c is not None and c.is_synthetic) or any(m.synthetic for m in db.discover_models()[0])


def furniture() -> None:
    """The notices, a shared link applied once, and the settings sidebar."""
    c = db.cohort_or_none()
    if c is not None:
        share.apply_link_once(c)
        session.restore_choices()
    s = db.settings()
    synthetic = _synthetic()
    st.warning(f"**{RESEARCH_NOTICE}**" + (f" · **{SYNTHETIC_NOTICE}**" if synthetic else ""), icon="⚠️")
    if session.upload is not None:
        st.caption(f"Uploaded subject in this session: {session.upload.name} (kept in memory only).")
    for problem in session.link_problems or []:
        st.warning(f"Shared link: {problem}")
    del session.link_problems
    with st.sidebar:
        st.markdown("### Settings")
        with st.form("settings_form"):
            cohort_in = st.text_input("Cohort directory or ADNIMERGE table", s["cohort"])
            models_in = st.text_area(
                "Model directories (one per line)", s["models"].replace(os.pathsep, "\n")
            )
            if st.form_submit_button("Apply"):
                session.settings = settings_from_form(s, cohort_in, models_in)
                st.rerun()
        st.caption(RESEARCH_NOTICE)


def footer() -> None:
    """Keeps the address bar equal to the scenario and offers its downloads."""
    c = db.cohort_or_none()
    if c is not None:
        share.share_panel(c, _synthetic())


st.set_page_config(page_title="HyperFusion", layout="wide")
keep_uploads_in_memory(st.get_option("server.maxUploadSize"))  # process-wide, before any file uploader
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
furniture()
page.run()
footer()
after_first_page()  # torch and the networks' code, imported in the background once this page is sent
