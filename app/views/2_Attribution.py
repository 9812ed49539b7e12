"""Attribution: an interactive viewer of the subject's scan with attribution overlays (three linked orthogonal
views per map, drawn in the browser: app/viewer.js): one model, two models side by side, or one model under the
recorded and the edited record, with their difference."""

import attribution_exports as ex
import attribution_panels as ap
import attribution_viewer as avw
import attribution_views as av
import dashboard as db
import numpy as np
import streamlit as st
from state import session

from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.explain import viewer as vw
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

controls, view_column = st.columns([1, 3], gap="medium")
with controls:
    ch = ap.controls(predictor, image_models, labels, methods)
with view_column:
    notices = st.container()  # errors and notes, above the viewer
    picture = st.empty()  # the progress bar while a map is computed


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


# --- the viewer: every map a row of three views through one crosshair, drawn in the browser -----------------
img = db.load_scan(scan)
volume = viewer.ras_volume(np.asarray(img.dataobj), img.affine)
view, problems, linked = avw.current_view()
truth = avw.truth_volume(cohort, subject)
with controls:
    view = avw.display_controls(view, [k for k in vw.LAYERS if k != "truth" or truth is not None])
    rows = ap.map_layers(ch, maps, img.affine, labels, explained, view.sign)
    ap.peak_buttons(volume, rows)
new_subject = st.session_state.get("cursor_subject") != ptid and not linked
if view.cursor is None or new_subject:  # the first map's peak
    avw.set_cursor(vw.peak_mm(volume, rows[0].data if rows else volume.data * 0))
    st.session_state["cursor_subject"] = ptid
view, _ = vw.View.from_text({"cursor": st.session_state["attr_cursor"]}, view)
prepared = avw.prepared(volume, rows, truth, scan)
with view_column:
    for problem in problems:
        notices.warning(f"The shared view: {problem}.")
    view = avw.show(
        vw.scene(prepared, view, shared=ch.shared, revision=st.session_state["vw_revision"]), view
    )
    avw.keep(view)
    at_cursor = vw.readout(volume, rows, view.cursor)
    st.caption(f"Crosshair at {vw.readout_text(at_cursor)}. " + ex.caption(ch, maps, predicted, explained))
    if difference is not None:
        ex.difference_caption(ch, maps, difference, edits, recorded_summary, predicted, notices)

    def png() -> bytes:
        return vw.snapshot_png(prepared, view, shared=ch.shared)

    session.report_part("attribution_png", avw.cached_png(prepared, view, ch.shared, png))
    ex.downloads(ch, maps, difference, png, img, ptid, predictor)
    ex.descriptions_and_regions(maps, difference, recorded_summary, methods[ch.method]["description"])
