"""A model card as a person reads it: the sections of Mitchell et al. (2019), "Model Cards for Model
Reporting", filled from the card.json of each member and, where an evaluation report measured the model, from
that report (test metrics with their 95 % intervals, reliance on each input, faithfulness of its maps).

:func:`card_sections` returns (heading, markdown) pairs; the dashboard's Model cards page shows them, a
notebook can print them. Nothing here shows a file path: a card written on another machine records that
machine's paths, which say nothing about this one.
"""

from __future__ import annotations

from collections.abc import Sequence

from hyperfusion.models.card import ModelCard
from hyperfusion.training.reports import METRIC_LABELS, Report

__all__ = ["card_fold", "card_sections", "member_labels", "report_run"]

TASKS = {
    "ad": "classifies a subject as cognitively normal (CN), mild cognitive impairment (MCI) or Alzheimer's "
    "disease (AD) from a T1 MRI and/or the tabular record",
    "brain_age": "predicts the age a T1 MRI looks (brain age), conditioned on the subject's sex",
}


def report_run(report: Report, name: str, architecture: str) -> str | None:
    """The label of the run in ``report`` that measured the model called ``name`` (its folder, e.g.
    "ad/hyperfusion"), or None. Runs are labelled by the model's folder (``hyperfusion``, ``film/fold0``)."""
    last = name.rstrip("/").split("/")[-1]
    for label, run in report.runs.items():
        if run.get("architecture", label.split("#")[0].split("/")[0]) != architecture:
            continue
        if label == name or name.endswith("/" + label) or label.split("/")[0] == last:
            return label
    return None


def member_labels(cards: list[ModelCard]) -> list[str]:
    """How a picker names each member of a model: "member 0 (fold 2)" ("–" when the fold is not recorded)."""
    folds = [card_fold(c) for c in cards]
    return [f"member {k} (fold {fold if fold is not None else '–'})" for k, fold in enumerate(folds)]


def card_fold(card: ModelCard) -> int | None:
    """The member's fold: from its training settings, else from its recorded partition."""
    return card.fold if card.fold is not None else (card.split or {}).get("fold")


def _num(x: object, digits: int = 3) -> str:
    return f"{float(x):.{digits}f}" if isinstance(x, int | float) else "–"


def _details(cards: Sequence[ModelCard], name: str) -> str:
    c = cards[0]
    config = c.architecture.config
    hyper = config.get("hyper_layers")
    lines = [
        f"- **{name}**: architecture `{c.name}`, task `{c.task}`: {TASKS.get(c.task, c.task)}.",
        f"- {len(cards)} member(s)"
        + (" (folds, combined by inverse-entropy weighting)" if len(cards) > 1 else ""),
        f"- Layers whose weights the record generates: {', '.join(hyper)}" if hyper else "",
        f"- Input box: {c.geometry.get('voxel_size_mm', '–')} mm voxels" if c.geometry else "- Reads no scan",
        f"- hyperfusion {c.hyperfusion_version or '–'}; weights sha256 `{(c.weights_sha256 or '')[:16]}…`",
    ]
    return "\n".join(line for line in lines if line)


def _intended_use(cards: Sequence[ModelCard]) -> str:
    c = cards[0]
    stated = c.extra.get("intended_use")
    text = (
        f"{stated}\n\n"
        if stated
        else "Research on fusing brain MRI with tabular records (HyperFusion, Duenias et al. 2025): comparing "
        "models, explaining them, what-if questions about a record.\n\n"
    )
    text += "**Not for** diagnosing or advising any person: no model here is a medical device."
    if c.synthetic:
        text += (
            " Trained on **SYNTHETIC** subjects: it demonstrates the tool and its explanations; its numbers "
            "say nothing about patients."
        )
    return text


def _training_data(cards: Sequence[ModelCard]) -> str:
    c = cards[0]
    prov = c.data.get("provenance") or {}
    source = "SYNTHETIC subjects" if c.synthetic else c.data.get("source", "unknown")
    lines = [f"- Source: {source}"]
    if prov.get("generator"):
        lines.append(
            f"- Generator {prov['generator']} {prov.get('generator_version', '')}, seed {prov.get('seed', '–')}, "
            f"{prov.get('n', '–')} subjects"
        )
    if c.split:
        sizes = {p: len(c.split.get(p) or []) for p in ("train", "validation", "test")}
        lines.append(
            f"- Partition (fold {c.split.get('fold', '–')}, split seed {c.split.get('seed', '–')}): "
            + ", ".join(f"{n} {p}" for p, n in sizes.items())
            + f"; labels from `{c.split.get('label_column', c.label_column or '–')}`"
        )
    t = c.training
    if t:
        lines.append(
            f"- Training: {t.get('epochs', '–')} epochs, batch {t.get('batch_size', '–')}, learning rate "
            f"{t.get('lr', '–')}, class weights {t.get('class_weights', '–')}, missing values: "
            f"{t.get('imputation', '–')} imputation"
        )
    return "\n".join(lines)


