"""Evaluation with the paper's protocol: scoring, fold ensembles, modality reliance, tables, figures, significance.

A *run* is one model directory or one ensemble (a directory of fold-model directories, combined per sample by
inverse-entropy weighting as the paper). The subjects scored are the test subjects stored in the models' files,
or every subject of an independent cohort (:mod:`hyperfusion.training.protocol` chooses them and refuses
leaks). Each member encodes every subject's scan once (``encode_image``, both hemispheres, batched through
Lightning's predict loop, so the same code scores a cohort on a GPU) and decodes the features with the record;
the modality-reliance measure decodes them again with the scans, or the records, permuted among the subjects.
Runs are grouped by architecture name; where a group holds several runs (split seeds × initialisations) the
paper's one-sided Mann–Whitney U test compares HyperFusion with every other group.

Inputs are plain networks and their cards (loading model files is the inference layer's job; the CLI glues).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from hyperfusion.data.cohort import Cohort
from hyperfusion.data.datasets import CohortDataset
from hyperfusion.data.geometry import Geometry
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.data.tabular import TabularPreprocessor
from hyperfusion.data.volume_cache import VolumeCache
from hyperfusion.errors import DataError
from hyperfusion.models import ModelCard
from hyperfusion.models.network import FusionNetwork, ImageFeatures, concat_features, subject_output
from hyperfusion.training import metrics as M
from hyperfusion.training.module import FusionModule
from hyperfusion.training.protocol import check_label_column, select_subjects

CI_METRICS_AD = ("balanced_accuracy", "precision", "f1", "auc")
#: What the modality-reliance measure permutes among the test subjects
MODALITIES = ("scan", "record")
#: Below these drops (balanced accuracy and AUC; brain age: MAE increase, years) a model is flagged as not
#: using the permuted modality: its predictions barely depend on it
RELIANCE_MIN_DROP = 0.02
RELIANCE_MIN_MAE_INCREASE = 0.5
PAPER_COLUMNS = [
    ("balanced_accuracy", "BA"),
    ("precision", "precision"),
    ("f1", "F1"),
    ("auc", "AUC"),
    ("recall_CN", "recall CN"),
    ("recall_MCI", "recall MCI"),
    ("recall_AD", "recall AD"),
]


@dataclass
class Member:
    """One trained network and its card (a card dict, e.g. a draft from training, is validated into a
    :class:`~hyperfusion.models.ModelCard` here)."""

    network: FusionNetwork
    card: ModelCard

    def __post_init__(self) -> None:
        if not isinstance(self.card, ModelCard):
            self.card = ModelCard.from_dict(self.card, source="the model card")


@dataclass
class Run:
    """A model or an ensemble of fold models, scored as one."""

    label: str
    members: list[Member]
    predictions: np.ndarray | None = None  # (N_test, C) probabilities or (N_test,) ages
    member_predictions: list[np.ndarray] = field(default_factory=list)
    #: predictions with the test subjects' scans ("scan") or records ("record") permuted, one per seed
    permuted: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return self.members[0].card.name

    @property
    def task(self) -> str:
        return self.members[0].card.task


def dataset_for(
    member: Member, cohort: Cohort, indices: np.ndarray, cache: VolumeCache | None
) -> CohortDataset:
    """The evaluation dataset (both views) of ``indices`` as ``member``'s card preprocesses it."""
    card = member.card
    task = card.task
    state = card.preprocessing
    preprocessor = TabularPreprocessor.from_dict(state) if state else None
    tabular_only = not member.network.reads_scan
    geometry = Geometry.from_dict(card.geometry) if not tabular_only else None
    return CohortDataset(
        cohort,
        indices,
        task=task,
        preprocessor=preprocessor,
        geometry=geometry,
        cache=cache,
        views="all",
        tabular_only=tabular_only,
    )


@dataclass
class Encoded:
    """One member's inputs on the evaluated subjects: each subject's image features computed once (every view),
    and its record. Decoding them with another subject's features or record is what the modality-reliance
    permutations do, without running the image encoder again."""

    features: ImageFeatures  # each tensor (N * V, ...), subject-major; () for a tabular-only network
    tabular: torch.Tensor  # (N, F) the preprocessed records (sex one-hot for brain age)
    n_views: int


