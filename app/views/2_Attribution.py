"""Attribution: three linked orthogonal views of the subject's scan with attribution overlays: one model, two
models side by side, or one model under the recorded and the edited record, with their difference."""

import attribution_views as av
import dashboard as db
import numpy as np
import streamlit as st
from state import session

from hyperfusion.data.cohort import describe_changes, record_changes
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.errors import HyperFusionError
from hyperfusion.explain import views as viewer

st.title("Attribution")

cohort = db.require_cohort()
subject = db.subject_picker(cohort)
ptid = subject.id
models, _ = db.discover_models(db.settings()["models"])
usable = db.models_for(cohort, models)
key = tuple((m.name, m.path) for m in usable)
predictor = db.predictor_for(key) if usable else None
image_models = [m.name for m in usable if any(x.reads_scan for x in predictor.models[m.name].members)]
scan = subject.scan
if scan is None:
    st.info(f"No scan for {ptid}. Choose another subject or upload one.")
    st.stop()

# The record as edited on the subject page (the recorded values otherwise)
record = session.record_of(ptid, subject.recorded)
methods = {m["name"]: m for m in db.attribution_methods()}
labels = {name: m["label"] for name, m in methods.items()}

# --- controls: every widget has a stable key (attr_*), so a shared link can restore it -------------------------
controls, view = st.columns([1, 3], gap="medium")
with controls:
    av.keep_choice("attr_mode", list(av.MODES))
    mode = st.radio("Show", list(av.MODES), format_func=av.MODES.get, key="attr_mode")
    model = model_b = None
    if image_models:
        # the fusion model first: it is what the tool is about (then the others, alphabetically)
        fusion = next(
            (m.name for m in usable if m.architecture == "hyperfusion" and m.name in image_models), None
        )
        av.keep_choice("attr_model", image_models, fusion)
        model = st.selectbox("Model", image_models, key="attr_model")
    else:
        st.info("No model for this cohort reads the scan: there is no image attribution map to show.")
    if mode == "models" and model is not None:
        others = [m for m in image_models if m != model]
        if others:
            unimodal = next(
                (m.name for m in usable if m.architecture == "image_only" and m.name in others), None
            )
            av.keep_choice("attr_model_b", others, unimodal)  # fusion against the image-only baseline
            model_b = st.selectbox("Second model", others, key="attr_model_b")
        else:
            st.info("Only one model here reads the scan: there is no second model to compare with.")
    chosen = [predictor.models[m] for m in (model, model_b) if m is not None]
    cls = "AD"
    if any(e.task == "ad" for e in chosen):
        av.keep_choice("attr_target", list(CLASS_NAMES), "AD")
        cls = st.radio("Explain the class", list(CLASS_NAMES), horizontal=True, key="attr_target")
    av.keep_choice("attr_method", list(labels), "saliency")
    method = st.selectbox("Method", list(labels), format_func=labels.get, key="attr_method",
                          help="Captum methods (hyperfusion.explain); each map is computed once, then cached")  # fmt: skip
    baseline = "zero"
    if methods[method].get("uses_baseline", False):
        av.keep_choice("attr_baseline", ["zero", "blur"])
        baseline = st.selectbox("Baseline", ["zero", "blur"], key="attr_baseline",
                                help="what the scan is compared with")  # fmt: skip
    # Two maps share a scale only when they explain the same kind of output (not a probability and years)
    comparable = model_b is not None and len({e.task for e in chosen}) == 1
    shared = False
    if comparable:
        st.session_state.setdefault("attr_shared_scale", True)
        shared = st.toggle("One colour scale for both maps", key="attr_shared_scale",
                           help="the same colours and threshold for the same values in both maps")  # fmt: skip
    st.session_state.setdefault("attr_signed", False)
    signed = st.toggle("Signed (not absolute)", key="attr_signed")
    st.session_state.setdefault("attr_opacity", 0.6)
    opacity = st.slider("Opacity", 0.0, 1.0, step=0.05, key="attr_opacity")
    st.session_state.setdefault("attr_percentile", 90)
    percentile = st.slider("Threshold (percentile of |map|)", 0, 99, key="attr_percentile")
    cmaps = av.SIGNED_CMAPS if signed else av.ABSOLUTE_CMAPS
    av.keep_choice("attr_cmap", cmaps)
    cmap = st.selectbox("Colour map", cmaps, key="attr_cmap")
    st.session_state.setdefault("attr_radiological", True)
    radiological = st.toggle("Radiological (R on the left)", key="attr_radiological")

with view:
    notices = st.container()  # errors and notes, above the picture
    picture = st.empty()  # the progress bar while a map is computed, then the views


def target_for(name: str) -> int | None:
    """The class index explained: the same class for every map of the page; brain-age models have none."""
    return CLASS_NAMES.index(cls) if predictor.models[name].task == "ad" else None


def compute(name: str, rec: dict, which: str = "") -> tuple[np.ndarray, dict]:
    return av.subject_map(key, name, subject, rec, method, target_for(name), baseline, status=picture,
                          label=f"the {labels[method]} map of {name}{which}")  # fmt: skip


