"""The dashboard's boundary with the library: the cohort, the models and the Predictor cached with
``st.cache_data`` / ``st.cache_resource`` (the app's only caches), the current subject, attribution maps, and the
furniture every page shares (notices, settings, the share panel). No science here: each computation is one
hyperfusion call. Settings come from the environment (``HYPERFUSION_COHORT``, ``HYPERFUSION_MODELS``,
``HYPERFUSION_DEMO_ASSETS``; see the README) and can be changed in the sidebar.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import numpy as np
import share
import streamlit as st
from messages import plain
from state import UPLOAD_PREFIX, Subject, session

from hyperfusion import inference
from hyperfusion.data import cohort as hc
from hyperfusion.data.cohort import Cohort
from hyperfusion.errors import HyperFusionError
from hyperfusion.report import RESEARCH_NOTICE, SYNTHETIC_NOTICE


def settings() -> dict:
    return session.settings  # cohort, models, assets


# --- models --------------------------------------------------------------------------------------------------
def discover_models(roots: str) -> tuple[list[inference.ModelInfo], list[str]]:
    return inference.find_models(roots)  # models and ensembles under the sidebar's roots, and problems


def models_for(c: Cohort, models: list[inference.ModelInfo]) -> list[inference.ModelInfo]:
    """The models of the cohort's task (all of them when the cohort does not say)."""
    return [m for m in models if c.provenance.get("task") in (None, m.task)]


@st.cache_resource(show_spinner="Loading models …")
def predictor_for(paths: tuple[tuple[str, str], ...]):
    """One Predictor per set of models (networks are shared by weights hash inside hyperfusion); one torch
    thread, since the server answers several sessions at once."""
    predictor = inference.Predictor(dict(paths), threads=1)
    _PREDICTORS.add(predictor)
    return predictor


_PREDICTORS: weakref.WeakSet = weakref.WeakSet()  # every Predictor this server process made


def forget_scan(scan: bytes) -> None:
    """Drop an upload's image features from every predictor of the process (they are keyed by content)."""
    for predictor in list(_PREDICTORS):
        predictor.forget(scan)


# --- cohort --------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner="Reading the cohort table and checking a sample of its scans …")
def cached_cohort(path: str, _mtime: float) -> Cohort:
    # scans that fail the entry check do not stop the dashboard: every page says so (require_cohort); the
    # checks are not remembered on disk (the dashboard writes nothing), st.cache_data keeps the cohort
    return hc.load_cohort(path, allow_unregistered=True, remember_checks=False)


def cohort() -> Cohort:
    path = Path(settings()["cohort"]).expanduser()
    table = path / "cohort.csv" if path.is_dir() else path
    return cached_cohort(str(path), table.stat().st_mtime if table.exists() else 0.0)


def require_cohort() -> Cohort:
    """The cohort, or a message saying why it cannot be read and where to change it (the page stops there)."""
    try:
        c = cohort()
    except (HyperFusionError, OSError) as exc:
        st.error(plain(f"The cohort could not be read: {exc}"))
        st.info(
            "Point the sidebar's settings (Settings → Cohort) at a cohort directory or an ADNIMERGE table."
        )
        st.stop()
    show_scan_warnings(c)
    return c


def show_scan_warnings(c: Cohort) -> None:
    """A warning on the page when the cohort's scans failed the entry check as it was loaded."""
    from messages import plain

    for line in c.scan_warnings():
        st.warning(
            plain(line.replace("(--allow-unregistered)", "(the dashboard shows it, marked)"))
            + " "
            + plain(DASHBOARD_COHORT_FIX)
        )


DASHBOARD_COHORT_FIX = (
    "Its predictions and maps are unreliable: preprocess the raw scans with `hyperfusion preprocess --input "
    "RAW_FOLDER_OR_TABLE --out NEW_COHORT_DIR` and point the sidebar at that cohort."
)


def is_demo_cohort(c: Cohort) -> bool:
    """A shipped synthetic table: its scans are generated on demand, subject by subject."""
    from hyperfusion.data.synthetic.shipped import is_shipped_table

    return c.is_synthetic and is_shipped_table(c.path)


def scan_path(c: Cohort, ptid: str) -> str | None:
    """The subject's scan; for a shipped synthetic table, generated into the cache on first use."""
    if not is_demo_cohort(c) or isinstance(hc.cohort_row(c, ptid)["image_path"], str):
        return hc.cohort_subject(c, ptid)[0]
    with st.spinner(
        f"Generating the synthetic scan of {ptid} into the cache (a second; the first one on this "
        "machine also builds the generator's atrophy fields, about a minute) …"
    ):
        return hc.cohort_subject(c, ptid, generate=True)[0]


# --- the current subject -------------------------------------------------------------------------------------
def uploaded_subject() -> Subject | None:
    """The subject uploaded in this session (Upload page), if any."""
    up = session.upload
    if up is None:
        return None
    recorded = hc.cohort_record(hc.parse_record(up.record, source="the uploaded record"))
    return Subject(up.id, up.scan, recorded, session.uploaded.get("truth"), uploaded=True)


