"""The Attribution page's panels, top to bottom: the controls, the maps asked for, the crosshair, what the
picture shows, the downloads and the per-region tables. Every widget keeps a stable key (``attr_*``,
``cursor_*``) so a shared link can restore it."""

from __future__ import annotations

from dataclasses import dataclass

import attribution_views as av
import numpy as np
import streamlit as st

from hyperfusion.data.cohort import describe_changes, record_changes
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.errors import HyperFusionError
from hyperfusion.explain import views as viewer


@dataclass
class Choices:
    mode: str
    model: str | None
    model_b: str | None
    cls: str
    method: str
    baseline: str
    comparable: bool  # two maps of the same kind of output (not a probability and years)
    shared: bool  # one colour scale for both
    signed: bool
    opacity: float
    percentile: int
    cmap: str
    radiological: bool


def _toggle(label: str, key: str, default: bool, **kwargs) -> bool:
    st.session_state.setdefault(key, default)
    return st.toggle(label, key=key, **kwargs)


def controls(predictor, image_models: list[str], labels: dict, methods: dict) -> Choices:
    av.keep_choice("attr_mode", list(av.MODES))
    mode = st.radio("Show", list(av.MODES), format_func=av.MODES.get, key="attr_mode")
    network = {m: predictor.models[m].members[0].network for m in image_models}
    model = model_b = None
    if image_models:  # the model with weights generated from the record first: it is what the tool is about
        av.keep_choice(
            "attr_model", image_models, next((m for m in image_models if network[m].generated_layers), None)
        )
        model = st.selectbox("Model", image_models, key="attr_model")
    else:
        st.info("No model for this cohort reads the scan: there is no image attribution map to show.")
    if mode == "models" and model is not None:
        others = [m for m in image_models if m != model]
        if others:  # against the image-only baseline, the model that reads no record
            av.keep_choice(
                "attr_model_b", others, next((m for m in others if not network[m].reads_record), None)
            )
            model_b = st.selectbox("Second model", others, key="attr_model_b")
        else:
            st.info("Only one model here reads the scan: there is no second model to compare with.")
    tasks = {predictor.models[m].task for m in (model, model_b) if m is not None}
    cls = "AD"
    if "ad" in tasks:
        av.keep_choice("attr_target", list(CLASS_NAMES), "AD")
        cls = st.radio("Explain the class", list(CLASS_NAMES), horizontal=True, key="attr_target")
    av.keep_choice("attr_method", list(labels), "saliency")
    method = st.selectbox(
        "Method",
        list(labels),
        format_func=labels.get,
        key="attr_method",
        help="Captum methods (hyperfusion.explain); each map is computed once, then cached",
    )
    baseline = "zero"
    if methods[method].get("uses_baseline", False):
        av.keep_choice("attr_baseline", ["zero", "blur"])
        baseline = st.selectbox(
            "Baseline", ["zero", "blur"], key="attr_baseline", help="what the scan is compared with"
        )
    comparable = model_b is not None and len(tasks) == 1
    shared = comparable and _toggle(
        "One colour scale for both maps",
        "attr_shared_scale",
        True,
        help="the same colours and threshold for the same values in both maps",
    )
    signed = _toggle("Signed (not absolute)", "attr_signed", False)
    st.session_state.setdefault("attr_opacity", 0.6)
    opacity = st.slider("Opacity", 0.0, 1.0, step=0.05, key="attr_opacity")
    st.session_state.setdefault("attr_percentile", 90)
    percentile = st.slider("Threshold (percentile of |map|)", 0, 99, key="attr_percentile")
    cmaps = av.SIGNED_CMAPS if signed else av.ABSOLUTE_CMAPS
    av.keep_choice("attr_cmap", cmaps)
    cmap = st.selectbox("Colour map", cmaps, key="attr_cmap")
    radiological = _toggle("Radiological (R on the left)", "attr_radiological", True)
    return Choices(
        mode,
        model,
        model_b,
        cls,
        method,
        baseline,
        comparable,
        shared,
        signed,
        opacity,
        percentile,
        cmap,
        radiological,
    )


