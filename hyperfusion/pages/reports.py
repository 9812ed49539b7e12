"""The Model comparison and Brain age pages' sections, each one call returning :class:`~hyperfusion.pages.Block`
s. The numbers come from :mod:`hyperfusion.training.reports` and the figures from
:mod:`hyperfusion.training.figures`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from hyperfusion.data.cohort import Cohort, cohort_record
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.errors import HyperFusionError
from hyperfusion.files import shown_path
from hyperfusion.pages import Block
from hyperfusion.training import figures as F
from hyperfusion.training import metrics as M
from hyperfusion.training import reports as R


# --- Model comparison --------------------------------------------------------------------------------------
def no_reports(assets: str | Path) -> str:
    """What the Model comparison page says when ``<assets>/reports`` holds no evaluation report."""
    return (
        f"No evaluation report yet in {Path(assets) / 'reports'} (the demo build writes them when it finishes; or "
        "run `hyperfusion evaluate --data COHORT --models MODEL_DIRS... --out REPORT_DIR`)."
    )


def comparison_tabs(report: R.Report) -> list[str]:
    """The Model comparison page's tabs for this report."""
    ad = report.task == "ad"
    tabs = [
        "Summary",
        *(["Confusion", "ROC and calibration"] if ad else []),
        "Subgroups",
        "Modality reliance",
    ]
    return tabs + (["Disagreements"] if ad else []) + (["Faithfulness"] if report.synthetic and ad else [])


def report_frame(
    report: R.Report, cohort: Cohort | None, note: str | None
) -> tuple[pd.DataFrame | None, list]:
    """The test subjects' truth, sex and age joined from the report's cohort (None without it, or without
    per-subject predictions), and what the page says about it."""
    blocks = [Block("warning", n) for n in report.result.get("subjects", {}).get("notes", [])]
    frame = R.subject_frame(report, cohort) if cohort is not None and report.test_ptids else None
    if note and cohort is None:
        text = "The curves, subgroups and per-subject tables need its table (truth, sex, age); shown below is"
        blocks.append(Block("info", f"{note} {text} what the report holds by itself."))
    elif note:
        blocks.append(Block("caption", note))
    if frame is not None and not report.predictions():
        blocks.append(
            Block(
                "info",
                "This report has no per-subject predictions (written by an older `hyperfusion evaluate`): run "
                "it again for the curves, subgroups and disagreements.",
            )
        )
        frame = None
    return frame, blocks


def summary(report: R.Report) -> list[Block]:
    """The paper's table, mean ± SD over repeated runs, the significance tests."""
    out = [
        Block("table", R.metrics_table(report), "paper_table", "value [95 % bootstrap interval]"),
        Block(
            "caption",
            "Each cell: the value on the test partition, and [low, high] its 95 % percentile bootstrap interval "
            "over subjects where the report computed one. Hover a column header for its meaning.",
        ),
    ]
    groups = R.groups_table(report)
    if len(groups) and (groups["runs"] > 1).any():
        out.append(
            Block(
                "markdown",
                "**Mean ± SD over repeated runs** (split seeds × initialisations) per architecture",
            )
        )
        out.append(Block("table", groups, "groups_table", "mean ± SD over the runs"))
    significance = R.significance_table(report)
    if len(significance):
        out += [
            Block(
                "markdown", "**Is HyperFusion better?** One-sided Mann–Whitney U test over the repeated runs"
            ),
            Block("table", significance, "significance_table", "one-sided p-value"),
            Block(
                "caption",
                "p-values per metric (for MAE: HyperFusion's error lower). With few runs per group even a "
                "complete separation cannot reach a small p: see 'smallest possible p'.",
            ),
        ]
    return out


def confusion(report: R.Report, chosen: list[str], frame, predictions: dict) -> list[Block]:
    """A confusion matrix per chosen model, three to a row."""
    cells = []
    for label in chosen:
        cm = report.runs[label].get("confusion")
        if cm is None and frame is not None and label in predictions:
            cm = M.confusion(frame["y"].to_numpy(), predictions[label]).tolist()
        if cm is not None:
            cells.append((f"confusion_{label}", F.confusion_figure(label, np.asarray(cm, dtype=int))))
    out = [Block("figures", cells[i : i + 3], columns=3) for i in range(0, len(cells), 3)]
    if not cells:
        out.append(Block("info", "No confusion matrix for the chosen models in this report."))
    text = "Rows: the true diagnosis; columns: the model's prediction. Each cell: subjects (share of the row, i.e."
    return out + [Block("caption", f"{text} the recall on the diagonal).")]


