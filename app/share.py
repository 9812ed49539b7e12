"""The current scenario (subject, record edits, models, attribution settings) as a link, a JSON file and an HTML
report.

A scenario is a flat mapping of short keys, the same in the link's query parameters and in the JSON file:

    subject        the cohort subject's PTID (an uploaded subject is never put in a link: it lives in one session)
    <ATTRIBUTE>    an edited record value under its ADNIMERGE name (AGE=71, APOE4=2, ABETA=<200,
                   FDG=missing); attributes left as recorded are not listed
    model, model_b, mode, method, target, baseline
                   the attribution page's choices
    cohort         the cohort path, so a link opened by someone whose dashboard shows another cohort says so

Opening a link (or a JSON file on the Home page) checks every value through the same record parser as the
rest of the tool; a bad value is reported and left out, never applied half way.
"""

from __future__ import annotations

import base64
import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import dashboard as db
import streamlit as st

from hyperfusion.data.cohort import Cohort, parse_record
from hyperfusion.data.schema import FEATURE_NAMES, FEATURES
from hyperfusion.errors import HyperFusionError

ATTRIBUTION_KEYS = ("model", "model_b", "mode", "method", "target", "baseline")  # widget keys attr_<key>
MISSING = "missing"
ATTR_LAST = "_attr_last"  # the attribution choices last seen, kept across pages


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def edits_of(recorded: dict, record: dict) -> dict[str, str]:
    """The attributes whose value in ``record`` differs from the recorded one, as link text."""
    return {n: _text(record.get(n)) for n in FEATURE_NAMES if _text(record.get(n)) != _text(recorded.get(n))}


def current_scenario(c: Cohort) -> dict[str, str]:
    """The scenario this session shows now."""
    out: dict[str, str] = {"cohort": str(c.path)}
    subject = st.session_state.get("subject")
    if subject and not subject.startswith(db.UPLOAD_PREFIX) and subject in set(c.table["PTID"]):
        out["subject"] = subject
        edited = st.session_state.get("edited_record")
        if edited and edited.get("PTID") == subject:
            row = c.table.loc[c.table["PTID"] == subject].iloc[0]
            out.update(edits_of(db.recorded_values(row), edited["record"]))
    last = st.session_state.setdefault(ATTR_LAST, {})
    for key in ATTRIBUTION_KEYS:
        value = st.session_state.get(f"attr_{key}")
        if value is not None:
            last[key] = str(value)
        if key in last:
            out[key] = last[key]
    return out


def restore_choices() -> None:
    """Re-seed the attribution page's choices (Streamlit drops a widget's state on pages that do not show it);
    call before any widget is drawn."""
    for key, value in st.session_state.get(ATTR_LAST, {}).items():
        if f"attr_{key}" not in st.session_state:
            st.session_state[f"attr_{key}"] = value


def apply_scenario(c: Cohort, scenario: dict[str, str]) -> list[str]:
    """Put a scenario into this session's state; returns the problems found (each value that was left out)."""
    problems: list[str] = []
    unknown = sorted(set(scenario) - {"subject", "cohort", *FEATURE_NAMES, *ATTRIBUTION_KEYS})
    if unknown:
        problems.append(f"unknown scenario keys ignored: {', '.join(unknown)}")
    if scenario.get("cohort") and Path(scenario["cohort"]).resolve() != Path(c.path).resolve():
        problems.append(
            f"the scenario was made on the cohort {scenario['cohort']}; this dashboard shows {c.path} "
            "(change it in the sidebar's settings)"
        )
    ptid = scenario.get("subject")
    if ptid is not None:
        if ptid not in set(c.table["PTID"]):
            problems.append(f"subject {ptid!r} is not in this cohort; the subject was left as it was")
        else:
            st.session_state["subject"] = ptid
            row = c.table.loc[c.table["PTID"] == ptid].iloc[0]
            record = db.recorded_values(row)
            for name in FEATURE_NAMES:
                if name not in scenario:
                    continue
                value = None if scenario[name] == MISSING else scenario[name]
                try:
                    parse_record({**record, name: value}, source="the shared scenario")
                except HyperFusionError as exc:
                    problems.append(f"{exc}; {name} was left as recorded")
                    continue
                record[name] = value
            st.session_state["edited_record"] = {"PTID": ptid, "record": record}
            st.session_state["form_from_link"] = {"PTID": ptid, "record": record}
    # the attribution page checks each choice against what it offers (attribution_views.keep_choice)
    last = st.session_state.setdefault(ATTR_LAST, {})
    for key in ATTRIBUTION_KEYS:
        if key in scenario:
            st.session_state[f"attr_{key}"] = last[key] = scenario[key]
    return problems


