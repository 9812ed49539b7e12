"""Plotly figures of evaluation results: confusion matrices, ROC and reliability curves, predicted against
chronological age, the brain-age gap by sex, and a subject's sex what-if. The dashboard's Model comparison and
Brain age pages draw these; a notebook shows them with ``fig.show()``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.training import metrics as M

__all__ = [
    "SEX_COLOURS",
    "confusion_figure",
    "curve_figures",
    "gap_figure",
    "scatter_figure",
    "sex_whatif_figure",
]

SEX_COLOURS = {"Female": "#d6604d", "Male": "#4393c3", "unknown": "#999999"}


def confusion_figure(label: str, cm: np.ndarray) -> go.Figure:
    """A confusion matrix coloured by the share of each true class (so rare classes stay readable)."""
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    text = [[f"{cm[i, j]}<br>({share[i, j]:.0%})" for j in range(cm.shape[1])] for i in range(cm.shape[0])]
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=list(CLASS_NAMES),
            y=list(CLASS_NAMES),
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            showscale=False,
            hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(
        title=label,
        height=320,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"title": "predicted", "side": "bottom"},
        yaxis={"title": "true", "autorange": "reversed"},
    )
    return fig


def curve_figures(
    positive: np.ndarray, scores: dict[str, np.ndarray], cls: str
) -> tuple[go.Figure, go.Figure]:
    """One-vs-rest ROC and reliability curves of each model's P(cls): one trace per model."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_auc_score, roc_curve

    roc, calibration = go.Figure(), go.Figure()
    for label, p in scores.items():
        fpr, tpr, _ = roc_curve(positive, p)
        roc.add_scatter(
            x=fpr,
            y=tpr,
            mode="lines",
            name=f"{label} (AUC {roc_auc_score(positive, p):.2f})",
            hovertemplate="FPR %{x:.2f}, TPR %{y:.2f}<extra>" + label + "</extra>",
        )
        observed, predicted = calibration_curve(positive, p, n_bins=10, strategy="uniform")
        # the ECE of the pair (rest, cls) is this class's one-vs-rest ECE (up to ties at the bin edges)
        ece = M.expected_calibration_error(positive.astype(int), np.column_stack([1 - p, p]))
        calibration.add_scatter(
            x=predicted,
            y=observed,
            mode="lines+markers",
            name=f"{label} (ECE {ece:.2f})",
            hovertemplate="predicted %{x:.2f}, observed %{y:.2f}<extra>" + label + "</extra>",
        )
    for fig, x_title, y_title in (
        (roc, "false positive rate (1 − specificity)", "true positive rate (sensitivity)"),
        (calibration, f"mean predicted P({cls})", f"observed share of {cls}"),
    ):
        fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dot", "color": "grey"})
        fig.update_layout(
            height=420,
            margin={"l": 10, "r": 10, "t": 40, "b": 10},
            legend={"y": -0.25, "orientation": "h"},
            xaxis={"title": x_title, "range": [0, 1]},
            yaxis={"title": y_title, "range": [0, 1.02]},
        )
    roc.update_layout(title=f"ROC: {cls} vs the other classes")
    calibration.update_layout(title=f"Reliability: is P({cls}) the observed rate?")
    return roc, calibration