def curves(chosen: list[str], frame, predictions: dict, cls: str) -> list[Block]:
    """One-vs-rest ROC and reliability curves of class ``cls``."""
    if frame is None:
        return [
            Block(
                "info",
                "The curves need each test subject's truth: the report's cohort table is not available.",
            )
        ]
    c = CLASS_NAMES.index(cls)
    positive = frame["y"].to_numpy() == c
    if positive.all() or not positive.any():
        return [
            Block(
                "info",
                f"The test partition has {'only' if positive.all() else 'no'} {cls} subjects: no curve.",
            )
        ]
    shown = {m: predictions[m][:, c] for m in chosen if m in predictions}
    roc, calibration = F.curve_figures(positive, shown, cls)
    return [
        Block("figures", [("roc", roc), ("calibration", calibration)]),
        Block(
            "caption",
            f"{int(positive.sum())} {cls} and {int((~positive).sum())} other test subjects. Dotted: chance (ROC) "
            "and perfect calibration (reliability: subjects binned by predicted probability in tenths; points "
            "above the line = the model under-estimates).",
        ),
    ]


def subgroups(report: R.Report, frame) -> list[Block]:
    """Every model's metric within each sex and age band."""
    ad = report.task == "ad"
    if frame is None:
        out = [
            Block(
                "info",
                "Subgroup results need each test subject's sex and age: the report's cohort table is not available.",
            )
        ]
        if not ad and report.runs:
            out.append(Block("table", R.metrics_table(report).filter(regex="^(model|mae_female|mae_male)$")))
        return out
    metric = "balanced accuracy" if ad else "MAE (years)"
    return [
        Block(
            "markdown",
            f"**{metric}** of every model within each group; *subjects*: test subjects in the group.",
        ),
        Block("table", R.subgroup_table(report, frame, "sex"), "by_sex"),
        Block("table", R.subgroup_table(report, frame, "age band"), "by_age_band"),
        Block(
            "caption",
            f"Groups of fewer than {R.FEW_SUBJECTS} subjects are flagged: one or two subjects move their value a "
            "lot. Age bands in years at the baseline visit.",
        ),
    ]


def reliance(report: R.Report) -> list[Block]:
    """How much each model uses the scan and the record (permutation drops)."""
    ad, table = report.task == "ad", R.reliance_table(report)
    if not len(table):
        return [
            Block(
                "info",
                "This report has no modality-reliance scores (written by an older `hyperfusion evaluate`, or with "
                "`--permutations 0`): run it again for them.",
            )
        ]
    record = "record" if ad else "sex"
    runs = report.runs.values()
    seeds = max((r.get("seeds", 0) for e in runs for r in (e.get("reliance") or {}).values()), default=0)
    threshold = (
        "Drop: the unpermuted score minus the permuted mean; below 0.02 in both BA and AUC the model barely uses "
        "that input."
        if ad
        else "Increase: the permuted MAE minus the unpermuted; below 0.5 years the model barely uses that input."
    )
    return [
        Block(
            "markdown",
            f"**How much does each model use the scan, and the {record}?** Each test subject is given another test "
            f"subject's scan (or {record}) and keeps its own {record} (or scan) and truth; a model that uses an "
            "input loses accuracy when it is shuffled.",
        ),
        Block("table", table, "reliance_table"),
        Block(
            "caption",
            f"Permuted: mean ± SD over {seeds} random permutations among the test subjects. {threshold}",
        ),
    ]