# --- the maps -------------------------------------------------------------------------------------------------
maps: list[av.SubjectMap] = []
edits: list = []
recorded_summary: dict | None = None
if model is not None:
    title = f"{model} · {labels[method]}"
    try:
        edits = record_changes(subject.recorded, record) if mode == "records" else []
        if model_b is not None:
            for name in (model, model_b):
                data, summary = compute(name, record)
                stem = av.file_stem(ptid, name, method)
                maps.append(av.SubjectMap(data, name, f"{name} · {labels[method]}", stem, summary))
        elif mode == "records" and edits and av.reads_record(predictor.models[model]):
            before, recorded_summary = compute(model, subject.recorded, " (recorded record)")
            after, summary = compute(model, record, " (edited record)")
            stem = av.file_stem(ptid, model, method)
            maps.append(av.SubjectMap(after, model, f"{title} · edited record", stem, summary))
            title = "difference: edited − recorded"
            stem = av.file_stem(ptid, model, method, "edited-minus-recorded")
            maps.append(av.SubjectMap(after - before, model, title, stem, difference=True))
        else:
            data, summary = compute(model, record)
            maps.append(av.SubjectMap(data, model, title, av.file_stem(ptid, model, method), summary))
            if mode == "records" and not edits:
                notices.info(
                    "The record was not edited on the Subject page, so there is no difference to show; the map "
                    "below is for the recorded values. Change a value there (e.g. APOE4) and come back."
                )
            elif mode == "records":
                notices.info(
                    f"{model} does not read the record, so its map is the same under the recorded and the edited "
                    f"values ({describe_changes(edits)}): the difference is zero everywhere. Its map is shown."
                )
    except HyperFusionError as exc:
        notices.error(str(exc))
        maps = []
difference = maps[1] if len(maps) == 2 and maps[1].difference else None


def explained(name: str, summary: dict | None) -> str:
    """What a map explains: "P(AD)", "the logit of AD" or "the predicted age"."""
    if predictor.models[name].task != "ad":
        return "the predicted age"
    output = (((summary or {}).get("attribution") or {}).get("settings") or {}).get("output", "probability")
    return f"P({cls})" if output == "probability" else f"the logit of {cls}"


# --- the views: every map as a row of three views through one crosshair ------------------------------------
img = db.load_scan(scan)
volume = viewer.ras_volume(np.asarray(img.dataobj), img.affine)
# What is drawn: |map| unless "signed"; a difference is always signed
drawn = [
    viewer.ras_volume(m.data if signed or m.difference else np.abs(m.data), img.affine).data for m in maps
]
if shared:
    limits = [viewer.overlay_limits(drawn, percentile)] * len(drawn)  # pooled: equal colours, equal values
else:
    limits = [viewer.overlay_limits(d, percentile) for d in drawn]
layers = []
for m, data, (threshold, vmax) in zip(maps, drawn, limits):
    of = "of both maps" if shared else "of |difference|" if m.difference else "of |map|"
    shown_as = labels[method] if signed or m.difference else f"|{labels[method]}|"  # what the colours show
    what = f"{'Δ ' if m.difference else ''}{shown_as} of {explained(m.model, m.summary or recorded_summary)}"
    layers.append(viewer.Layer(data, m.title, f"{what} (shown: |value| ≥ {percentile}th percentile {of})",
                               "cold_hot" if m.difference and not signed else cmap, signed or m.difference,
                               threshold, vmax))  # fmt: skip