def scatter_figure(frame: pd.DataFrame) -> go.Figure:
    """One panel per model: predicted against chronological age, coloured by sex, with the identity line."""
    names = list(dict.fromkeys(frame["model"]))
    per_row = min(len(names), 3)
    rows = math.ceil(len(names) / per_row)
    titles = []
    for name in names:
        g = frame[frame["model"] == name]
        m = M.regression_metrics(g["AGE"].to_numpy(), g["predicted"].to_numpy())
        titles.append(f"{name} · MAE {m['mae']:.1f} y · r {m['r']:.2f}")
    fig = make_subplots(
        rows=rows,
        cols=per_row,
        subplot_titles=titles,
        shared_yaxes=True,
        shared_xaxes=True,
        horizontal_spacing=0.04,
        vertical_spacing=0.12,
    )
    values = np.concatenate([frame["AGE"].to_numpy(), frame["predicted"].to_numpy()])
    lo, hi = float(np.nanmin(values)) - 2, float(np.nanmax(values)) + 2
    for i, name in enumerate(names):
        r, c = i // per_row + 1, i % per_row + 1
        g = frame[frame["model"] == name]
        for sex, part in g.groupby("sex", sort=True):
            fig.add_scatter(
                x=part["AGE"],
                y=part["predicted"],
                mode="markers",
                name=sex,
                legendgroup=sex,
                showlegend=i == 0,
                marker={"color": SEX_COLOURS.get(sex), "size": 7, "opacity": 0.8},
                customdata=part[["PTID", "gap"]],
                hovertemplate="%{customdata[0]}: age %{x:.1f}, predicted %{y:.1f} (gap %{customdata[1]:+.1f})"
                "<extra>" + name + "</extra>",
                row=r,
                col=c,
            )
        fig.add_scatter(
            x=[lo, hi],
            y=[lo, hi],
            mode="lines",
            name="predicted = chronological",
            legendgroup="id",
            showlegend=i == 0,
            line={"dash": "dot", "color": "grey"},
            hoverinfo="skip",
            row=r,
            col=c,
        )
        fig.update_xaxes(title_text="chronological age (years)", range=[lo, hi], row=r, col=c)
    fig.update_yaxes(title_text="predicted age (years)", range=[lo, hi], col=1)
    fig.update_layout(
        height=380 * rows,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": -0.18},
    )
    return fig


def gap_figure(frame: pd.DataFrame) -> go.Figure:
    """The brain-age gap of every model, one box per sex (points: subjects; dashed: the mean)."""
    fig = go.Figure()
    for sex, part in frame.groupby("sex", sort=True):
        fig.add_box(
            x=part["model"],
            y=part["gap"],
            name=sex,
            marker_color=SEX_COLOURS.get(sex),
            boxmean=True,
            boxpoints="all",
            jitter=0.4,
            pointpos=0,
            customdata=part["PTID"],
            hovertemplate="%{customdata}: gap %{y:+.1f} years<extra>" + sex + "</extra>",
        )
    fig.add_hline(y=0, line_dash="dot", line_color="grey")
    fig.update_layout(
        boxmode="group",
        height=380,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"title": "brain-age gap: predicted − chronological (years)"},
        legend={"orientation": "h", "y": 1.1},
    )
    return fig


def sex_whatif_figure(predictions: dict, first: str, second: str, age: float) -> go.Figure:
    """Each brain-age model's predicted age of one scan with the record's sex as ``first`` (record 0) and as
    ``second`` (record 1), joined by a line, and the chronological age dotted."""
    fig = go.Figure()
    names = list(predictions)
    for name in names:
        fig.add_scatter(
            x=[predictions[name].value[0], predictions[name].value[1]],
            y=[name, name],
            mode="lines",
            line={"color": "lightgrey", "width": 6},
            showlegend=False,
            hoverinfo="skip",
        )
    for i, which in enumerate((first, second)):
        fig.add_scatter(
            x=[float(predictions[n].value[i]) for n in names],
            y=names,
            mode="markers",
            name=f"as {which}",
            hovertemplate="%{y}: %{x:.1f} years<extra>as " + which + "</extra>",
            marker={"color": SEX_COLOURS[which], "size": 14, "symbol": "circle" if i == 0 else "diamond"},
        )
    fig.add_vline(x=age, line_dash="dot", annotation_text=f"chronological {age:.1f}")
    fig.update_layout(
        height=140 + 60 * len(names),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"title": "predicted brain age (years)"},
        yaxis={"autorange": "reversed"},
        legend={"orientation": "h", "y": 1.25},
    )
    return fig
