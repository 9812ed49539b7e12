"""The Subject page's what-if sections: ICE curves, and the counterfactual search with the nearest real
subject of the other class (the searches are hyperfusion.explain calls; this lays out their widgets)."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from messages import plain
from state import session

from hyperfusion.data.schema import FEATURES
from hyperfusion.errors import HyperFusionError
from hyperfusion.explain import (
    counterfactual,
    explain_record,
    figures,
    ice_curves,
    nearest_subject,
    robustness,
)
from hyperfusion.explain.counterfactual import MIN_SHARED
from hyperfusion.inference.tables import shown_value

UNITS = {f.name: f.unit for f in FEATURES}


def ice_section(predictor, scan, record: dict, names: list[str]) -> None:
    st.subheader("What if one value changed? (ICE)")
    numeric = [f.name for f in FEATURES if not f.categories and f.editable]
    attribute = st.selectbox("Attribute", numeric, index=numeric.index("APOE4") if "APOE4" in numeric else 0)
    try:
        try:  # the training rows' support (mean ± 3 SD) where a model has fitted preprocessing
            curves = ice_curves(
                predictor, scan, record, attribute, n_points=32, support="training", models=names
            )
        except HyperFusionError:
            curves = ice_curves(
                predictor, scan, record, attribute, n_points=32, support="plausible", models=names
            )
    except HyperFusionError as exc:
        st.error(plain(exc))
        return
    st.plotly_chart(figures.ice_figure(curves, UNITS[attribute]), width="stretch", key="ice")
    st.caption(
        "Each line: one model's prediction as this attribute sweeps the training rows' range, every other "
        "value as in the form; the dotted line marks the current value."
    )


def record_section(predictor, scan, record: dict, names: list[str], preds: dict) -> None:
    """A waterfall of each attribute's contribution to one model's output for the record in the form."""
    st.subheader("What each value contributes (record attributions)")
    readers = [n for n in names if predictor.models[n].members[0].reads_record]
    if not readers:
        st.info("No model here reads the record.")
        return
    fusion = [n for n in readers if predictor.models[n].members[0].network.generated_layers]
    model = st.selectbox(
        "Model", readers, index=readers.index(fusion[0]) if fusion else 0, key="record_model"
    )
    ad = predictor.models[model].task == "ad"
    try:
        ra = explain_record(predictor, model, scan, record, target="AD" if ad else None)
    except HyperFusionError as exc:
        st.error(plain(exc))
        return
    st.plotly_chart(figures.record_waterfall(ra), width="stretch", key="record_waterfall")
    p = preds[model]
    note = (
        f" {model} is an ensemble: the bars add up to its members' mean, {ra.output:.3f}; its prediction "
        f"(inverse-entropy weighting, as on every page) is {shown_value(p, 1):.3f}."
        if ad and len(p.member_values) > 1
        else ""
    )
    st.caption(
        f"Integrated gradients ({ra.settings['n_steps']} steps) from the baseline record (every value at its "
        "training mean, sex half and half, missing values at their training rates) to the record in the form; "
        f"the bars add up to the difference (convergence delta {ra.delta:.1e}).{note} Scan versus record: "
        f"the record's share is {ra.record_share:.0%} (two-player Shapley values against the zero baseline scan and "
        "the baseline record)."
    )


def _put_in_form(changes: dict) -> None:
    for name, (_, value) in changes.items():
        f = next(f for f in FEATURES if f.name == name)
        st.session_state[f"missing_{name}"] = False
        number = int(value) if f.categories or f.type == "count" else float(value)
        st.session_state[f"value_{name}"] = f.categories[number] if f.categories else number


def counterfactual_section(predictor, cohort, subject, scan, record: dict, preds: dict) -> None:
    st.subheader("What would change the prediction? (counterfactual)")
    ad = {n: p for n, p in preds.items() if p.task == "ad"}
    classes = next(iter(ad.values())).class_names
    cols = st.columns([2, 1, 2])
    # the model with weights generated from the record first: it is what the tool is about
    fusion = [n for n in ad if predictor.models[n].members[0].network.generated_layers]
    model = cols[0].selectbox(
        "Model", list(ad), index=list(ad).index(fusion[0]) if fusion else 0, key="cf_model"
    )
    predicted = classes[int(ad[model].value[1].argmax())]
    others = [c for c in classes if c != predicted]
    target = cols[1].selectbox(
        "Make it", others, index=others.index("AD") if "AD" in others else 0, key="cf_target"
    )
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
                found = counterfactual(
                    predictor,
                    model,
                    scan,
                    record,
                    target,
                    immutable=fixed,
                    cohort=None if subject.uploaded else cohort,
                )
                session.counterfactual = (key, found)
            except HyperFusionError as exc:
                st.error(plain(exc))
    stored = session.counterfactual
    if stored and stored[0] == key:
        cf = stored[1]
        (st.success if cf.found else st.warning)(cf.message)
        trust = robustness(predictor, cf, scan) if cf.found and cf.changes else None
        if trust is not None:
            (st.warning if trust.fragile else st.caption)(trust.message)
        if cf.changes:
            rows = [
                {"attribute": n, "now": a, "counterfactual": b, "unit": UNITS[n]}
                for n, (a, b) in cf.changes.items()
            ]
            st.dataframe(pd.DataFrame(rows), hide_index=True, key="cf_changes")
            st.button("Put these values in the form", on_click=_put_in_form, args=(cf.changes,))
        st.caption(
            f"P({cf.target_name}): {cf.original_probabilities[cf.target]:.3f} now → "
            f"{cf.probabilities[cf.target]:.3f} with the change · {cf.evaluated} records tried, within the "
            "training rows' range of each attribute. A counterfactual describes the model, not the patient."
        )
    # The nearest real subject of the other class: a real record to compare with (same sex, similar age)
    nearest = nearest_subject(cohort, record, target, exclude=[subject.id], min_shared=MIN_SHARED)
    if nearest is None:
        st.caption(
            f"No {target} subject of this sex in the cohort shares at least {MIN_SHARED} measured values "
            "with this record: there is no real subject to compare with."
        )
        return
    gap, shared = nearest["age_difference"], nearest["shared"]
    st.markdown(
        f"Nearest real **{target}** subject: **{nearest['PTID']}** (record distance "
        f"{nearest['distance']:.2f} SD" + (f", {gap:+.1f} years" if gap is not None else "") + ")"
    )
    st.caption(
        f"Compared on the {len(shared)} values both have measured ({', '.join(shared)}); a subject must "
        f"share at least {MIN_SHARED} to be compared."
    )
    diff = [
        {
            "attribute": f.name,
            "this subject": record.get(f.name),
            nearest["PTID"]: nearest["record"].get(f.name),
        }
        for f in FEATURES
    ]
    st.dataframe(pd.DataFrame(diff).astype(str), hide_index=True, key="nearest_record")
    if st.button(f"Open {nearest['PTID']}"):
        session.subject = nearest["PTID"]
        st.rerun()
