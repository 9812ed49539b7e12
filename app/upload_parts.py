"""The Upload page's parts: forgetting an upload, preprocessing it in memory, and its record (one CSV row
or the form). Nothing uploaded is written to disk."""

from __future__ import annotations

import dashboard as db
import streamlit as st
from state import session

from hyperfusion.data.schema import FEATURES
from hyperfusion.errors import HyperFusionError
from hyperfusion.pages import UPLOAD_PREFIX
from hyperfusion.pages import subject as S


def forget_upload() -> None:
    """Drop the upload from this session (the models' cached image features of it go too)."""
    up = session.upload
    del session.uploaded, session.upload_maps, session.decoded_upload
    del session.upload_form_record
    for f in FEATURES:
        st.session_state.pop(f"upload_value_{f.name}", None)
    if (session.subject or "").startswith(UPLOAD_PREFIX):
        del session.subject
    if up is not None:
        db.forget_scan(up.scan)


def keep_upload(name: str, scan: bytes, record: dict, warnings: list[str]) -> None:
    """Make a scan and record that gave predictions this session's subject (a replaced upload's image features
    go at once)."""
    previous = session.uploaded or {}
    if previous.get("scan") not in (None, scan):
        db.forget_scan(previous["scan"])
        del session.upload_maps
    session.uploaded = {"name": name, "scan": scan, "record": dict(record), "warnings": warnings}
    session.subject = UPLOAD_PREFIX + name


def forget_button(where) -> None:
    """A button (in ``where``: the page or a column) that forgets the uploaded subject."""
    if where.button("Forget the uploaded subject"):
        forget_upload()
        st.rerun()


def run_preprocessing(name: str, raw: bytes) -> None:
    """`hyperfusion preprocess` on the upload, with a progress bar; the result stays in this session's memory."""
    from hyperfusion.data.preprocess.pipeline import preprocess_bytes

    bar = st.progress(0.0, text="preprocessing")
    try:
        progress = lambda f, step: bar.progress(min(f, 1.0), text=f"preprocessing: {step}")  # noqa: E731
        session.upload_preprocessed = preprocess_bytes(raw, name, progress=progress)
    except HyperFusionError as exc:
        session.upload_preprocess_error = f"{name}: preprocessing failed: {exc}"
    finally:
        bar.empty()


def record_input(csv_file) -> tuple[dict | None, list[str], list[str]]:
    """The record from one CSV row, or else from the form: (record, problems, notes)."""
    if csv_file is None:
        record_form()
    csv = (csv_file.getvalue(), csv_file.name) if csv_file is not None else None
    return S.upload_record(csv, session.upload_form_record)


def record_form() -> None:
    """The form of a record, kept in the session once submitted (and shown again with its last values after a
    new scan or a visit to another page)."""
    for k, value in S.upload_form_state(session.upload_form_record or {}).items():
        st.session_state.setdefault(k, value)
    with st.form("upload_record"):
        st.markdown("Record (leave a value empty when it is missing; sex has no default: choose it)")
        cols = st.columns(3)
        raw = {}
        for n, f in enumerate(FEATURES):
            label, key, col = S.field_label(f), f"upload_value_{f.name}", cols[n % 3]
            if f.categories:
                raw[f.name] = col.selectbox(label, f.categories, index=None, key=key, placeholder="choose")
            else:
                raw[f.name] = col.text_input(label, key=key, help=S.text_field_help(f))
        if st.form_submit_button("Use this record"):
            session.upload_form_record = raw
