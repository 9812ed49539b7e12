"""The Attribution page's maps, cached: cohort subjects' maps process-wide (``st.cache_data``), an upload's in
this session only, with a progress bar the first time (the maps: :mod:`hyperfusion.pages.attribution`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import dashboard as db
import numpy as np
import streamlit as st
from state import session

from hyperfusion.pages import attribution as A


def keep_choice(key: str, options: Sequence, default=None) -> None:
    """Make ``st.session_state[key]`` one of ``options`` before its widget is drawn: ``default`` (else the first
    option) when it is unset or no longer offered (a model removed, a restored link's stale value). Defaults
    are set here, not through the widget's ``index`` / ``value``, so that a value restored into session state
    is not overridden and Streamlit does not warn about both."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default if default in options else options[0]


@st.cache_data(show_spinner="Computing the attribution map …", max_entries=32)
def cached_attribution(models, name, scan: str, record_json: str, method, target, baseline):
    predictor = db.predictor_for(models)
    return A.attribution_map(predictor, name, scan, json.loads(record_json), method, target, baseline)


def subject_attribution(models, name, subject: db.Subject, record: dict, method, target, baseline):
    """``cached_attribution`` for a cohort subject; an uploaded subject's maps are kept in this session only
    (never in the process-wide caches, so nothing derived from an upload outlives the session)."""
    record_json = json.dumps(record, sort_keys=True, default=str)
    if not subject.uploaded:
        return cached_attribution(models, name, subject.scan, record_json, method, target, baseline)
    store = session.upload_maps
    key = (models, name, hashlib.sha256(subject.scan).hexdigest(), record_json, method, target, baseline)
    if key not in store:
        with st.spinner("Computing the attribution map …"):
            predictor = db.predictor_for(models)
            store[key] = A.attribution_map(
                predictor, name, subject.scan, record, method, target, baseline, False
            )
        while len(store) > 6:
            store.popitem(last=False)
    return store[key]


def subject_map(
    models, name: str, subject: db.Subject, record: dict, method, target, baseline, *, status=None, label=""
) -> tuple[np.ndarray, dict]:
    """``subject_attribution``, with a progress bar in ``status`` (an ``st.empty()``) the first time this
    session asks for a cohort subject's map.

    The bar cannot go through ``cached_attribution``: a ``st.cache_data`` function's arguments are its key,
    and an element it updates is recorded and replayed on every cache hit (a placeholder made outside it then
    fails the replay). So the map is first computed here by ``explain_image`` with a progress callback; that
    leaves it in the explain engine's process-wide cache, the very one ``attribution_map`` reads, and the
    cached call that follows only resamples it onto the scan's grid. An upload's maps bypass the engine cache
    (nothing derived from an upload outlives the session), so they keep the spinner.
    """
    record_json = json.dumps(record, sort_keys=True, default=str)
    done = session.attribution_progressed
    scan = subject.scan if not subject.uploaded else None
    marker = (models, name, subject.id, scan, record_json, method, target, baseline)
    if status is not None and not subject.uploaded and marker not in done:
        from hyperfusion.explain import explain_image

        bar = status.progress(0.0, text=f"Computing {label} …")
        report = A.percent_progress(lambda fraction, text: bar.progress(fraction, text=text), label)
        try:
            predictor, same = db.predictor_for(models), json.loads(record_json)  # as the cached call reads it
            explain_image(
                predictor, name, scan, same, method, target=target, baseline=baseline, progress=report
            )
        finally:
            status.empty()
    result = subject_attribution(models, name, subject, record, method, target, baseline)
    done[marker] = True
    while len(done) > 256:
        done.popitem(last=False)
    return result
