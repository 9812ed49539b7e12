"""The session's state in one typed place: pages read and write ``session`` attributes, never raw
``st.session_state`` keys. (Widgets keep their own keys, ``value_X`` / ``attr_*`` / ``cursor_*``: that is how
Streamlit restores them.) Values live in ``st.session_state`` under the attribute's name, so they last for
the browser session and never outlive it; an upload's scan stays in memory only."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import streamlit as st

from hyperfusion.demo import dashboard_settings
from hyperfusion.pages import Subject, Upload

__all__ = ["Subject", "Upload", "session"]


class _Entry:
    """One session-state value: ``default()`` gives it the first time it is read."""

    def __init__(self, default=lambda: None) -> None:
        self.default = default

    def __set_name__(self, owner, name: str) -> None:
        self.key = name

    def __get__(self, obj, owner=None) -> Any:
        if obj is None:
            return self
        if self.key not in st.session_state:
            value = self.default()
            if value is None:
                return None
            st.session_state[self.key] = value
        return st.session_state[self.key]

    def __set__(self, obj, value: Any) -> None:
        st.session_state[self.key] = value

    def __delete__(self, obj) -> None:
        st.session_state.pop(self.key, None)


class Session:
    """Everything the pages share (see the module doc)."""

    settings: dict = _Entry(dashboard_settings)  # cohort, models, assets (the sidebar)
    subject: str | None = _Entry()  # the PTID shown on every page, or an upload's id
    # whose PTIDs those are (hyperfusion.data.cohort.subject_namespace); the same for the Brain age page's
    subject_namespace: str | None = _Entry()
    brain_age_namespace: str | None = _Entry()
    edited_record: dict | None = _Entry()  # {"PTID", "record"}: the Subject page's form
    form_from_link: dict | None = _Entry()  # a shared link's record, put in the form once
    uploaded: dict | None = _Entry()  # Upload as a dict: {"name", "scan", "record", "warnings"}
    report_parts: dict = _Entry(dict)  # name -> {"subject", "value"}: pieces of the HTML report
    attribution_choices: dict = _Entry(dict)  # the attribution page's choices, kept across pages
    link_applied: bool | None = _Entry()
    link_problems: list | None = _Entry()
    attribution_progressed: OrderedDict = _Entry(OrderedDict)  # maps computed with a progress bar already
    decoded_upload: tuple | None = _Entry()  # (the upload's bytes, its ScanBytes: decoded once)
    upload_maps: OrderedDict = _Entry(OrderedDict)  # an upload's attribution maps (this session only)
    cohort_scores: dict = _Entry(dict)  # (cohort, model, PTID) -> predicted class or age
    counterfactual: tuple | None = _Entry()  # (the inputs' key, the Counterfactual found)
    upload_form_record: dict | None = _Entry()  # the Upload page's form, once submitted
    upload_preprocessed: dict | None = _Entry()  # hyperfusion...preprocess_bytes's result
    upload_preprocess_error: str | None = _Entry()
    brain_age_computed: dict = _Entry(dict)  # (cohort, models) -> hyperfusion.pages.predict_ages's result
    page_start: float | None = _Entry()  # when this run of the app began (Home shows how long it took)

    @property
    def upload(self) -> Upload | None:
        up = self.uploaded
        if not up or "scan" not in up:
            return None
        return Upload(up["name"], up["scan"], dict(up["record"]), list(up.get("warnings", [])))

    def record_of(self, ptid: str, recorded: dict) -> dict:
        """The record as edited on the Subject page (for this subject), else the recorded values."""
        edits = self.edited_record
        return edits["record"] if edits and edits.get("PTID") == ptid else recorded

    def report_part(self, name: str, value: Any) -> None:
        """A page hands a piece of the HTML report (a table, a PNG) to the share panel."""
        self.report_parts[name] = {"subject": self.subject, "value": value}


session = Session()
