"""The Model comparison and Brain age pages' Streamlit glue: cached report reading and column headers (the
tables themselves: :mod:`hyperfusion.training.reports`)."""

from __future__ import annotations

from pathlib import Path

import dashboard as db
import pandas as pd
import streamlit as st
from state import session

from hyperfusion.data.cohort import Cohort, cohort_record
from hyperfusion.errors import HyperFusionError
from hyperfusion.files import shown_path
from hyperfusion.training import reports as R


def load_cohort_at(path: str | Path) -> Cohort:
    """A cohort through the dashboard's st.cache_data wrapper of hyperfusion.data.load_cohort."""
    path = Path(path).expanduser()
    table = path / "cohort.csv" if path.is_dir() else path
    return db.cached_cohort(str(path), table.stat().st_mtime if table.exists() else 0.0)


@st.cache_data(show_spinner=False)
def find_reports(assets: str, task: str | None, stamp: tuple) -> tuple[list[R.Report], list[str]]:
    """``stamp``: the reports' (path, mtime) pairs, the cache key that makes a change read them again."""
    return R.find_reports(assets, task)


def reports_of(assets: str | Path, task: str | None = None) -> tuple[list[R.Report], list[str]]:
    """The reports under ``<assets>/reports`` (read again when one is added, removed or changed)."""
    files = sorted((Path(assets) / "reports").glob("*/results.json"))
    return find_reports(str(assets), task, tuple((str(p), p.stat().st_mtime_ns) for p in files))


def report_cohort(report: R.Report, assets: str | Path) -> tuple[Cohort | None, str | None]:
    return R.report_cohort(report, assets, load=load_cohort_at)


def column_labels(columns, cells: str = "") -> dict:
    """st.dataframe column_config giving results.json's keys readable headers and explanations (``cells``: what
    a cell holds, added to each explanation)."""
    config = {}
    for c in columns:
        base = c.removesuffix("_bias_corrected")
        if c in R.METRIC_LABELS:
            label, help_text = R.METRIC_LABELS[c]
        elif c.startswith("mae_") and c[4:] in ("female", "male"):
            label, help_text = (
                f"MAE {'women' if c[4:] == 'female' else 'men'}",
                f"MAE among the {c[4:]} subjects",
            )
        elif base in R.METRIC_LABELS and c != base:
            label = f"{R.METRIC_LABELS[base][0]} bias-corrected"
            help_text = "after the linear age-bias correction fitted on the validation subjects (no interval)"
        else:
            continue
        config[c] = st.column_config.Column(label, help=f"{help_text}{' · ' + cells if cells else ''}")
    return config


# --- brain age ---------------------------------------------------------------------------------------------
def brain_age_cohort(settings: dict) -> tuple[Cohort | None, str]:
    """The cohort of the Brain age page: the dashboard's own when it was made for brain age, else the brain-age
    demo cohort ``<assets>/cohorts/brain_age``; with a phrase saying which (or what is missing)."""
    try:
        current = db.cohort()
    except (HyperFusionError, OSError):
        current = None
    if current is not None and "brain_age" in (current.provenance.get("task"), current.task):
        return current, "the dashboard's cohort"
    path = Path(settings["assets"]) / "cohorts" / "brain_age"
    if not (path / "cohort.csv").is_file():
        return (
            None,
            f"no brain-age cohort: the dashboard's cohort is not one, and `{shown_path(path)}` does not exist",
        )
    try:
        return load_cohort_at(path), "the brain-age demo cohort"
    except (HyperFusionError, OSError) as exc:
        return None, f"the brain-age demo cohort `{shown_path(path)}` could not be read: {exc}"


def task_models(roots: str, task: str) -> list:
    """The models of ``task`` under the model roots."""
    models, _ = db.discover_models(roots)
    return [m for m in models if m.task == task]


def computed_age_frame(cohort: Cohort, models) -> tuple[pd.DataFrame | None, dict]:
    """The Brain age page's "compute now": the cohort's first N subjects predicted on request (a progress bar),
    as an :func:`hyperfusion.training.reports.age_frame` with each model's card's bias correction."""
    frame, corrected = None, {}
    store = session.brain_age_computed
    key = (str(cohort.path), tuple((m.name, m.path) for m in models))
    n = st.number_input(
        "Subjects to predict (the cohort's first N)",
        1,
        len(cohort),
        min(20, len(cohort)),
        key="brain_age_n",
        help="about 0.1 s per subject and model once the scan is read",
    )
    if st.button(f"Predict the first {n} subjects with {len(models)} model(s)", key="brain_age_predict"):
        predictor = db.predictor_for(key[1])
        subjects = cohort.table.head(int(n))
        bar = st.progress(0.0, text="predicting …")
        rows, skipped = [], []
        for i, (_, row) in enumerate(subjects.iterrows()):
            scan = db.scan_path(cohort, row["PTID"])
            if scan is None:
                skipped.append(row["PTID"])
            else:
                preds = predictor.predict(scan, cohort_record(row), models=[m.name for m in models])
                rows.append({"PTID": row["PTID"], **{k: float(p.value[0]) for k, p in preds.items()}})
            bar.progress((i + 1) / len(subjects), text=f"predicted {i + 1} of {len(subjects)}")
        store[key] = {"rows": rows, "skipped": skipped}
    if key in store:
        done = pd.DataFrame(store[key]["rows"])
        if store[key]["skipped"]:
            st.info(
                f"No scan for {len(store[key]['skipped'])} subject(s), left out: "
                f"{', '.join(store[key]['skipped'][:10])}"
            )
        if len(done):
            table = cohort.table.set_index("PTID").loc[done["PTID"]]
            subjects = pd.DataFrame(
                {
                    "PTID": done["PTID"],
                    "AGE": table["AGE"].to_numpy(float),
                    "sex": R.sex_names(table["PTGENDER"]).to_numpy(),
                }
            )
            frame = R.age_frame(subjects, {m.name: done[m.name].to_numpy() for m in models})
            corrected = R.bias_corrected_from_cards(frame, {m.name: m.cards[0].age_bias for m in models})
            st.caption(
                f"The cohort's first {len(done)} subjects. Some of them may have been in the models' "
                "training data, so these errors can be optimistic; `hyperfusion evaluate` scores the "
                "held-out test partition."
            )
    return frame, corrected