with controls:
    x_mm, y_mm, z_mm = volume.axes_mm

    def go_to_peak(values: np.ndarray) -> None:
        peak = np.unravel_index(int(np.argmax(np.abs(values))), values.shape)
        for axis, value in zip("xyz", volume.mm_of(peak)):
            st.session_state[f"cursor_{axis}"] = float(value)

    # A new subject, or a return from another page (which drops the sliders' state): start at the first
    # map's peak
    if st.session_state.get("cursor_subject") != ptid or any(
        f"cursor_{a}" not in st.session_state for a in "xyz"
    ):
        for axis, value in zip("xyz", volume.mm_of(tuple(n // 2 for n in volume.data.shape))):
            st.session_state[f"cursor_{axis}"] = float(value)
        if drawn and np.abs(drawn[0]).max() > 0:
            go_to_peak(drawn[0])
        st.session_state["cursor_subject"] = ptid
    for i, (m, data) in enumerate(zip(maps, drawn)):
        if not np.any(data):
            continue
        whose = "the difference's" if m.difference else "the map's" if len(maps) == 1 else f"{m.model}'s"
        if st.button(f"Go to {whose} peak", key=f"attr_peak_{i}"):
            go_to_peak(data)
with view:
    slider_cols = st.columns(3)
    for col, axis, mm, plane in zip(slider_cols, "zyx", (z_mm, y_mm, x_mm), ("axial", "coronal", "sagittal")):
        lo, hi = sorted((float(mm[0]), float(mm[-1])))
        step = float(abs(mm[1] - mm[0])) if len(mm) > 1 else 1.0
        col.slider(f"{plane} slice: {axis} (mm)", lo, hi, step=step, format="%.0f", key=f"cursor_{axis}")
cursor = volume.index_of(tuple(st.session_state[f"cursor_{a}"] for a in "xyz"))
png = viewer.render_rows(volume, layers, cursor, radiological=radiological, opacity=opacity)

with view:
    picture.image(png, width="stretch")
    session.report_part("attribution_png", png)
    mm = volume.mm_of(cursor)
    at_cursor = "".join(
        f" · {'difference' if m.difference else m.model} {d[cursor]:.3g}" for m, d in zip(maps, drawn)
    )
    st.caption(
        f"Crosshair at x = {mm[0]:.0f}, y = {mm[1]:.0f}, z = {mm[2]:.0f} mm (MNI) · intensity "
        f"{volume.data[cursor]:.3g}{at_cursor}. "
        + ("" if mode == "records" else "Maps computed for the record as edited on the subject page. ")
        + "An attribution map shows where the model's output is sensitive, not a proof of what it relies on."
    )
    if model_b is not None and maps:
        if shared:
            st.caption(
                "Both maps share one colour scale and one threshold (computed over the voxels of both), so equal "
                "colours mean equal attribution: compare how much, not only where."
            )
        elif comparable:
            st.caption(
                "Each map has its own colour scale and threshold: compare where the models look, not how much."
            )
        else:
            st.caption("The two models explain different outputs (a class probability and years), so each map has "
                       "its own colour scale.")  # fmt: skip
    if difference is not None:
        largest = float(np.abs(difference.data).max())
        edited_largest = float(np.abs(maps[0].data).max()) or 1.0
        before, after = recorded_summary["attribution"]["output"], maps[0].summary["attribution"]["output"]
        st.caption(
            f"Edited on the Subject page: {describe_changes(edits)}. Same model, method and class ({cls}) under "
            f"both records; {explained(model, maps[0].summary)} is {before:.3g} recorded, {after:.3g} edited. The "
            "difference (edited − recorded) is signed: red–yellow where the edited record raises the attribution, "
            "blue–cyan where it lowers it. It has its own colour scale: its largest |value| is "
            f"{largest:.3g}, {100 * largest / edited_largest:.0f}% of the edited map's."
        )
        if largest == 0:
            notices.info("The two maps are identical: this edit does not move the map.")

    # Downloads. The PNG is the picture shown. A NIfTI file is built only when asked for (a 1 mm map takes
    # about a second to compress), from the signed map as computed, on the scan's own grid and affine; in the
    # recorded-vs-edited mode it is the difference.
    if maps:
        png_stem = (maps[0].stem if len(maps) == 1 else av.file_stem(ptid, f"{model}-vs-{model_b}", method)
                    if model_b is not None else av.file_stem(ptid, model, method, "edited-vs-recorded"))  # fmt: skip
        exported = [difference] if difference is not None else maps
        buttons = st.container(horizontal=True)
        buttons.download_button("Download the view (PNG)", png, file_name=f"{png_stem}.png", mime="image/png",
                                key="attr_download_png", on_click="ignore")  # fmt: skip
        for i, m in enumerate(exported):
            explained_class = cls if predictor.models[m.model].task == "ad" else ""
            described = (
                f"hyperfusion {method}{' difference' if m.difference else ''} {explained_class} {m.model}"
            )

            def build(m: av.SubjectMap = m, described: str = described) -> bytes:
                return av.nifti_gz(m.data, img.affine, img.header, described)

            what = "the difference" if m.difference else m.model if len(exported) > 1 else "the map"
            buttons.download_button(
                f"Download {what} (NIfTI)", build, file_name=f"{m.stem}.nii.gz", mime="application/gzip",
                key=f"attr_download_nifti_{i}", on_click="ignore",
                help="float32 .nii.gz on the scan's own voxel grid and affine (it opens over the scan in FSLeyes "
                "or ITK-SNAP): the signed map as computed, whatever the display shows",
            )  # fmt: skip

    # What each map is, and where it falls
    for m in maps:
        if m.summary is None:
            continue
        attr = m.summary["attribution"]
        parts = [f"{m.title}: {methods[method]['description']}."]
        if attr.get("relative_delta") is not None:
            parts.append(f"Convergence delta: {attr['relative_delta']:.2g} of the output gap.")
        if attr.get("coarse"):
            parts.append(f"Coarse map: {attr['coarse']}.")
        st.caption(" ".join(parts))
    if difference is not None:
        table = av.region_difference(recorded_summary, maps[0].summary)
        if not table.empty:
            st.subheader("Per region: edited − recorded")
            st.dataframe(table, hide_index=True)
    else:
        tables = [(m, av.region_table(m.summary)) for m in maps if m.summary is not None]
        tables = [(m, t) for m, t in tables if not t.empty]
        if tables:
            st.subheader("Per region")
        for m, t in tables:
            if len(tables) > 1:
                st.markdown(f"**{m.title}**")
            st.dataframe(t, hide_index=True)

