"""The Cohort page's sections: the cohort table filtered as the page's widgets say, its background jobs (every
model's predictions for every subject, record attributions of a sample) and what they have found so far, the
partial dependence and the distributions by diagnosis. Every number comes from
:mod:`hyperfusion.inference.cohort_cache`, :mod:`hyperfusion.explain.cohort` and :mod:`hyperfusion.cohort_views`
(imported on first use: the page loads without torch)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hyperfusion.cohort_views import (
    distribution_figure,
    feature_by_diagnosis,
    global_importance,
    importance_figure,
    partial_dependence_figure,
    sample_subjects,
)
from hyperfusion.data.cohort import Cohort
from hyperfusion.data.schema import FEATURE_NAMES
from hyperfusion.pages import Block

BIOMARKERS = ["ABETA", "TAU", "PTAU", "FDG", "AV45"]

#: The Cohort page's tabs, in order
TABS = ("Predictions", "Global importance", "Partial dependence", "Distributions by diagnosis")


@dataclass
class Filters:
    """The Cohort page's filters: a PTID substring, diagnoses, an age band, sex ("any", "Female", "Male"),
    APOE4 allele counts (a missing count always passes) and whether to keep only subjects missing a biomarker."""

    search: str = ""
    dx: tuple = ("CN", "MCI", "AD")
    age: tuple[float, float] = (0.0, 200.0)
    sex: str = "any"
    apoe: tuple = (0, 1, 2)
    missing_only: bool = False


def age_band(table: pd.DataFrame) -> tuple[float, float]:
    """Whole-year bounds of the cohort's ages for the age slider (40-100 when no age is recorded), at least one
    year apart."""
    ages = table["AGE"].dropna()
    lo, hi = (float(np.floor(ages.min())), float(np.ceil(ages.max()))) if len(ages) else (40.0, 100.0)
    return lo, max(hi, lo + 1)


def filtered(table: pd.DataFrame, f: Filters, with_scan_column: bool = True) -> pd.DataFrame:
    """The rows ``f`` keeps, as the page shows them: PTID, DX, the attributes (sex as a word), how many
    biomarkers are missing and (``with_scan_column``) whether the subject has a scan."""
    shown = table[table["DX"].isin(f.dx) & table["AGE"].between(*f.age)]
    if f.search:
        shown = shown[shown["PTID"].str.contains(f.search, case=False, regex=False)]
    if f.sex != "any":
        shown = shown[shown["PTGENDER"] == (1.0 if f.sex == "Male" else 0.0)]
    shown = shown[shown["APOE4"].isin(f.apoe) | shown["APOE4"].isna()]
    if f.missing_only:
        shown = shown[shown[BIOMARKERS].isna().any(axis=1)]
    view = shown[["PTID", "DX", *FEATURE_NAMES]].copy()
    view["PTGENDER"] = view["PTGENDER"].map({0.0: "Female", 1.0: "Male"})
    view["missing"] = shown[BIOMARKERS].isna().sum(axis=1).to_numpy()
    if with_scan_column:
        view["scan"] = np.where(shown["image_path"].notna(), "yes", "missing")
    return view


def missing_scans(table: pd.DataFrame) -> str | None:
    """A note naming the subjects of the table without a scan (the first 20), or None."""
    lacking = table.loc[table["image_path"].isna(), "PTID"].tolist()
    if not lacking:
        return None
    listed = ", ".join(lacking[:20]) + (f" and {len(lacking) - 20} more" if len(lacking) > 20 else "")
    return (
        f"{len(lacking)} subject(s) listed in the cohort table have no scan in images/: {listed}. Only the "
        "tabular models score them."
    )


def cohort_key(c: Cohort) -> tuple[str, float]:
    """The cohort as a job key: its path and its table's modification time (an edited table, a new job)."""
    path = Path(c.path)
    table = path / "cohort.csv" if path.is_dir() else path
    return path.as_posix(), table.stat().st_mtime if table.exists() else 0.0


def prediction_job(cohort: Cohort, paths: tuple[tuple[str, str], ...], generate: bool):
    """A :class:`~hyperfusion.inference.cohort_cache.BackgroundJob` (not started) scoring every subject with
    every model through the disk cache: the stored rows first (read without torch), then the rest, the models
    loaded in its thread (``job.predictor`` once they are; ``job.scans``: the scan of a PTID)."""
    from hyperfusion.inference.cohort_cache import BackgroundJob, cached_rows, cohort_scans, score_cohort

    scans = cohort_scans(cohort, generate)

    def frames():  # the models load in the thread too: the page shows at once
        stored = cached_rows(cohort, dict(paths))  # read back without torch (not yet generated scans: later)
        yield stored
        from hyperfusion.inference.predictor import Predictor

        job.predictor = Predictor(dict(paths), threads=1)  # networks shared with the page's; features not
        skip = set(zip(stored["PTID"], stored["model"]))
        yield from score_cohort(job.predictor, cohort, scan_for=scans, skip=skip)

    job = BackgroundJob(frames, len(cohort) * len(paths))
    job.predictor, job.scans = None, scans
    return job


