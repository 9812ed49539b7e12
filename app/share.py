"""The current scenario as a link, a JSON file and an HTML report: the browser side of
:meth:`hyperfusion.pages.session.Session.scenario` (what the session shows) and :mod:`hyperfusion.report` (the
HTML page)."""

from __future__ import annotations

import streamlit as st
from state import session

from hyperfusion.data import scenario as sc
from hyperfusion.data.cohort import Cohort
from hyperfusion.pages.session import share_caption


def apply_link_once(c: Cohort) -> None:
    """On a session's first run, apply the link's query parameters (then the page keeps the URL current)."""
    if session.link_applied:
        return
    session.link_applied = True
    params = st.query_params.to_dict()
    if params:
        session.link_problems = session.apply_scenario(c, params)


def follow(c: Cohort) -> None:
    """Keep the address bar equal to the current scenario (and what the share downloads will hold): called by
    every run that can change it, a fragment's rerun (which leaves the sidebar as it was) too."""
    link = sc.link_of(session.follow_scenario(c))
    if st.query_params.to_dict() != link:
        st.query_params.from_dict(link)


def share_panel(c: Cohort, synthetic: bool) -> None:
    """The address bar, and the scenario's JSON and HTML downloads (sidebar), made when clicked."""
    follow(c)
    with st.sidebar:
        st.markdown("### Share this scenario")
        st.caption(share_caption(session.subject))
        for label, name, make, mime, key in session.share_files(synthetic):
            st.download_button(label, make, name, mime, key=key)
