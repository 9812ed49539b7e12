"""The Attribution page's viewer: its display controls and the browser component (app/viewer.js and
viewer.css), with the view kept in session state (:class:`hyperfusion.pages.attribution.ViewerState`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import streamlit as st

from hyperfusion.explain import viewer as vw
from hyperfusion.pages import attribution as A

HERE = Path(__file__).parent
_component = st.components.v2.component(
    "hyperfusion_viewer",
    js=(HERE / "viewer.js").read_text(),
    css=(HERE / "viewer.css").read_text(),
    isolate_styles=False,
)
viewer_state = A.ViewerState(st.session_state)


def display_controls(view: vw.View, offered: list[str]) -> vw.View:
    """The widgets of what is drawn and how; returns the view they give."""
    for key, value in (("vw_sign", view.sign), ("vw_kind", "percentile"), ("vw_percentile", 90)):
        st.session_state.setdefault(key, value)
    sign = st.radio("Values", list(vw.SIGNS), format_func=vw.SIGNS.get, key="vw_sign", horizontal=True)
    kind = st.radio("Threshold", ["percentile", "absolute"], key="vw_kind", horizontal=True)
    if kind == "percentile":
        threshold = f"{st.slider('Hide |value| below the percentile', 0, 99, key='vw_percentile')}%"
    else:
        st.session_state.setdefault("vw_absolute", 0.0)
        number = st.number_input("Hide |value| below", min_value=0.0, format="%.3g", key="vw_absolute")
        threshold = f"{number:g}"
    cmaps = A.colour_maps(sign)
    if st.session_state.get("vw_cmap") not in cmaps:
        st.session_state["vw_cmap"] = cmaps[0]
    cmap = st.selectbox("Colour map", cmaps, key="vw_cmap")
    st.session_state.setdefault("vw_opacity", view.opacity)
    opacity = st.slider("Opacity", 0.0, 1.0, step=0.05, key="vw_opacity")
    st.session_state["vw_layers"] = [
        x for x in st.session_state.get("vw_layers", view.layers) if x in offered
    ]
    layers = st.multiselect("Overlays", offered, format_func=vw.LAYERS.get, key="vw_layers")
    st.session_state.setdefault("vw_radiological", view.radiological)
    radiological = st.toggle("Radiological (R on the left)", key="vw_radiological")
    return replace(
        view,
        threshold=threshold,
        sign=sign,
        cmap=cmap,
        opacity=opacity,
        layers=tuple(layers),
        radiological=radiological,
    )


def show(scene: dict, view: vw.View) -> vw.View:
    """Draw the viewer; returns the view with the cursor, centre and zoom the browser last reported."""
    result = _component(data=scene, key="attr_viewer", default={"view": None}, on_view_change=lambda: None)
    return viewer_state.reported(result.view if result is not None else None, view)


def kept(name: str, key, make):
    """``make()``, kept in this session under ``name`` and made again only when ``key`` changes (the viewer's
    prepared data per scan and maps; the report's picture per view)."""
    held = st.session_state.get(name)
    if held is None or held[0] != key:
        held = st.session_state[name] = (key, make())
    return held[1]
