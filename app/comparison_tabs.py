"""The Model comparison page's tabs, one function each (the tables and figures are hyperfusion calls:
:mod:`hyperfusion.training.reports`, :mod:`hyperfusion.training.figures`)."""

from __future__ import annotations

import dashboard as db
import numpy as np
import reports as rp
import streamlit as st
from state import session

from hyperfusion.data.cohort import subject_namespace
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.errors import HyperFusionError
from hyperfusion.files import shown_path
from hyperfusion.training import figures as F
from hyperfusion.training import metrics as M
from hyperfusion.training import reports as R


def summary(report, ad: bool) -> None:
    """The paper's table, mean ± SD over repeated runs, the significance tests."""
    table = R.metrics_table(report)
    st.dataframe(
        table,
        hide_index=True,
        key="paper_table",
        column_config=rp.column_labels(table.columns, "value [95 % bootstrap interval]"),
    )
    st.caption(
        "Each cell: the value on the test partition, and [low, high] its 95 % percentile bootstrap interval "
        "over subjects where the report computed one. Hover a column header for its meaning."
    )
    groups = R.groups_table(report)
    if len(groups) and (groups["runs"] > 1).any():
        st.markdown("**Mean ± SD over repeated runs** (split seeds × initialisations) per architecture")
        st.dataframe(
            groups,
            hide_index=True,
            key="groups_table",
            column_config=rp.column_labels(groups.columns, "mean ± SD over the runs"),
        )
    significance = R.significance_table(report)
    if len(significance):
        st.markdown("**Is HyperFusion better?** One-sided Mann–Whitney U test over the repeated runs")
        st.dataframe(
            significance,
            hide_index=True,
            column_config=rp.column_labels(significance.columns, "one-sided p-value"),
            key="significance_table",
        )
        st.caption(
            "p-values per metric (for MAE: HyperFusion's error lower). With few runs per group even a "
            "complete separation cannot reach a small p: see 'smallest possible p'."
        )
    if not ad:
        st.page_link(
            "views/7_Brain_age.py", label="Predicted against chronological age, and the sex what-if →"
        )


def confusion(report, chosen: list, frame, predictions: dict) -> None:
    """A confusion matrix per chosen model."""
    cells = []
    for label in chosen:
        cm = report.runs[label].get("confusion")
        if cm is None and frame is not None and label in predictions:
            cm = M.confusion(frame["y"].to_numpy(), predictions[label]).tolist()
        if cm is not None:
            cells.append((label, np.asarray(cm, dtype=int)))
    if not cells:
        st.info("No confusion matrix for the chosen models in this report.")
    per_row = 3
    for start in range(0, len(cells), per_row):
        for col, (label, cm) in zip(st.columns(per_row), cells[start : start + per_row]):
            col.plotly_chart(F.confusion_figure(label, cm), width="stretch", key=f"confusion_{label}")
    st.caption(
        "Rows: the true diagnosis; columns: the model's prediction. Each cell: subjects (share of the "
        "row, i.e. the recall on the diagonal)."
    )


def curves(chosen: list, frame, predictions: dict) -> None:
    """One-vs-rest ROC and reliability curves of a chosen class."""
    if frame is None:
        st.info("The curves need each test subject's truth: the report's cohort table is not available.")
    else:
        cls = st.selectbox(
            "Class (one vs rest)", list(CLASS_NAMES), index=len(CLASS_NAMES) - 1, key="comparison_class"
        )
        c = CLASS_NAMES.index(cls)
        positive = frame["y"].to_numpy() == c
        shown = [m for m in chosen if m in predictions]
        if positive.all() or not positive.any():
            st.info(f"The test partition has {'only' if positive.all() else 'no'} {cls} subjects: no curve.")
        else:
            roc, calibration = F.curve_figures(positive, {m: predictions[m][:, c] for m in shown}, cls)
            left, right = st.columns(2)
            left.plotly_chart(roc, width="stretch", key="roc")
            right.plotly_chart(calibration, width="stretch", key="calibration")
            st.caption(
                f"{int(positive.sum())} {cls} and {int((~positive).sum())} other test subjects. Dotted: "
                "chance (ROC) and perfect calibration (reliability: subjects binned by predicted "
                "probability in tenths; points above the line = the model under-estimates)."
            )


def subgroups(report, frame, ad: bool) -> None:
    """Every model's metric within each sex and age band."""
    if frame is None:
        st.info(
            "Subgroup results need each test subject's sex and age: the report's cohort table is not available."
        )
        if not ad and report.runs:
            st.dataframe(
                R.metrics_table(report).filter(regex="^(model|mae_female|mae_male)$"), hide_index=True
            )
    else:
        metric = "balanced accuracy" if ad else "MAE (years)"
        st.markdown(f"**{metric}** of every model within each group; *subjects*: test subjects in the group.")
        st.dataframe(R.subgroup_table(report, frame, "sex"), hide_index=True, key="by_sex")
        st.dataframe(R.subgroup_table(report, frame, "age band"), hide_index=True, key="by_age_band")
        st.caption(
            f"Groups of fewer than {R.FEW_SUBJECTS} subjects are flagged: one or two subjects move their "
            "value a lot. Age bands in years at the baseline visit."
        )


