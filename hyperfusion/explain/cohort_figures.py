"""Plotly figures of a cohort (the dashboard's Cohort page draws these; a notebook shows them with
``fig.show()``): global importance, partial dependence with ICE curves, an attribute's distribution by
diagnosis. The tables come from :mod:`hyperfusion.explain.cohort`."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from hyperfusion.explain.figures import CLASS_COLOURS

__all__ = ["distribution_figure", "importance_figure", "partial_dependence_figure"]

_MARGIN = {"l": 10, "r": 10, "t": 30, "b": 10}


def importance_figure(importance: pd.DataFrame, output: str = "P(AD)") -> go.Figure:
    """Mean |record attribution| per attribute (rows) and model (grouped bars)."""
    fig = go.Figure()
    order = (
        importance.groupby("attribute", sort=False)["mean |attribution|"].mean().sort_values().index.tolist()
    )
    for model, part in importance.groupby("model", sort=False):
        part = part.set_index("attribute").reindex(order)
        fig.add_bar(name=model, y=order, x=part["mean |attribution|"], orientation="h")
    fig.update_layout(
        barmode="group",
        height=160 + 22 * len(order) * max(1, importance["model"].nunique()) ** 0.5,
        margin=_MARGIN,
        legend={"orientation": "h", "y": 1.08},
        xaxis={"title": f"mean |attribution| to {output} over the sampled subjects"},
    )
    return fig


def partial_dependence_figure(
    mean: pd.DataFrame, ice: pd.DataFrame, attribute: str, output: str = "P(AD)", ice_lines: int = 10
) -> go.Figure:
    """Each model's partial dependence (thick, ±1 SD across subjects shaded) and up to ``ice_lines`` of its
    subjects' ICE curves (thin)."""
    fig = go.Figure()
    for i, (model, part) in enumerate(mean.groupby("model", sort=False)):
        colour = f"hsl({(i * 57) % 360}, 65%, 45%)"
        x = part["value"].tolist()
        fig.add_scatter(
            x=x + x[::-1],
            y=(part["mean"] + part["sd"]).tolist() + (part["mean"] - part["sd"]).tolist()[::-1],
            fill="toself",
            line={"width": 0},
            fillcolor=colour.replace("hsl", "hsla").replace(")", ", 0.12)"),
            hoverinfo="skip",
            showlegend=False,
            legendgroup=model,
        )
        curves = ice[ice["model"] == model]
        for s in sorted(curves["subject"].unique())[:ice_lines]:
            one = curves[curves["subject"] == s]
            thin = {"width": 0.6, "color": colour}
            fig.add_scatter(x=one["value"], y=one["prediction"], mode="lines", line=thin, opacity=0.4)
            fig.data[-1].update(showlegend=False, legendgroup=model, hoverinfo="skip")
        fig.add_scatter(x=x, y=part["mean"], mode="lines", name=model, line={"width": 3, "color": colour})
    fig.update_layout(
        height=420,
        margin=_MARGIN,
        legend={"orientation": "h", "y": 1.1},
        xaxis={"title": attribute},
        yaxis={"title": f"{output} (mean over subjects; thin: single subjects)"},
    )
    return fig


def distribution_figure(
    values: pd.DataFrame, attribute: str, label: str = "DX", kind: str = "box"
) -> go.Figure:
    """``attribute``'s values per diagnosis as boxes, violins or overlaid histograms (``kind``)."""
    fig = go.Figure()
    for dx in [c for c in CLASS_COLOURS if c in set(values[label])] + sorted(
        set(values[label]) - set(CLASS_COLOURS)
    ):
        v = values.loc[values[label] == dx, attribute]
        colour = CLASS_COLOURS.get(dx)
        if kind == "violin":
            fig.add_violin(y=v, name=dx, box_visible=True, line_color=colour, points="outliers")
        elif kind == "histogram":
            fig.add_histogram(x=v, name=dx, marker_color=colour, opacity=0.6)
        else:
            fig.add_box(y=v, name=dx, marker_color=colour, boxpoints="outliers")
    axis = {"title": attribute}
    fig.update_layout(
        height=380,
        margin=_MARGIN,
        barmode="overlay",
        legend={"orientation": "h", "y": 1.1},
        **({"xaxis": axis, "yaxis": {"title": "subjects"}} if kind == "histogram" else {"yaxis": axis}),
    )
    return fig