def compute_maps(ch: Choices, compute, subject, record: dict, labels: dict, reads_record: bool, notices):
    """The maps of the chosen mode: (maps, the record's edits, the recorded record's summary or None).
    ``compute(name, record, which)`` -> (map, summary)."""
    maps: list[av.SubjectMap] = []
    edits, recorded_summary = [], None
    ptid, method, model = subject.id, ch.method, ch.model
    if model is None:
        return maps, edits, recorded_summary
    title = f"{model} · {labels[method]}"
    try:
        edits = record_changes(subject.recorded, record) if ch.mode == "records" else []
        if ch.model_b is not None:
            for name in (model, ch.model_b):
                data, summary = compute(name, record)
                maps.append(
                    av.SubjectMap(
                        data, name, f"{name} · {labels[method]}", av.file_stem(ptid, name, method), summary
                    )
                )
        elif ch.mode == "records" and edits and reads_record:
            before, recorded_summary = compute(model, subject.recorded, " (recorded record)")
            after, summary = compute(model, record, " (edited record)")
            maps.append(
                av.SubjectMap(
                    after, model, f"{title} · edited record", av.file_stem(ptid, model, method), summary
                )
            )
            maps.append(
                av.SubjectMap(
                    after - before,
                    model,
                    "difference: edited − recorded",
                    av.file_stem(ptid, model, method, "edited-minus-recorded"),
                    difference=True,
                )
            )
        else:
            data, summary = compute(model, record)
            maps.append(av.SubjectMap(data, model, title, av.file_stem(ptid, model, method), summary))
            if ch.mode == "records" and not edits:
                notices.info(
                    "The record was not edited on the Subject page, so there is no difference to show; the "
                    "map below is for the recorded values. Change a value there (e.g. APOE4) and come back."
                )
            elif ch.mode == "records":
                notices.info(
                    f"{model} does not read the record, so its map is the same under the recorded and the "
                    f"edited values ({describe_changes(edits)}): the difference is zero everywhere. Its map "
                    "is shown."
                )
    except HyperFusionError as exc:
        notices.error(str(exc))
        maps = []
    return maps, edits, recorded_summary


def layers(ch: Choices, maps, drawn, labels: dict, explained) -> list[viewer.Layer]:
    """One row of the figure per map: |map| unless signed (a difference is always signed), on one pooled
    colour scale when asked."""
    if ch.shared:
        limits = [viewer.overlay_limits(drawn, ch.percentile)] * len(
            drawn
        )  # pooled: equal colours, equal values
    else:
        limits = [viewer.overlay_limits(d, ch.percentile) for d in drawn]
    out = []
    for m, data, (threshold, vmax) in zip(maps, drawn, limits):
        of = "of both maps" if ch.shared else "of |difference|" if m.difference else "of |map|"
        shown_as = labels[ch.method] if ch.signed or m.difference else f"|{labels[ch.method]}|"
        what = f"{'Δ ' if m.difference else ''}{shown_as} of {explained(m)}"
        out.append(
            viewer.Layer(
                data,
                m.title,
                f"{what} (shown: |value| ≥ {ch.percentile}th percentile {of})",
                "cold_hot" if m.difference and not ch.signed else ch.cmap,
                ch.signed or m.difference,
                threshold,
                vmax,
            )
        )
    return out


def crosshair(volume, maps, drawn, ptid: str) -> None:
    """Start at the first map's peak for a new subject (or after another page dropped the sliders' state);
    a button per map to go to its peak."""

    def go_to_peak(values: np.ndarray) -> None:
        peak = np.unravel_index(int(np.argmax(np.abs(values))), values.shape)
        for axis, value in zip("xyz", volume.mm_of(peak)):
            st.session_state[f"cursor_{axis}"] = float(value)

    if st.session_state.get("cursor_subject") != ptid or any(
        f"cursor_{a}" not in st.session_state for a in "xyz"
    ):
        for axis, value in zip("xyz", volume.mm_of(tuple(n // 2 for n in volume.data.shape))):
            st.session_state[f"cursor_{axis}"] = float(value)
        if drawn and np.abs(drawn[0]).max() > 0:
            go_to_peak(drawn[0])
        st.session_state["cursor_subject"] = ptid
    for i, (m, data) in enumerate(zip(maps, drawn)):
        whose = "the difference's" if m.difference else "the map's" if len(maps) == 1 else f"{m.model}'s"
        if np.any(data) and st.button(f"Go to {whose} peak", key=f"attr_peak_{i}"):
            go_to_peak(data)


def slice_sliders(volume) -> tuple[int, int, int]:
    x_mm, y_mm, z_mm = volume.axes_mm
    for col, axis, mm, plane in zip(
        st.columns(3), "zyx", (z_mm, y_mm, x_mm), ("axial", "coronal", "sagittal")
    ):
        lo, hi = sorted((float(mm[0]), float(mm[-1])))
        step = float(abs(mm[1] - mm[0])) if len(mm) > 1 else 1.0
        col.slider(f"{plane} slice: {axis} (mm)", lo, hi, step=step, format="%.0f", key=f"cursor_{axis}")
    return volume.index_of(tuple(st.session_state[f"cursor_{a}"] for a in "xyz"))
