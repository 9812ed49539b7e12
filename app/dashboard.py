"""The dashboard's boundary with the library: the settings, the cohort, the models, the Predictor, the
evaluation reports and the subjects' scans, cached with ``st.cache_data`` / ``st.cache_resource``, and the
current subject. No science here: each computation is one hyperfusion call.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import streamlit as st
from state import Subject, session

from hyperfusion import inference
from hyperfusion.data import cohort as hc
from hyperfusion.data.cohort import Cohort
from hyperfusion.data.nifti import read_scan
from hyperfusion.data.synthetic.shipped import is_shipped_cohort as is_demo_cohort
from hyperfusion.errors import HyperFusionError
from hyperfusion.pages import plain
from hyperfusion.pages.session import MAIN_PICKER, subject_options

__all__ = ["Subject", "is_demo_cohort"]  # the pages' db.Subject, db.is_demo_cohort (shipped tables)


def settings() -> dict:
    """The sidebar's settings: cohort, models, assets (at first from the environment: dashboard_settings)."""
    return session.settings


# --- models --------------------------------------------------------------------------------------------------
def discover_models(roots: str | None = None) -> tuple[list[inference.ModelInfo], list[str]]:
    """The models and ensembles under ``roots`` (default: the sidebar's), and the problems found."""
    return inference.find_models(roots or settings()["models"])


def usable_models(c: Cohort) -> list[inference.ModelInfo]:
    """The models under the sidebar's roots made for cohort ``c``'s task."""
    return inference.models_for_task(discover_models()[0], c.provenance.get("task"))


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
def cached_cohort(path: str, mtime: float) -> Cohort:
    # scans that fail the entry check do not stop the dashboard (require_cohort says so); nothing is written
    return hc.load_cohort(path, allow_unregistered=True, remember_checks=False)


def cohort_at(path: str | Path) -> Cohort:
    """The cohort at ``path`` (read again when its table changes)."""
    return cached_cohort(str(Path(path).expanduser()), hc.table_mtime(path))


def cohort() -> Cohort:
    return cohort_at(settings()["cohort"])


def cohort_or_none() -> Cohort | None:
    """The cohort, or None when it cannot be read (for what works without it)."""
    try:
        return cohort()
    except (HyperFusionError, OSError):
        return None


def require_cohort() -> Cohort:
    """The cohort, or a message saying why it cannot be read and where to change it (the page stops there);
    a warning when its scans failed the entry check as it was loaded."""
    try:
        c = cohort()
    except (HyperFusionError, OSError) as exc:
        st.error(plain(f"The cohort could not be read: {exc}"))
        st.info(
            "Point the sidebar's settings (Settings → Cohort) at a cohort directory or an ADNIMERGE table."
        )
        st.stop()
    for line in c.scan_warnings(dashboard=True):
        st.warning(plain(line))
    return c


@st.cache_resource(max_entries=8, show_spinner=False)
def _scan_file(path: str, mtime_ns: int):
    return read_scan(path)


def scan_path(c: Cohort, ptid: str):
    """The subject's scan (a hyperfusion ScanFile: a path that is decoded and validated once per process, and
    again when the file changes); for a shipped synthetic table, generated into the cache on first use."""
    if not is_demo_cohort(c) or isinstance(hc.cohort_row(c, ptid)["image_path"], str):
        path = hc.cohort_subject(c, ptid)[0]
    else:
        with st.spinner(
            f"Generating the synthetic scan of {ptid} into the cache (a second; a minute the first time) …"
        ):
            path = hc.cohort_subject(c, ptid, generate=True)[0]
    return None if path is None else _scan_file(str(path), Path(path).stat().st_mtime_ns)


def upload_scan(scan: bytes, name: str):
    """This session's upload as a hyperfusion ScanBytes, decoded once per session (never outside it)."""
    held = session.decoded_upload
    if held is None or held[0] is not scan:
        session.decoded_upload = held = (scan, read_scan(scan, name=name))
    return held[1]


def load_scan(scan: str | bytes):
    """The scan as a nibabel image with its voxels in memory, decoded and validated once (see scan_path)."""
    if isinstance(scan, bytes) and not hasattr(scan, "image"):  # this session's upload's bytes
        scan = upload_scan(scan, session.upload.name if session.upload else "the uploaded scan")
    return (scan if hasattr(scan, "image") else _scan_file(str(scan), Path(scan).stat().st_mtime_ns)).image


# --- evaluation reports ------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False)
def find_reports(assets: str, task: str | None, stamp: tuple) -> tuple[list, list[str]]:
    """``stamp``: the reports' (path, mtime) pairs, the cache key that makes a change read them again. (The
    import is here: scipy loads with the pages that show reports, not at start.)"""
    from hyperfusion.training import reports as R

    return R.find_reports(assets, task)


def reports_of(assets: str | Path, task: str | None = None) -> tuple[list, list[str]]:
    """The reports (hyperfusion.training.reports.Report) under ``<assets>/reports`` (read again when one is
    added, removed or changed)."""
    files = sorted((Path(assets) / "reports").glob("*/results.json"))
    return find_reports(str(assets), task, tuple((str(p), p.stat().st_mtime_ns) for p in files))


# --- the current subject -------------------------------------------------------------------------------------
def uploaded_subject() -> Subject | None:
    """The subject uploaded in this session (Upload page), if any."""
    up = session.upload
    return None if up is None else up.subject(upload_scan(up.scan, up.name), session.uploaded.get("truth"))


def _chosen() -> None:
    session.subject = st.session_state[MAIN_PICKER]


def subject_picker(c: Cohort, with_scan: bool = True, key: str = MAIN_PICKER) -> Subject:
    """The current subject, shared by every page (kept in the session: a widget's own state is dropped on pages
    that do not show it); this session's upload, if any, is the first choice. After a change of cohort a
    subject of the previous one is dropped, with its edits. ``key="brain_age_subject"``: the Brain age page's
    own choice on its cohort (the dashboard's subject when it is the same person there)."""
    up = uploaded_subject()
    labels = subject_options(c, up)
    chosen, note = session.pick_subject(list(labels), hc.subject_namespace(c), key)
    if note:
        st.info(note)
    on_change = _chosen if key == MAIN_PICKER else None
    help_ = "ID · diagnosis · age · sex"
    st.selectbox("Subject", list(labels), key=key, on_change=on_change, format_func=labels.get, help=help_)
    return up if up is not None and chosen == up.id else subject_of(c, chosen, with_scan)


def subject_of(c: Cohort, ptid: str, with_scan: bool = True) -> Subject:
    """A cohort subject (its scan read, or generated, only ``with_scan``)."""
    return Subject.of_cohort(c, ptid, scan_path(c, ptid) if with_scan else None)
