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
from hyperfusion.pages import subject as S


def _toggle(label: str, key: str, default: bool, **kwargs) -> bool:
    st.session_state.setdefault(key, default)
    return st.toggle(label, key=key, **kwargs)


def _choose(widget, label: str, options: list, key: str, default=None, **kwargs):
    """``widget`` (st.radio, st.selectbox) of ``options``, its value kept one of them (av.keep_choice)."""
    av.keep_choice(key, options, default)
    return widget(label, options, key=key, **kwargs)


def controls(predictor, image_models: list[str], labels: dict, methods: dict) -> A.Choices:
    """The mode, the model(s), the class explained, the method and its baseline."""
    mode = _choose(st.radio, "Show", list(A.MODES), "attr_mode", format_func=A.MODES.get)
    model = model_b = None
    if image_models:  # the model with weights generated from the record first: it is what the tool is about
        first = image_models[S.fusion_first(predictor, image_models)]
        model = _choose(st.selectbox, "Model", image_models, "attr_model", first)
    else:
        st.info("No model for this cohort reads the scan: there is no image attribution map to show.")
    others = [m for m in image_models if m != model]
    if mode == "models" and model is not None and others:  # against the image-only model, reading no record
        second = A.image_only_first(predictor, others)
        model_b = _choose(st.selectbox, "Second model", others, "attr_model_b", second)
    elif mode == "models" and model is not None:
        st.info("Only one model here reads the scan: there is no second model to compare with.")
    tasks = {predictor.models[m].task for m in (model, model_b) if m is not None}
    cls = "AD"
    if "ad" in tasks:
        cls = _choose(st.radio, "Explain the class", list(CLASS_NAMES), "attr_target", "AD", horizontal=True)
    help_ = "Captum methods (hyperfusion.explain); each map is computed once, then cached"
    method = _choose(
        st.selectbox, "Method", list(labels), "attr_method", "saliency", format_func=labels.get, help=help_
    )
    baseline = "zero"
    if methods[method].get("uses_baseline", False):
        help_ = "what the scan is compared with"
        baseline = _choose(st.selectbox, "Baseline", ["zero", "blur"], "attr_baseline", help=help_)
    comparable = model_b is not None and len(tasks) == 1
    help_ = "the same colours and threshold for the same values in both maps"
    shared = comparable and _toggle("One colour scale for both maps", "attr_shared_scale", True, help=help_)
    return A.Choices(mode, model, model_b, cls, method, baseline, comparable, shared)


def peak_buttons(volume, layers: list[vw.MapLayer]) -> None:
    """A button per map to put the crosshair on its largest |value|."""
    for i, m in enumerate(layers):
        whose = "the difference's" if m.difference else "the map's" if len(layers) == 1 else f"{m.title}'s"
        if np.any(m.data) and st.button(f"Go to {whose} peak", key=f"attr_peak_{i}"):
            avw.viewer_state.set_cursor(vw.peak_mm(volume, m.data))


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
