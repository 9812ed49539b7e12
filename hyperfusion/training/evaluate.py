"""Evaluation with the paper's protocol: test-partition scoring, fold ensembles, tables, figures, significance.

A *run* is one model directory or one ensemble (a directory of fold-model directories, combined per sample by
inverse-entropy weighting as the paper). Runs are grouped by architecture name; where a group holds several
runs (split seeds × initialisations) the paper's one-sided Mann–Whitney U test compares HyperFusion with every
other group. Scoring goes through Lightning's predict loop with both hemispheres averaged, so the same code
scores a cohort on a GPU cluster.

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
from hyperfusion.data.splits import TEST_PARTITION, make_partitions
from hyperfusion.data.tabular import TabularPreprocessor
from hyperfusion.data.volume_cache import VolumeCache
from hyperfusion.errors import DataError
from hyperfusion.training import metrics as M
from hyperfusion.training.module import FusionModule

CI_METRICS_AD = ("balanced_accuracy", "precision", "f1", "auc")
PAPER_COLUMNS = [
    ("balanced_accuracy", "BA"), ("precision", "precision"), ("f1", "F1"), ("auc", "AUC"),
    ("recall_CN", "recall CN"), ("recall_MCI", "recall MCI"), ("recall_AD", "recall AD"),
]  # fmt: skip


@dataclass
class Member:
    """One trained network and its card."""

    network: torch.nn.Module
    card: dict


@dataclass
class Run:
    """A model or an ensemble of fold models, scored as one."""

    label: str
    members: list[Member]
    predictions: np.ndarray | None = None  # (N_test, C) probabilities or (N_test,) ages
    member_predictions: list[np.ndarray] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        return self.members[0].card["architecture"]["name"]

    @property
    def task(self) -> str:
        return self.members[0].card["architecture"]["task"]


def dataset_for(
    member: Member, cohort: Cohort, indices: np.ndarray, cache: VolumeCache | None
) -> CohortDataset:
    """The evaluation dataset (both views) of ``indices`` as ``member``'s card preprocesses it."""
    card = member.card
    task = card["architecture"]["task"]
    state = card.get("tabular", {}).get("preprocessing")
    preprocessor = TabularPreprocessor.from_dict(state) if state else None
    tabular_only = not getattr(member.network, "uses_image", True)
    geometry = Geometry.from_dict(card["geometry"]) if not tabular_only else None
    return CohortDataset(
        cohort, indices, task=task, preprocessor=preprocessor, geometry=geometry, cache=cache,
        views="all", tabular_only=tabular_only,
    )  # fmt: skip


class _PredictModule(FusionModule):
    def predict_step(self, batch, batch_idx: int):
        from hyperfusion.training.module import predict_views

        image, tabular, _ = batch
        return predict_views(self.network, image, tabular, self.task)


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
    ds = dataset_for(member, cohort, indices, cache)
    module = _PredictModule(member.network.eval(), member.card["architecture"]["task"], class_weights=None)
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    batches = trainer.predict(module, DataLoader(ds, batch_size=batch_size))
    return torch.cat(batches).float().cpu().numpy()


def _split_seed(run: Run) -> int:
    seeds = {m.card["training"]["split_seed"] for m in run.members}
    if len(seeds) != 1:
        raise DataError(f"{run.label}: ensemble members come from different split seeds {sorted(seeds)}")
    return seeds.pop()


def held_out_rows(cohort: Cohort, runs: Sequence[Run]) -> tuple[np.ndarray, int]:
    """The test partition shared by every run (refuses runs trained on different splits)."""
    seeds = {_split_seed(r) for r in runs}
    if len(seeds) != 1:
        raise DataError(
            f"the models come from different split seeds {sorted(seeds)}; compare them on one split"
        )
    seed = seeds.pop()
    task = runs[0].task
    partition = make_partitions(cohort.table, seed, label_column="DX" if task == "ad" else None)
    return np.flatnonzero(partition == TEST_PARTITION), seed


def score_runs(cohort: Cohort, runs: Sequence[Run], cache: VolumeCache | None = None) -> np.ndarray:
    """Fill every run's test predictions (ensembles by inverse-entropy weighting); returns the test rows."""
    test, _ = held_out_rows(cohort, runs)
    for run in runs:
        run.member_predictions = [predict_subjects(m, cohort, test, cache=cache) for m in run.members]
        stack = np.stack(run.member_predictions)
        if run.task == "ad":
            run.predictions = M.inverse_entropy_ensemble(stack) if len(stack) > 1 else stack[0]
        else:
            run.predictions = stack.mean(axis=0)  # the paper averages the brain-age models' outputs
    return test


def _with_ci(values: dict, metric_fn, arrays, keys, n_boot: int, seed: int) -> dict:
    out = {}
    for key in keys:
        lo, hi = M.bootstrap_ci(lambda *a, k=key: metric_fn(*a)[k], *arrays, n_boot=n_boot, seed=seed)
        out[key] = {"value": values[key], "ci95": [lo, hi]}
    return out


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
                },  # fmt: skip
            }
            bias = run.members[0].card.get("metrics", {}).get("age_bias")
            if bias:
                corrected = M.correct_age_bias(age, run.predictions, bias["slope"], bias["intercept"])
                entry["bias_corrected"] = M.regression_metrics(age, corrected)
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
    """The paper-style table (REFERENCE.md §1): one row per run, values with 95 % bootstrap intervals."""
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


def write_report(cohort: Cohort, runs: Sequence[Run], out_dir: str | Path, *, n_boot: int = 500,
                 cache: VolumeCache | None = None, data_label: str | Path | None = None) -> dict:  # fmt: skip
    """Score every run on the test partition and write results.json, results.md and PNG figures.

    ``data_label``: the cohort as the user named it (default its path); results.md shows it, and results.json's
    ``data.path`` is its absolute form (a shipped table whose scans were regenerated elsewhere keeps its name).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    test = score_runs(cohort, runs, cache=cache)
    task = runs[0].task
    if any(r.task != task for r in runs):
        raise DataError("all models of one report must solve the same task")
    result = summarise(cohort, runs, test, n_boot=n_boot)
    result["task"] = task
    label = str(data_label if data_label is not None else cohort.path)
    result["data"] = {
        "path": str(Path(label).resolve()),
        "source": cohort.source,
        "synthetic": cohort.is_synthetic,
    }
    result["test_ptids"] = cohort.table["PTID"].iloc[test].tolist()
    result["predictions"] = {r.label: np.asarray(r.predictions).round(6).tolist() for r in runs}
    (out_dir / "results.json").write_text(json.dumps(result, indent=1, default=float))
    banner = "**Synthetic data.** " if cohort.is_synthetic else ""
    (out_dir / "results.md").write_text(
        f"{banner}Test partition of `{label}`.\n\n" + markdown_table(result, task)
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
            ax.set(xticks=range(3), yticks=range(3), xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES,
                   xlabel="predicted", ylabel="true", title=run.label)  # fmt: skip
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