def faithfulness(report: R.Report) -> list[Block]:
    """Do the synthetic cohort's attribution maps point at the planted tissue loss?"""
    entry = report.result.get("faithfulness")
    if not entry:
        command = (
            f"hyperfusion evaluate --data {shown_path(report.cohort_path) or 'COHORT'} --models MODEL_DIRS... "
            f"--out {shown_path(report.path.parent)} --faithfulness saliency"
        )
        text = "This report has no attribution-faithfulness scores. Add them (synthetic cohorts only: they record"
        text += " where the disease was planted) by evaluating again with `--faithfulness`:"
        return [Block("info", text), Block("code", command)]
    return [
        Block(
            "markdown",
            f"Do the **{entry.get('method')}** maps point at the tissue loss planted in the synthetic scans? Scored "
            f"on {len(entry.get('subjects', []))} AD test subjects per image model: enrichment above 1 and AUROC "
            "above 0.5 mean the map finds the planted loss better than chance. *untrained* columns: the same "
            "network before any training: where it scores as well, the map shows the architecture, not what the "
            "model learned.",
        ),
        Block("table", R.faithfulness_table(report), "faithfulness_table"),
    ]


def disagreement_defaults(report: R.Report, predictions: dict) -> tuple[list[str], list[str], int, list[str]]:
    """(fusion models, unimodal models, the default fusion model's index: HyperFusion's, the default unimodal
    models: one per unimodal architecture) among the report's per-subject predictions."""
    fusions = [m for m in predictions if report.architecture(m) not in R.UNIMODAL]
    unimodal = [m for m in predictions if report.architecture(m) in R.UNIMODAL]
    hyper = [m for m in fusions if report.architecture(m) == "hyperfusion"]
    by_architecture = {report.architecture(m): m for m in reversed(unimodal)}  # the first of each
    default = [by_architecture[a] for a in R.UNIMODAL if a in by_architecture]
    return fusions, unimodal, fusions.index(hyper[0]) if hyper else 0, default


DISAGREEMENT_NEEDS = (
    "This needs per-subject predictions of a fusion model and of at least one unimodal model (image_only, "
    "tabular_only) in the report."
)


def disagreements(report: R.Report, fusion: str, others: list[str], frame) -> tuple[pd.DataFrame, str]:
    """The test subjects on whom ``fusion`` predicts another class than the ``others`` (unimodal models), and a
    headline saying how many."""
    table = R.disagreements(report, fusion, others, frame)
    text = (
        f"**{len(table)} of {len(report.test_ptids)} test subjects** on whom {fusion} predicts another class "
        f"than {' or '.join(others)}."
    )
    return table, text


def fusion_right(table: pd.DataFrame, fusion: str, show: str) -> pd.DataFrame:
    """The disagreements ``show`` asks for: "all of them", "<fusion> right" or "<fusion> wrong" (right: it
    predicts the true diagnosis, per the table's ``correct`` column)."""
    if show == "all of them" or "correct" not in table.columns:
        return table
    right = table["correct"].str.split(", ").apply(lambda models: fusion in models)
    return table[right if show.endswith("right") else ~right].reset_index(drop=True)


def report_header(report: R.Report) -> list[Block]:
    """Which report, measured on which cohort and how many test subjects; synthetic data said loudly."""
    out = []
    if report.synthetic:
        text = (
            "**SYNTHETIC data**: every number on this page was measured on generated subjects, not patients."
        )
        out.append(Block("warning", text))
    test_subjects = report.result.get("test_subjects", len(report.test_ptids))
    cohort = shown_path(report.cohort_path) or "an unnamed cohort"
    text = (
        f"`{shown_path(report.path)}` · measured on `{cohort}` · test partition of {test_subjects} subjects."
    )
    return out + [Block("caption", text)]


def open_in_dashboard(ptid: str, report_cohort: Cohort | None, current: str | Path | None) -> str | None:
    """Whether a report's test subject can be opened in the dashboard showing cohort ``current``: None when it
    can (the same cohort), else why not."""
    if report_cohort is not None and current is not None and R.same_cohort(current, report_cohort.path):
        return None
    if report_cohort is None:
        return f"{ptid} cannot be opened: the report's cohort is not on this machine."
    return (
        f"The dashboard shows the cohort `{shown_path(current)}`, not the report's (`{shown_path(report_cohort.path)}`), "
        f"so {ptid} is not in it."
    )


