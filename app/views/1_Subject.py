"""Subject and what-if: the record as a form, every model's prediction live as values change, the ICE curves
and (AD) the counterfactual search."""

import dashboard as db
import pandas as pd
import share
import streamlit as st
import whatif
from messages import plain
from state import session

from hyperfusion.data.schema import FEATURES
from hyperfusion.errors import HyperFusionError
from hyperfusion.explain import figures
from hyperfusion.inference.tables import prediction_rows

st.title("Subject and what-if")
cohort = db.require_cohort()
subject = db.subject_picker(cohort, with_scan=False)  # the scan is read only when a model needs it
ptid, recorded = subject.id, subject.recorded
if subject.uploaded:
    st.caption(
        f"Uploaded in this session (kept in memory only) · diagnosis: **{subject.truth or 'not given'}**"
    )
else:
    st.caption(f"Diagnosis ({cohort.label_column}): **{subject.truth}** · source: {cohort.source}")


def _reset() -> None:
    """Put the form back to the recorded values (also on a change of subject)."""
    st.session_state.update(share.form_values(recorded), form_subject=ptid)


link = session.form_from_link
if link and link["PTID"] == ptid:  # a shared link's edits fill the form once
    st.session_state.update(share.form_values(link["record"]), form_subject=ptid)
    del session.form_from_link
elif st.session_state.get("form_subject") != ptid or f"value_{FEATURES[0].name}" not in st.session_state:
    _reset()

form_col, pred_col = st.columns([2, 3], gap="large")
edited: dict = {}
with form_col:
    st.subheader("Record")
    st.button("Reset to the recorded values", on_click=_reset)
    for f in FEATURES:
        label = f"{f.name} ({f.unit})" if f.unit else f.name
        value_col, missing_col = st.columns([3, 1], vertical_alignment="bottom")
        missing = missing_col.checkbox("missing", key=f"missing_{f.name}", disabled=not f.editable)
        lo, hi = f.plausible_range
        help_text = f"{f.meaning}; plausible range {lo:g}–{hi:g} {f.unit}".strip()
        if f.categories:
            value = value_col.selectbox(label, f.categories, key=f"value_{f.name}", disabled=missing)
        else:
            kind, step = (int, 1) if f.type == "count" else (float, float(f.step))
            value = value_col.number_input(
                label, kind(lo), kind(hi), step=step, key=f"value_{f.name}", disabled=missing, help=help_text
            )
        raw = recorded[f.name]
        if missing:
            edited[f.name] = None
            value_col.caption("missing → imputed by each model (training median)")
        elif isinstance(raw, str) and raw[:1] in "<>" and float(raw[1:]) == value:
            edited[f.name] = raw  # unchanged censored value: keep "<200" / ">1700" as recorded
            value_col.caption(f"recorded as {raw} (beyond the assay range)")
        else:
            edited[f.name] = value
        if edited[f.name] != raw and not (raw is None and missing):
            value_col.caption(f"edited · recorded: {raw if raw is not None else 'missing'}")

session.edited_record = {"PTID": ptid, "record": edited}
session.report_part(
    "record", [{"attribute": n, "recorded": recorded[n], "edited": edited[n]} for n in recorded]
)

with pred_col:
    st.subheader("Predictions")
    usable = db.models_for(cohort, db.discover_models(db.settings()["models"])[0])
    if not usable:
        st.info("No model for this cohort. Add model directories in the sidebar (Settings).")
        st.stop()
    predictor = db.predictor_for(tuple((m.name, m.path) for m in usable))
    reads_scan = {m.name: predictor.models[m.name].members[0].reads_scan for m in usable}
    scan = (
        subject.scan if subject.uploaded else db.scan_path(cohort, ptid) if any(reads_scan.values()) else None
    )
    names = [n for n, reads in reads_scan.items() if scan is not None or not reads]
    if scan is None and any(reads_scan.values()):
        st.info(f"No scan for {ptid}: only the tabular models are shown.")
    try:
        preds = predictor.predict(scan, [recorded, edited], models=names)
    except HyperFusionError as exc:
        st.error(plain(exc))
        st.stop()
    for w in session.upload.warnings if subject.uploaded else []:
        st.warning(plain(w))  # an upload predicted despite a failed entry check: every output says so
    ad_rows, age_rows = prediction_rows(preds, "ad", 1, 0), prediction_rows(preds, "brain_age", 1, 0)
    if ad_rows:
        st.plotly_chart(figures.probability_bars(preds, row=1), width="stretch")
        st.dataframe(pd.DataFrame(ad_rows), hide_index=True, key="ad_predictions")
        session.report_part("predictions", ad_rows)
    if age_rows:
        st.dataframe(pd.DataFrame(age_rows), hide_index=True, key="age_predictions")
        session.report_part("brain_age", age_rows)
    st.caption(
        "Δ: change from the prediction for the recorded values. Spread: standard deviation across the "
        "ensemble's members (0 for a single model)."
    )
    st.page_link("views/2_Attribution.py", label="Attribution map of this subject →")
    whatif.ice_section(predictor, scan, edited, names)
    whatif.record_section(predictor, scan, edited, names, preds)
    if ad_rows:
        whatif.counterfactual_section(predictor, cohort, subject, scan, edited, preds)
