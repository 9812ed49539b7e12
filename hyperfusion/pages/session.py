"""The dashboard's session state in one typed place, over any mutable mapping (``st.session_state`` in the
dashboard, a dict in a notebook or a test): pages read and write :class:`Session` attributes, never raw keys.
(Widgets keep their own keys, ``value_X`` / ``attr_*`` / ``cursor_*``: that is how Streamlit restores them.)
Each value lives in the mapping under the attribute's name, so in the dashboard it lasts for the browser session
and never outlives it; an upload's scan stays in memory only.

Besides the values, what changes several of them at once: the subject a picker shows after a change of cohort
(:meth:`Session.pick_subject`), and the current scenario, read and applied (:meth:`Session.scenario`,
:meth:`Session.apply_scenario`: :mod:`hyperfusion.data.scenario` does the encoding and the checks).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from typing import Any

from hyperfusion.data import scenario as sc
from hyperfusion.data.cohort import Cohort, subject_label, subject_labels, subject_namespace
from hyperfusion.demo import dashboard_settings
from hyperfusion.pages import UPLOAD_PREFIX, Upload
from hyperfusion.report import html_report

MAIN_PICKER = "_subject_widget"  # the subject picker every page shares (other pickers have their own key)


class _Entry:
    """One session value: ``default()`` gives it the first time it is read."""

    def __init__(self, default=lambda: None) -> None:
        self.default = default

    def __set_name__(self, owner, name: str) -> None:
        self.key = name

    def __get__(self, obj, owner=None) -> Any:
        if obj is None:
            return self
        if self.key not in obj.store:
            value = self.default()
            if value is None:
                return None
            obj.store[self.key] = value
        return obj.store[self.key]

    def __set__(self, obj, value: Any) -> None:
        obj.store[self.key] = value

    def __delete__(self, obj) -> None:
        obj.store.pop(self.key, None)


class Session:
    """Everything the pages share (see the module doc), kept in ``store``."""

    settings: dict = _Entry(dashboard_settings)  # cohort, models, assets (the sidebar)
    subject: str | None = _Entry()  # the PTID shown on every page, or an upload's id
    # whose PTIDs those are (hyperfusion.data.cohort.subject_namespace); the same for the Brain age page's
    subject_namespace: str | None = _Entry()
    brain_age_namespace: str | None = _Entry()
    edited_record: dict | None = _Entry()  # {"PTID", "record"}: the Subject page's form
    form_from_link: dict | None = _Entry()  # a shared link's record, put in the form once
    uploaded: dict | None = _Entry()  # Upload as a dict: {"name", "scan", "record", "warnings"}
    report_parts: dict = _Entry(dict)  # name -> {"subject", "value"}: pieces of the HTML report
    share_box: dict = _Entry(
        dict
    )  # what the share downloads hold when clicked: "scenario", "parts", "synthetic"
    attribution_choices: dict = _Entry(dict)  # the attribution page's choices, kept across pages
    link_applied: bool | None = _Entry()
    link_problems: list | None = _Entry()
    attribution_progressed: OrderedDict = _Entry(OrderedDict)  # maps computed with a progress bar already
    decoded_upload: tuple | None = _Entry()  # (the upload's bytes, its ScanBytes: decoded once)
    upload_maps: OrderedDict = _Entry(OrderedDict)  # an upload's attribution maps (this session only)
    cohort_scores: dict = _Entry(dict)  # "pd" -> (the inputs' key, the partial dependence computed)
    counterfactual: tuple | None = _Entry()  # (the inputs' key, the Counterfactual found)
    upload_form_record: dict | None = _Entry()  # the Upload page's form, once submitted
    upload_preprocessed: dict | None = _Entry()  # hyperfusion...preprocess_bytes's result
    upload_preprocess_error: str | None = _Entry()
    brain_age_computed: dict = _Entry(dict)  # (cohort, models) -> hyperfusion.pages.predict_ages's result
    page_start: float | None = _Entry()  # when this run of the app began (Home shows how long it took)

    def __init__(self, store: MutableMapping) -> None:
        self.store = store

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

    def pick_subject(self, options: list[str], here: str, key: str = MAIN_PICKER) -> tuple[str, str | None]:
        """The subject the picker of widget ``key`` shows on a cohort of namespace ``here``, kept in the
        session, and a note when a choice was dropped (:func:`carried_subject`). The main picker's subject is
        every page's: a new one drops the previous one's edits. Another picker (the Brain age page's) keeps its
        own choice, else takes the main one's when it names the same person there."""
        if key == MAIN_PICKER:
            chosen, note = carried_subject(options, here, self.subject, self.subject_namespace)
            if chosen != self.subject or self.subject_namespace not in (None, here):
                del self.edited_record  # another person's edits must not follow the ID
                self.store.pop("form_subject", None)
            self.subject, self.subject_namespace = chosen, here
        else:
            own, main = (
                (self.store.get(key), self.brain_age_namespace),
                (self.subject, self.subject_namespace),
            )
            chosen, note = carried_subject(options, here, *own, fallback=main)
            self.brain_age_namespace = here
        self.store[key] = chosen
        return chosen, note

    def scenario(self, c: Cohort) -> dict[str, str]:
        """The scenario this session shows now (the attribution choices last seen on their page)."""
        last = self.attribution_choices
        for key in sc.ATTRIBUTION_KEYS:
            value = self.store.get(f"attr_{key}")
            if value is not None:
                last[key] = str(value)
        subject, edited = self.subject, self.edited_record
        record = edited["record"] if edited and subject and edited.get("PTID") == subject else None
        return sc.encode(c, subject, record, last)

    def follow_scenario(self, c: Cohort) -> dict[str, str]:
        """The scenario this session shows now, remembered with the HTML report's parts of its subject for the
        share downloads (:meth:`share_files`), which are made later, when clicked."""
        scenario = self.scenario(c)
        parts = {k: v["value"] for k, v in self.report_parts.items() if v["subject"] == self.subject}
        self.share_box.update(scenario=scenario, parts=parts)
        return scenario

    def share_files(self, synthetic: bool) -> list[tuple[str, str, Callable[[], str], str, str]]:
        """The share panel's downloads as (label, file name, maker, MIME type, widget key): each maker writes
        its file from what :meth:`follow_scenario` last remembered, when it is called. It reads no session
        state (the server calls it in its own thread), so a file clicked after a fragment's rerun (an edit on
        the Subject page) holds that edit although the panel was drawn before it."""
        box = self.share_box
        name = sc.to_json(box["scenario"])[0].removesuffix(".json")
        return [
            (
                "Scenario (JSON)",
                f"{name}.json",
                lambda: sc.to_json(box["scenario"])[1],
                "application/json",
                "share_json",
            ),
            (
                "Report (HTML)",
                f"{name}.html",
                lambda: html_report(box["scenario"], box["parts"], synthetic),
                "text/html",
                "share_html",
            ),
        ]

    def restore_choices(self) -> None:
        """Re-seed the attribution page's widgets (Streamlit drops a widget's state on pages that do not show
        it); call before any widget is drawn."""
        for key, value in self.attribution_choices.items():
            self.store.setdefault(f"attr_{key}", value)

    def apply_scenario(self, c: Cohort, scenario: dict[str, str]) -> list[str]:
        """Put a scenario into this session; returns the problems found (each value that was left out). The
        attribution page checks each choice against what it offers."""
        decoded = sc.decode(scenario, c)
        if decoded.subject is not None:
            self.subject, self.subject_namespace = decoded.subject, subject_namespace(c)
            self.edited_record = self.form_from_link = {"PTID": decoded.subject, "record": decoded.record}
        for key, value in decoded.choices.items():
            self.store[f"attr_{key}"] = self.attribution_choices[key] = value
        return decoded.problems


def share_caption(subject: str | None) -> str:
    """What the share panel says its link and files hold for ``subject``."""
    if subject and subject.startswith(UPLOAD_PREFIX):
        return "An uploaded subject stays in this session: the link and files hold its settings only."
    return "The address bar holds the link to this subject, its edits and the attribution choices."


def subject_options(cohort: Cohort, upload=None) -> dict[str, str]:
    """A subject picker's options, {id: label}: the session's ``upload`` first (anything with ``id``,
    ``recorded`` and ``truth``), then the cohort's subjects."""
    labels = subject_labels(cohort)
    if upload is None:
        return labels
    return {upload.id: subject_label({**upload.recorded, "PTID": upload.id, "DX": upload.truth}), **labels}


def carried_subject(
    options: list[str], here: str, chosen: str | None, namespace: str | None, fallback=(None, None)
) -> tuple[str, str | None]:
    """The subject a picker shows on a cohort of namespace ``here``
    (:func:`~hyperfusion.data.cohort.subject_namespace`), and a note when a choice was dropped: ``chosen``
    (picked on a cohort of ``namespace``) when it names the same person here or is an upload, else
    ``fallback`` (another picker's (subject, namespace)) when that does, else the first option."""
    if chosen not in options and fallback[1] == here and fallback[0] in options:
        chosen, namespace = fallback[0], here
    if chosen in options and (namespace in (None, here) or chosen.startswith(UPLOAD_PREFIX)):
        return chosen, None
    if chosen is None or namespace in (None, here):
        return options[0], None
    return options[0], (
        f"The cohort changed: {chosen} was a subject of the previous one (in this cohort that ID, if it exists, "
        f"is another person), so the subject is now {options[0]}."
    )
