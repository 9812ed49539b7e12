"""Attribution: an interactive viewer of the subject's scan with attribution overlays (three linked orthogonal
views per map, drawn in the browser: app/viewer.js): one model, two models side by side, or one model under the
recorded and the edited record, with their difference."""

import attribution_panels as ap
import attribution_viewer as avw
import attribution_views as av
import dashboard as db
import numpy as np
import render
import streamlit as st
from state import session

from hyperfusion.explain import viewer as vw
from hyperfusion.explain import views as viewer
from hyperfusion.pages import attribution as A

st.title("Attribution")
cohort = db.require_cohort()
subject = db.subject_picker(cohort)
ptid = subject.id
usable = db.usable_models(cohort)
key = tuple((m.name, m.path) for m in usable)
predictor = db.predictor_for(key) if usable else None
image_models = [m.name for m in usable if predictor.models[m.name].members[0].reads_scan]
scan = subject.scan
if scan is None:
    st.info(f"No scan for {ptid}. Choose another subject or upload one.")
    st.stop()
record = session.record_of(ptid, subject.recorded)  # as edited on the Subject page
methods = {m["name"]: m for m in A.interactive_methods()}
labels = {name: m["label"] for name, m in methods.items()}
tasks = {m.name: m.task for m in usable}

controls, view_column = st.columns([1, 3], gap="medium")
with controls:
    ch = ap.controls(predictor, image_models, labels, methods)
with view_column:
    notices = st.container()  # errors and notes, above the viewer
    picture = st.empty()  # the progress bar while a map is computed


def compute(name: str, rec: dict, which: str = "") -> tuple[np.ndarray, dict]:
    target, label = A.target_index(predictor, name, ch.cls), f"the {labels[ch.method]} map of {name}{which}"
    return av.subject_map(
        key, name, subject, rec, ch.method, target, ch.baseline, status=picture, label=label
    )


reads_record = ch.model is not None and A.reads_record(predictor.models[ch.model])
shown = A.compute_maps(ch, compute, ptid, subject.recorded, record, labels, reads_record)
render.show(shown.notes, notices)

# --- the viewer: every map a row of three views through one crosshair, drawn in the browser -----------------
img = db.load_scan(scan)
volume = viewer.ras_volume(np.asarray(img.dataobj), img.affine)
view, problems, linked = avw.viewer_state.current()
truth = A.truth_volume(cohort.path, ptid, subject.uploaded, db.load_scan)
with controls:
    view = avw.display_controls(view, [k for k in vw.LAYERS if k != "truth" or truth is not None])
    rows = A.map_layers(ch, shown, img.affine, labels, tasks, view.sign)
    ap.peak_buttons(volume, rows)
view = avw.viewer_state.place_cursor(view, volume, rows, ptid, linked)
prepared = avw.kept(
    "vw_prepared", A.prepared_key(volume, rows, truth), lambda: vw.prepare(volume, rows, truth)
)
with view_column:
    for problem in problems:
        notices.warning(f"The shared view: {problem}.")
    view = avw.show(vw.scene(prepared, view, shared=ch.shared, revision=avw.viewer_state.revision), view)
    avw.viewer_state.keep(view)
    at_cursor = vw.readout(volume, rows, view.cursor)
    st.caption(f"Crosshair at {vw.readout_text(at_cursor)}. " + A.caption(ch, shown, tasks))
    if shown.difference is not None:
        st.caption(A.difference_caption(ch, shown, tasks))

    def png() -> bytes:
        return vw.snapshot_png(prepared, view, shared=ch.shared)

    png_key = (id(prepared), tuple(sorted(view.to_text().items())), ch.shared)
    session.report_part("attribution_png", avw.kept("vw_png", png_key, png))  # drawn again on a change
    ap.downloads(ch, shown, png, img, ptid, tasks)
    render.show(A.map_details(shown, methods[ch.method]["description"]))
