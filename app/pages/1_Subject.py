"""Subject and what-if: the record as a form, every model's prediction live as values change."""

import dashboard as db
import pandas as pd
import plotly.graph_objects as go
import share
import streamlit as st
from messages import plain

from hyperfusion.data.schema import FEATURES
from hyperfusion.errors import HyperFusionError
from hyperfusion.inference.ood import summary as ood_summary

db.page_setup("Subject")
st.title("Subject and what-if")

cohort = db.require_cohort()
subject = db.subject_picker(
    cohort, with_scan=False
)  # the scan is generated / read only when a model needs it
ptid = subject.id
recorded = subject.recorded
if subject.uploaded:
    st.caption("Uploaded in this session (kept in memory only) · diagnosis: "
               f"**{subject.truth or 'not given'}**")  # fmt: skip
else:
    st.caption(f"Diagnosis ({cohort.label_column}): **{subject.truth}** · source: {cohort.source}")


def _reset() -> None:
    """Put the form back to the recorded values (also on a change of subject)."""
    st.session_state.update(share.form_values(recorded))
    st.session_state["form_subject"] = ptid


link = st.session_state.get("form_from_link")
if link and link["PTID"] == ptid:  # a shared link's edits fill the form once
    st.session_state.update(share.form_values(link["record"]))
    st.session_state["form_subject"] = ptid
    del st.session_state["form_from_link"]
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
        elif f.type == "count":
            value = value_col.number_input(label, int(lo), int(hi), step=1, key=f"value_{f.name}",
                                           disabled=missing, help=help_text)  # fmt: skip
        else:
            value = value_col.number_input(label, float(lo), float(hi), step=float(f.step),
                                           key=f"value_{f.name}", disabled=missing, help=help_text)  # fmt: skip
        raw = recorded[f.name]
        if missing:
            edited[f.name] = None
            value_col.caption("missing → imputed by each model (training median)")
        elif isinstance(raw, str) and raw[:1] in "<>" and db.as_float(raw[1:]) == value:
            edited[f.name] = raw  # unchanged censored value: keep "<200" / ">1700" as recorded
            value_col.caption(f"recorded as {raw} (beyond the assay range)")
        else:
            edited[f.name] = value
        if edited[f.name] != raw and not (raw is None and missing):
            value_col.caption(f"edited · recorded: {raw if raw is not None else 'missing'}")

st.session_state["edited_record"] = {"PTID": ptid, "record": edited}
share.report_part(
    "record", [{"attribute": n, "recorded": recorded[n], "edited": edited[n]} for n in recorded]
)