# --- Brain age ---------------------------------------------------------------------------------------------
BRAIN_AGE_BUILD_HINT = (
    "Build the demo's brain-age cohort, models and report with `hyperfusion demo build`, or train your own with "
    "`hyperfusion train --task brain_age --model hyperfusion --data COHORT --out MODEL_DIR` and add MODEL_DIR in "
    "the sidebar's settings."
)


BRAIN_AGE_INTRO = (
    "The **brain age** is the age a model reads from the T1 scan; the **gap** (predicted − chronological age) is "
    "positive when the brain looks older than its years. The paper's brain-age HyperFusion lets the subject's "
    "**sex** generate the weights of the network's last layers."
)


def brain_age_sources(
    cohort: Cohort | None, source: str, models: list, roots: str, reports: list
) -> list[Block]:
    """What the Brain age page works on: the cohort (``source`` says which), its brain-age models, or what is
    missing and how to build it (``roots``: the model directories searched, ``os.pathsep``-separated)."""
    if (cohort is None or not models) and not reports:
        listed = ", ".join(map(shown_path, roots.split(os.pathsep)))
        what = (
            f"no brain-age cohort ({source})"
            if cohort is None
            else f"no brain-age model (none among {listed})"
        )
        return [Block("info", f"Nothing to show yet: {what}. " + BRAIN_AGE_BUILD_HINT)]
    out = []
    if cohort is not None:
        synthetic = " · **SYNTHETIC** subjects" if cohort.is_synthetic else ""
        names = ", ".join(m.name for m in models) or "none"
        where = f"Cohort: {source}, `{shown_path(cohort.path)}` · {len(cohort)} subjects{synthetic}"
        out.append(Block("caption", f"{where} · brain-age models: {names}"))
    if not models:
        text = "No brain-age model among the model directories: only the evaluation report is shown. "
        out.append(Block("info", text + BRAIN_AGE_BUILD_HINT))
    return out


def chronological_age(ptid: str, recorded: dict, truth: str | None) -> tuple[float | None, list[Block]]:
    """A subject's chronological age (None when its record has none, which the brain-age gap needs) and what
    the page says of it: the age, the recorded sex, the diagnosis."""
    age = float(recorded["AGE"]) if recorded.get("AGE") is not None else float("nan")
    if not np.isfinite(age):
        return None, [
            Block("info", f"{ptid} has no age in its record: the brain-age gap needs the chronological age.")
        ]
    sex = recorded.get("PTGENDER") or "not recorded"
    text = f"Chronological age **{age:.1f}** · recorded sex **{sex}**" + (
        f" · diagnosis {truth}" if truth else ""
    )
    return age, [Block("caption", text)]


def brain_age_cohort(current: Cohort | None, assets: str | Path, load: Callable) -> tuple[Cohort | None, str]:
    """The Brain age page's cohort: ``current`` (the dashboard's) when it was made for brain age, else the
    brain-age demo cohort ``<assets>/cohorts/brain_age`` read with ``load``; with a phrase saying which (or what
    is missing)."""
    if current is not None and "brain_age" in (current.provenance.get("task"), current.task):
        return current, "the dashboard's cohort"
    path = Path(assets) / "cohorts" / "brain_age"
    if not (path / "cohort.csv").is_file():
        return (
            None,
            f"no brain-age cohort: the dashboard's cohort is not one, and `{shown_path(path)}` does not exist",
        )
    try:
        return load(path), "the brain-age demo cohort"
    except (HyperFusionError, OSError) as exc:
        return None, f"the brain-age demo cohort `{shown_path(path)}` could not be read: {exc}"


def report_ages(report: R.Report, cohort: Cohort | None, note: str | None):
    """(an age_frame of the report's test subjects, each model's bias-corrected metrics, what to say) or
    (None, {}, why it cannot be plotted)."""
    predictions = report.predictions()
    if cohort is None or not predictions:
        why = note if cohort is None else "it holds no per-subject predictions (an older report)"
        text = (
            f"This report cannot be plotted: {why}. Compute the predictions instead (the other source above)."
        )
        return None, {}, [Block("info", text)]
    corrected = {label: entry.get("bias_corrected") for label, entry in report.runs.items()}
    n = len(report.test_ptids)
    said = [note] if note else []
    said.append(f"The report's test partition: {n} subjects no model was trained or validated on.")
    return (
        R.age_frame(R.subject_frame(report, cohort), predictions),
        corrected,
        [Block("caption", t) for t in said],
    )


