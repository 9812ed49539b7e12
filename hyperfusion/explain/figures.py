"""Plotly figures of one subject's predictions and what-if curves (the dashboard's Subject page draws these;
a notebook shows them with ``fig.show()``)."""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go

from hyperfusion.explain.tabular import RecordAttribution
from hyperfusion.explain.whatif import IceCurves
from hyperfusion.inference.predictor import Prediction

__all__ = ["CLASS_COLOURS", "ice_figure", "probability_bars", "record_waterfall"]

CLASS_COLOURS = {"CN": "#4c78a8", "MCI": "#f2a541", "AD": "#d62728"}
_MARGIN = {"l": 10, "r": 10, "t": 30, "b": 10}


def probability_bars(predictions: Mapping[str, Prediction], row: int = 0) -> go.Figure:
    """Each AD model's class probabilities for record ``row`` as grouped horizontal bars, with the ensemble's
    spread (±1 SD across members) as error bars."""
    ad = {n: p for n, p in predictions.items() if p.task == "ad"}
    classes = next(iter(ad.values())).class_names if ad else []
    fig = go.Figure()
    for c, cls in enumerate(classes):
        fig.add_bar(
            name=cls,
            y=list(ad),
            x=[p.value[row, c] for p in ad.values()],
            orientation="h",
            marker_color=CLASS_COLOURS.get(cls),
            error_x={"type": "data", "array": [p.spread[row, c] for p in ad.values()], "visible": True},
        )
    fig.update_layout(
        barmode="group",
        height=120 + 70 * len(ad),
        margin=_MARGIN,
        legend={"orientation": "h", "y": 1.12},
        xaxis={"range": [0, 1], "title": "probability (edited record; bars: ensemble spread ±1 SD)"},
        yaxis={"autorange": "reversed"},
    )
    return fig


def ice_figure(curves: IceCurves, unit: str = "") -> go.Figure:
    """One line per model: P(AD), or the predicted age, as ``curves.attribute`` sweeps its range; a dotted line
    at the current value."""
    fig = go.Figure()
    any_ad = False
    for name, values in curves.predictions.items():
        ad = curves.tasks[name] == "ad"
        any_ad |= ad
        fig.add_scatter(x=curves.values, y=values[:, 2] if ad else values, mode="lines", name=name)
    if curves.current is not None:
        fig.add_vline(x=curves.current, line_dash="dot", annotation_text="current")
    attribute = curves.attribute
    fig.update_layout(
        height=320,
        margin=_MARGIN,
        legend={"orientation": "h", "y": 1.15},
        xaxis={"title": f"{attribute} ({unit})" if unit else attribute},
        yaxis={"title": "P(AD)" if any_ad else "predicted age (years)"},
    )
    return fig


def record_waterfall(ra: RecordAttribution) -> go.Figure:
    """Each attribute's contribution (:func:`hyperfusion.explain.explain_record`) as a waterfall from the
    output at the baseline record to the output at the subject's record, largest |contribution| first; the
    steps add up to the difference (up to integrated gradients' convergence delta)."""
    what = (
        f"P({ra.target_name})"
        if ra.target_name and ra.settings.get("output") == "probability"
        else (f"logit of {ra.target_name}" if ra.target_name else "predicted age (years)")
    )
    order = sorted(ra.attributes, key=lambda a: -abs(ra.attributes[a]))
    fig = go.Figure(
        go.Waterfall(
            orientation="h",
            measure=["absolute", *["relative"] * len(order), "total"],
            y=["baseline record", *order, "this record"],
            x=[ra.baseline_output, *[ra.attributes[a] for a in order], ra.output],
            text=[
                f"{ra.baseline_output:.3f}",
                *[f"{ra.attributes[a]:+.3f}" for a in order],
                f"{ra.output:.3f}",
            ],
            textposition="outside",
            increasing={"marker": {"color": CLASS_COLOURS["AD"]}},
            decreasing={"marker": {"color": CLASS_COLOURS["CN"]}},
            totals={"marker": {"color": "#7f7f7f"}},
        )
    )
    fig.update_layout(
        height=140 + 28 * len(order),
        margin=_MARGIN,
        yaxis={"autorange": "reversed"},
        xaxis={"title": what},
        showlegend=False,
    )
    return fig
