"""The Subject page's what-if sections: ICE curves, record attributions, and the counterfactual search with the
nearest real subject of the other class (each one hyperfusion.pages.subject call; this lays out the widgets)."""

from __future__ import annotations

import render
import streamlit as st
from state import session

from hyperfusion.data.schema import FEATURES
from hyperfusion.errors import HyperFusionError
from hyperfusion.explain import counterfactual
from hyperfusion.pages import plain
from hyperfusion.pages import subject as S


def ice_section(predictor, scan, record: dict, names: list[str]) -> None:
    st.subheader("What if one value changed? (ICE)")
    numeric = [f.name for f in FEATURES if not f.categories and f.editable]
    attribute = st.selectbox("Attribute", numeric, index=numeric.index("APOE4") if "APOE4" in numeric else 0)
    try:
        render.show(S.ice(predictor, scan, record, attribute, names))
    except HyperFusionError as exc:
        st.error(plain(exc))


def record_section(predictor, scan, record: dict, names: list[str], preds: dict) -> None:
    """A waterfall of each attribute's contribution to one model's output for the record in the form."""
    st.subheader("What each value contributes (record attributions)")
    readers = [n for n in names if predictor.models[n].members[0].reads_record]
    if not readers:
        st.info("No model here reads the record.")
        return
    model = st.selectbox("Model", readers, index=S.fusion_first(predictor, readers), key="record_model")
    try:
        render.show(S.record_attribution(predictor, model, scan, record, preds[model]))
    except HyperFusionError as exc:
        st.error(plain(exc))


def counterfactual_section(predictor, cohort, subject, scan, record: dict, preds: dict) -> None:
    st.subheader("What would change the prediction? (counterfactual)")
    ad = [n for n, p in preds.items() if p.task == "ad"]
    cols = st.columns([2, 1, 2])
    model = cols[0].selectbox("Model", ad, index=S.fusion_first(predictor, ad), key="cf_model")
    others, default = S.counterfactual_targets(preds[model])
    target = cols[1].selectbox("Make it", others, index=default, key="cf_target")
    fixed = cols[2].multiselect(
        "Keep fixed",
        [f.name for f in FEATURES if f.editable],
        default=["PTGENDER"],
        key="cf_fixed",
        help="attributes the search may not change (sex by default; add age for changes a person could make)",
    )
    key = (subject.id, model, target, tuple(fixed), tuple(sorted(map(str, record.items()))))
    if st.button(f"Find the smallest change that makes {model} predict {target}"):
        with st.spinner("Searching over the record (the scan's features are reused) …"):
            try:
                among = None if subject.uploaded else cohort  # the nearest subject's cohort
                found = counterfactual(predictor, model, scan, record, target, immutable=fixed, cohort=among)
                session.counterfactual = (key, found)
            except HyperFusionError as exc:
                st.error(plain(exc))
    stored = session.counterfactual
    if stored and stored[0] == key:
        render.show(S.counterfactual_found(predictor, stored[1], scan))
        if stored[1].changes:
            put = S.changes_state(stored[1].changes)
            st.button("Put these values in the form", on_click=st.session_state.update, args=(put,))
    shown, ptid = S.nearest(cohort, record, target, exclude=[subject.id])
    render.show(shown)
    if ptid is not None and st.button(f"Open {ptid}"):
        session.subject = ptid
        st.rerun()