class _EncodeModule(FusionModule):
    def predict_step(self, batch, batch_idx: int):
        image, _, _ = batch
        b, views = image.shape[:2]
        features = self.network.encode_image(image.reshape(b * views, *image.shape[2:]))
        return tuple(f.detach().cpu() for f in features), views


def encode_subjects(
    member: Member,
    cohort: Cohort,
    indices: np.ndarray,
    *,
    cache: VolumeCache | None = None,
    batch_size: int = 16,
    accelerator: str = "cpu",
) -> Encoded:
    """Image features (both hemispheres) and records of rows ``indices``, through Lightning's predict loop."""
    ds = dataset_for(member, cohort, indices, cache)
    if not member.network.reads_scan:
        return Encoded((), ds.tabular, 1)
    module = _EncodeModule(member.network.eval(), member.card.task, class_weights=None)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    batches = trainer.predict(module, DataLoader(ds, batch_size=batch_size))
    return Encoded(concat_features([f for f, _ in batches]), ds.tabular, int(batches[0][1]))


@torch.inference_mode()
def decode_subjects(
    member: Member,
    encoded: Encoded,
    *,
    image_order: np.ndarray | None = None,
    record_order: np.ndarray | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Probabilities (N, C) or predicted ages (N,), both hemispheres averaged, as ``predict_views`` computes them.

    ``image_order`` / ``record_order``: subject i is decoded with the scan (features) of subject
    ``image_order[i]`` / the record of subject ``record_order[i]`` (default its own).
    """
    network = member.network.eval()
    task = member.card.task
    n, views = len(encoded.tabular), encoded.n_views
    image_order = np.arange(n) if image_order is None else np.asarray(image_order)
    record_order = np.arange(n) if record_order is None else np.asarray(record_order)
    device = next(iter(network.parameters()), torch.empty(0)).device
    out = []
    for start in range(0, n, batch_size):
        subjects = np.arange(start, min(n, start + batch_size))
        rows = torch.from_numpy((image_order[subjects][:, None] * views + np.arange(views)).ravel())
        features = tuple(f[rows].to(device) for f in encoded.features)
        tabular = encoded.tabular[torch.from_numpy(record_order[subjects])].repeat_interleave(views, dim=0)
        y = subject_output(network.decode(features, tabular.to(device)), views, probabilities=task == "ad")
        out.append((y if task == "ad" else y.reshape(-1)).float().cpu())
    return torch.cat(out).numpy()


def predict_subjects(
    member: Member,
    cohort: Cohort,
    indices: np.ndarray,
    *,
    cache: VolumeCache | None = None,
    batch_size: int = 16,
    accelerator: str = "cpu",
) -> np.ndarray:
    """Probabilities (N, C) or predicted ages (N,) for rows ``indices``, both hemispheres averaged."""
    encoded = encode_subjects(
        member, cohort, indices, cache=cache, batch_size=batch_size, accelerator=accelerator
    )
    return decode_subjects(member, encoded)


def permutation(n: int, seed: int, modality: str) -> np.ndarray:
    """The seeded permutation of ``n`` test subjects used for ``modality`` ("scan" or "record")."""
    return np.random.default_rng([seed, MODALITIES.index(modality)]).permutation(n)


def score_runs(
    cohort: Cohort,
    runs: Sequence[Run],
    cache: VolumeCache | None = None,
    *,
    rows: np.ndarray | None = None,
    permutations: int = 0,
    batch_size: int = 16,
    accelerator: str = "cpu",
) -> np.ndarray:
    """Fill every run's predictions on ``rows`` (default: the test subjects the models' files name) and, with
    ``permutations`` > 0, its predictions with the scans and, separately, the records permuted among those
    subjects (``run.permuted``; the same permutations for every member, combined as the ensemble is); returns
    the rows. One run's image features are held at a time."""
    if rows is None:
        rows = select_subjects(cohort, runs).rows
    for run in runs:
        encoded = [
            encode_subjects(m, cohort, rows, cache=cache, batch_size=batch_size, accelerator=accelerator)
            for m in run.members
        ]
        run.member_predictions = [decode_subjects(m, e) for m, e in zip(run.members, encoded)]
        run.predictions = M.combine_members(run.task, run.member_predictions)
        run.permuted = {}
        net = run.members[0].network
        reads = {"scan": net.reads_scan, "record": net.reads_record}
        for modality in MODALITIES if permutations > 0 else ():
            if not reads[modality]:
                continue  # permuting what the network never reads cannot change its output
            run.permuted[modality] = []
            for seed in range(permutations):
                order = permutation(len(rows), seed, modality)
                key = "image_order" if modality == "scan" else "record_order"
                members = [decode_subjects(m, e, **{key: order}) for m, e in zip(run.members, encoded)]
                run.permuted[modality].append(M.combine_members(run.task, members))
        del encoded
    return rows


