"""The Home page's sections: what cohort and which models are loaded, and what is missing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hyperfusion.data.cohort import Cohort
from hyperfusion.demo import missing_models
from hyperfusion.files import shown_path
from hyperfusion.pages import Block


def cohort_overview(cohort: Cohort, demo: bool) -> list[Block]:
    """Where the cohort is, its source and size, its subjects per class, and which subjects lack a scan
    (``demo``: a shipped synthetic table, whose scans are generated on demand)."""
    summary = cohort.summary()
    counts = summary["class_counts"]
    out = [
        Block(
            "markdown",
            f"`{shown_path(cohort.path)}` · source **{cohort.source}** · **{len(cohort)}** subjects · label "
            f"column `{cohort.label_column}`",
        ),
        Block("static_table", pd.DataFrame({"class": list(counts), "subjects": list(counts.values())})),
    ]
    if demo:
        text = (
            "A synthetic table: each subject's scan is generated into the cache the first time it is needed (the "
            "first subjects' scans ship with it)."
        )
        return out + [Block("caption", text)]
    if summary["subjects_with_scan"] < len(cohort):
        text = (
            f"{len(cohort) - summary['subjects_with_scan']} of {len(cohort)} subjects have no scan in images/: "
            "only the tabular models score them (the Cohort page's scan column says which)."
        )
        out.append(Block("caption", text))
    return out


def models_overview(models: list, usable: list, problems: list[str], roots: str, assets: str) -> list[Block]:
    """The models made for the cohort's task (``usable``, a table), the other tasks' models, the demo models
    not built yet (when ``roots`` is the demo's model directory under ``assets``) and the problems found."""
    if usable:
        out = [Block("static_table", pd.DataFrame([m.row() for m in usable]))]
    else:
        out = [
            Block("info", "No model for this cohort's task was found. Add model directories in the sidebar.")
        ]
    other = [m.name for m in models if m not in usable]
    if other:
        out.append(Block("caption", f"Other tasks' models (shown with their own cohort): {', '.join(other)}"))
    if Path(roots).resolve() == (Path(assets) / "models").resolve():
        missing = missing_models({Path(m.path): m.members for m in models}, Path(assets))
        if missing:
            out.append(Block("info", "Demo models not built yet (skipped): " + ", ".join(missing)))
    return out + [Block("info", p) for p in problems]