def predict_ages(
    predictor, cohort: Cohort, models, n: int, scan_of: Callable, progress: Callable = lambda f: None
):
    """The first ``n`` subjects of ``cohort`` predicted by the brain-age ``models`` (ModelInfo): (an age_frame,
    each model's metrics after its card's bias correction, the PTIDs without a scan). ``scan_of(cohort, ptid)``
    gives a subject's scan (None when it has none); ``progress(fraction)`` is called after each subject."""
    rows, skipped, subjects = [], [], cohort.table.head(int(n))
    for i, (_, row) in enumerate(subjects.iterrows()):
        scan = scan_of(cohort, row["PTID"])
        if scan is None:
            skipped.append(row["PTID"])
        else:
            preds = predictor.predict(scan, cohort_record(row), models=[m.name for m in models])
            rows.append({"PTID": row["PTID"], **{k: float(p.value[0]) for k, p in preds.items()}})
        progress((i + 1) / len(subjects))
    if not rows:
        return None, {}, skipped
    done = pd.DataFrame(rows)
    table = cohort.table.set_index("PTID").loc[done["PTID"]]
    people = pd.DataFrame(
        {
            "PTID": done["PTID"],
            "AGE": table["AGE"].to_numpy(float),
            "sex": R.sex_names(table["PTGENDER"]).to_numpy(),
        }
    )
    frame = R.age_frame(people, {m.name: done[m.name].to_numpy() for m in models})
    return frame, R.bias_corrected_from_cards(frame, {m.name: m.cards[0].age_bias for m in models}), skipped


def computed_ages_note(frame, skipped: list[str]) -> list[Block]:
    out = []
    if skipped:
        out.append(
            Block("info", f"No scan for {len(skipped)} subject(s), left out: {', '.join(skipped[:10])}")
        )
    if frame is not None:
        n = frame["PTID"].nunique()
        out.append(
            Block(
                "caption",
                f"The cohort's first {n} subjects. Some of them may have been in the models' training data, so "
                "these errors can be optimistic; `hyperfusion evaluate` scores the held-out test partition.",
            )
        )
    return out


def age_blocks(frame: pd.DataFrame, corrected: dict) -> list[Block]:
    """Predicted against chronological age, the metrics, and the brain-age gap by sex."""
    return [
        Block("figures", [("brain_age_scatter", F.scatter_figure(frame))]),
        Block("table", R.age_metrics(frame, corrected), "brain_age_metrics"),
        Block(
            "caption",
            "Points on the dotted line: predicted = chronological age. MAE: mean absolute error; r: Pearson "
            "correlation; mean gap: the average over-estimate. Bias-corrected: after the linear correction of the "
            "models' pull towards the mean age, fitted on their validation subjects (Smith et al. 2019).",
        ),
        Block("markdown", "#### Brain-age gap by sex"),
        Block("figures", [("brain_age_gap", F.gap_figure(frame))]),
        Block(
            "caption",
            "Boxes: median and quartiles, dashed: mean; each point is one subject. A model fair to both sexes has "
            "both boxes centred at the same height.",
        ),
    ]


OTHER_SEX = {"Female": "Male", "Male": "Female"}


def sex_whatif(predictor, scan, recorded: dict) -> list[Block]:
    """One subject's predicted age under each sex, and the difference each model attributes to sex alone."""
    sex = recorded.get("PTGENDER")
    first = sex if sex in OTHER_SEX else "Female"
    second, age = OTHER_SEX[first], float(recorded["AGE"])
    preds = predictor.predict(scan, [{**recorded, "PTGENDER": first}, {**recorded, "PTGENDER": second}])
    return [
        Block("figures", [("sex_whatif", F.sex_whatif_figure(preds, first, second, age))]),
        Block(
            "table",
            pd.DataFrame(R.sex_whatif_rows(preds, first, second, age, recorded=bool(sex))),
            "sex_whatif_table",
        ),
        Block(
            "caption",
            "A model that does not read sex (image_only) gives the same age both ways. The difference is what "
            "the model attributes to sex alone for this scan.",
        ),
    ]