def _with_ci(values: dict, metric_fn, arrays, keys, n_boot: int, seed: int) -> dict:
    intervals = M.bootstrap_cis(metric_fn, keys, *arrays, n_boot=n_boot, seed=seed)
    return {key: {"value": values[key], "ci95": list(intervals[key])} for key in keys}


def _spread(values: list[float]) -> dict:
    return {
        "permuted_mean": float(np.mean(values)),
        "permuted_sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "values": [float(v) for v in values],
    }


def modality_reliance(run: Run, y_or_age: np.ndarray) -> dict:
    """How much ``run`` uses the scan and the record: its score with each permuted among the test subjects
    (``run.permuted`` from :func:`score_runs`), against its own score.

    AD: balanced accuracy and AUC, each with the permuted mean and SD over the seeds and the ``drop``
    (unpermuted − permuted mean); ``uses`` is False when both drops are below :data:`RELIANCE_MIN_DROP`.
    Brain age: MAE and its ``increase``; ``uses`` is False below :data:`RELIANCE_MIN_MAE_INCREASE` years.
    A modality the network does not read is reported as not applicable (its permutation is a no-op).
    """
    net = run.members[0].network
    reads = {"scan": net.reads_scan, "record": net.reads_record}
    out: dict = {}
    for modality in MODALITIES:
        if not reads[modality]:
            out[modality] = {
                "applicable": False,
                "note": f"the network does not read the {modality}: permuting it cannot change the output",
            }
            continue
        preds = run.permuted.get(modality)
        if not preds:
            continue
        entry: dict = {"applicable": True, "seeds": len(preds)}
        if run.task == "ad":
            base = M.classification_metrics(y_or_age, run.predictions)
            for key in ("balanced_accuracy", "auc"):
                permuted = [M.classification_metrics(y_or_age, p)[key] for p in preds]
                entry[key] = {"unpermuted": base[key], **_spread(permuted)}
                entry[key]["drop"] = base[key] - entry[key]["permuted_mean"]
            entry["uses"] = bool(
                max(entry["balanced_accuracy"]["drop"], entry["auc"]["drop"]) >= RELIANCE_MIN_DROP
            )
        else:
            base = M.regression_metrics(y_or_age, run.predictions)["mae"]
            permuted = [M.regression_metrics(y_or_age, p)["mae"] for p in preds]
            entry["mae"] = {"unpermuted": base, **_spread(permuted)}
            entry["mae"]["increase"] = entry["mae"]["permuted_mean"] - base
            entry["uses"] = bool(entry["mae"]["increase"] >= RELIANCE_MIN_MAE_INCREASE)
        out[modality] = entry
    return out


def _bias_corrected(run: Run, age: np.ndarray) -> dict | None:
    """Each member corrected with its own validation-fitted age bias, then averaged; None where a member has
    none (or one too flat to invert). The true ages only score the result."""
    biases = [m.card.age_bias for m in run.members]
    if not all(biases) or any(abs(b["slope"]) < M.MIN_AGE_BIAS_SLOPE for b in biases):
        return None
    corrected = np.mean(
        [M.correct_age_bias(p, b["slope"], b["intercept"]) for p, b in zip(run.member_predictions, biases)],
        axis=0,
    )
    return M.regression_metrics(age, corrected)