def reliance(report, ad: bool) -> None:
    """How much each model uses the scan and the record (permutation drops)."""
    reliance = R.reliance_table(report)
    if not len(reliance):
        st.info(
            "This report has no modality-reliance scores (written by an older `hyperfusion evaluate`, or with "
            "`--permutations 0`): run it again for them."
        )
    else:
        record = "record" if ad else "sex"
        st.markdown(
            f"**How much does each model use the scan, and the {record}?** Each test subject is given "
            f"another test subject's scan (or {record}) and keeps its own {record} (or scan) and truth; a "
            "model that uses an input loses accuracy when it is shuffled."
        )
        st.dataframe(reliance, hide_index=True, key="reliance_table")
        seeds = max(
            (r.get("seeds", 0) for e in report.runs.values() for r in (e.get("reliance") or {}).values()),
            default=0,
        )
        st.caption(
            f"Permuted: mean ± SD over {seeds} random permutations among the test subjects. "
            + (
                "Drop: the unpermuted score minus the permuted mean; below 0.02 in both BA and AUC the model "
                "barely uses that input."
                if ad
                else "Increase: the permuted MAE minus the unpermuted; below 0.5 years the model barely uses "
                "that input."
            )
        )


def disagreements(report, frame, predictions: dict, cohort) -> None:
    """The test subjects a fusion model and the unimodal models disagree on; a click opens one."""
    fusions = [m for m in predictions if report.architecture(m) not in R.UNIMODAL]
    unimodal = [m for m in predictions if report.architecture(m) in R.UNIMODAL]
    if not fusions or not unimodal:
        st.info(
            "This needs per-subject predictions of a fusion model and of at least one unimodal model "
            "(image_only, tabular_only) in the report."
        )
    else:
        hyper = [m for m in fusions if report.architecture(m) == "hyperfusion"]
        left, right = st.columns(2)
        fusion = left.selectbox(
            "Fusion model", fusions, index=fusions.index(hyper[0]) if hyper else 0, key="disagree_fusion"
        )
        default = [
            next(m for m in unimodal if report.architecture(m) == a)
            for a in R.UNIMODAL
            if any(report.architecture(m) == a for m in unimodal)
        ]
        others = right.multiselect("Unimodal models", unimodal, default=default, key="disagree_others")
        if others:
            table = R.disagreements(report, fusion, others, frame)
            st.markdown(
                f"**{len(table)} of {len(report.test_ptids)} test subjects** on whom {fusion} predicts "
                f"another class than {' or '.join(others)}."
            )
            if "correct" in table.columns:
                helps = table["correct"].str.split(", ").apply(lambda right: fusion in right)
                show = st.radio(
                    "Show",
                    ["all of them", f"{fusion} right", f"{fusion} wrong"],
                    horizontal=True,
                    key="disagree_filter",
                    help="right: predicts the true diagnosis",
                )
                if show != "all of them":
                    table = table[helps if show.endswith("right") else ~helps].reset_index(drop=True)
            event = st.dataframe(
                table,
                hide_index=True,
                on_select="rerun",
                selection_mode="single-row",
                key="disagreement_table",
            )
            st.caption(
                "P(truth): the model's probability of the true diagnosis. Click a row to open the "
                "subject (record, what-if and attribution)."
            )
            if event.selection.rows:
                ptid = table["PTID"].iloc[event.selection.rows[0]]
                try:
                    current = db.cohort().path
                except (HyperFusionError, OSError):
                    current = None
                if cohort is not None and current is not None and R.same_cohort(current, cohort.path):
                    session.subject = ptid
                    st.switch_page("views/1_Subject.py")
                elif cohort is None:
                    st.info(f"{ptid} cannot be opened: the report's cohort is not on this machine.")
                else:
                    st.info(
                        f"The dashboard shows the cohort `{shown_path(current)}`, not the report's "
                        f"(`{shown_path(cohort.path)}`), "
                        f"so {ptid} is not in it."
                    )
                    if st.button(
                        f"Switch the dashboard to the report's cohort and open {ptid}",
                        key="open_in_report_cohort",
                    ):
                        session.settings = {**db.settings(), "cohort": str(cohort.path)}
                        session.subject, session.subject_namespace = ptid, subject_namespace(cohort)
                        st.switch_page("views/1_Subject.py")


def faithfulness(report) -> None:
    """Do the synthetic cohort's attribution maps point at the planted tissue loss?"""
    entry = report.result.get("faithfulness")
    if not entry:
        st.info(
            "This report has no attribution-faithfulness scores. Add them (synthetic cohorts only: they "
            "record where the disease was planted) by evaluating again with `--faithfulness`:"
        )
        st.code(
            f"hyperfusion evaluate --data {shown_path(report.cohort_path) or 'COHORT'} --models MODEL_DIRS... "
            f"--out {shown_path(report.path.parent)} --faithfulness saliency",
            language="bash",
            wrap_lines=True,
        )
    else:
        st.markdown(
            f"Do the **{entry.get('method')}** maps point at the tissue loss planted in the synthetic "
            f"scans? Scored on {len(entry.get('subjects', []))} AD test subjects per image model: "
            "enrichment above 1 and AUROC above 0.5 mean the map finds the planted loss better than "
            "chance. *untrained* columns: the same network before any training: where it scores as "
            "well, the map shows the architecture, not what the model learned."
        )
        table = R.faithfulness_table(report)
        config = {
            k: st.column_config.NumberColumn(k.replace("_", " "), help=h)
            for k, h in R.FAITHFULNESS_HELP.items()
        }
        st.dataframe(table, hide_index=True, column_config=config, key="faithfulness_table")
