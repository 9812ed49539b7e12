"""Subject and what-if: the record as a form, every model's prediction live as values change, the ICE curves
and (AD) the counterfactual search."""

import dashboard as db
import render
import share
import streamlit as st
import whatif
from state import session

from hyperfusion.data.schema import FEATURES
from hyperfusion.inference import paths_of
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
elif st.session_state.get("form_subject") != ptid or not S.form_complete(st.session_state):
    _reset()  # (Streamlit drops a widget's state on the pages that do not show it)


usable = db.usable_models(cohort)  # found once per page run, not again on each edit
predictor = db.predictor_for(paths_of(usable)) if usable else None
reads_scan = usable and any(predictor.models[m.name].members[0].reads_scan for m in usable)
scan = subject.scan if subject.uploaded else db.scan_path(cohort, ptid) if reads_scan else None


def predictions(edited: dict) -> dict | None:
    """Every usable model's prediction for the recorded and the edited record; None when there is none."""
    st.subheader("Predictions")
    if not usable:
        st.info("No model for this cohort. Add model directories in the sidebar (Settings).")
        return None
    warnings = session.upload.warnings if subject.uploaded else []
    names = [m.name for m in usable]
    shown, preds, parts = S.prediction_view(predictor, names, ptid, scan, [recorded, edited], warnings)
    render.show(shown)
    for part, rows in parts.items():
        session.report_part(part, rows)
    return preds


@st.fragment
def record_and_predictions() -> None:
    """The form, the predictions and the what-ifs: an edit reruns only this part of the page. The record is
    read from the form's widget state before the form is drawn, so that the predictions reach the browser
    first; the address bar follows every edit (share.follow)."""
    form_col, pred_col = st.columns([2, 3], gap="large")
    edited = S.edited_record(recorded, st.session_state)
    session.edited_record = {"PTID": ptid, "record": edited}
    session.report_part("record", S.record_rows(recorded, edited))
    with pred_col:
        preds = predictions(edited)
    with form_col:
        st.subheader("Record")
        st.button("Reset to the recorded values", on_click=_reset)
        st.caption("Clear a field (⊗) to make its value missing: each model then imputes it.")
        for f in FEATURES:
            label, key, empty = S.field_label(f), f"value_{f.name}", S.MISSING_PLACEHOLDER
            if f.categories:
                value = st.selectbox(label, f.categories, key=key, index=None, placeholder=empty)
            else:
                value = st.number_input(label, key=key, placeholder=empty, **S.number_field(f))
            for note in S.form_value(recorded[f.name], value)[1]:
                st.caption(note)
    share.follow(cohort)
    if preds:
        with pred_col:
            st.page_link("views/2_Attribution.py", label="Attribution map of this subject →")
            whatif.ice_section(predictor, scan, edited, list(preds))
            whatif.record_section(predictor, scan, edited, list(preds), preds)
            if any(p.task == "ad" for p in preds.values()):
                whatif.counterfactual_section(predictor, cohort, subject, scan, edited, preds)


record_and_predictions()
