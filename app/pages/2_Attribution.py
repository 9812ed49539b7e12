"""Attribution: three linked orthogonal views of the subject's scan with an attribution overlay."""

import dashboard as db
import numpy as np
import streamlit as st
import viewer

from hyperfusion.errors import HyperFusionError

db.page_setup("Attribution")
st.title("Attribution")

cohort = db.cohort()
subject = db.subject_picker(cohort)
ptid = subject.id
models, _ = db.discover_models(db.settings()["models"])
usable = db.models_for(cohort, models)
key = tuple((m.name, m.path) for m in usable)
predictor = db.predictor_for(key) if usable else None
image_models = [m.name for m in usable if any(x.uses_image for x in predictor.models[m.name].members)]
scan = subject.scan
if scan is None:
    st.info(f"No scan for {ptid}. Choose another subject or upload one.")
    st.stop()

# The record as edited on the subject page (the recorded values otherwise)
record = db.current_record(ptid, subject.recorded)

controls, view = st.columns([1, 3], gap="medium")
with controls:
    model = st.selectbox("Model", image_models) if image_models else None
    entry = predictor.models[model] if model else None
    target = None
    if entry is not None and entry.task == "ad":
        target = ["CN", "MCI", "AD"].index(
            st.radio("Explain the class", ["CN", "MCI", "AD"], index=2, horizontal=True)
        )
    methods = db.attribution_methods()
    labels = {m["name"]: m["label"] for m in methods}
    method = st.selectbox(
        "Method", list(labels), format_func=labels.get,
        index=list(labels).index("saliency") if "saliency" in labels else 0,
        help="Captum methods through hyperfusion.explain; slow ones show a spinner and are cached",
    )  # fmt: skip
    uses_baseline = next(m for m in methods if m["name"] == method).get("uses_baseline", False)
    baseline = "zero"
    if uses_baseline:
        baseline = st.selectbox("Baseline", ["zero", "blur"], help="what the scan is compared with")
    signed = st.toggle("Signed (not absolute)", value=False)
    opacity = st.slider("Opacity", 0.0, 1.0, 0.6, 0.05)
    percentile = st.slider("Threshold (percentile of |map|)", 0, 99, 90)
    cmap = st.selectbox(
        "Colour map", ["coolwarm", "RdBu_r", "bwr"] if signed else ["hot", "inferno", "viridis", "jet"]
    )
    radiological = st.toggle("Radiological (R on the left)", value=True)

img = db.load_scan(scan)
maps = None
if entry is not None:
    try:
        maps, summary = db.subject_attribution(key, model, subject, record, method, target, baseline)
        if not signed:
            maps = np.abs(maps)
    except HyperFusionError as exc:
        st.error(str(exc))
volume = viewer.ras_volume(np.asarray(img.dataobj), img.affine)
overlay = viewer.ras_volume(maps, img.affine).data if maps is not None else None

with controls:
    x_mm, y_mm, z_mm = volume.axes_mm
    if st.session_state.get("cursor_subject") != ptid:  # a new subject: start at the map's peak
        start = tuple(n // 2 for n in volume.data.shape)
        if overlay is not None and np.abs(overlay).max() > 0:
            start = np.unravel_index(int(np.argmax(np.abs(overlay))), overlay.shape)
        for axis, value in zip("xyz", volume.mm_of(start)):
            st.session_state[f"cursor_{axis}"] = float(value)
        st.session_state["cursor_subject"] = ptid
    if overlay is not None and st.button("Go to the map's peak"):
        peak = np.unravel_index(int(np.argmax(np.abs(overlay))), overlay.shape)
        for axis, value in zip("xyz", volume.mm_of(peak)):
            st.session_state[f"cursor_{axis}"] = float(value)
with view:
    picture = st.empty()
    slider_cols = st.columns(3)
    for col, axis, mm, label in zip(slider_cols, "zyx", (z_mm, y_mm, x_mm), ("axial", "coronal", "sagittal")):
        lo, hi = sorted((float(mm[0]), float(mm[-1])))
        step = float(abs(mm[1] - mm[0])) if len(mm) > 1 else 1.0
        col.slider(f"{label} slice: {axis} (mm)", lo, hi, step=step, format="%.0f", key=f"cursor_{axis}")
cursor = volume.index_of(tuple(st.session_state[f"cursor_{a}"] for a in "xyz"))
png = viewer.render_views(volume, overlay, cursor, radiological=radiological, opacity=opacity,
                          percentile=float(percentile), cmap=cmap, signed=signed,
                          overlay_label=f"{model} {labels.get(method, '')}" if model else "")  # fmt: skip
with view:
    picture.image(png, width="stretch")
    mm = volume.mm_of(cursor)
    value = f" · map {overlay[cursor]:.3g}" if overlay is not None else ""
    st.caption(
        f"Crosshair at x = {mm[0]:.0f}, y = {mm[1]:.0f}, z = {mm[2]:.0f} mm (MNI) · intensity "
        f"{volume.data[cursor]:.3g}{value}. Map computed for the record as edited on the subject page. "
        "An attribution map shows where the model's output is sensitive, not a proof of what it relies on."
    )
    if maps is not None:
        desc = next(m for m in methods if m["name"] == method)["description"]
        attr = summary["attribution"]
        notes = [f"{labels[method]}: {desc}."]
        if attr.get("relative_delta") is not None:
            notes.append(f"Convergence delta: {attr['relative_delta']:.2g} of the output gap.")
        if attr.get("coarse"):
            notes.append(f"Coarse map: {attr['coarse']}.")
        st.caption(" ".join(notes))
        regions = {k: v for k, v in summary.items() if k != "attribution"}
        if regions.get("regions"):
            st.subheader("Per region")
            st.dataframe(regions["regions"], hide_index=True)
