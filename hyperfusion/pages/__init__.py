"""What the dashboard's pages show, as data: each section of a page is one call returning :class:`Block` s (a
text, a table, a figure, a message), so that the pages only lay them out (``app/render.py``) and a notebook can
print the same tables and texts. :mod:`hyperfusion.pages.reports`: the Model comparison and Brain age pages;
:mod:`hyperfusion.pages.subject`: the Subject and Upload pages; :mod:`hyperfusion.pages.attribution`: the
Attribution page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hyperfusion.training import reports as R

#: The dashboard's id of a subject uploaded in the session: "uploaded: <file name>".
UPLOAD_PREFIX = "uploaded: "


@dataclass
class Block:
    """One thing a page shows: ``kind`` is "markdown", "subheader", "caption", "info", "success", "warning",
    "error", "code", "table" (``value`` a DataFrame; ``cells``: what a cell holds, added to each column's
    explanation) or "figures" (``value`` a list of (key, Plotly figure), shown side by side in ``columns``
    columns, default one each); ``key`` names a table for the page's widgets."""

    kind: str
    value: Any
    key: str | None = None
    cells: str = ""
    columns: int = 0


def column_help(columns, cells: str = "") -> dict[str, tuple[str, str]]:
    """Readable headers and explanations of results.json's keys among ``columns``: {column: (label, help)}
    (``cells``: what a cell holds, added to each explanation)."""
    out = {}
    for c in columns:
        base = c.removesuffix("_bias_corrected")
        if c in R.METRIC_LABELS:
            label, text = R.METRIC_LABELS[c]
        elif c.startswith("mae_") and c[4:] in ("female", "male"):
            label, text = f"MAE {'women' if c[4:] == 'female' else 'men'}", f"MAE among the {c[4:]} subjects"
        elif base in R.METRIC_LABELS and c != base:
            label = f"{R.METRIC_LABELS[base][0]} bias-corrected"
            text = "after the linear age-bias correction fitted on the validation subjects (no interval)"
        elif c in R.FAITHFULNESS_HELP:
            label, text = c.replace("_", " "), R.FAITHFULNESS_HELP[c]
        else:
            continue
        out[c] = (label, f"{text}{' · ' + cells if cells else ''}")
    return out
