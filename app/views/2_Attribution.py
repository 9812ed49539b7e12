"""Attribution: three linked orthogonal views of the subject's scan with attribution overlays: one model, two
models side by side, or one model under the recorded and the edited record, with their difference."""

import attribution_exports as ex
import attribution_panels as ap
import attribution_views as av
import dashboard as db
import numpy as np
import streamlit as st
from state import session

from hyperfusion.data.cohort import describe_changes
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.explain import views as viewer

st.title("Attribution")
cohort = db.require_cohort()
subject = db.subject_picker(cohort)
ptid = subject.id
usable = db.models_for(cohort, db.discover_models(db.settings()["models"])[0])
key = tuple((m.name, m.path) for m in usable)
predictor = db.predictor_for(key) if usable else None
image_models = [m.name for m in usable if predictor.models[m.name].members[0].reads_scan]
scan = subject.scan
if scan is None:
    st.info(f"No scan for {ptid}. Choose another subject or upload one.")
    st.stop()
record = session.record_of(ptid, subject.recorded)  # as edited on the Subject page
methods = {m["name"]: m for m in av.attribution_methods()}
labels = {name: m["label"] for name, m in methods.items()}

controls, view = st.columns([1, 3], gap="medium")
with controls:
    ch = ap.controls(predictor, image_models, labels, methods)
with view:
    notices = st.container()  # errors and notes, above the picture
    picture = st.empty()  # the progress bar while a map is computed, then the views


def target_for(name: str) -> int | None:
    """The class index explained: the same class for every map of the page; brain-age models have none."""
    return CLASS_NAMES.index(ch.cls) if predictor.models[name].task == "ad" else None


def compute(name: str, rec: dict, which: str = "") -> tuple[np.ndarray, dict]:
    return av.subject_map(
        key,
        name,
        subject,
        rec,
        ch.method,
        target_for(name),
        ch.baseline,
        status=picture,
        label=f"the {labels[ch.method]} map of {name}{which}",
    )


reads_record = ch.model is not None and av.reads_record(predictor.models[ch.model])
maps, edits, recorded_summary = ap.compute_maps(ch, compute, subject, record, labels, reads_record, notices)
difference = maps[1] if len(maps) == 2 and maps[1].difference else None


def explained(m: av.SubjectMap, summary: dict | None = None) -> str:
    """What a map explains: "P(AD)", "the logit of AD" or "the predicted age"."""
    if predictor.models[m.model].task != "ad":
        return "the predicted age"
    summary = summary or m.summary or recorded_summary or {}
    output = ((summary.get("attribution") or {}).get("settings") or {}).get("output", "probability")
    return f"P({ch.cls})" if output == "probability" else f"the logit of {ch.cls}"


def predicted(m: av.SubjectMap, summary: dict | None = None) -> str:
    """The model's prediction for the map's record: hyperfusion.inference.tables.subject_value, via the map."""
    value = (summary or m.summary)["attribution"]["prediction"]
    return (
        f"P({ch.cls}) = {value:.3f}"
        if predictor.models[m.model].task == "ad"
        else f"an age of {value:.1f} years"
    )


# --- the views: every map as a row of three views through one crosshair -------------------------------------
img = db.load_scan(scan)
volume = viewer.ras_volume(np.asarray(img.dataobj), img.affine)
drawn = [
    viewer.ras_volume(m.data if ch.signed or m.difference else np.abs(m.data), img.affine).data for m in maps
]
with controls:
    ap.crosshair(volume, maps, drawn, ptid)
with view:
    cursor = ap.slice_sliders(volume)
    png = viewer.render_rows(
        volume,
        ap.layers(ch, maps, drawn, labels, explained),
        cursor,
        radiological=ch.radiological,
        opacity=ch.opacity,
    )
    picture.image(png, width="stretch")
    session.report_part("attribution_png", png)
    mm = volume.mm_of(cursor)
    at_cursor = "".join(
        f" · {'difference' if m.difference else m.model} {d[cursor]:.3g}" for m, d in zip(maps, drawn)
    )
    st.caption(
        f"Crosshair at x = {mm[0]:.0f}, y = {mm[1]:.0f}, z = {mm[2]:.0f} mm (MNI) · intensity "
        f"{volume.data[cursor]:.3g}{at_cursor}. "
        + ("" if ch.mode == "records" else "Maps computed for the record as edited on the subject page. ")
        + "An attribution map shows where the model's output is sensitive, not a proof of what it relies on."
    )
    if ch.model_b is not None and maps:
        if ch.shared:
            st.caption(
                "Both maps share one colour scale and one threshold (computed over the voxels of both), so "
                "equal colours mean equal attribution: compare how much, not only where."
            )
        elif ch.comparable:
            st.caption(
                "Each map has its own colour scale and threshold: compare where the models look, not how much."
            )
        else:
            st.caption(
                "The two models explain different outputs (a class probability and years), so each map has "
                "its own colour scale."
            )
    for m in [
        m for m in maps if m.summary
    ]:  # the Predictor's number, the Subject page's (not the members' mean)
        st.caption(f"{m.model} predicts {predicted(m)} for this record (as on the Subject page).")
    if difference is not None:
        largest = float(np.abs(difference.data).max())
        edited_largest = float(np.abs(maps[0].data).max()) or 1.0
        st.caption(
            f"Edited on the Subject page: {describe_changes(edits)}. Same model, method and class ({ch.cls}) "
            f"under both records; it predicts {predicted(maps[0], recorded_summary)} recorded, "
            f"{predicted(maps[0])} edited. The "
            "difference (edited − recorded) is signed: red–yellow where the edited record raises the "
            "attribution, blue–cyan where it lowers it. It has its own colour scale: its largest |value| is "
            f"{largest:.3g}, {100 * largest / edited_largest:.0f}% of the edited map's."
        )
        if largest == 0:
            notices.info("The two maps are identical: this edit does not move the map.")
    ex.downloads(ch, maps, difference, png, img, ptid, predictor)
    ex.descriptions_and_regions(maps, difference, recorded_summary, methods[ch.method]["description"])
