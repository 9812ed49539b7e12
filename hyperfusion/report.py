"""Subject reports: one self-contained HTML page (or JSON) with the scenario, the record, every model's
prediction and an attribution figure.

The dashboard's "Report (HTML)" download and ``hyperfusion report --subject PTID --out report.html`` both go
through :func:`html_report`; :func:`subject_report` computes the parts for a cohort subject outside any
dashboard (from a notebook, a script or the CLI).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from hyperfusion.data.scenario import as_text

__all__ = ["RESEARCH_NOTICE", "SYNTHETIC_NOTICE", "html_report", "subject_report", "write_report"]

RESEARCH_NOTICE = "Research use only — not for clinical decisions."
SYNTHETIC_NOTICE = "SYNTHETIC data / models: generated from a brain template, not real patients."

_TABLES = (("Record", "record"), ("Predictions", "predictions"), ("Brain age", "brain_age"))
_FIGURES = (("Predictions", "predictions_png"), ("Attribution", "attribution_png"))
_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}.warn{color:#8a4b00}"
)


def html_report(scenario: Mapping[str, str], parts: Mapping[str, object], synthetic: bool) -> str:
    """A self-contained HTML page: the scenario, then the parts that are there: tables ``record``,
    ``predictions``, ``brain_age`` (lists of row dicts), PNG figures ``predictions_png`` and
    ``attribution_png`` (inline), and ``attribution_caption``."""
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in scenario.items())
    body = [
        f"<h1>HyperFusion scenario: {e(scenario.get('subject', 'uploaded subject'))}</h1>",
        f"<p class='warn'><b>{e(RESEARCH_NOTICE)}</b>"
        + (f" <b>{e(SYNTHETIC_NOTICE)}</b>" if synthetic else "")
        + "</p>",
        f"<p>Exported {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</p>",
        "<h2>Scenario</h2>",
        f"<table>{rows}</table>",
    ]
    for title, key in _TABLES:
        table = parts.get(key)
        if table:
            head = "".join(f"<th>{e(str(c))}</th>" for c in table[0])
            cells = "".join(
                "<tr>" + "".join(f"<td>{e(as_text(v))}</td>" for v in r.values()) + "</tr>" for r in table
            )
            body += [f"<h2>{title}</h2>", f"<table><tr>{head}</tr>{cells}</table>"]
    for title, key in _FIGURES:
        png = parts.get(key)
        if png:
            data = base64.b64encode(png).decode()
            body += [f"<h2>{title} figure</h2>", f"<img alt='{title}' src='data:image/png;base64,{data}'>"]
    if parts.get("attribution_caption"):
        body.append(f"<p>{e(str(parts['attribution_caption']))}</p>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>HyperFusion scenario</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def subject_report(
    models: Sequence[str | Path], data: str | Path, subject: str, *, method: str | None = "saliency"
) -> tuple[dict[str, str], dict[str, object], bool]:
    """(scenario, parts, synthetic) of a cohort subject: its record, every model's prediction and, when
    ``method`` is given and a model reads the scan, that model's attribution map over the scan."""
    import numpy as np

    from hyperfusion.data import load_cohort
    from hyperfusion.data.cohort import cohort_subject
    from hyperfusion.data.nifti import load_nifti
    from hyperfusion.data.synthetic.shipped import scans_for
    from hyperfusion.inference.predictor import Predictor
    from hyperfusion.inference.tables import prediction_rows

    cohort = load_cohort(scans_for(data))
    scan, record = cohort_subject(cohort, subject)
    predictor = Predictor([Path(m) for m in models])
    readable = [n for n, e in predictor.models.items() if scan is not None or not e.members[0].reads_scan]
    predictions = predictor.predict(scan, record, models=readable)
    parts: dict[str, object] = {
        "record": [{"attribute": k, "value": v} for k, v in record.items()],
        "predictions": prediction_rows(predictions, "ad"),
        "brain_age": prediction_rows(predictions, "brain_age"),
    }
    image_models = [n for n in readable if predictor.models[n].members[0].reads_scan]
    if method and scan is not None and image_models:
        from hyperfusion.explain import explain_image, views

        name = image_models[0]
        attribution = explain_image(predictor, name, scan, record, method)
        img = load_nifti(scan)
        volume = views.ras_volume(np.asarray(img.dataobj), img.affine)
        overlay = views.ras_volume(
            np.abs(attribution.to_subject(img).get_fdata(dtype=np.float32)), img.affine
        )
        threshold, vmax = views.overlay_limits(overlay.data, 90)
        peak = np.unravel_index(int(np.argmax(overlay.data)), overlay.data.shape)
        layer = views.Layer(
            overlay.data,
            f"{name} · {method}",
            f"|{method}| (≥ 90th percentile)",
            "hot",
            False,
            threshold,
            vmax,
        )
        parts["attribution_png"] = views.render_rows(volume, [layer], tuple(int(i) for i in peak))
        parts["attribution_caption"] = (
            f"{method} map of {name} through its peak. An attribution map shows where the model's output is "
            "sensitive, not a proof of what it relies on."
        )
    scenario = {"cohort": str(cohort.path), "subject": subject}
    synthetic = cohort.is_synthetic or any(e.synthetic for e in predictor.models.values())
    return scenario, parts, synthetic


def write_report(
    out: str | Path, scenario: Mapping[str, str], parts: Mapping[str, object], synthetic: bool
) -> Path:
    """Write the report as HTML, or as JSON when ``out`` ends in ``.json`` (figures base64-encoded)."""
    from hyperfusion.files import atomic_write

    out = Path(out)
    if out.suffix == ".json":
        payload = {
            "scenario": dict(scenario),
            "synthetic": synthetic,
            "notice": RESEARCH_NOTICE,
            **{k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in parts.items()},
        }
        return atomic_write(out, json.dumps(payload, indent=1, default=str) + "\n")
    return atomic_write(out, html_report(scenario, parts, synthetic))