def summarise(cohort: Cohort, runs: Sequence[Run], test: np.ndarray, n_boot: int = 500) -> dict:
    """Metrics per run (with bootstrap CIs), per member, per group, and Mann–Whitney tests."""
    table = cohort.table.iloc[test]
    result: dict = {"test_subjects": len(test), "runs": {}, "groups": {}, "significance": {}}
    task = runs[0].task
    for run in runs:
        if task == "ad":
            y = cohort.labels()[test]
            values = M.classification_metrics(y, run.predictions)
            entry = {
                "architecture": run.architecture,
                "members": len(run.members),
                "metrics": values,
                "ci95": _with_ci(
                    values, M.classification_metrics, (y, run.predictions), CI_METRICS_AD, n_boot, 0
                ),
                "confusion": M.confusion(y, run.predictions).tolist(),
                "member_metrics": [M.classification_metrics(y, p) for p in run.member_predictions],
            }
        else:
            age = table["AGE"].to_numpy(float)
            values = M.regression_metrics(age, run.predictions)
            entry = {
                "architecture": run.architecture,
                "members": len(run.members),
                "metrics": values,
                "ci95": _with_ci(values, M.regression_metrics, (age, run.predictions), ("mae",), n_boot, 0),
                "by_sex": {
                    name: M.regression_metrics(age[mask], run.predictions[mask])
                    for name, mask in (
                        ("female", table["PTGENDER"].to_numpy() == 0),
                        ("male", table["PTGENDER"].to_numpy() == 1),
                    )
                    if mask.sum() > 2
                },
            }
            corrected = _bias_corrected(run, age)
            if corrected is not None:
                entry["bias_corrected"] = corrected
        if run.permuted:
            truth = cohort.labels()[test] if task == "ad" else table["AGE"].to_numpy(float)
            entry["reliance"] = modality_reliance(run, truth)
        result["runs"][run.label] = entry
    groups: dict[str, list[str]] = {}
    for run in runs:
        groups.setdefault(run.architecture, []).append(run.label)
    for name, labels in groups.items():
        vals = {
            k: [result["runs"][lab]["metrics"][k] for lab in labels]
            for k in result["runs"][labels[0]]["metrics"]
        }
        result["groups"][name] = {
            "runs": labels,
            "mean": {k: float(np.mean(v)) for k, v in vals.items()},
            "std": {k: float(np.std(v, ddof=1)) if len(v) > 1 else None for k, v in vals.items()},
        }
    if "hyperfusion" in groups and len(groups["hyperfusion"]) > 1:
        keys = CI_METRICS_AD if task == "ad" else ("mae",)
        for name, labels in groups.items():
            if name == "hyperfusion" or len(labels) < 2:
                continue
            tests = {}
            for k in keys:
                a = [result["runs"][lab]["metrics"][k] for lab in groups["hyperfusion"]]
                b = [result["runs"][lab]["metrics"][k] for lab in labels]
                tests[k] = M.mann_whitney_greater(a, b) if k != "mae" else M.mann_whitney_greater(b, a)
            result["significance"][f"hyperfusion > {name}"] = tests
    return result


