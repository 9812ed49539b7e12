"""Reading evaluation reports: the tables and subgroup metrics of a ``results.json``.

A report is the ``results.json`` that ``hyperfusion evaluate`` writes (:func:`hyperfusion.training.evaluate.
write_report`): each run's metrics with 95 % bootstrap intervals, and its per-subject predictions on the test
partition (``test_ptids``: class probabilities for AD, predicted ages for brain age). Joined with the cohort
table it was measured on, it gives each test subject's truth, sex and age, hence subgroup metrics and the
subjects the models disagree on. The dashboard's Model comparison and Brain age pages show these tables; a
notebook can call them the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hyperfusion.data.cohort import Cohort, load_cohort
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.errors import HyperFusionError
from hyperfusion.files import shown_path
from hyperfusion.training import metrics as M

UNIMODAL = ("image_only", "tabular_only")
FEW_SUBJECTS = 10  # a subgroup smaller than this is flagged: its metric swings by a subject or two
SEX_NAMES = {0.0: "Female", 1.0: "Male"}

# Display names and explanations of results.json's metric keys
METRIC_LABELS = {
    "balanced_accuracy": ("BA", "balanced accuracy: the mean of the per-class recalls (0.33 = chance)"),
    "precision": ("precision", "macro precision over CN / MCI / AD"),
    "f1": ("F1", "macro F1 over CN / MCI / AD"),
    "auc": ("AUC", "macro one-vs-rest area under the ROC curve (0.5 = chance)"),
    "recall_CN": ("recall CN", "share of the CN subjects predicted CN"),
    "recall_MCI": ("recall MCI", "share of the MCI subjects predicted MCI"),
    "recall_AD": ("recall AD", "share of the AD subjects predicted AD"),
    "ece": ("ECE", "expected calibration error, one-vs-rest (0 = probabilities match the observed rates)"),
    "brier": ("Brier", "multi-class Brier score (0 = perfect)"),
    "mae": ("MAE (years)", "mean absolute error of the predicted age"),
    "r": ("r", "Pearson correlation of predicted with chronological age"),
    "r2": ("R²", "coefficient of determination"),
}


@dataclass(frozen=True)
class Report:
    """One results.json (``name``: its folder)."""

    name: str
    path: Path
    result: dict

    @property
    def task(self) -> str:
        return self.result.get("task") or "ad"

    @property
    def synthetic(self) -> bool:
        return bool(self.result.get("data", {}).get("synthetic"))

    @property
    def runs(self) -> dict[str, dict]:
        return self.result.get("runs", {})

    @property
    def test_ptids(self) -> list[str]:
        return list(self.result.get("test_ptids", []))

    @property
    def cohort_path(self) -> str | None:
        return self.result.get("data", {}).get("path")

    def architecture(self, label: str) -> str:
        # reports older than the "architecture" field: the CLI labels runs by folder name (hyperfusion#1 …)
        return self.runs.get(label, {}).get("architecture") or label.split("#")[0]

    def predictions(self) -> dict[str, np.ndarray]:
        """Each run's per-subject predictions aligned with ``test_ptids`` ((N, C) or (N,)); runs without any
        (or of another length) are left out."""
        n = len(self.test_ptids)
        out = {}
        for label, values in self.result.get("predictions", {}).items():
            a = np.asarray(values, dtype=float)
            if n and len(a) == n:
                out[label] = a
        return out

    def title(self) -> str:
        subjects = self.result.get("test_subjects", len(self.test_ptids) or "?")
        task = {"ad": "AD classification (CN / MCI / AD)", "brain_age": "brain age"}.get(self.task, self.task)
        tag = " · SYNTHETIC data" if self.synthetic else ""
        return f"{self.name}: {task} · {subjects} test subjects · {len(self.runs)} models{tag}"


def find_reports(assets: str | Path, task: str | None = None) -> tuple[list[Report], list[str]]:
    """The reports ``<assets>/reports/*/results.json`` (of ``task`` if given), and the unreadable ones."""
    root = Path(assets) / "reports"
    found: list[Report] = []
    problems: list[str] = []
    for path in sorted(root.glob("*/results.json")) if root.is_dir() else []:
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{shown_path(path)}: unreadable ({exc})")
            continue
        report = Report(path.parent.name, path, result)
        if task is None or report.task == task:
            found.append(report)
    return found, problems