def importance_job(cohort: Cohort, paths: tuple, n: int, class_name: str, first):
    """A job (not started) computing the record attributions of a seeded sample of ``n`` subjects
    (``job.ptids``) once the prediction job ``first`` has its models and first batches (its rows come first)."""
    from hyperfusion.inference.cohort_cache import BackgroundJob

    ptids = sample_subjects(cohort, n)

    def frames():
        while first.predictor is None or first.done < min(first.total, 15 * len(paths)):
            if first.finished:
                return
            time.sleep(0.5)
        from hyperfusion.explain.cohort import record_attributions

        yield from record_attributions(
            first.predictor, cohort, ptids, scan_for=first.scans, class_name=class_name
        )

    count = lambda f: f[["PTID", "model"]].drop_duplicates().shape[0]  # noqa: E731
    job = BackgroundJob(frames, len(ptids) * len(paths), count=count)
    job.ptids = ptids
    return job


def progress_text(job, what: str) -> tuple[float, str]:
    """A job's progress as (fraction, words)."""
    done = job.done
    state = "computing in the background" if not job.finished else "done"
    return min(done / max(job.total, 1), 1.0), f"{what}: {done} of {job.total} ({state})"


def predictions(rows: pd.DataFrame, view: pd.DataFrame, truth: pd.Series, class_name: str):
    """The shown subjects with every model's P(class), disagreement and error, from the rows done so far:
    (table, caption, the subject × model pairs not scored)."""
    from hyperfusion.inference.cohort_cache import cohort_table

    scores = cohort_table(rows, truth, class_name)
    table = view[["PTID", "DX"]].merge(scores, left_on="PTID", right_index=True, how="left")
    table = table.merge(view.drop(columns=["DX"]), on="PTID").reset_index(drop=True)
    cached = int(rows["cached"].fillna(False).astype(bool).sum())
    text = (
        f"{scores.shape[0]} subjects scored so far ({cached} predictions read from the disk cache). Sort by "
        "clicking a column's header; click a row to open the subject."
    )
    errors = rows[rows["error"].fillna("").ne("")][["PTID", "model", "error"]]
    return table, text, errors


def importance(rows: pd.DataFrame, sampled: int, n_cohort: int, output: str) -> list[Block]:
    """Global importance: mean |record attribution| per attribute and model over the sample so far (a figure
    and a table, attribute × model)."""
    sample = f"a seeded sample of {sampled} of {n_cohort} subjects" if sampled < n_cohort else "every subject"
    text = (
        f"Mean |record attribution| to {output} per attribute, per model (integrated gradients against the "
        f"training-mean record, as the Subject page computes them), over {sample}; image-only models read no "
        "record and get 0."
    )
    found = global_importance(rows) if not rows.empty else pd.DataFrame()
    if found.empty:
        return [Block("caption", text)]
    wide = found.pivot_table(index="attribute", columns="model", values="mean |attribution|")
    return [
        Block("caption", text),
        Block("figures", [("global_importance", importance_figure(found, output))]),
        Block("table", wide.round(4).reset_index(), "global_importance_table"),
    ]


def partial_dependence(predictor, cohort: Cohort, attribute: str, n: int, scan_for, class_name: str):
    """Partial dependence of P(``class_name``) (or the predicted age) on ``attribute`` over a seeded sample of
    ``n`` subjects: (mean curves, single-subject curves, the subjects used)."""
    from hyperfusion.cohort_views import partial_dependence_frame
    from hyperfusion.explain.cohort import cohort_partial_dependence

    ptids = sample_subjects(cohort, n)
    curves, used = cohort_partial_dependence(predictor, cohort, attribute, ptids, scan_for=scan_for)
    return (*partial_dependence_frame(curves, class_name), used)


def partial_dependence_blocks(mean, ice, used, attribute: str, output: str) -> list[Block]:
    """The partial-dependence figure and what it shows."""
    text = (
        f"{output} as {attribute} sweeps its plausible range, every other value of each subject's record and its "
        f"scan kept; mean over a seeded sample of {len(used)} subjects (±1 SD shaded), thin lines: single "
        "subjects (ICE)."
    )
    figure = partial_dependence_figure(mean, ice, attribute, output)
    return [Block("figures", [("pd", figure)]), Block("caption", text)]


def distribution(table: pd.DataFrame, attribute: str, kind: str) -> list[Block]:
    """An attribute's recorded values by diagnosis (``kind``: box, violin or histogram), with how many are
    missing in each diagnosis."""
    values, missing = feature_by_diagnosis(table, attribute)
    lacking = ", ".join(f"{k}: {v}" for k, v in missing.items())
    return [
        Block("figures", [("distribution", distribution_figure(values, attribute, "DX", kind))]),
        Block(
            "caption",
            f"{len(values)} recorded values by diagnosis" + (f"; missing — {lacking}" if lacking else "."),
        ),
    ]
