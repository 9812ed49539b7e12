"""Cohort: a searchable, filterable table; each model's prediction beside the truth; a click opens a subject."""

import dashboard as db
import numpy as np
import pandas as pd
import streamlit as st
from messages import plain
from state import session

from hyperfusion.data.schema import FEATURE_NAMES
from hyperfusion.inference.cohort import NO_SCAN, predict_cohort

st.title("Cohort")

cohort = db.require_cohort()
table = cohort.table
# The shipped demo table gets its scans generated on first need; any other cohort's missing scans are missing
scans_known = not db.is_demo_cohort(cohort)
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
if scans_known:
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

# Predictions: computed on request for the shown subjects (each needs its scan's image features once)
models, _ = db.discover_models(db.settings()["models"])
usable = db.models_for(cohort, models)
scores = session.cohort_scores
limit = st.number_input("Subjects to score", 1, 200, 20, help="the first N shown; about 0.1 s each per model")
if usable and st.button(f"Predict the first {limit} shown subjects with {len(usable)} model(s)"):
    predictor = db.predictor_for(tuple((m.name, m.path) for m in usable))
    bar = st.progress(0.0, text="scoring …")
    ptids = view["PTID"].head(int(limit)).tolist()
    # the library's cohort inference (as `hyperfusion predict --cohort`): scans encoded in batches
    rows = predict_cohort(
        predictor,
        cohort,
        models=[m.name for m in usable],
        ptids=ptids,
        scan_for=lambda ptid: db.scan_path(cohort, ptid),
        progress=lambda done, total: bar.progress(done / max(total, 1), text=f"scored {done} of {total}"),
    )
    errors = rows["error"].fillna("")
    failed = sorted(set(errors[(errors != "") & (errors != NO_SCAN)]))  # e.g. a corrupt scan
    for r in rows[errors == ""].itertuples():
        scores[(cohort.path.as_posix(), r.model, r.PTID)] = (
            r.prediction if r.task == "ad" else round(float(r.prediction), 1)
        )
    for message in failed:
        st.error(plain(f"Not scored: {message}"))
for m in usable:
    view[m.name] = [scores.get((cohort.path.as_posix(), m.name, p)) for p in view["PTID"]]

uploaded = db.uploaded_subject()
if uploaded is not None:  # not a cohort row (it has no truth here), but one click from its pages
    up_col, open_col = st.columns([4, 1], vertical_alignment="center")
    up_col.info(plain(f"Also in this session: {uploaded.id} (uploaded, in memory only)."))
    if open_col.button("Open the uploaded subject"):
        session.subject = uploaded.id
        st.switch_page("views/1_Subject.py")
st.caption(f"{len(view)} of {len(table)} subjects. Click a row to open the subject.")
event = st.dataframe(
    pd.DataFrame(view).reset_index(drop=True),
    hide_index=True,
    on_select="rerun",
    selection_mode="single-row",
    key="cohort_table",
)
if event.selection.rows:
    session.subject = view["PTID"].iloc[event.selection.rows[0]]
    st.switch_page("views/1_Subject.py")