# --- the report's cohort -------------------------------------------------------------------------------------
def _table_file(path: Path) -> Path:
    return path / "cohort.csv" if path.is_dir() else path


def _shipped_copy(report: Report, assets: str | Path) -> Path | None:
    """The demo's shipped table of the report's cohort, when the report names the generated demo cohort.

    The demo's reports name the cohort generated into the build machine's cache (``<task>_seed<S>_l<λ>``, as
    hyperfusion.demo.ensure_demo_cohort names it); ``<assets>/cohorts/<task>`` keeps a byte-identical copy of its
    table, so the report's subjects can be joined on a machine without that cache.
    """
    from hyperfusion.data.synthetic import read_config
    from hyperfusion.data.synthetic.shipped import cache_name

    shipped = Path(assets) / "cohorts" / report.task
    config = read_config(shipped)
    if config is None or report.cohort_path is None:
        return None
    return shipped if Path(report.cohort_path).name == cache_name(config) else None


def report_cohort(
    report: Report, assets: str | Path, load: Callable[[Path], Cohort] = load_cohort
) -> tuple[Cohort | None, str | None]:
    """The cohort the report was measured on (its ``data.path``) and a note for the user, or (None, why not).

    A table that lacks some of the report's test subjects is refused: it is not the cohort the report was
    measured on, and joining it would attach wrong truths to the predictions. ``load``: how to read a cohort
    (the dashboard passes its cached reader).
    """
    if not report.cohort_path:
        return None, "The report does not name the cohort it was measured on (no `data.path`)."
    candidates: list[tuple[Path, str | None]] = [(Path(report.cohort_path).expanduser(), None)]
    parts = Path(report.cohort_path).parts
    for i in range(len(parts) - 1):  # a shipped demo report, read from another checkout of the repository
        if parts[i : i + 2] == ("assets", "demo"):
            candidates.append((Path(assets, *parts[i + 2 :]), None))
    if (shipped := _shipped_copy(report, assets)) is not None:
        candidates.append(
            (
                shipped,
                f"The report's cohort `{shown_path(report.cohort_path)}` is not on this machine; its subjects are "
                f"read from the demo's shipped copy of the same table, `{shown_path(shipped)}`.",
            )
        )
    for path, note in candidates:
        if not _table_file(path).exists():
            continue
        try:
            cohort = load(path)
        except (HyperFusionError, OSError) as exc:
            return None, f"The report's cohort `{shown_path(path)}` could not be read: {exc}"
        missing = set(report.test_ptids) - set(cohort.table["PTID"])
        if missing:
            return None, (
                f"The table at `{shown_path(path)}` lacks {len(missing)} of the report's {len(report.test_ptids)} test "
                "subjects, so it is not the cohort the report was measured on."
            )
        return cohort, note
    return None, f"The report's cohort `{shown_path(report.cohort_path)}` is not on this machine."


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_cohort(a: str | Path, b: str | Path) -> bool:
    """Whether two cohort paths hold the same subjects: the same path, or byte-identical tables (the demo's
    shipped table and its generated copy in the cache)."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    if a.resolve() == b.resolve():
        return True
    ta, tb = _table_file(a), _table_file(b)
    if not (ta.is_file() and tb.is_file()) or ta.stat().st_size != tb.stat().st_size:
        return False
    return _digest(ta) == _digest(tb)


# --- per-subject tables --------------------------------------------------------------------------------------
def sex_names(values: pd.Series) -> pd.Series:
    """PTGENDER (0 / 1 / NaN) as "Female" / "Male" / "unknown"."""
    return values.map(SEX_NAMES).fillna("unknown")


def subject_frame(report: Report, cohort: Cohort) -> pd.DataFrame:
    """One row per test subject, in the report's order: PTID, DX, y (class index; -1 if none), AGE, sex and
    age band."""
    table = cohort.table.set_index("PTID").loc[report.test_ptids]
    y = table["DX"].map({c: i for i, c in enumerate(CLASS_NAMES)})
    return pd.DataFrame(
        {
            "PTID": report.test_ptids,
            "DX": table["DX"].to_numpy(),
            "y": y.fillna(-1).astype(int).to_numpy(),
            "AGE": table["AGE"].to_numpy(float),
            "sex": sex_names(table["PTGENDER"]).to_numpy(),
            "age band": M.age_bands(table["AGE"].to_numpy(float)),
        }
    )


def subgroup_table(report: Report, frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Every run's balanced accuracy (AD) or MAE (brain age) within each sex (``by="sex"``) or age band
    (``by="age band"``): one row per group with its subject count, small groups flagged, and the whole test set
    last."""
    order = ["Female", "Male", "unknown"] if by == "sex" else [*M.band_names(), "unknown"]
    groups = frame[by].to_numpy()
    rows: dict[str, dict] = {
        g: {by: g, "subjects": int((groups == g).sum())} for g in order if (groups == g).any()
    }
    total = {by: "all test subjects", "subjects": len(frame)}
    for label, pred in report.predictions().items():
        if report.task == "ad":
            key, args, fn = "balanced_accuracy", (frame["y"].to_numpy(), pred), M.classification_metrics
        else:
            key, args, fn = "mae", (frame["AGE"].to_numpy(), pred), M.regression_metrics
        for group, values in M.metrics_by_group(groups, fn, *args, order=list(rows)).items():
            rows[group][label] = round(values[key], 3)
        total[label] = round(fn(*args)[key], 3)
    out = pd.DataFrame([*rows.values(), total])
    out["note"] = ["few subjects: unreliable" if n < FEW_SUBJECTS else "" for n in out["subjects"]]
    out.loc[out.index[-1], "note"] = ""
    return out


