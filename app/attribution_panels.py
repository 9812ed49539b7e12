"""The Attribution page's panels: the choice of maps (every widget keeps a stable ``attr_*`` key, so a shared
link can restore it), a button per map to go to its peak, and the downloads (what they hold:
:mod:`hyperfusion.pages.attribution`)."""

from __future__ import annotations

import attribution_viewer as avw
import attribution_views as av
import numpy as np
import streamlit as st

from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.explain import viewer as vw
from hyperfusion.pages import attribution as A


def _toggle(label: str, key: str, default: bool, **kwargs) -> bool:
    st.session_state.setdefault(key, default)
    return st.toggle(label, key=key, **kwargs)


def controls(predictor, image_models: list[str], labels: dict, methods: dict) -> A.Choices:
    av.keep_choice("attr_mode", list(A.MODES))
    mode = st.radio("Show", list(A.MODES), format_func=A.MODES.get, key="attr_mode")
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
    return A.Choices(mode, model, model_b, cls, method, baseline, comparable, shared)


def peak_buttons(volume, layers: list[vw.MapLayer]) -> None:
    """A button per map to put the crosshair on its largest |value|."""
    for i, m in enumerate(layers):
        whose = "the difference's" if m.difference else "the map's" if len(layers) == 1 else f"{m.title}'s"
        if np.any(m.data) and st.button(f"Go to {whose} peak", key=f"attr_peak_{i}"):
            avw.set_cursor(vw.peak_mm(volume, m.data))


def downloads(ch: A.Choices, shown: A.Maps, png, img, ptid: str, tasks: dict) -> None:
    """The view as a picture (``png()`` draws it: slices through the crosshair) and each map (or the
    difference) as NIfTI; each file is built only when asked for (a 1 mm map takes a second to compress)."""
    if not shown.maps:
        return
    png_stem, exports = A.downloads(ch, shown, ptid, tasks)
    buttons = st.container(horizontal=True)
    buttons.download_button(
        "Download the view (PNG)",
        png,
        f"{png_stem}.png",
        "image/png",
        key="attr_download_png",
        on_click="ignore",
    )
    for i, e in enumerate(exports):

        def build(e: A.Export = e) -> bytes:
            return A.nifti_gz(e.map.data, img.affine, img.header, e.description)

        buttons.download_button(
            e.label,
            build,
            e.file_name,
            "application/gzip",
            key=f"attr_download_nifti_{i}",
            on_click="ignore",
            help=A.NIFTI_HELP,
        )
