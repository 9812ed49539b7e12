"""Reading pages under Streamlit's AppTest: open a page, its tables, its Plotly figures' arrays."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

HOME = Path(__file__).resolve().parents[2] / "app" / "Home.py"


def open_page(page: str, timeout: float = 90) -> AppTest:
    """A fresh session on Home, then ``page``; fails on an exception."""
    at = AppTest.from_file(str(HOME), default_timeout=timeout).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def plotly_array(a) -> np.ndarray:
    """A Plotly trace's array as the page sent it (plain list, or base64 binary with dtype and shape)."""
    if isinstance(a, dict):
        out = np.frombuffer(base64.b64decode(a["bdata"]), dtype=a["dtype"])
        return out.reshape([int(s) for s in str(a["shape"]).split(",")]) if "shape" in a else out
    return np.asarray(a)


def figures(at: AppTest) -> list[dict]:
    """Every Plotly figure of the page's last run, as its JSON spec."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def table(at: AppTest, *columns: str):
    """The first table with these columns (only tables with a row selection have a key in AppTest)."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))