def disagreements(report: Report, fusion: str, others: list[str], frame: pd.DataFrame | None) -> pd.DataFrame:
    """Test subjects on whom ``fusion`` predicts another class than at least one of ``others``: the truth (when
    ``frame`` gives it), each model's predicted class and its probability of the true class, and who is right."""
    preds = report.predictions()
    names = [fusion, *others]
    classes = {m: preds[m].argmax(axis=1) for m in names}
    differ = np.zeros(len(report.test_ptids), dtype=bool)
    for other in others:
        differ |= classes[other] != classes[fusion]
    rows = []
    for i in np.flatnonzero(differ):
        row: dict = {"PTID": report.test_ptids[i]}
        y = int(frame["y"].iloc[i]) if frame is not None else -1
        if y >= 0:
            row["truth"] = CLASS_NAMES[y]
        for m in names:
            row[m] = CLASS_NAMES[classes[m][i]]
        if y >= 0:
            for m in names:
                row[f"P(truth) {m}"] = round(float(preds[m][i, y]), 3)
            right = [m for m in names if classes[m][i] == y]
            row["correct"] = ", ".join(right) if right else "none"
        rows.append(row)
    columns = ["PTID", "truth", *names, *(f"P(truth) {m}" for m in names), "correct"]
    out = pd.DataFrame(rows, columns=columns)
    return out if frame is not None else out[["PTID", *names]]


# --- tables of the report alone -----------------------------------------------------------------------------
def format_ci(value: float, ci: dict | None, digits: int = 3) -> str | float:
    if ci and ci.get("ci95"):
        lo, hi = ci["ci95"]
        return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
    return round(value, digits)


def metrics_table(report: Report) -> pd.DataFrame:
    """The paper-style table: one row per run, each metric with its 95 % bootstrap interval where the report
    has one (column names are results.json's metric keys)."""
    rows = []
    for label, entry in report.runs.items():
        row = {"model": label, "architecture": report.architecture(label), "members": entry.get("members")}
        values = entry.get("metrics", {})
        # the paper's column order (recalls beside the summary metrics), calibration last
        for key in sorted(values, key=lambda k: (k in ("ece", "brier"), list(values).index(k))):
            value = values[key]
            row[key] = format_ci(value, entry.get("ci95", {}).get(key), 2 if key == "mae" else 3)
        for sex, values in entry.get("by_sex", {}).items():
            row[f"mae_{sex}"] = round(values["mae"], 2)
        for key, value in entry.get("bias_corrected", {}).items():
            row[f"{key}_bias_corrected"] = round(value, 2 if key == "mae" else 3)
        rows.append(row)
    return pd.DataFrame(rows)