def apply_link_once(c: Cohort) -> None:
    """On a session's first page run, apply the link's query parameters (then the page keeps the URL current)."""
    if st.session_state.get("_link_applied"):
        return
    st.session_state["_link_applied"] = True
    params = {k: st.query_params[k] for k in st.query_params}
    if params:
        st.session_state["link_problems"] = apply_scenario(c, params)


def form_values(record: dict) -> dict:
    """Widget state of the subject page's form for a raw record (value_X, missing_X)."""
    state = {}
    for f in FEATURES:
        value = record.get(f.name)
        if isinstance(value, float) and math.isnan(value):
            value = None
        state[f"missing_{f.name}"] = value is None
        if f.categories:
            state[f"value_{f.name}"] = value if value in f.categories else f.categories[0]
        else:
            number = db.as_float(str(value).lstrip("<>")) if value is not None else math.nan
            lo, hi = f.plausible_range
            default = min(max(number, lo), hi) if math.isfinite(number) else (lo + hi) / 2
            state[f"value_{f.name}"] = int(default) if f.type == "count" else float(default)
    return state


# --- export --------------------------------------------------------------------------------------------------
def report_part(name: str, value) -> None:
    """A page hands a piece of the HTML report (a predictions table, a PNG) to the share panel."""
    st.session_state.setdefault("report_parts", {})[name] = {
        "subject": st.session_state.get("subject"),
        "value": value,
    }


def html_report(scenario: dict[str, str], parts: dict, synthetic: bool) -> str:
    """A self-contained HTML page: the scenario, the record, the predictions and the figures (PNG inline)."""
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in scenario.items())
    body = [
        f"<h1>HyperFusion scenario: {e(scenario.get('subject', 'uploaded subject'))}</h1>",
        f"<p class='warn'><b>{e(db.RESEARCH_NOTICE)}</b>"
        + (f" <b>{e(db.SYNTHETIC_NOTICE)}</b>" if synthetic else "")
        + "</p>",
        f"<p>Exported {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</p>",
        "<h2>Scenario</h2>",
        f"<table>{rows}</table>",
    ]
    for title, key in (("Record", "record"), ("Predictions", "predictions"), ("Brain age", "brain_age")):
        table = parts.get(key)
        if table:
            head = "".join(f"<th>{e(str(c))}</th>" for c in table[0])
            cells = "".join(
                "<tr>" + "".join(f"<td>{e(_text(v))}</td>" for v in r.values()) + "</tr>" for r in table
            )
            body += [f"<h2>{title}</h2>", f"<table><tr>{head}</tr>{cells}</table>"]
    for title, key in (("Predictions", "predictions_png"), ("Attribution", "attribution_png")):
        png = parts.get(key)
        if png:
            data = base64.b64encode(png).decode()
            body += [f"<h2>{title} figure</h2>", f"<img alt='{title}' src='data:image/png;base64,{data}'>"]
    if parts.get("attribution_caption"):
        body.append(f"<p>{e(parts['attribution_caption'])}</p>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}.warn{color:#8a4b00}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>HyperFusion scenario</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )


def share_panel(c: Cohort, synthetic: bool) -> None:
    """Keep the URL equal to the current scenario and offer the JSON and HTML downloads (sidebar)."""
    scenario = current_scenario(c)
    link = {k: v for k, v in scenario.items() if k != "cohort"}
    if {k: st.query_params[k] for k in st.query_params} != link:
        st.query_params.from_dict(link)
    subject = st.session_state.get("subject")
    parts = {
        k: v["value"] for k, v in st.session_state.get("report_parts", {}).items() if v["subject"] == subject
    }
    with st.sidebar:
        st.markdown("### Share this scenario")
        if subject and subject.startswith(db.UPLOAD_PREFIX):
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
