"""Upload: a NIfTI scan plus a record (form or one CSV row) -> every model's prediction. Kept in memory only.

Whatever is wrong with an upload is shown as a message naming the file and what to do; a refused scan or record
never becomes the session's subject, and nothing of it is written to disk.
"""

import hashlib

import dashboard as db
import pandas as pd
import streamlit as st
from messages import plain
from state import UPLOAD_PREFIX, session

from hyperfusion.data.cohort import parse_record, record_from_csv, require_some_value
from hyperfusion.data.entry import DASHBOARD_FIX, check_scan, warning_lines
from hyperfusion.data.nifti import check_file_name, load_nifti
from hyperfusion.data.schema import FEATURES
from hyperfusion.errors import HyperFusionError
from hyperfusion.inference.tables import prediction_rows

st.title("Upload a subject")
st.caption("Nothing uploaded is written to disk: the scan and the record stay in this session's memory.")

scan_file = st.file_uploader("T1 scan registered to MNI152 (.nii or .nii.gz)", key="upload_scan")
anyway = st.toggle(
    "Predict anyway when the scan fails the entry check (every output is then marked unreliable)",
    key="upload_anyway",
    help="The models were trained on skull-stripped T1 scans registered to MNI152. A scan that is not is "
    "refused unless this is on; `hyperfusion preprocess` makes such a scan from a raw one.",
)
csv_file = st.file_uploader(
    "Record: one CSV row with ADNIMERGE column names (or use the form)",
    key="upload_csv",
    help="A header line and one line of values, separated by ',', ';' or tabs (UTF-8 or Windows-1252). Columns "
    "other than the model's attributes are ignored and listed; a misspelt attribute column is refused.",
)


def forget_upload() -> None:
    """Drop the upload from this session (the models' cached image features of it go too)."""
    up = session.upload
    del session.uploaded, session.upload_maps
    st.session_state.pop("upload_form_record", None)
    if (session.subject or "").startswith(UPLOAD_PREFIX):
        del session.subject
    if up is not None:
        db.forget_scan(up.scan)


def run_preprocessing(name: str, raw: bytes) -> None:
    """`hyperfusion preprocess` on the upload, with a progress bar; the result stays in this session's memory.

    The pipeline's tools read and write files, so this one step works in a private temporary folder that is
    deleted as soon as the result has been read back.
    """
    import tempfile
    from pathlib import Path

    from hyperfusion.data.preprocess.pipeline import preprocess_scan

    bar = st.progress(0.0, text="preprocessing")
    suffix = ".nii.gz" if raw[:2] == b"\x1f\x8b" else ".nii"
    try:
        with tempfile.TemporaryDirectory(prefix="hyperfusion-upload-") as tmp:
            source = Path(tmp) / f"upload{suffix}"
            source.write_bytes(raw)
            result = preprocess_scan(
                source, Path(tmp) / "out", threads=2,
                progress=lambda f, step: bar.progress(min(f, 1.0), text=f"preprocessing: {step}"),
            )  # fmt: skip
            stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name.rsplit(".", 1)[0]
            st.session_state["upload_preprocessed"] = {
                "source_sha256": hashlib.sha256(raw).hexdigest(), "name": f"{stem}_preprocessed.nii.gz",
                "scan": result.scan.read_bytes(), "qc": result.qc, "png": (result.out_dir / "qc.png").read_bytes(),
            }  # fmt: skip
    except HyperFusionError as exc:
        st.session_state["upload_preprocess_error"] = f"{name}: preprocessing failed: {exc}"
    finally:
        bar.empty()


scan_note = st.empty()  # what was read from the scan; emptied again if the models refuse the scan
problems: list[str] = []
notes: list[str] = []
scan_bytes: bytes | None = None
scan_warnings: list[str] = []
scan_name = scan_file.name if scan_file is not None else ""
preprocessed = None
if scan_file is not None:
    data = scan_file.getvalue()
    done = st.session_state.get("upload_preprocessed")
    if done and done["source_sha256"] == hashlib.sha256(data).hexdigest():
        # this upload was preprocessed in this session: the models read the result
        preprocessed, data = done, done["scan"]
        scan_name = done["name"]
    try:
        # An upload, like a path, must be named .nii / .nii.gz: the name is all that other tools go by
        check_file_name(scan_name, data)
        img = load_nifti(data, name=scan_name)
    except HyperFusionError as exc:
        problems.append(str(exc))
    else:
        zooms = ", ".join(f"{z:g}" for z in img.header.get_zooms()[:3])
        # the entry check: skull-stripped, registered to MNI152, plausible T1 intensities
        entry = check_scan(data, name=scan_name)
        if entry.passed:
            scan_bytes = data
            scan_note.success(plain(f"{scan_name}: {img.shape} voxels of {zooms} mm; entry check passed"))
        elif anyway:
            scan_bytes = data
            scan_warnings = warning_lines(entry)
        else:
            more = f" (and {len(entry.problems) - 1} more)" if len(entry.problems) > 1 else ""
            problems.append(f"{scan_name}: {entry.problems[0]}{more}. {DASHBOARD_FIX}")
        if not entry.passed:
            with st.expander("Entry check: the figures"):
                st.json(entry.to_dict())
            if preprocessed is None and st.button("Preprocess this scan (brain extraction and registration to "
                                                  "MNI152, about a minute)", key="upload_preprocess"):  # fmt: skip
                run_preprocessing(scan_file.name, data)
                st.rerun()
    if preprocessed is not None:
        qc = preprocessed["qc"]
        st.image(preprocessed["png"], caption=f"{scan_name}: {qc['verdict']['summary']}")
        st.dataframe(pd.DataFrame([{"brain share of the model box": qc["box_brain_share"],
                                    "correlation with the template": qc["template_ncc"],
                                    "brain-mask Dice with the template": qc["mask_dice"],
                                    "skull present": qc["skull_present"], "seconds": qc["seconds"]["total"]}]),
                     hide_index=True, key="upload_qc")  # fmt: skip