def groups_table(report: Report) -> pd.DataFrame:
    """Mean ± SD over the runs of each architecture (split seeds × initialisations)."""
    rows = []
    for name, group in report.result.get("groups", {}).items():
        row = {"architecture": name, "runs": len(group.get("runs", []))}
        for key, mean in group.get("mean", {}).items():
            sd = group.get("std", {}).get(key)
            row[key] = f"{mean:.3f} ± {sd:.3f}" if sd is not None else f"{mean:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def significance_table(report: Report) -> pd.DataFrame:
    """The one-sided Mann–Whitney p-values (HyperFusion better than each other architecture), with the
    smallest p the run counts allow (with few runs no difference can reach p < 0.05)."""
    groups = report.result.get("groups", {})
    rows = []
    for comparison, tests in report.result.get("significance", {}).items():
        other = comparison.split(" > ", 1)[-1]
        n1, n2 = (
            len(groups.get("hyperfusion", {}).get("runs", [])),
            len(groups.get(other, {}).get("runs", [])),
        )
        row = {"comparison": comparison, "runs": f"{n1} vs {n2}"}
        row.update({key: round(p, 4) for key, p in tests.items()})
        if n1 and n2:
            row["smallest possible p"] = round(1 / math.comb(n1 + n2, n1), 4)
        rows.append(row)
    return pd.DataFrame(rows)


FAITHFULNESS_HELP = {
    "top_decile_enrichment": "of the 10 % most attributed voxels, the share in the planted tissue loss ÷ the "
    "loss's share of the brain: 1 = no better than an even spread",
    "untrained top_decile_enrichment": "the same for an untrained network of the same configuration: what the "
    "architecture draws before any learning",
    "top_decile_outside_brain": "share of the 10 % most attributed voxels that lie outside the brain",
    "untrained top_decile_outside_brain": "the same for the untrained network",
    "lattice": "the hottest voxel phases modulo the network's stride ÷ an even share: 1 = no lattice; high = a "
    "grid of hot spots drawn by the strided downsampling, not by the anatomy",
    "untrained lattice": "the same for the untrained network",
    "mass_share": "share of the map's total |attribution| inside the planted tissue loss",
    "volume_share": "the planted tissue loss's share of the brain (what a uniform map would score)",
    "enrichment": "mass share ÷ volume share: 1 = no better than a uniform map",
    "auroc": "voxel-wise AUROC of |attribution| as a detector of the planted regions (0.5 = chance)",
    "pointing_game": "share of subjects whose strongest voxel lies in a planted region",
    "deletion_area_attribution": "area under the output curve as the most attributed voxels are deleted first",
    "deletion_area_random": "the same, deleting voxels in random order (a faithful map is below this)",
}


def faithfulness_table(report: Report) -> pd.DataFrame:
    """One row per image model: its scores and, beside the first three, its untrained control's."""
    entry = report.result.get("faithfulness") or {}
    rows = []
    for label, scores in entry.get("mean", {}).items():
        row: dict = {"model": label}
        control = entry.get("untrained", {}).get(label, {})
        for key, value in scores.items():
            row[key] = round(float(value), 3)
            if key in control:
                row[f"untrained {key}"] = round(float(control[key]), 3)
        rows.append(row)
    return pd.DataFrame(rows)


MODALITY_NAMES = {"scan": "scan", "record": "record"}


def reliance_table(report: Report) -> pd.DataFrame:
    """How much each model uses the scan and the record: one row per (model, input permuted) with the score
    unpermuted, permuted (mean ± SD over the seeds), the drop (MAE: the increase) and the verdict."""
    rows = []
    ad = report.task == "ad"
    for label, entry in report.runs.items():
        for modality, rel in (entry.get("reliance") or {}).items():
            what = modality if ad or modality == "scan" else "sex"
            row: dict = {"model": label, "permuted": what}
            if not rel.get("applicable", True):
                row["verdict"] = f"reads no {what}: permuting it cannot change the output"
                rows.append(row)
                continue
            for key in ("balanced_accuracy", "auc") if ad else ("mae",):
                v = rel[key]
                name = METRIC_LABELS[key][0]
                row[name] = round(v["unpermuted"], 3)
                row[f"{name} permuted"] = f"{v['permuted_mean']:.3f} ± {v['permuted_sd']:.3f}"
                row[f"{name} {'drop' if ad else 'increase'}"] = round(v["drop"] if ad else v["increase"], 3)
            row["verdict"] = f"uses the {what}" if rel["uses"] else f"barely uses the {what}"
            rows.append(row)
    return pd.DataFrame(rows)


