"""The current scenario as a link, a JSON file and an HTML report: the session side of
:mod:`hyperfusion.data.scenario` (encoding and checking) and :mod:`hyperfusion.report` (the HTML page)."""

from __future__ import annotations

import json

import streamlit as st
from state import session

from hyperfusion.data import scenario as sc
from hyperfusion.data.cohort import Cohort, subject_namespace
from hyperfusion.pages import UPLOAD_PREFIX
from hyperfusion.report import html_report


def current_scenario(c: Cohort) -> dict[str, str]:
    """The scenario this session shows now (the attribution choices last seen on their page)."""
    last = session.attribution_choices
    for key in sc.ATTRIBUTION_KEYS:
        value = st.session_state.get(f"attr_{key}")
        if value is not None:
            last[key] = str(value)
    subject, edited = session.subject, session.edited_record
    record = edited["record"] if edited and subject and edited.get("PTID") == subject else None
    return sc.encode(c, subject, record, last)


def restore_choices() -> None:
    """Re-seed the attribution page's widgets (Streamlit drops a widget's state on pages that do not show
    it); call before any widget is drawn."""
    for key, value in session.attribution_choices.items():
        if f"attr_{key}" not in st.session_state:
            st.session_state[f"attr_{key}"] = value


def apply_scenario(c: Cohort, scenario: dict[str, str]) -> list[str]:
    """Put a scenario into this session; returns the problems found (each value that was left out). The
    attribution page checks each choice against what it offers (attribution_views.keep_choice)."""
    decoded = sc.decode(scenario, c)
    if decoded.subject is not None:
        session.subject, session.subject_namespace = decoded.subject, subject_namespace(c)
        session.edited_record = session.form_from_link = {"PTID": decoded.subject, "record": decoded.record}
    for key, value in decoded.choices.items():
        st.session_state[f"attr_{key}"] = session.attribution_choices[key] = value
    return decoded.problems


def apply_link_once(c: Cohort) -> None:
    """On a session's first run, apply the link's query parameters (then the page keeps the URL current)."""
    if session.link_applied:
        return
    session.link_applied = True
    params = {k: st.query_params[k] for k in st.query_params}
    if params:
        session.link_problems = apply_scenario(c, params)


def share_panel(c: Cohort, synthetic: bool) -> None:
    """Keep the URL equal to the current scenario and offer the JSON and HTML downloads (sidebar)."""
    scenario = current_scenario(c)
    link = {k: v for k, v in scenario.items() if k != "cohort"}
    if {k: st.query_params[k] for k in st.query_params} != link:
        st.query_params.from_dict(link)
    subject = session.subject
    parts = {k: v["value"] for k, v in session.report_parts.items() if v["subject"] == subject}
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
        name = (scenario.get("subject") or "scenario").replace("/", "_")
        st.download_button(
            "Scenario (JSON)",
            json.dumps(scenario, indent=1),
            f"{name}.json",
            "application/json",
            key="share_json",
        )
        st.download_button(
            "Report (HTML)",
            html_report(scenario, parts, synthetic),
            f"{name}.html",
            "text/html",
            key="share_html",
        )
