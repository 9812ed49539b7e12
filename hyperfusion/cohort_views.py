"""A cohort at a glance, without torch: a seeded sample of subjects, global importance from per-subject record
attributions, partial-dependence tables, an attribute's values by diagnosis, and their Plotly figures (the
dashboard's Cohort page draws these; a notebook shows them with ``fig.show()``). The attributions and curves
themselves are computed by :mod:`hyperfusion.explain.cohort`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hyperfusion.data.cohort import Cohort
from hyperfusion.data.schema import FEATURE_NAMES
from hyperfusion.errors import DataError

if TYPE_CHECKING:
    from hyperfusion.explain.whatif import IceCurves

__all__ = [
    "distribution_figure",
    "feature_by_diagnosis",
    "global_importance",
    "importance_figure",
    "partial_dependence_figure",
    "partial_dependence_frame",
    "sample_subjects",
]


def sample_subjects(cohort: Cohort, n: int, seed: int = 0, ptids: Sequence[str] | None = None) -> list[str]:
    """``n`` subjects drawn without replacement with ``seed`` (all of them when there are at most ``n``), in
    the table's order; from ``ptids`` when given."""
    pool = list(dict.fromkeys(cohort.table["PTID"] if ptids is None else ptids))
    if n < 1:
        raise DataError(f"the sample needs at least one subject (got {n})")
    if len(pool) <= n:
        return pool
    picked = set(np.random.default_rng(seed).choice(len(pool), n, replace=False).tolist())
    return [p for i, p in enumerate(pool) if i in picked]


def global_importance(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean |attribution| per (model, attribute) over the subjects of ``rows``
    (:func:`record_attributions`'s tables, concatenated): columns model, attribute, mean |attribution|,
    subjects; the attributes of each model from most to least important."""
    ok = rows[rows["error"].fillna("") == ""].dropna(subset=["attribute"])
    if ok.empty:
        return pd.DataFrame(columns=["model", "attribute", "mean |attribution|", "subjects"])
    ok = ok.assign(magnitude=ok["attribution"].astype(float).abs())
    out = (
        ok.groupby(["model", "attribute"], sort=False)
        .agg(**{"mean |attribution|": ("magnitude", "mean"), "subjects": ("PTID", "nunique")})
        .reset_index()
    )
    return out.sort_values(
        ["model", "mean |attribution|"], ascending=[True, False], kind="stable"
    ).reset_index(drop=True)


def partial_dependence_frame(curves: IceCurves, class_name: str = "AD") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the mean curve per model: model, value, mean, sd; every subject's ICE curve: model, subject, value,
    prediction), for P(``class_name``) or the predicted age (brain age)."""
    means, ice = [], []
    for model, mean in curves.predictions.items():
        column = None if curves.tasks[model] != "ad" else curves.class_names[model].index(class_name)
        pick = (lambda a: a) if column is None else (lambda a, c=column: a[..., c])  # noqa: E731
        means.append(
            pd.DataFrame(
                {"model": model, "value": curves.values, "mean": pick(mean), "sd": pick(curves.spread[model])}
            )
        )
        for i, curve in enumerate(pick(curves.curves[model])):
            ice.append(
                pd.DataFrame({"model": model, "subject": i, "value": curves.values, "prediction": curve})
            )
    return pd.concat(means, ignore_index=True), pd.concat(ice, ignore_index=True)


def feature_by_diagnosis(table: pd.DataFrame, attribute: str, label: str = "DX") -> tuple[pd.DataFrame, dict]:
    """(the attribute's recorded values with each subject's diagnosis: columns ``label``, ``attribute``,
    subjects without either left out; per diagnosis, how many subjects lack the value). Sex is shown by its
    category names."""
    if attribute not in FEATURE_NAMES or attribute not in table:
        raise DataError(f"unknown attribute {attribute!r}; attributes: {list(FEATURE_NAMES)}")
    if label not in table:
        raise DataError(f"the cohort table has no diagnosis column {label!r}")
    known = table[table[label].notna()]
    missing = known[known[attribute].isna()].groupby(label).size().to_dict()
    values = known.loc[known[attribute].notna(), [label, attribute]].reset_index(drop=True)
    if attribute == "PTGENDER":
        values[attribute] = values[attribute].map({0.0: "Female", 1.0: "Male"})
    return values, {str(k): int(v) for k, v in missing.items()}


CLASS_COLOURS = {"CN": "#4c78a8", "MCI": "#f2a541", "AD": "#d62728"}  # as hyperfusion.explain.figures
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
