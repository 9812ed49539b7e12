"""The Attribution page's viewer: its display controls and the browser component (app/viewer.js), with the view
kept in session state as text (``attr_cursor``, ``attr_zoom``, ``attr_threshold`` …: the keys that share links
and reports carry, :class:`hyperfusion.explain.viewer.View`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import streamlit as st

from hyperfusion.data.scenario import VIEW_KEYS
from hyperfusion.explain import viewer as vw
from hyperfusion.pages import attribution as A

SEQUENTIAL = ("hot", "inferno", "viridis", "jet")
DIVERGING = ("cold_hot", "coolwarm", "RdBu_r", "bwr")
CSS = """
.hfv { background: #111; color: #ddd; padding: 6px; border-radius: 6px; font: 13px sans-serif; }
.hfv-bar { display: flex; gap: 6px; align-items: center; margin-bottom: 4px; }
.hfv-bar button { background: #333; color: #eee; border: 1px solid #555; border-radius: 4px; min-width: 28px; }
.hfv-readout { margin-left: 8px; font-family: monospace; }
.hfv-views { display: flex; gap: 8px; }
.hfv-view { cursor: crosshair; touch-action: none; }
.hfv-title { font-weight: bold; margin: 6px 0 3px; }
.hfv-cbar { display: block; margin: 4px auto 0; }
.hfv-clabel, .hfv-help { font-size: 12px; color: #aaa; text-align: center; }
"""
_component = st.components.v2.component(
    "hyperfusion_viewer", js=(Path(__file__).parent / "viewer.js").read_text(), css=CSS, isolate_styles=False
)


def current_view() -> tuple[vw.View, list[str], bool]:
    """The view in session state (as a link or the last run left it), each bad value found, and whether it was
    set from outside the page (a link, a scenario file) since its last run."""
    text = {k: st.session_state[f"attr_{k}"] for k in VIEW_KEYS if st.session_state.get(f"attr_{k}")}
    view, problems = vw.View.from_text(text)
    external = text != st.session_state.get("vw_seen")
    if external:  # set from outside (a link, a scenario file): the widgets and the browser follow
        st.session_state.update(A.widget_state(view))
        st.session_state["vw_revision"] = st.session_state.get("vw_revision", 0) + 1
    return view, problems, external and "cursor" in text


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
    cmaps = DIVERGING if sign == "both" else SEQUENTIAL
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


def set_cursor(mm) -> None:
    """Move the crosshair from Python (a new subject, a peak button): the browser takes it on the next draw."""
    st.session_state["attr_cursor"] = A.cursor_text(mm)
    st.session_state["vw_revision"] = st.session_state.get("vw_revision", 0) + 1


def show(scene: dict, view: vw.View) -> vw.View:
    """Draw the viewer; returns the view with the cursor, centre and zoom the browser last reported."""
    result = _component(data=scene, key="attr_viewer", default={"view": None}, on_view_change=lambda: None)
    reported = result.view if result is not None else None
    if reported and reported != st.session_state.get("vw_reported"):
        st.session_state["vw_reported"] = reported
        view = A.reported_view(reported, view)
    return view


def keep(view: vw.View) -> None:
    """Keep the view as text in session state (what a link carries) and remember it as this page's own."""
    text = view.to_text()
    for key in VIEW_KEYS:
        if key in text:
            st.session_state[f"attr_{key}"] = text[key]
    st.session_state["vw_seen"] = {k: text[k] for k in VIEW_KEYS if k in text}


# --- kept for this session ---------------------------------------------------------------------------------
def prepared(volume, rows: list, truth, scan) -> vw.Prepared:
    """``hyperfusion.explain.viewer.prepare`` once per scan and set of maps (kept for this session)."""
    key = (vw.fingerprint(volume.data), tuple((m.title, m.label, vw.fingerprint(m.data)) for m in rows))
    key += (truth is not None,)
    kept = st.session_state.get("vw_prepared")
    if kept is None or kept[0] != key:
        kept = st.session_state["vw_prepared"] = (key, vw.prepare(volume, rows, truth))
    return kept[1]


def cached_png(prepared_: vw.Prepared, view: vw.View, shared: bool, render) -> bytes:
    """The static picture of the view for the HTML report, drawn again only when the view or the maps change."""
    key = (id(prepared_), tuple(sorted(view.to_text().items())), shared)
    kept = st.session_state.get("vw_png")
    if kept is None or kept[0] != key:
        kept = st.session_state["vw_png"] = (key, render())
    return kept[1]
