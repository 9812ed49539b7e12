"""Cohort: every model's probabilities for every subject (computed in the background, cached on disk), with
disagreement and error; global importance, partial dependence and distributions by diagnosis."""

import cohort_parts as cp
import dashboard as db
import numpy as np
import streamlit as st
from messages import plain
from state import session

from hyperfusion.data.schema import CLASS_NAMES, FEATURE_NAMES
from hyperfusion.errors import HyperFusionError

st.title("Cohort")

cohort = db.require_cohort()
table = cohort.table
# The shipped demo table gets its scans generated on first need; any other cohort's missing scans are missing
demo = db.is_demo_cohort(cohort)
filters = st.columns([2, 2, 2, 1, 2, 1])
search = filters[0].text_input("Search PTID")
dx = filters[1].multiselect(
    f"Diagnosis ({cohort.label_column})", ["CN", "MCI", "AD"], default=["CN", "MCI", "AD"]
)
ages = table["AGE"].dropna()
lo, hi = (float(np.floor(ages.min())), float(np.ceil(ages.max()))) if len(ages) else (40.0, 100.0)
age = filters[2].slider("Age band (years)", lo, max(hi, lo + 1), (lo, max(hi, lo + 1)))
sex = filters[3].selectbox("Sex", ["any", "Female", "Male"])
apoe = filters[4].multiselect("APOE4 alleles", [0, 1, 2], default=[0, 1, 2])
missing_only = filters[5].checkbox("missing biomarkers")

shown = table[table["DX"].isin(dx) & table["AGE"].between(*age)]
if search:
    shown = shown[shown["PTID"].str.contains(search, case=False, regex=False)]
if sex != "any":
    shown = shown[shown["PTGENDER"] == (1.0 if sex == "Male" else 0.0)]
shown = shown[shown["APOE4"].isin(apoe) | shown["APOE4"].isna()]
biomarkers = ["ABETA", "TAU", "PTAU", "FDG", "AV45"]
if missing_only:
    shown = shown[shown[biomarkers].isna().any(axis=1)]

view = shown[["PTID", "DX", *FEATURE_NAMES]].copy()
view["PTGENDER"] = view["PTGENDER"].map({0.0: "Female", 1.0: "Male"})
view["missing"] = shown[biomarkers].isna().sum(axis=1).to_numpy()
if not demo:
    view["scan"] = np.where(shown["image_path"].notna(), "yes", "missing")
    lacking = table.loc[table["image_path"].isna(), "PTID"].tolist()
    if lacking:
        listed = ", ".join(lacking[:20]) + (f" and {len(lacking) - 20} more" if len(lacking) > 20 else "")
        st.info(
            plain(
                f"{len(lacking)} subject(s) listed in the cohort table have no scan in images/: {listed}. "
                "Only the tabular models score them."
            )
        )

uploaded = db.uploaded_subject()
if uploaded is not None:  # not a cohort row (it has no truth here), but one click from its pages
    up_col, open_col = st.columns([4, 1], vertical_alignment="center")
    up_col.info(plain(f"Also in this session: {uploaded.id} (uploaded, in memory only)."))
    if open_col.button("Open the uploaded subject"):
        session.subject = uploaded.id
        st.switch_page("views/1_Subject.py")

models, _ = db.discover_models(db.settings()["models"])
usable = db.models_for(cohort, models)
if not usable:
    st.info("No model of this cohort's task is loaded: add model directories in the sidebar's settings.")
    st.dataframe(view.reset_index(drop=True), hide_index=True)
    st.stop()
paths = tuple((m.name, str(m.path)) for m in usable)
key = cp.cohort_key(cohort)
ad = all(m.task == "ad" for m in usable)
class_name = st.segmented_control("Probability of", CLASS_NAMES, default="AD") if ad else None
class_name = class_name or "AD"
output = f"P({class_name})" if ad else "the predicted age"
st.caption(f"{len(view)} of {len(table)} subjects shown; {len(usable)} model(s).")
truth = table.set_index("PTID")["DX" if ad else "AGE"]

tabs = st.tabs(["Predictions", "Global importance", "Partial dependence", "Distributions by diagnosis"])
with tabs[0]:
    job = cp.prediction_job(key, paths, demo, cohort)
    cp.refresh_while(not job.finished, cp.predictions_section, job, view, truth, class_name)
with tabs[1]:
    n = st.select_slider("Subjects sampled", [10, 20, 50, 100, 200], 20, key="importance_sample")
    importance = cp.importance_job(key, paths, demo, n, class_name, cohort)
    cp.refresh_while(not importance.finished, cp.importance_section, importance, len(table), output)
with tabs[2]:
    from hyperfusion.cohort_views import partial_dependence_figure, partial_dependence_frame, sample_subjects

    left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    attribute = left.selectbox(
        "Attribute", FEATURE_NAMES, index=FEATURE_NAMES.index("AGE"), key="pd_attribute"
    )
    n_pd = middle.select_slider("Subjects sampled", [5, 10, 20, 50], 10, key="pd_sample")
    pd_key = (key, paths, attribute, n_pd, class_name)
    if right.button("Compute", key="pd_compute"):
        with st.spinner(f"Partial dependence on {attribute} over {n_pd} subjects …"):
            from hyperfusion.explain.cohort import cohort_partial_dependence

            try:
                curves, used = cohort_partial_dependence(
                    db.predictor_for(paths),
                    cohort,
                    attribute,
                    sample_subjects(cohort, n_pd),
                    scan_for=job.scans,
                )
                session.cohort_scores["pd"] = (pd_key, *partial_dependence_frame(curves, class_name), used)
            except HyperFusionError as exc:
                st.error(plain(f"Partial dependence could not be computed: {exc}"))
    done = session.cohort_scores.get("pd")
    if done and done[0] == pd_key:
        _, mean, ice, used = done
        st.plotly_chart(partial_dependence_figure(mean, ice, attribute, output), width="stretch", key="pd")
        st.caption(
            f"{output} as {attribute} sweeps its plausible range, every other value of each subject's record "
            f"and its scan kept; mean over a seeded sample of {len(used)} subjects (±1 SD shaded), "
            "thin lines: single subjects (ICE)."
        )
    else:
        st.caption("Choose an attribute and press Compute (a few seconds per ten subjects).")
with tabs[3]:
    from hyperfusion.cohort_views import distribution_figure, feature_by_diagnosis

    left, right = st.columns([2, 2])
    attribute = left.selectbox("Attribute", FEATURE_NAMES, key="dist_attribute")
    kind = right.radio("Plot", ["box", "violin", "histogram"], horizontal=True, key="dist_kind")
    values, missing = feature_by_diagnosis(table, attribute)
    st.plotly_chart(distribution_figure(values, attribute, "DX", kind), width="stretch", key="distribution")
    lacking = ", ".join(f"{k}: {v}" for k, v in missing.items())
    st.caption(f"{len(values)} recorded values by diagnosis" + (f"; missing — {lacking}" if lacking else "."))
