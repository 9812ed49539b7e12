"""The current scenario as a link, a JSON file and an HTML report: the browser side of
:meth:`hyperfusion.pages.session.Session.scenario` (what the session shows) and :mod:`hyperfusion.report` (the
HTML page)."""

from __future__ import annotations

import streamlit as st
from state import session

from hyperfusion.data import scenario as sc
from hyperfusion.data.cohort import Cohort
from hyperfusion.pages import UPLOAD_PREFIX
from hyperfusion.report import html_report


def apply_link_once(c: Cohort) -> None:
    """On a session's first run, apply the link's query parameters (then the page keeps the URL current)."""
    if session.link_applied:
        return
    session.link_applied = True
    params = st.query_params.to_dict()
    if params:
        session.link_problems = session.apply_scenario(c, params)


def share_panel(c: Cohort, synthetic: bool) -> None:
    """Keep the URL equal to the current scenario and offer the JSON and HTML downloads (sidebar)."""
    scenario = session.scenario(c)
    if st.query_params.to_dict() != sc.link_of(scenario):
        st.query_params.from_dict(sc.link_of(scenario))
    subject = session.subject
    parts = {k: v["value"] for k, v in session.report_parts.items() if v["subject"] == subject}
    name, text = sc.to_json(scenario)
    html = html_report(scenario, parts, synthetic)
    with st.sidebar:
        st.markdown("### Share this scenario")
        if subject and subject.startswith(UPLOAD_PREFIX):
            st.caption(
                "An uploaded subject stays in this session: the link and files hold its settings only."
            )
        else:
            st.caption(
                "The address bar holds the link to this subject, its edits and the attribution choices."
            )
        st.download_button("Scenario (JSON)", text, name, "application/json", key="share_json")
        name = name.removesuffix(".json") + ".html"
        st.download_button("Report (HTML)", html, name, "text/html", key="share_html")
