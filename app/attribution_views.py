"""Helpers of the Attribution page: comparison modes, maps computed with a progress bar, downloads, per-region
tables of two maps."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import dashboard as db
import numpy as np
import streamlit as st
from state import UPLOAD_PREFIX, session

from hyperfusion.data.geometry import new_image_like
from hyperfusion.errors import HyperFusionError

#: Comparison modes: the value kept in ``st.session_state["attr_mode"]`` (stable, for shared links) -> label.
MODES: dict[str, str] = {
    "one": "one model",
    "models": "two models side by side",
    "records": "recorded vs edited record",
}


@dataclass(eq=False)  # arrays do not compare as one truth value
class SubjectMap:
    """One map the page draws: on the scan's own voxel grid, signed as computed, with how it is named."""

    data: np.ndarray
    model: str
    title: str  # the row's title in the figure
    stem: str  # the download's file name without its suffix
    summary: dict | None = None  # description and per-region summary (None for a difference)
    difference: bool = False


def keep_choice(key: str, options: Sequence, default=None) -> None:
    """Make ``st.session_state[key]`` one of ``options`` before its widget is drawn: ``default`` (else the first
    option) when it is unset or no longer offered (a model removed, a restored link's stale value). Defaults
    are set here, not through the widget's ``index`` / ``value``, so that a value restored into session state
    is not overridden and Streamlit does not warn about both."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default if default in options else options[0]


def reads_record(entry) -> bool:
    """Whether a loaded model (every member of an ensemble shares the architecture) reads the tabular record."""
    return bool(entry.members[0].network.reads_record)


def attribution_methods() -> list[dict]:
    """The explain engine's methods that run interactively (occlusion is offline: use `hyperfusion explain`)."""
    from hyperfusion.explain import available_methods

    return [m for m in available_methods() if not m.get("offline")]


def attribution_map(
    predictor, name, scan, record, method, target, baseline, cache=True
) -> tuple[np.ndarray, dict]:
    """One model's attribution map on the scan's own voxel grid, float32 (I, J, K), signed, with its
    description and per-region summary (hyperfusion.explain's single entry point)."""
    from hyperfusion.explain import explain_image

    if not predictor.models[name].members[0].reads_scan:
        raise HyperFusionError(f"{name} does not read the image: it has no image attribution map")
    attribution = explain_image(
        predictor, name, scan, record, method, target=target, baseline=baseline, cache=cache
    )
    return attribution.to_subject(scan).get_fdata(dtype=np.float32), attribution.summary(scan)


@st.cache_data(show_spinner="Computing the attribution map …", max_entries=32)
def cached_attribution(models, name, scan: str, record_json: str, method, target, baseline):
    return attribution_map(
        db.predictor_for(models), name, scan, json.loads(record_json), method, target, baseline
    )


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
            store[key] = attribution_map(
                db.predictor_for(models), name, subject.scan, record, method, target, baseline, False
            )
        while len(store) > 6:
            store.popitem(last=False)
    return store[key]


def subject_map(
    models: tuple[tuple[str, str], ...],
    name: str,
    subject: db.Subject,
    record: dict,
    method: str,
    target: int | None,
    baseline: str,
    *,
    status=None,
    label: str = "the attribution map",
) -> tuple[np.ndarray, dict]:
    """``subject_attribution`` (cohort maps cached process-wide, an upload's kept in the session), with a
    progress bar in ``status`` (an ``st.empty()``) the first time this session asks for a cohort subject's map.

    The bar cannot go through ``cached_attribution``: a ``st.cache_data`` function's arguments are its key,
    and an element it updates is recorded and replayed on every cache hit (a placeholder made outside it then
    fails the replay). So the map is first computed here by ``explain_image`` with a progress callback; that
    leaves it in the explain engine's process-wide cache, the very one ``attribution_map`` reads, and the
    cached call that follows only resamples it onto the scan's grid. An upload's maps bypass the engine cache
    (nothing derived from an upload outlives the session), so a first pass would compute them twice: uploads
    keep db's spinner until ``attribution_map`` / ``subject_attribution`` take a ``progress`` callback
    for their upload path (which is not st.cache_data, so it can simply pass it on).
    """
    record_json = json.dumps(record, sort_keys=True, default=str)
    done = session.attribution_progressed
    marker = (
        models,
        name,
        subject.id,
        subject.scan if not subject.uploaded else None,
        record_json,
        method,
        target,
        baseline,
    )
    if status is not None and not subject.uploaded and marker not in done:
        from hyperfusion.explain import explain_image

        bar = status.progress(0.0, text=f"Computing {label} …")
        shown = [-1]

        def report(fraction: float) -> None:
            percent = int(100 * min(max(fraction, 0.0), 1.0))
            if percent != shown[0]:  # one message per percent, not one per forward pass
                shown[0] = percent
                bar.progress(percent / 100, text=f"Computing {label} … {percent}%")

        try:
            explain_image(
                db.predictor_for(models),
                name,
                subject.scan,
                json.loads(record_json),
                method,
                target=target,
                baseline=baseline,
                cache=True,
                progress=report,
            )
        finally:
            status.empty()
    result = subject_attribution(models, name, subject, record, method, target, baseline)
    done[marker] = True
    while len(done) > 256:
        done.popitem(last=False)
    return result


# --- files ---------------------------------------------------------------------------------------------------
def file_stem(*parts: str) -> str:
    """A file name from its parts, joined by "_" (ADNI's 002_S_0295 keeps its own): characters a file system or
    a shell dislikes ("/" of a nested model's name, spaces) become "-"; an uploaded subject's name loses its
    "uploaded: " prefix and .nii(.gz) suffix."""
    cleaned = []
    for part in parts:
        text = re.sub(r"\.nii(\.gz)?$", "", part.removeprefix(UPLOAD_PREFIX))
        cleaned.append(re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-._") or "x")
    return "_".join(cleaned)


def nifti_gz(data: np.ndarray, affine: np.ndarray, header, description: str = "") -> bytes:
    """The map as a gzipped NIfTI-1 on the scan's own grid and affine, built in memory (nothing is written)."""
    return gzip.compress(
        new_image_like(data, affine, header, description).to_bytes(), compresslevel=6, mtime=0
    )