def _chosen() -> None:
    session.subject = st.session_state["_subject_widget"]


def carry_subject(c: Cohort, chosen: str | None, namespace: str | None, options: list[str]) -> str:
    """The subject to show on cohort ``c``: ``chosen`` when it names the same person here (the same
    ``subject_namespace``, or an upload), else the first option, with a note saying the choice was dropped."""
    here = hc.subject_namespace(c)
    if chosen in options and (namespace in (None, here) or chosen.startswith(UPLOAD_PREFIX)):
        return chosen
    if chosen is not None and namespace not in (None, here):
        st.info(
            f"The cohort changed: {chosen} was a subject of the previous one (in this cohort that ID, if it "
            f"exists, is another person), so the subject is now {options[0]}."
        )
    return options[0]


def subject_picker(c: Cohort, with_scan: bool = True) -> Subject:
    """The current subject, shared by every page (a widget's own state is dropped on pages that do not show
    it, so the choice is kept in the session). This session's upload, if any, is the first choice. After a
    change of cohort a subject of the previous one is dropped, with its edits (see ``carry_subject``)."""
    up = uploaded_subject()
    labels = hc.subject_labels(c)
    options = ([up.id] if up else []) + list(labels)
    if up is not None:
        labels[up.id] = hc.subject_label({**up.recorded, "PTID": up.id, "DX": up.truth})
    here = hc.subject_namespace(c)
    chosen = carry_subject(c, session.subject, session.subject_namespace, options)
    if chosen != session.subject or session.subject_namespace not in (None, here):
        del session.edited_record  # another person's edits must not follow the ID
        st.session_state.pop("form_subject", None)
    session.subject, session.subject_namespace = chosen, here
    st.session_state["_subject_widget"] = session.subject
    st.selectbox(
        "Subject",
        options,
        key="_subject_widget",
        on_change=_chosen,
        format_func=labels.get,
        help="ID · diagnosis · age · sex",
    )
    if up is not None and session.subject == up.id:
        return up
    return subject_of(c, session.subject, with_scan)


def subject_of(c: Cohort, ptid: str, with_scan: bool = True) -> Subject:
    """A cohort subject (its scan read, or generated, only ``with_scan``)."""
    row = hc.cohort_row(c, ptid)
    truth = row.get("DX")
    scan = scan_path(c, ptid) if with_scan else None
    return Subject(ptid, scan, hc.cohort_record(row), truth if isinstance(truth, str) else None)


@st.cache_resource(max_entries=8, show_spinner=False)
def _decoded(source: str | bytes, _mtime_ns: int, name: str | None = None):
    from hyperfusion.data.nifti import load_nifti

    img = load_nifti(source, name=name)
    return type(img)(np.asarray(img.dataobj), img.affine, img.header)  # the voxels held in memory


def load_scan(scan: str | bytes):
    """The scan as a nibabel image with its voxels in memory, decoded and validated once: a cohort scan once
    per process (re-read when the file changes), an upload once per session (never outside it)."""
    if not isinstance(scan, bytes):
        return _decoded(scan, Path(scan).stat().st_mtime_ns)
    up = session.upload
    if session.decoded_upload is None or session.decoded_upload[0] is not scan:
        session.decoded_upload = (scan, _decoded.__wrapped__(scan, 0, up.name if up else "the uploaded scan"))
    return session.decoded_upload[1]


# --- what every page shows around it (Home.py calls these around the page) ----------------------------------
def furniture() -> None:
    """The notices, a shared link applied once, and the settings sidebar."""
    synthetic = False
    try:
        c = cohort()
        synthetic = c.is_synthetic
        share.apply_link_once(c)
        share.restore_choices()
    except (HyperFusionError, OSError):
        pass
    models, _ = discover_models(settings()["models"])
    synthetic = synthetic or any(m.synthetic for m in models)
    st.warning(f"**{RESEARCH_NOTICE}**" + (f" · **{SYNTHETIC_NOTICE}**" if synthetic else ""), icon="⚠️")
    if session.upload is not None:
        st.caption(f"Uploaded subject in this session: {session.upload.name} (kept in memory only).")
    for problem in session.link_problems or []:
        st.warning(f"Shared link: {problem}")
    del session.link_problems
    s = settings()
    with st.sidebar:
        st.markdown("### Settings")
        with st.form("settings_form"):
            cohort_in = st.text_input("Cohort directory or ADNIMERGE table", s["cohort"])
            models_in = st.text_area(
                "Model directories (one per line)", "\n".join(s["models"].split(os.pathsep))
            )
            if st.form_submit_button("Apply"):
                lines = [line.strip() for line in models_in.splitlines() if line.strip()]
                session.settings = {**s, "cohort": cohort_in.strip(), "models": os.pathsep.join(lines)}
                st.rerun()
        st.caption(RESEARCH_NOTICE)


def footer() -> None:
    """Keeps the address bar equal to the scenario and offers its downloads."""
    try:
        c = cohort()
    except (HyperFusionError, OSError):
        return
    models, _ = discover_models(settings()["models"])
    share.share_panel(c, c.is_synthetic or any(m.synthetic for m in models))