def _metrics(cards: Sequence[ModelCard], measured: list[tuple[Report, str]]) -> str:
    lines = []
    for report, label in measured:
        run = report.runs[label]
        n = report.result.get("test_subjects", len(report.test_ptids))
        lines.append(f"\nOn the {n} held-out test subjects of report **{report.name}** (run `{label}`):\n")
        for key, entry in (run.get("ci95") or {}).items():
            lo, hi = entry.get("ci95", [None, None])
            lines.append(
                f"- {METRIC_LABELS.get(key, (key,))[0]}: **{_num(entry.get('value'))}** "
                f"(95 % bootstrap interval {_num(lo)}–{_num(hi)})"
            )
        rest = [k for k in (run.get("metrics") or {}) if k not in (run.get("ci95") or {})]
        if rest:
            lines.append(
                "- also: "
                + ", ".join(f"{METRIC_LABELS.get(k, (k,))[0]} {_num(run['metrics'][k])}" for k in rest)
                + " (no interval)"
            )
    validation = [(card_fold(c), c.metrics.get("validation") or {}) for c in cards]
    if any(v for _, v in validation):
        lines.append("\nEach member on its own validation partition (used to stop training; no interval):\n")
        for fold, values in validation:
            shown = ", ".join(
                f"{k.removeprefix('val_').replace('_', ' ')} {_num(v)}" for k, v in values.items()
            )
            lines.append(f"- fold {fold if fold is not None else '–'}: {shown or '–'}")
    return "\n".join(lines) or "No metrics: the card holds none and no evaluation report measured this model."


def _reliance(measured: list[tuple[Report, str]]) -> str:
    lines = []
    for report, label in measured:
        reliance = report.runs[label].get("reliance") or {}
        for modality, entry in reliance.items():
            if not entry.get("applicable"):
                lines.append(f"- {modality}: not read by this model ({report.name})")
                continue
            key = "balanced_accuracy" if "balanced_accuracy" in entry else "mae"
            m = entry[key]
            verdict = "uses it" if entry.get("uses") else "does not measurably use it"
            lines.append(
                f"- {modality} ({report.name}): {METRIC_LABELS.get(key, (key,))[0]} {_num(m['unpermuted'])} → "
                f"{_num(m['permuted_mean'])} ± {_num(m['permuted_sd'])} with the {modality} shuffled across "
                f"subjects ({entry.get('seeds', '–')} seeds): **{verdict}**"
            )
    if not lines:
        return "Not measured: no evaluation report here permuted this model's inputs."
    return "\n".join(lines)


def _faithfulness(measured: list[tuple[Report, str]]) -> str:
    lines = []
    for report, label in measured:
        entry = report.result.get("faithfulness") or {}
        scores = (entry.get("mean") or {}).get(label)
        if not scores:
            continue
        control = (entry.get("untrained") or {}).get(label, {})
        lines.append(
            f"- {entry.get('method', '–')} maps of {len(entry.get('subjects', []))} subjects ({report.name}): the "
            f"10 % most attributed voxels are **{_num(scores.get('top_decile_enrichment'), 2)}×** enriched in the "
            f"planted tissue loss (an untrained network of the same shape: "
            f"{_num(control.get('top_decile_enrichment'), 2)}×; 1 = an even spread); voxel-wise AUROC "
            f"{_num(scores.get('auroc'), 2)} (0.5 = chance)"
        )
    if not lines:
        return "Not measured (it needs a synthetic cohort, which records where the disease was planted)."
    return "\n".join(lines)


def _caveats(cards: Sequence[ModelCard]) -> str:
    c = cards[0]
    lines = [
        "- An attribution map shows where the output is sensitive, not proof of what the model relies on.",
        "- Records outside the training ranges (the card's reference) are flagged on every prediction.",
    ]
    if c.training.get("imputation"):
        lines.append(
            f"- Missing values are filled by {c.training['imputation']} imputation from the training rows."
        )
    collapsed = [k for k, card in enumerate(cards) if (card.collapse or {}).get("collapsed")]
    if collapsed:
        lines.append(f"- **Member(s) {collapsed} predict nearly one class**: treat their output with care.")
    if c.synthetic:
        lines.append("- Synthetic training data: never apply it to real scans.")
    return "\n".join(lines)


def card_sections(
    cards: Sequence[ModelCard], name: str, architecture: str | None = None, reports: Sequence[Report] = ()
) -> list[tuple[str, str]]:
    """The model card of ``name`` (its members' ``cards``) in Mitchell et al.'s sections: model details,
    intended use, training data, metrics (with intervals where a report measured them), reliance,
    faithfulness, caveats and recommendations. ``reports``: evaluation reports that may hold this model."""
    architecture = architecture or cards[0].name
    measured = [
        (r, label)
        for r in reports
        if r.task == cards[0].task and (label := report_run(r, name, architecture)) is not None
    ]
    return [
        ("Model details", _details(cards, name)),
        ("Intended use", _intended_use(cards)),
        ("Training data", _training_data(cards)),
        ("Metrics", _metrics(cards, measured)),
        ("Reliance on each input", _reliance(measured)),
        ("Faithfulness of the attribution maps", _faithfulness(measured)),
        ("Caveats and recommendations", _caveats(cards)),
    ]
