"""The Model comparison, Brain age and Model cards pages' reports, read with st.cache_data (the tables:
:mod:`hyperfusion.training.reports`, the page sections: :mod:`hyperfusion.pages`)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from hyperfusion.training import reports as R


@st.cache_data(show_spinner=False)
def find_reports(assets: str, task: str | None, stamp: tuple) -> tuple[list[R.Report], list[str]]:
    """``stamp``: the reports' (path, mtime) pairs, the cache key that makes a change read them again."""
    return R.find_reports(assets, task)


def reports_of(assets: str | Path, task: str | None = None) -> tuple[list[R.Report], list[str]]:
    """The reports under ``<assets>/reports`` (read again when one is added, removed or changed)."""
    files = sorted((Path(assets) / "reports").glob("*/results.json"))
    return find_reports(str(assets), task, tuple((str(p), p.stat().st_mtime_ns) for p in files))