record: dict | None = None
if csv_file is not None:
    try:
        record, ignored = record_from_csv(csv_file.getvalue(), name=csv_file.name)
    except HyperFusionError as exc:
        problems.append(str(exc))
    else:
        if ignored:  # an ADNIMERGE export carries many other columns: say which were not read
            shown = ", ".join(ignored[:12]) + (f" and {len(ignored) - 12} more" if len(ignored) > 12 else "")
            notes.append(f"{csv_file.name}: ignored {len(ignored)} column(s) the models do not read: {shown}")
else:
    with st.form("upload_record"):
        st.markdown("Record (leave a value empty when it is missing)")
        cols = st.columns(3)
        raw = {}
        for n, f in enumerate(FEATURES):
            label = f"{f.name} ({f.unit})" if f.unit else f.name
            if f.categories:
                raw[f.name] = cols[n % 3].selectbox(label, f.categories)
            else:
                raw[f.name] = cols[n % 3].text_input(label, help=f"{f.meaning}; {f.plausible_range[0]:g}–"
                                                     f"{f.plausible_range[1]:g} {f.unit}")  # fmt: skip
        if st.form_submit_button("Use this record"):
            st.session_state["upload_form_record"] = raw
    record = st.session_state.get("upload_form_record")
    if record is not None:
        try:
            require_some_value(parse_record(record, source="the form"), "the form")
        except HyperFusionError as exc:
            problems.append(str(exc))
            record = None

if (failed := st.session_state.pop("upload_preprocess_error", None)) is not None:
    problems.append(failed)
for p in problems:
    st.error(plain(p))
for n in notes:
    st.info(plain(n))

if scan_bytes is not None and record is not None:
    models, _ = db.discover_models(db.settings()["models"])
    if not models:
        st.info("No model loaded. Add model directories in the sidebar (Settings).")
        st.stop()
    predictor = db.predictor_for(tuple((m.name, m.path) for m in models))
    try:
        preds = predictor.predict(scan_bytes, record, scan_name=scan_name)
    except HyperFusionError as exc:  # e.g. a scan outside the models' MNI152 box: known only against a model
        scan_note.empty()
        # Drop whatever features some model already computed from the refused scan
        if scan_bytes != (session.uploaded or {}).get("scan"):
            predictor.forget(scan_bytes)
        st.error(plain(exc))
        st.stop()
    # Only a scan and record that gave predictions become the session's subject (in its memory only): the
    # subject picker of every page offers it first
    previous = session.uploaded or {}
    if previous.get("scan") not in (None, scan_bytes):  # a replaced upload's image features go at once
        db.forget_scan(previous["scan"])
        del session.upload_maps
    session.uploaded = {"name": scan_name, "scan": scan_bytes, "record": dict(record),
                                    "warnings": scan_warnings}  # fmt: skip
    session.subject = UPLOAD_PREFIX + scan_name
    rows = prediction_rows(preds, "ad") + prediction_rows(preds, "brain_age")
    for row in rows if scan_warnings else []:
        row["warning"] = "UNRELIABLE: the scan failed the entry check"
    st.subheader("Predictions")
    for w in scan_warnings:
        st.warning(plain(w))
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="upload_predictions")
    st.markdown(
        "This subject is now the current subject of every page (listed first in each subject picker)."
    )
    links = st.columns(3)
    links[0].page_link("views/1_Subject.py", label="Edit its record (what-if) →")
    links[1].page_link("views/2_Attribution.py", label="Its attribution map →")
    if links[2].button("Forget the uploaded subject"):
        forget_upload()
        st.rerun()
elif scan_bytes is None and not problems:
    current = session.uploaded
    if current and "scan" in current:
        st.info(plain(f"{current['name']} is this session's uploaded subject (in memory only). Upload another "
                      "scan to replace it."))  # fmt: skip
        if st.button("Forget the uploaded subject"):
            forget_upload()
            st.rerun()
    else:
        st.info("Upload a scan and give a record to see every model's prediction.")

