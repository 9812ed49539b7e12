"""Subject and what-if: the record as a form, every model's prediction live as values change, the ICE curves
and (AD) the counterfactual search."""

import dashboard as db
import render
import streamlit as st
import whatif
from state import session

from hyperfusion.data.schema import FEATURES
from hyperfusion.errors import HyperFusionError
from hyperfusion.inference import paths_of
from hyperfusion.pages import plain
from hyperfusion.pages import subject as S

st.title("Subject and what-if")
cohort = db.require_cohort()
subject = db.subject_picker(cohort, with_scan=False)  # the scan is read only when a model needs it
ptid, recorded = subject.id, subject.recorded
st.caption(S.subject_caption(subject, cohort))


def _reset() -> None:
    """Put the form back to the recorded values (also on a change of subject)."""
    st.session_state.update(S.form_state(recorded), form_subject=ptid)


link = session.form_from_link
if link and link["PTID"] == ptid:  # a shared link's edits fill the form once
    st.session_state.update(S.form_state(link["record"]), form_subject=ptid)
    del session.form_from_link
elif st.session_state.get("form_subject") != ptid or f"value_{FEATURES[0].name}" not in st.session_state:
    _reset()

form_col, pred_col = st.columns([2, 3], gap="large")
edited: dict = {}
with form_col:
    st.subheader("Record")
    st.button("Reset to the recorded values", on_click=_reset)
    for f in FEATURES:
        label, key = S.field_label(f), f"value_{f.name}"
        value_col, missing_col = st.columns([3, 1], vertical_alignment="bottom")
        missing = missing_col.checkbox("missing", key=f"missing_{f.name}", disabled=not f.editable)
        if f.categories:
            value = value_col.selectbox(label, f.categories, key=key, disabled=missing)
        else:
            value = value_col.number_input(label, key=key, disabled=missing, **S.number_field(f))
        edited[f.name], notes = S.form_value(recorded[f.name], value, missing)
        for note in notes:
            value_col.caption(note)

session.edited_record = {"PTID": ptid, "record": edited}
session.report_part("record", S.record_rows(recorded, edited))

with pred_col:
    st.subheader("Predictions")
    usable = db.usable_models(cohort)
    if not usable:
        st.info("No model for this cohort. Add model directories in the sidebar (Settings).")
        st.stop()
    predictor = db.predictor_for(paths_of(usable))
    reads_scan = any(predictor.models[m.name].members[0].reads_scan for m in usable)
    scan = subject.scan if subject.uploaded else db.scan_path(cohort, ptid) if reads_scan else None
    names, said = S.models_to_predict(predictor, [m.name for m in usable], ptid, scan is not None)
    render.show(said)
    try:
        preds = predictor.predict(scan, [recorded, edited], models=names)
    except HyperFusionError as exc:
        st.error(plain(exc))
        st.stop()
    for w in session.upload.warnings if subject.uploaded else []:
        st.warning(plain(w))  # an upload predicted despite a failed entry check: every output says so
    shown, ad_rows, age_rows = S.predictions(preds)
    render.show(shown)
    for part, rows in (("predictions", ad_rows), ("brain_age", age_rows)):
        if rows:
            session.report_part(part, rows)
    st.page_link("views/2_Attribution.py", label="Attribution map of this subject →")
    whatif.ice_section(predictor, scan, edited, names)
    whatif.record_section(predictor, scan, edited, names, preds)
    if ad_rows:
        whatif.counterfactual_section(predictor, cohort, subject, scan, edited, preds)
