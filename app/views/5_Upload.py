"""Upload: a NIfTI scan plus a record (form or one CSV row) -> every model's prediction. Kept in memory only.

Whatever is wrong with an upload is shown as a message naming the file and what to do; a refused scan or record
never becomes the session's subject, and nothing of it is written to disk.
"""

import dashboard as db
import render
import streamlit as st
import upload_parts as parts
from state import session

from hyperfusion.data.entry import check_upload
from hyperfusion.errors import HyperFusionError
from hyperfusion.inference import paths_of
from hyperfusion.pages import plain
from hyperfusion.pages import subject as S

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

scan_note = st.empty()  # what was read from the scan; emptied again if the models refuse the scan
problems: list[str] = []
scan_bytes: bytes | None = None
scan_warnings: list[str] = []
scan_name = scan_file.name if scan_file is not None else ""
if scan_file is not None:
    data, scan_name, preprocessed = S.scan_to_read(
        scan_file.getvalue(), scan_name, session.upload_preprocessed
    )
    upload = check_upload(data, scan_name, allow=anyway)
    if upload.accepted:
        scan_bytes, scan_warnings = data, upload.warnings
        if upload.summary:
            scan_note.success(plain(upload.summary))
    elif upload.problem:
        problems.append(upload.problem)
    if upload.check is not None and not upload.check.passed:
        with st.expander("Entry check: the figures"):
            st.json(upload.check.to_dict())
        if preprocessed is None and st.button(
            "Preprocess this scan (brain extraction and registration to MNI152, about a minute)",
            key="upload_preprocess",
        ):
            parts.run_preprocessing(scan_file.name, data)
            st.rerun()
    if preprocessed is not None:
        st.image(preprocessed["png"], caption=f"{scan_name}: {preprocessed['qc']['verdict']['summary']}")
        st.dataframe(S.qc_table(preprocessed["qc"]), hide_index=True, key="upload_qc")

record, refused, notes = parts.record_input(csv_file)
problems += refused
if session.upload_preprocess_error is not None:
    problems.append(session.upload_preprocess_error)
    del session.upload_preprocess_error
for p in problems:
    st.error(plain(p))
for n in notes:
    st.info(plain(n))

if scan_bytes is not None and record is not None:
    models, _ = db.discover_models()
    if not models:
        st.info("No model loaded. Add model directories in the sidebar (Settings).")
        st.stop()
    predictor = db.predictor_for(paths_of(models))
    try:
        preds = predictor.predict(scan_bytes, record, scan_name=scan_name)
    except HyperFusionError as exc:  # e.g. a scan outside the models' MNI152 box: known only against a model
        scan_note.empty()
        if scan_bytes != (session.uploaded or {}).get("scan"):  # the refused scan's features go
            predictor.forget(scan_bytes)
        st.error(plain(exc))
        st.stop()
    # Only a scan and record that gave predictions become the session's subject (in its memory only): the
    # subject picker of every page offers it first
    parts.keep_upload(scan_name, scan_bytes, record, scan_warnings)
    render.show(S.upload_predictions(preds, scan_warnings))
    links = st.columns(3)
    links[0].page_link("views/1_Subject.py", label="Edit its record (what-if) →")
    links[1].page_link("views/2_Attribution.py", label="Its attribution map →")
    parts.forget_button(links[2])
elif scan_bytes is None and not problems:
    current = session.upload
    if current is not None:
        st.info(plain(S.kept_upload_note(current.name)))
        parts.forget_button(st)
    else:
        st.info("Upload a scan and give a record to see every model's prediction.")
