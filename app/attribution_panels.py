"""The Attribution page's panels: the choice of maps (every widget keeps a stable ``attr_*`` key, so a shared
link can restore it), the maps asked for, and the viewer's rows with a button per map to go to its peak."""

from __future__ import annotations

from dataclasses import dataclass

import attribution_viewer as avw
import attribution_views as av
import numpy as np
import streamlit as st

from hyperfusion.data.cohort import describe_changes, record_changes
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.errors import HyperFusionError
from hyperfusion.explain import viewer as vw
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
    return Choices(
        mode,
        model,
        model_b,
        cls,
        method,
        baseline,
        comparable,
        shared,
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


def map_layers(ch: Choices, maps, affine, labels: dict, explained, sign: str) -> list[vw.MapLayer]:
    """The viewer's rows: each map on the scan's RAS grid, with what its colour bar measures."""
    out = []
    for m in maps:
        shown_as = labels[ch.method] if sign != "absolute" or m.difference else f"|{labels[ch.method]}|"
        label = f"{'Δ ' if m.difference else ''}{shown_as} of {explained(m)}"
        data = viewer.ras_volume(m.data, affine).data  # the scan's RAS grid, as the viewer's scan
        out.append(vw.MapLayer(data, "difference" if m.difference else m.model, label, m.difference))
    return out


def peak_buttons(volume, layers: list[vw.MapLayer]) -> None:
    """A button per map to put the crosshair on its largest |value|."""
    for i, m in enumerate(layers):
        whose = "the difference's" if m.difference else "the map's" if len(layers) == 1 else f"{m.title}'s"
        if np.any(m.data) and st.button(f"Go to {whose} peak", key=f"attr_peak_{i}"):
            avw.set_cursor(vw.peak_mm(volume, m.data))
