"""Model comparison: the evaluation reports (hyperfusion evaluate's results.json) side by side."""

import json
from pathlib import Path

import dashboard as db
import pandas as pd
import streamlit as st

db.page_setup("Model comparison")
st.title("Model comparison")

reports = Path(db.settings()["assets"]) / "reports"
found = sorted(reports.glob("*/results.json")) if reports.is_dir() else []
if not found:
    st.info(f"No evaluation report yet in {reports} (the demo build writes them when it finishes; or run "
            "`hyperfusion evaluate --data COHORT --models MODEL_DIRS... --out REPORT_DIR`).")  # fmt: skip
    st.stop()
for path in found:
    result = json.loads(path.read_text())
    st.subheader(
        f"{path.parent.name} · task {result.get('task')} · {result.get('test_subjects', '?')} test subjects"
    )
    if result.get("data", {}).get("synthetic"):
        st.caption("Measured on SYNTHETIC data.")
    rows = []
    for label, entry in result.get("runs", {}).items():
        row = {"model": label, "members": entry.get("members")}
        for key, value in entry.get("metrics", {}).items():
            ci = entry.get("ci95", {}).get(key)
            row[key] = f"{value:.3f} [{ci['ci95'][0]:.3f}, {ci['ci95'][1]:.3f}]" if ci else round(value, 3)
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    pictures = [p for p in ("confusion.png", "roc.png", "calibration.png", "predicted_vs_age.png")
                if (path.parent / p).is_file()]  # fmt: skip
    for col, name in zip(st.columns(max(len(pictures), 1)), pictures):
        col.image(str(path.parent / name), caption=name.removesuffix(".png"))