def markdown_table(result: dict, task: str) -> str:
    """The paper-style table (docs/models.md §1): one row per run, values with 95 % bootstrap intervals."""
    if task == "ad":
        head = "| model | members | " + " | ".join(c for _, c in PAPER_COLUMNS) + " |"
        lines = [head, "|" + "---|" * (len(PAPER_COLUMNS) + 2)]
        for label, entry in result["runs"].items():
            cells = []
            for key, _ in PAPER_COLUMNS:
                v = entry["metrics"][key]
                ci = entry["ci95"].get(key)
                cells.append(f"{v:.3f} [{ci['ci95'][0]:.3f}, {ci['ci95'][1]:.3f}]" if ci else f"{v:.3f}")
            lines.append(f"| {label} | {entry['members']} | " + " | ".join(cells) + " |")
    else:
        lines = [
            "| model | members | MAE (years) | r | R² | MAE women | MAE men |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, entry in result["runs"].items():
            m, ci = entry["metrics"], entry["ci95"]["mae"]["ci95"]
            sex = entry["by_sex"]
            lines.append(
                f"| {label} | {entry['members']} | {m['mae']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] | {m['r']:.3f} | "
                f"{m['r2']:.3f} | {sex.get('female', {}).get('mae', float('nan')):.2f} | "
                f"{sex.get('male', {}).get('mae', float('nan')):.2f} |"
            )
    return (
        "\n".join(lines)
        + f"\n\nTest subjects: {result['test_subjects']}. Intervals: 95 % percentile bootstrap.\n"
    )


def _pm(entry: dict, key: str, digits: int = 3) -> str:
    v = entry[key]
    return f"{v['permuted_mean']:.{digits}f} ± {v['permuted_sd']:.{digits}f}"


def reliance_markdown(result: dict, task: str) -> str:
    """The "Modality reliance" table: each run's score with the test subjects' scans, and separately their
    records, permuted among them; "" when the report has no permutations."""
    runs = {label: e["reliance"] for label, e in result["runs"].items() if e.get("reliance")}
    if not runs:
        return ""
    record = "record" if task == "ad" else "sex"
    if task == "ad":
        head = [
            "model",
            "BA",
            "AUC",
            "BA, scans permuted",
            "ΔBA",
            "ΔAUC",
            "BA, records permuted",
            "ΔBA",
            "ΔAUC",
        ]
    else:
        head = ["model", "MAE", "MAE, scans permuted", "increase", "MAE, sex permuted", "increase"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    flagged = []
    seeds = 0
    for label, rel in runs.items():
        metrics = result["runs"][label]["metrics"]
        cells = [
            label,
            *(f"{metrics[k]:.3f}" for k in (("balanced_accuracy", "auc") if task == "ad" else ("mae",))),
        ]
        if task != "ad":
            cells[-1] = f"{metrics['mae']:.2f}"
        for modality in MODALITIES:
            entry = rel.get(modality)
            if entry is None:
                cells += ["–"] * (3 if task == "ad" else 2)
            elif not entry["applicable"]:
                cells += [f"reads no {modality if modality == 'scan' else record}"] + ["–"] * (
                    2 if task == "ad" else 1
                )
            elif task == "ad":
                seeds = max(seeds, entry["seeds"])
                cells += [
                    _pm(entry, "balanced_accuracy"),
                    f"{entry['balanced_accuracy']['drop']:+.3f}",
                    f"{entry['auc']['drop']:+.3f}",
                ]
            else:
                seeds = max(seeds, entry["seeds"])
                cells += [_pm(entry, "mae", 2), f"{entry['mae']['increase']:+.2f}"]
            if entry is not None and entry["applicable"] and not entry["uses"]:
                flagged.append(f"{label} ({modality if modality == 'scan' else record})")
        lines.append("| " + " | ".join(cells) + " |")
    if task == "ad":
        rule = (
            f"Δ: the unpermuted score minus the mean over {seeds} permutations (± their SD). A model whose ΔBA "
            f"and ΔAUC both stay below {RELIANCE_MIN_DROP} barely uses that input"
        )
    else:
        rule = (
            f"increase: the mean MAE over {seeds} permutations (± their SD) minus the unpermuted MAE. Below "
            f"{RELIANCE_MIN_MAE_INCREASE} years the model barely uses that input"
        )
    text = [
        "",
        "### Modality reliance",
        "",
        f"How much does each model use the scan and the {record}? Each test subject is given another test "
        f"subject's scan (or {record}), keeping its own {record} (or scan) and truth.",
        "",
        *lines,
        "",
        f"{rule}: {', '.join(flagged) if flagged else 'none'}.",
        "",
    ]
    return "\n".join(text)


def write_report(
    cohort: Cohort,
    runs: Sequence[Run],
    out_dir: str | Path,
    *,
    n_boot: int = 500,
    cache: VolumeCache | None = None,
    data_label: str | Path | None = None,
    subjects: str = "test",
    permutations: int = 5,
    batch_size: int = 16,
) -> dict:
    """Score every run and write results.json, results.md and PNG figures.

    ``subjects``: "test" scores the test subjects stored in the models' files (the paper's partition 4; older
    files: recomputed from the table), "all" every subject of an independent cohort
    (:func:`hyperfusion.training.protocol.select_subjects`; it refuses subjects a model was trained or
    validated on). ``permutations``: seeds of the modality-reliance measure (0: skip it).

    ``data_label``: the cohort as the user named it (default its path); results.md shows it, and results.json's
    ``data.path`` is its absolute form (a shipped table whose scans were regenerated elsewhere keeps its name).
    """
    from hyperfusion.data.cohort import cohort_identity

    task = runs[0].task
    if any(r.task != task for r in runs):
        raise DataError("all models of one report must solve the same task")
    check_label_column(cohort, runs)
    selection = select_subjects(cohort, runs, subjects)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    test = score_runs(
        cohort, runs, cache=cache, rows=selection.rows, permutations=permutations, batch_size=batch_size
    )
    result = summarise(cohort, runs, test, n_boot=n_boot)
    result["task"] = task
    label = str(data_label if data_label is not None else cohort.path)
    result["data"] = {
        "path": str(Path(label).resolve()),
        "source": cohort.source,
        "synthetic": cohort.is_synthetic,
        "cohort_id": cohort_identity(cohort),
        "label_column": cohort.label_column or None,
        "scan_check": cohort.scan_check,
    }
    notes = list(selection.notes) + cohort.scan_warnings()
    if task == "ad" and cohort.label_note():
        notes.append(cohort.label_note())
    result["subjects"] = {"mode": selection.mode, "split_seed": selection.split_seed, "notes": notes}
    result["permutations"] = permutations
    result["reliance_rule"] = {"min_drop": RELIANCE_MIN_DROP, "min_mae_increase": RELIANCE_MIN_MAE_INCREASE}
    result["test_ptids"] = cohort.table["PTID"].iloc[test].tolist()
    result["predictions"] = {r.label: np.asarray(r.predictions).round(6).tolist() for r in runs}
    (out_dir / "results.json").write_text(json.dumps(result, indent=1, default=float))
    banner = "**Synthetic data.** " if cohort.is_synthetic else ""
    if selection.mode == "all":
        what = f"All {len(test)} subjects of the independent cohort `{label}`"
    else:
        what = f"Test partition of `{label}`"
    warnings = "".join(f"> **Note:** {n}\n\n" for n in notes)
    (out_dir / "results.md").write_text(
        f"{banner}{what}.\n\n" + warnings + markdown_table(result, task) + reliance_markdown(result, task)
    )
    _figures(cohort, runs, test, result, out_dir)
    return result


def _figures(cohort: Cohort, runs: Sequence[Run], test: np.ndarray, result: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    if runs[0].task == "ad":
        y = cohort.labels()[test]
        n = len(runs)
        fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
        for ax, run in zip(axes[0], runs):
            cm = np.asarray(result["runs"][run.label]["confusion"])
            ax.imshow(cm, cmap="Blues")
            for (i, j), v in np.ndenumerate(cm):
                ax.text(j, i, str(v), ha="center", va="center")
            ax.set(
                xticks=range(3),
                yticks=range(3),
                xticklabels=CLASS_NAMES,
                yticklabels=CLASS_NAMES,
                xlabel="predicted",
                ylabel="true",
                title=run.label,
            )
        fig.tight_layout()
        fig.savefig(out_dir / "confusion.png", dpi=110)
        plt.close(fig)
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
        for c, ax in enumerate(axes):
            for run in runs:
                fpr, tpr, _ = roc_curve(y == c, run.predictions[:, c])
                ax.plot(fpr, tpr, label=run.label)
            ax.plot([0, 1], [0, 1], ":", color="grey")
            ax.set(
                title=f"{CLASS_NAMES[c]} vs rest", xlabel="false positive rate", ylabel="true positive rate"
            )
        axes[-1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "roc.png", dpi=110)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(4, 4))
        edges = np.linspace(0, 1, 11)
        for run in runs:
            conf = run.predictions.max(axis=1)
            hit = run.predictions.argmax(axis=1) == y
            bins = np.clip(np.digitize(conf, edges[1:-1]), 0, 9)
            xs = [conf[bins == b].mean() for b in range(10) if (bins == b).any()]
            ys = [hit[bins == b].mean() for b in range(10) if (bins == b).any()]
            ax.plot(xs, ys, "o-", label=run.label)
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set(xlabel="confidence", ylabel="accuracy", title="calibration")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "calibration.png", dpi=110)
        plt.close(fig)
    else:
        age = cohort.table["AGE"].to_numpy(float)[test]
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for run in runs:
            ax.scatter(age, run.predictions, s=8, label=run.label)
        ax.plot([age.min(), age.max()], [age.min(), age.max()], ":", color="grey")
        ax.set(xlabel="chronological age (years)", ylabel="predicted age (years)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "predicted_vs_age.png", dpi=110)
        plt.close(fig)
