"""HyperFusion dashboard: the first page (what is loaded, what is missing, where to go)."""

import json
import time

_START = time.perf_counter()

import dashboard as db  # noqa: E402
import streamlit as st  # noqa: E402
from messages import plain  # noqa: E402

from hyperfusion.errors import HyperFusionError  # noqa: E402

db.page_setup("Home")
st.title("HyperFusion")
st.markdown(
    "Brain MRI fused with the patient record: a hypernetwork generates weights of the image network "
    "from the tabular attributes (Duenias et al., *Medical Image Analysis* 2025). Pick a subject, edit the "
    "record and watch every model's prediction and its saliency map change."
)

s = db.settings()
left, right = st.columns(2)
with left:
    st.subheader("Cohort")
    try:
        cohort = db.cohort()
    except (HyperFusionError, OSError) as exc:
        st.error(plain(f"The cohort could not be read: {exc}"))
        st.info(
            "Point the sidebar's settings (Settings → Cohort) at a cohort directory or an ADNIMERGE table."
        )
        st.stop()
    db.show_scan_warnings(cohort)
    summary = cohort.summary()
    st.markdown(
        f"`{cohort.path}` · source **{cohort.source}** · **{len(cohort)}** subjects · label column "
        f"`{cohort.label_column}`"
    )
    st.table({"class": list(summary["class_counts"]), "subjects": list(summary["class_counts"].values())})
    if db.is_demo_cohort(cohort):
        st.caption("A synthetic table: each subject's scan is generated into the cache the first time it is "
                   "needed (the first subjects' scans ship with it).")  # fmt: skip
    elif summary["subjects_with_scan"] < len(cohort):
        st.caption(
            f"{len(cohort) - summary['subjects_with_scan']} of {len(cohort)} subjects have no scan in images/: "
            "only the tabular models score them (the Cohort page's scan column says which)."
        )
with right:
    st.subheader("Models")
    models, problems = db.discover_models(s["models"])
    usable = db.models_for(cohort, models)
    if usable:
        st.table(
            [
                {"model": m.name, "task": m.task, "architecture": m.architecture, "members": m.members}
                for m in usable
            ]
        )
    else:
        st.info("No model for this cohort's task was found. Add model directories in the sidebar.")
    other = [m.name for m in models if m not in usable]
    if other:
        st.caption(f"Other tasks' models (shown with their own cohort): {', '.join(other)}")
    if db.Path(s["models"]).resolve() == (db.Path(s["assets"]) / "models").resolve():
        missing = db.missing_demo_models(models, db.Path(s["assets"]))
        if missing:
            st.info("Demo models not built yet (skipped): " + ", ".join(missing))
    for p in problems:
        st.info(p)

st.page_link("pages/1_Subject.py", label="Subject and what-if →")
st.page_link("pages/3_Cohort.py", label="Cohort table →")

with st.expander("Open a shared scenario (JSON file from “Share this scenario”)"):
    shared = st.file_uploader("Scenario JSON", type=["json"], key="scenario_json")
    if shared is not None:
        import share

        try:
            scenario = json.loads(shared.getvalue().decode("utf-8"))
            if not isinstance(scenario, dict) or not all(isinstance(v, str) for v in scenario.values()):
                raise ValueError("expected one JSON object of text values, as the dashboard writes it")
        except (ValueError, UnicodeDecodeError) as exc:
            st.error(
                plain(f"{shared.name}: not a scenario file ({exc}). Download one with “Scenario (JSON)”.")
            )
        else:
            for problem in share.apply_scenario(cohort, scenario):
                st.warning(problem)
            st.page_link("pages/1_Subject.py", label=f"Open {scenario.get('subject', 'the subject')} →")
st.caption(f"Page ready in {time.perf_counter() - _START:.2f} s.")

db.page_footer()