# --- brain age ---------------------------------------------------------------------------------------------
def age_frame(subjects: pd.DataFrame, predictions: dict[str, np.ndarray]) -> pd.DataFrame:
    """Long table, one row per (model, subject): PTID, model, AGE, sex, predicted and gap (predicted − AGE).

    ``subjects`` has PTID, AGE and sex (as :func:`subject_frame`), aligned with each prediction array."""
    parts = []
    for model, predicted in predictions.items():
        part = subjects[["PTID", "AGE", "sex"]].copy()
        part.insert(1, "model", model)
        part["predicted"] = np.asarray(predicted, dtype=float)
        part["gap"] = part["predicted"] - part["AGE"]
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def age_metrics(frame: pd.DataFrame, bias_corrected: dict[str, dict | None]) -> pd.DataFrame:
    """Per model: subjects, MAE, r, R², mean gap, MAE by sex, and the bias-corrected MAE when known."""
    rows = []
    for model, g in frame.groupby("model", sort=False):
        m = M.regression_metrics(g["AGE"].to_numpy(), g["predicted"].to_numpy())
        row = {
            "model": model,
            "subjects": len(g),
            "MAE (years)": round(m["mae"], 2),
            "r": round(m["r"], 3),
            "R²": round(m["r2"], 3),
            "mean gap (years)": round(float(g["gap"].mean()), 2),
        }
        for sex, people in (("Female", "women"), ("Male", "men")):
            s = g[g["sex"] == sex]
            row[f"MAE {people}"] = round(float(s["gap"].abs().mean()), 2) if len(s) else None
        corrected = bias_corrected.get(model)
        if corrected:
            # only the MAE: the correction adds a multiple of the age, so its r with age is inflated by design
            row["MAE bias-corrected"] = round(corrected["mae"], 2)
        rows.append(row)
    return pd.DataFrame(rows)


def bias_corrected_from_cards(
    frame: pd.DataFrame, age_bias: dict[str, dict | None]
) -> dict[str, dict | None]:
    """Per model of an :func:`age_frame`: its metrics after the linear age-bias correction its card carries
    (``card.age_bias``, fitted on its validation subjects), as ``hyperfusion evaluate`` corrects; None where the
    card has none or its slope is too flat to invert."""
    out: dict[str, dict | None] = {}
    for model, g in frame.groupby("model", sort=False):
        bias = age_bias.get(model)
        if bias and abs(bias["slope"]) >= M.MIN_AGE_BIAS_SLOPE:
            # the correction reads only the prediction, never the subject's true age
            corrected = M.correct_age_bias(g["predicted"].to_numpy(), bias["slope"], bias["intercept"])
            out[model] = M.regression_metrics(g["AGE"].to_numpy(), corrected)
    return out


def sex_whatif_rows(
    predictions: dict, first: str, second: str, age: float, recorded: bool = True
) -> list[dict]:
    """Per brain-age model: the predicted age of one scan with the record's sex as ``first`` (record 0) and as
    ``second`` (record 1), their difference, and the brain-age gap under the recorded sex (``recorded``: the
    record gives a sex, which is ``first``)."""
    label_first = f"as {first}" + (" (recorded)" if recorded else "")
    return [
        {
            "model": name,
            label_first: round(float(p.value[0]), 1),
            f"as {second}": round(float(p.value[1]), 1),
            f"difference ({second} − {first}), years": round(float(p.value[1] - p.value[0]), 2),
            "gap, recorded sex": round(float(p.value[0]) - age, 1) if recorded else None,
        }
        for name, p in predictions.items()
    ]