with pred_col:
    st.subheader("Predictions")
    s = db.settings()
    models, problems = db.discover_models(s["models"])
    usable = db.models_for(cohort, models)
    if not usable:
        st.info("No model for this cohort. Add model directories in the sidebar (Settings).")
        st.stop()
    predictor = db.predictor_for(tuple((m.name, m.path) for m in usable))
    needs_scan = any(
        member.reads_scan for m in usable for member in predictor.models[m.name].members
    )  # fmt: skip
    scan = subject.scan if subject.uploaded else db.scan_path(cohort, ptid) if needs_scan else None
    names = [m.name for m in usable if scan is not None or not any(
        member.reads_scan for member in predictor.models[m.name].members)]  # fmt: skip
    if needs_scan and scan is None:
        st.info(f"No scan for {ptid}: only the tabular models are shown.")
    try:
        preds = predictor.predict(scan, [recorded, edited], models=names)
    except HyperFusionError as exc:
        st.error(plain(exc))
        st.stop()

    for w in (st.session_state.get("uploaded") or {}).get("warnings", []) if subject.uploaded else []:
        st.warning(plain(w))  # an upload predicted despite a failed entry check: every output says so
    ad = {n: p for n, p in preds.items() if p.task == "ad"}
    ages = {n: p for n, p in preds.items() if p.task == "brain_age"}
    if ad:
        classes = next(iter(ad.values())).class_names
        fig = go.Figure()
        colours = {"CN": "#4c78a8", "MCI": "#f2a541", "AD": "#d62728"}
        for c, cls in enumerate(classes):
            fig.add_bar(
                name=cls,
                y=list(ad),
                x=[p.value[1, c] for p in ad.values()],
                orientation="h",
                marker_color=colours.get(cls),
                error_x={"type": "data", "array": [p.spread[1, c] for p in ad.values()], "visible": True},
            )
        fig.update_layout(
            barmode="group", height=120 + 70 * len(ad), margin={"l": 10, "r": 10, "t": 30, "b": 10},
            xaxis={"range": [0, 1], "title": "probability (edited record; bars: ensemble spread ±1 SD)"},
            yaxis={"autorange": "reversed"}, legend={"orientation": "h", "y": 1.12},
        )  # fmt: skip
        st.plotly_chart(fig, width="stretch")
        table = []
        for n, p in ad.items():
            top = int(p.value[1].argmax())
            table.append(
                {
                    "model": n,
                    **{f"P({cls})": round(float(p.value[1, c]), 3) for c, cls in enumerate(classes)},
                    "predicted": classes[top],
                    "Δ P(AD) vs recorded": round(float(p.value[1, 2] - p.value[0, 2]), 3),
                    "spread P(AD)": round(float(p.spread[1, 2]), 3),
                    "members": p.member_values.shape[0],
                    "training data": ood_summary(p.extras["ood"][1]),  # out of distribution, said
                }
            )
        st.dataframe(pd.DataFrame(table), hide_index=True, key="ad_predictions")
        share.report_part("predictions", table)
    if ages:
        table = [
            {
                "model": n,
                "brain age (years)": round(float(p.value[1]), 1),
                "gap (years)": round(float(p.extras["brain_age_gap"][1]), 1),
                "Δ vs recorded": round(float(p.value[1] - p.value[0]), 2),
                "spread": round(float(p.spread[1]), 2),
                "training data": ood_summary(p.extras["ood"][1]),
            }
            for n, p in ages.items()
        ]
        st.dataframe(pd.DataFrame(table), hide_index=True, key="age_predictions")
        share.report_part("brain_age", table)
    st.caption(
        "Δ: change from the prediction for the recorded values. Spread: standard deviation across the "
        "ensemble's members (0 for a single model)."
    )
    st.page_link("pages/2_Attribution.py", label="Attribution map of this subject →")

    st.subheader("What if one value changed? (ICE)")
    from hyperfusion.explain import ice_curves

    numeric = [f.name for f in FEATURES if not f.categories and f.editable]
    attribute = st.selectbox("Attribute", numeric, index=numeric.index("APOE4") if "APOE4" in numeric else 0)
    try:
        try:  # the training rows' support (mean ± 3 SD) where a model has fitted preprocessing
            curves = ice_curves(
                predictor, scan, edited, attribute, n_points=32, support="training", models=names
            )
        except HyperFusionError:
            curves = ice_curves(
                predictor, scan, edited, attribute, n_points=32, support="plausible", models=names
            )
    except HyperFusionError as exc:
        st.error(plain(exc))
    else:
        fig = go.Figure()
        for name, values in curves.predictions.items():
            y = values[:, 2] if curves.tasks[name] == "ad" else values  # P(AD), or predicted age
            fig.add_scatter(x=curves.values, y=y, mode="lines", name=name)
        if curves.current is not None:
            fig.add_vline(x=curves.current, line_dash="dot", annotation_text="current")
        unit = next(f.unit for f in FEATURES if f.name == attribute)
        fig.update_layout(
            height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10},
            xaxis={"title": f"{attribute} ({unit})" if unit else attribute},
            yaxis={"title": "P(AD)" if ad else "predicted age (years)"}, legend={"orientation": "h", "y": 1.15},
        )  # fmt: skip
        st.plotly_chart(fig, width="stretch", key="ice")
        st.caption("Each line: one model's prediction as this attribute sweeps the training rows' range, every other "
                   "value as in the form; the dotted line marks the current value.")  # fmt: skip

    if ad:
        st.subheader("What would change the prediction? (counterfactual)")
        from hyperfusion.explain import counterfactual, nearest_subject

        cf_cols = st.columns([2, 1, 2])
        fusion = [m.name for m in usable if m.architecture == "hyperfusion" and m.name in ad]
        cf_model = cf_cols[0].selectbox(
            "Model", list(ad), index=list(ad).index(fusion[0]) if fusion else 0, key="cf_model"
        )
        predicted = classes[int(ad[cf_model].value[1].argmax())]
        others = [c for c in classes if c != predicted]
        cf_target = cf_cols[1].selectbox(
            "Make it", others, index=others.index("AD") if "AD" in others else 0, key="cf_target"
        )
        editable_names = [f.name for f in FEATURES if f.editable]
        fixed = cf_cols[2].multiselect(
            "Keep fixed", editable_names, default=["PTGENDER"], key="cf_fixed",
            help="attributes the search may not change (sex by default; add age for changes a person could make)",
        )  # fmt: skip
        record_key = (ptid, cf_model, cf_target, tuple(fixed), tuple(sorted(map(str, edited.items()))))
        if st.button(f"Find the smallest change that makes {cf_model} predict {cf_target}"):
            with st.spinner("Searching over the record (the scan's features are reused) …"):
                try:
                    st.session_state["counterfactual"] = (
                        record_key,
                        counterfactual(
                            predictor, cf_model, scan, edited, cf_target, immutable=fixed,
                            cohort=None if subject.uploaded else cohort,
                        ),
                    )  # fmt: skip
                except HyperFusionError as exc:
                    st.error(plain(exc))
        stored = st.session_state.get("counterfactual")
        if stored and stored[0] == record_key:
            cf = stored[1]
            (st.success if cf.found else st.warning)(cf.message)
            if cf.changes:
                units = {f.name: f.unit for f in FEATURES}
                st.dataframe(
                    pd.DataFrame(
                        [{"attribute": n, "now": a, "counterfactual": b, "unit": units[n]}
                         for n, (a, b) in cf.changes.items()]
                    ),
                    hide_index=True, key="cf_changes",
                )  # fmt: skip

                def _apply(changes=cf.changes) -> None:
                    for n, (_, b) in changes.items():
                        f = next(f for f in FEATURES if f.name == n)
                        st.session_state[f"missing_{n}"] = False
                        st.session_state[f"value_{n}"] = (
                            f.categories[int(b)]
                            if f.categories
                            else int(b)
                            if f.type == "count"
                            else float(b)
                        )

                st.button("Put these values in the form", on_click=_apply)
            st.caption(
                f"P({cf.target_name}): {cf.original_probabilities[cf.target]:.3f} now → "
                f"{cf.probabilities[cf.target]:.3f} with the change · {cf.evaluated} records tried, within the "
                "training rows' range of each attribute. A counterfactual describes the model, not the patient."
            )
        # The nearest real subject of the other class: a real record to compare with (same sex, similar age)
        nearest = nearest_subject(cohort, edited, cf_target, exclude=[ptid])
        if nearest is None:
            st.caption(f"No {cf_target} subject of this sex in the cohort to compare with.")
        else:
            gap = nearest["age_difference"]
            st.markdown(
                f"Nearest real **{cf_target}** subject: **{nearest['PTID']}** (record distance "
                f"{nearest['distance']:.2f} SD" + (f", {gap:+.1f} years" if gap is not None else "") + ")"
            )
            diff = [
                {"attribute": f.name, "this subject": edited.get(f.name), nearest["PTID"]: nearest["record"].get(f.name)}
                for f in FEATURES
            ]  # fmt: skip
            st.dataframe(pd.DataFrame(diff).astype(str), hide_index=True, key="nearest_record")
            if st.button(f"Open {nearest['PTID']}"):
                st.session_state["subject"] = nearest["PTID"]
                st.rerun()

db.page_footer()
