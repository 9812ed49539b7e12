"""The demo: synthetic cohorts and pretrained models in ``assets/demo``, rebuilt by one resumable command.

``hyperfusion demo build`` makes, in order, each step skipped when its output already exists (so an interrupted
build goes on where it stopped, and can run in the background across several sittings):

1. the synthetic AD cohort (:data:`DEMO`: N, seed, λ) and the synthetic brain-age cohort; their scans live in the
   cache (``$HYPERFUSION_CACHE/demo`` or ``~/.cache/hyperfusion/demo``), and ``assets/demo/cohorts/`` keeps only
   ``cohort.csv`` and ``cohort.json`` — the generator rebuilds the scans, byte for byte, on first use
   (:func:`ensure_demo_cohort`);
2. the AD models: the four fold models of split seed 0 for hyperfusion, concat, image_only and tabular_only,
   fold 0 for film, daft and attention_gmu; the three brain-age models;
3. the interaction sweep: hyperfusion, concat and image_only (fold 0) on cohorts generated at λ = 0 and 0.5 (the
   main cohort is λ = 1); their tables and models ship under ``assets/demo/sweep/`` (outside ``models/``, so the
   dashboard does not list models of other cohorts);
4. ``assets/demo/RESULTS.md`` from the ``hyperfusion evaluate`` commands of :func:`evaluate_commands` (run
   through the CLI itself, so anyone can re-run them; ``hyperfusion demo verify`` does and compares), and
   ``assets/demo/build.json`` with the configuration and the time of every step.

A shipped table (``cohort.csv`` + ``cohort.json`` of a synthetic cohort, no ``images/``) can be given anywhere a
cohort is expected: :func:`scans_for` regenerates its scans into the cache on first use.

Everything here is synthetic and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hyperfusion.data.synthetic.shipped import STARTER_DIR, cache_name, scans_for
from hyperfusion.files import atomic_write, cache_root

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets" / "demo"

#: The demo's configuration (stated in the README). CPU demo size: 2 mm box, init_features 4, the "cpu" recipe of
#: :data:`hyperfusion.training.fold.RECIPES` (cosine decay with warm-up, early stopping, light dropout, balanced
#: classes, anatomy-keeping augmentation, pooled shortcuts).
DEMO = {
    "ad_cohort": {"task": "ad", "n": 800, "seed": 0, "voxel_size": 2.0, "interaction_strength": 1.0},
    # an independent test cohort: the same world (knobs) with another seed, never seen in training
    "ad_test_cohort": {"task": "ad", "n": 1000, "seed": 100, "voxel_size": 2.0, "interaction_strength": 1.0},
    "brain_age_cohort": {
        "task": "brain_age",
        "n": 400,
        "seed": 1,
        "voxel_size": 4.0,
        "whole_brain": True,
        "interaction_strength": 1.0,
    },
    "split_seed": 0,
    "ad_voxel_size": 2.0,
    "brain_age_voxel_size": 4.0,
    "recipe": "cpu",
    "init_features": 4,
    # the brain-age network at half the paper's width (16, 32, 64): a 3.7 s training step of 32 whole brains at
    # 4 mm on this 2-core CPU becomes 1.0 s
    "brain_age_channels": [8, 16, 32],
    # at most 40 epochs (cosine decay over 40), stopped after 10 without a better validation score, the best
    # epoch kept: the budget of a 2-core CPU shared with other work (an AD image model costs 10-30 s an epoch)
    "epochs": 40,
    "patience": 10,
    "tabular_epochs": 100,
    "pretrain_epochs": 50,
    "brain_age_epochs": 100,
    "batch_size": 32,
    # fusion models start their image branch from the image_only model of the same fold and cohort
    "init_image_from_image_only": True,
    "four_fold_models": ["image_only", "tabular_only", "hyperfusion", "concat"],
    "one_fold_models": ["film", "daft", "attention_gmu"],
    "brain_age_models": ["image_only", "hyperfusion", "concat"],
    "sweep_lambdas": [0.0, 0.5],
    "sweep_models": ["image_only", "hyperfusion", "concat"],
    "bootstrap": 500,  # resamples for the reports' 95 % intervals
    "fail_on_collapse": True,  # a model whose validation predictions collapsed stops the build
    "starter_scans": 12,  # scans of the first subjects shipped beside each demo table
}


def work_dir() -> Path:
    """``$HYPERFUSION_CACHE/demo``: generated scans and training runs of the demo build."""
    return cache_root("demo")


def _synth_config(spec: dict):
    from hyperfusion.data.synthetic import SynthConfig

    return SynthConfig(**spec)


def ensure_demo_cohort(
    task: str = "ad", assets: Path = ASSETS, workers: int = 1, progress: bool = False
) -> Path:
    """The demo cohort directory with its scans, generated into the cache on first use from the shipped config."""
    shipped = assets / "cohorts" / task
    if (shipped / "cohort.json").is_file():
        return scans_for(shipped, workers=workers, progress=progress)
    from hyperfusion.data.synthetic import ensure_cohort

    config = _synth_config(DEMO[f"{task}_cohort"])
    return ensure_cohort(
        work_dir() / "cohorts" / cache_name(config), config, workers=workers, progress=progress
    )


def dashboard_settings(environ: dict | None = None) -> dict[str, str]:
    """The dashboard's settings from the environment (see the README): the cohort (``HYPERFUSION_COHORT``), the
    model roots (``HYPERFUSION_MODELS``, ``os.pathsep``-separated) and where the demo's assets live
    (``HYPERFUSION_DEMO_ASSETS``); each defaults to the demo's."""
    env = os.environ if environ is None else environ
    assets = Path(env.get("HYPERFUSION_DEMO_ASSETS") or ASSETS)
    models = env.get("HYPERFUSION_MODELS") or str(assets / "models")
    cohort = env.get("HYPERFUSION_COHORT") or str(assets / "cohorts" / "ad")
    return {"cohort": cohort, "models": models, "assets": str(assets)}


def settings_from_form(settings: dict[str, str], cohort: str, models: str) -> dict[str, str]:
    """``settings`` with the cohort and the model directories (one per line, blank lines dropped) of the
    dashboard's settings form."""
    roots = [line.strip() for line in models.splitlines() if line.strip()]
    return {**settings, "cohort": cohort.strip(), "models": os.pathsep.join(roots)}


def missing_models(found: dict[Path, int], assets: Path = ASSETS) -> list[str]:
    """The demo models (:data:`DEMO`) not under ``assets/models`` yet, or there with fewer folds than planned;
    ``found``: model directory -> its members, of the models found there."""
    have = {Path(p).resolve(): n for p, n in found.items()}
    root = assets / "models"
    expected = [(root / "ad" / m, 4) for m in DEMO["four_fold_models"]]
    expected += [(root / "ad" / m, 1) for m in DEMO["one_fold_models"]]
    expected += [(root / "brain_age" / m, 1) for m in DEMO["brain_age_models"]]
    missing = []
    for path, folds in expected:
        n = have.get(path.resolve(), 0)
        if n < folds:
            label = str(path.relative_to(root))
            missing.append(label if n == 0 else f"{label} ({n} of {folds} folds so far)")
    return missing


@dataclass
class Step:
    name: str
    done: Callable[[], bool]
    run: Callable[[], None]


class CollapsedError(RuntimeError):
    """A demo model's validation predictions collapsed: the build stops rather than ship it."""


def train_config(task: str, model: str, fold: int, init_image_from: str | None = None):
    """The TrainConfig of one demo model (the demo's recipe at the demo's size)."""
    from hyperfusion.data.geometry import ad_box, brain_box
    from hyperfusion.models import model_class
    from hyperfusion.training.fold import recipe_config

    geometry = ad_box(DEMO["ad_voxel_size"]) if task == "ad" else brain_box(DEMO["brain_age_voxel_size"])
    if task == "ad":
        reads_scan = model_class(model, task).reads_scan
        epochs = DEMO["epochs"] if reads_scan else DEMO["tabular_epochs"]
        overrides = {"init_features": DEMO["init_features"]} if reads_scan else {}
    else:
        epochs = DEMO["brain_age_epochs"]
        overrides = {"channels": list(DEMO["brain_age_channels"])}
    return recipe_config(
        DEMO["recipe"],
        task=task,
        model=model,
        fold=fold,
        split_seed=DEMO["split_seed"],
        epochs=epochs,
        batch_size=DEMO["batch_size"],
        geometry=geometry.to_dict(),
        model_overrides=overrides,
        pretrain_epochs=DEMO["pretrain_epochs"],
        init_image_from=init_image_from,
        patience=DEMO["patience"],
    )


def _rel(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (cards and commands stay machine-independent)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(Path(path).resolve())


def train_demo_model(
    task: str,
    model: str,
    fold: int,
    cohort_dir: Path,
    out: Path,
    work: Path,
    quiet: bool,
    image_only_dir: Path | None = None,
    table: Path | None = None,
) -> dict:
    """Train one demo model into ``out`` (training files in ``work``); returns its card. Raises
    :class:`CollapsedError` when its validation predictions collapsed (nothing is written to ``out``)."""
    from hyperfusion.data import load_cohort
    from hyperfusion.inference.model_files import load_model, save_model
    from hyperfusion.models import build_model

    init_state, init_from = None, None
    if image_only_dir is not None:
        probe = build_model(model, task)  # a model with an image branch and a fusion to start it for
        if probe.reads_scan and probe.reads_record:
            network, _ = load_model(image_only_dir)
            init_state, init_from = network.state_dict(), _rel(image_only_dir)
    from hyperfusion.training.fold import train_fold

    config = train_config(task, model, fold, init_from)
    result = train_fold(load_cohort(cohort_dir), config, work, quiet=quiet, init_image=init_state)
    card = result.card
    if card.collapse["collapsed"] and DEMO.get("fail_on_collapse", True):
        raise CollapsedError(
            f"{task}/{model} fold {fold}: validation predictions collapsed "
            f"({'; '.join(card.collapse['reasons'])}); not shipped. Its training log is in {work}"
        )
    if table is not None:  # the shipped table the scans regenerate from, not this machine's cache folder
        card = card.replace(data={**card.data, "path": _rel(table)})
    save_model(result.network, card, out)
    return card


def _train_step(
    label: str,
    task: str,
    model: str,
    fold: int,
    cohort_dir: Callable[[], Path],
    out: Path,
    quiet: bool,
    image_only_dir: Path | None = None,
    table: Path | None = None,
) -> Step:
    def run() -> None:
        init = image_only_dir if DEMO["init_image_from_image_only"] else None
        work = work_dir() / "training" / label
        train_demo_model(task, model, fold, cohort_dir(), out, work, quiet, init, table)

    return Step(f"train {label}", lambda: (out / "card.json").is_file(), run)


def _starter_step(task: str, cohort_dir: Callable[[], Path], out: Path) -> Step:
    """Ship the scans of the first ``DEMO["starter_scans"]`` subjects beside the table (a few hundred kB), so
    the dashboard's first subjects need no generation at all."""
    n = DEMO["starter_scans"]

    def names() -> list[str]:
        return [f"SYN_{i:04d}.nii.gz" for i in range(1, n + 1)]

    def run() -> None:
        out.mkdir(parents=True, exist_ok=True)
        for name in names():
            (out / name).write_bytes((cohort_dir() / "images" / name).read_bytes())

    return Step(f"starter scans {task}", lambda: all((out / name).is_file() for name in names()), run)


def plan(assets: Path = ASSETS, quiet: bool = True, workers: int = 1) -> list[Step]:
    """Every step of the demo build, in order."""
    steps: list[Step] = []
    models = assets / "models"

    def cohort_step(task: str, spec: dict, keep: Path | None) -> Callable[[], Path]:
        target = work_dir() / "cohorts" / f"{task}_seed{spec['seed']}_l{spec['interaction_strength']:g}"

        def run() -> None:
            from hyperfusion.data.synthetic import ensure_cohort

            ensure_cohort(target, _synth_config(spec), workers=workers, progress=not quiet)
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                for name in ("cohort.csv", "cohort.json"):
                    (keep / name).write_bytes((target / name).read_bytes())

        def done() -> bool:
            from hyperfusion.data.synthetic import read_config

            shipped = keep is None or (keep / "cohort.json").is_file()
            return shipped and read_config(target) == _synth_config(spec)

        steps.append(Step(f"cohort {target.name}", done, run))
        return lambda: target

    ad_table, ba_table = assets / "cohorts" / "ad", assets / "cohorts" / "brain_age"
    ad = cohort_step("ad", DEMO["ad_cohort"], ad_table)
    cohort_step("ad", DEMO["ad_test_cohort"], assets / "cohorts" / "ad_test")
    ba = cohort_step("brain_age", DEMO["brain_age_cohort"], ba_table)
    for task, cohort in (("ad", ad), ("brain_age", ba)):
        steps.append(_starter_step(task, cohort, assets / "cohorts" / task / STARTER_DIR))
    for fold in range(4):  # fold by fold: a fusion model starts from its fold's image_only model
        for model in DEMO["four_fold_models"]:
            label = f"ad/{model}/fold{fold}"
            image_only = models / "ad" / "image_only" / f"fold{fold}"
            steps.append(
                _train_step(label, "ad", model, fold, ad, models / label, quiet, image_only, ad_table)
            )
    for model in DEMO["one_fold_models"]:
        label = f"ad/{model}/fold0"
        image_only = models / "ad" / "image_only" / "fold0"
        steps.append(_train_step(label, "ad", model, 0, ad, models / label, quiet, image_only, ad_table))
    for model in DEMO["brain_age_models"]:
        label = f"brain_age/{model}"
        image_only = models / "brain_age" / "image_only"
        steps.append(
            _train_step(label, "brain_age", model, 0, ba, models / label, quiet, image_only, ba_table)
        )
    for lam in DEMO["sweep_lambdas"]:
        spec = {**DEMO["ad_cohort"], "interaction_strength": lam}
        table = assets / "sweep" / "cohorts" / f"lambda{lam:g}"
        cohort = cohort_step("ad", spec, table)
        for model in DEMO["sweep_models"]:
            label = f"sweep/lambda{lam:g}/{model}"
            out = assets / "sweep" / "models" / f"lambda{lam:g}" / model
            image_only = assets / "sweep" / "models" / f"lambda{lam:g}" / "image_only"
            steps.append(_train_step(label, "ad", model, 0, cohort, out, quiet, image_only, table))
    steps.append(Step("ood references", lambda: not _missing_ood(assets), lambda: add_ood_references(assets)))
    steps.append(Step("RESULTS.md", lambda: (assets / "RESULTS.md").is_file(), lambda: write_results(assets)))
    return steps


def _built(path: Path) -> bool:
    """A model directory, or a folder of fold models at least one of which is built."""
    return (path / "card.json").is_file() or any(path.glob("fold*/card.json"))


def evaluate_commands(assets: Path = ASSETS) -> dict[str, list[str]]:
    """The ``hyperfusion evaluate`` arguments of every demo report (report name -> argv after ``evaluate``),
    with paths relative to the repository when the assets are the repository's. Models not built (yet) are left
    out, and a report none of whose models is built is skipped: RESULTS.md lists what is missing."""

    def rel(path: Path) -> str:  # the commands run from the repository root (see _run_evaluate)
        try:
            return str(path.resolve().relative_to(REPO_ROOT))
        except ValueError:
            return str(path.resolve())

    models = assets / "models"
    ad = [models / "ad" / m for m in DEMO["four_fold_models"]]
    ad = [d for d in ad + [models / "ad" / m / "fold0" for m in DEMO["one_fold_models"]] if _built(d)]
    brain_age = [
        models / "brain_age" / m for m in DEMO["brain_age_models"] if _built(models / "brain_age" / m)
    ]
    commands: dict[str, list[str]] = {}
    if ad:
        commands["ad"] = [
            "--data",
            rel(assets / "cohorts" / "ad"),
            "--models",
            *map(rel, ad),
            "--faithfulness",
            "saliency",
        ]
        if (assets / "cohorts" / "ad_test" / "cohort.json").is_file():
            # every subject of an independent cohort (another seed of the same world), none seen in training
            commands["ad_test"] = [
                "--data",
                rel(assets / "cohorts" / "ad_test"),
                "--models",
                *map(rel, ad),
                "--subjects",
                "all",
            ]
    if brain_age:
        commands["brain_age"] = [
            "--data",
            rel(assets / "cohorts" / "brain_age"),
            "--models",
            *map(rel, brain_age),
        ]
    for lam in [*DEMO["sweep_lambdas"], 1.0]:
        if lam == 1.0:
            cohort = assets / "cohorts" / "ad"
            dirs = [models / "ad" / m / "fold0" for m in DEMO["sweep_models"]]
        else:
            cohort = assets / "sweep" / "cohorts" / f"lambda{lam:g}"
            dirs = [assets / "sweep" / "models" / f"lambda{lam:g}" / m for m in DEMO["sweep_models"]]
        if all(_built(d) for d in dirs):
            commands[f"sweep_lambda{lam:g}"] = ["--data", rel(cohort), "--models", *map(rel, dirs)]
    return {name: [*argv, "--bootstrap", str(DEMO["bootstrap"])] for name, argv in commands.items()}


def _run_evaluate(argv: list[str], out: Path) -> dict:
    from hyperfusion.evaluation import evaluate_argv

    out.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(REPO_ROOT):
        evaluate_argv([*argv, "--out", str(out.resolve())])
    return json.loads((out / "results.json").read_text())


def _ba_drop(entry: dict, modality: str) -> str:
    """A run's balanced-accuracy drop when its ``modality`` ("scan" / "record") is permuted, for a table cell."""
    reliance = (entry.get("reliance") or {}).get(modality) or {}
    if not reliance.get("applicable"):
        return "–"
    return f"{reliance['balanced_accuracy']['drop']:+.3f}"


def results_markdown(assets: Path, reports: Path) -> str:
    """RESULTS.md from the reports under ``reports`` (one folder per entry of :func:`evaluate_commands`)."""
    commands = evaluate_commands(assets)

    def ci(entry: dict, key: str) -> str:
        value, interval = entry["metrics"][key], entry.get("ci95", {}).get(key)
        return (
            f"{value:.3f} [{interval['ci95'][0]:.3f}, {interval['ci95'][1]:.3f}]"
            if interval
            else f"{value:.3f}"
        )

    sweep_rows = []
    for lam in [*DEMO["sweep_lambdas"], 1.0]:
        if f"sweep_lambda{lam:g}" not in commands:
            continue
        result = json.loads((reports / f"sweep_lambda{lam:g}" / "results.json").read_text())
        for entry in result["runs"].values():
            sweep_rows.append(
                f"| {lam:g} | {entry['architecture']} | {ci(entry, 'balanced_accuracy')} | "
                f"{ci(entry, 'auc')} | {_ba_drop(entry, 'scan')} | {_ba_drop(entry, 'record')} |"
            )
    missing = [step.name for step in plan(assets) if step.name.startswith("train ") and not step.done()]
    text = [
        "# Demo results (SYNTHETIC data)",
        "",
        "Every number below is measured on the synthetic cohorts of `hyperfusion demo build`, not on real patients.",
        f"Configuration: `{json.dumps(DEMO)}`",
        "",
    ]
    if missing:
        text += [
            "**Not built yet** (`hyperfusion demo build` resumes with them; the tables below use the models "
            "that exist, and an ensemble's `members` column says how many folds it has): "
            + ", ".join(f"`{name[6:]}`" for name in missing)
            + ".",
            "",
        ]
    sections = [
        (
            "ad",
            "AD classification, test partition (split seed 0)",
            "Rows without `/fold0` are the inverse-entropy-weighted ensembles of the fold models (`members`); rows with "
            "`/fold0` are single models, one split, no ensemble.",
        ),
        (
            "ad_test",
            "AD classification, independent test cohort",
            "Every subject of a cohort generated with another seed of the same world (`DEMO['ad_test_cohort']`): none "
            "was seen in training or model selection, and the intervals are narrower.",
        ),
        ("brain_age", "Brain age, test partition", ""),
    ]
    for name, title, note in sections:
        if name in commands:
            text += [
                f"## {title}",
                "",
                *([note, ""] if note else []),
                (reports / name / "results.md").read_text(),
            ]
    if sweep_rows:
        text += [
            "## Interaction sweep (fold 0 models, test partition; λ = interaction strength of the synthetic cohort)",
            "",
            "| λ | model | BA [95 % CI] | AUC [95 % CI] | BA drop, scans permuted | BA drop, records permuted |",
            "|---|---|---|---|---|---|",
            *sweep_rows,
            "",
            "BA drop: the unpermuted balanced accuracy minus its mean over the permutations of the scans (or the "
            "records) among the test subjects (modality reliance, as in the tables above).",
            "",
        ]
    text += _targets(reports, commands)
    text += [
        "## Reproduce",
        "",
        "Each table is the output of one command (run from the repository root; `hyperfusion demo verify` runs "
        "them all and compares with this file):",
        "",
        "```",
        *(f"hyperfusion evaluate {' '.join(argv)} --out reports/{name}" for name, argv in commands.items()),
        "```",
    ]
    return "\n".join(text) + "\n"


def _targets(reports: Path, commands: dict) -> list[str]:
    """The demo's targets (README "Results") against what the reports measured, met or not, computed here."""
    rows = []

    def read(name: str) -> dict | None:
        return json.loads((reports / name / "results.json").read_text()) if name in commands else None

    fusion = ("hyperfusion", "concat", "film/fold0", "daft/fold0", "attention_gmu/fold0")
    for name, label in (("ad", "test partition"), ("ad_test", "independent cohort")):
        r = read(name)
        if r is None or "hyperfusion" not in r["runs"]:
            continue
        runs = r["runs"]

        def ci(run: str, runs: dict = runs) -> list[float]:
            return runs[run]["ci95"]["balanced_accuracy"]["ci95"]

        hf = runs["hyperfusion"]["metrics"]["balanced_accuracy"]
        if "image_only" in runs:
            io = runs["image_only"]["metrics"]["balanced_accuracy"]
            rows.append(f"| image_only BA, {label} | {io:.3f} | ≥ 0.58 | {'yes' if io >= 0.58 else 'no'} |")
        rows.append(f"| HyperFusion BA, {label} | {hf:.3f} | ≥ 0.72 | {'yes' if hf >= 0.72 else 'no'} |")
        for other in ("tabular_only", "concat"):
            if other in runs:
                beyond = ci("hyperfusion")[0] > ci(other)[1]
                rows.append(
                    f"| HyperFusion above {other} beyond the intervals, {label} | "
                    f"[{ci('hyperfusion')[0]:.3f}, {ci('hyperfusion')[1]:.3f}] vs "
                    f"[{ci(other)[0]:.3f}, {ci(other)[1]:.3f}] | lower bound above upper bound | "
                    f"{'yes' if beyond else 'no'} |"
                )
        for modality in ("scan", "record"):
            drops = [
                runs[f]["reliance"][modality]["balanced_accuracy"]["drop"]
                for f in fusion
                if f in runs and runs[f].get("reliance", {}).get(modality, {}).get("applicable")
            ]
            if drops:
                rows.append(
                    f"| smallest BA drop of a fusion model, {modality}s permuted, {label} | "
                    f"{min(drops):.3f} | ≥ 0.05 | {'yes' if min(drops) >= 0.05 else 'no'} |"
                )
        faith = r.get("faithfulness")
        if faith and "hyperfusion" in faith.get("mean", {}):
            m, u = faith["mean"]["hyperfusion"], faith["untrained"]["hyperfusion"]
            e, eu = m["top_decile_enrichment"], u["top_decile_enrichment"]
            rows += [
                f"| HyperFusion saliency top-decile enrichment | {e:.2f} (untrained {eu:.2f}, ratio {e / eu:.2f}) | "
                f"≥ 2.5 and ≥ 1.5× untrained | {'yes' if e >= 2.5 and e >= 1.5 * eu else 'no'} |",
                f"| top decile outside the brain | {m['top_decile_outside_brain']:.3f} | ≤ 0.05 | "
                f"{'yes' if m['top_decile_outside_brain'] <= 0.05 else 'no'} |",
                f"| stride lattice | {m['lattice']:.2f} (untrained {u['lattice']:.2f}) | ≤ 2 | "
                f"{'yes' if m['lattice'] <= 2 else 'no'} |",
            ]
    b = read("brain_age")
    if b is not None:
        for run, entry in b["runs"].items():
            mae = entry["metrics"]["mae"]
            rows.append(f"| brain age MAE, {run} | {mae:.2f} y | ≤ 6 y | {'yes' if mae <= 6 else 'no'} |")
    if not rows:
        return []
    return [
        "## Targets",
        "",
        "The demo's targets, as measured above. A target not met is reported, not tuned "
        "away; the README's Results section says what was tried.",
        "",
        "| measure | measured | target | met |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def write_results(assets: Path = ASSETS) -> None:
    """Evaluate every demo model and the sweep (through the CLI); write the reports and assets/demo/RESULTS.md."""
    reports = assets / "reports"
    for name, argv in evaluate_commands(assets).items():
        _run_evaluate(argv, reports / name)
    (assets / "RESULTS.md").write_text(results_markdown(assets, reports))


def verify(assets: Path = ASSETS) -> tuple[bool, str]:
    """Re-run every evaluate command into a temporary folder; (same as RESULTS.md?, a unified diff if not)."""
    import difflib
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in evaluate_commands(assets).items():
            _run_evaluate(argv, Path(tmp) / name)
        fresh = results_markdown(assets, Path(tmp))
    shipped = (assets / "RESULTS.md").read_text()
    diff = "".join(
        difflib.unified_diff(shipped.splitlines(True), fresh.splitlines(True), "RESULTS.md", "fresh")
    )
    return fresh == shipped, diff


def build(
    assets: Path = ASSETS,
    quiet: bool = True,
    workers: int = 1,
    dry_run: bool = False,
    only: str | None = None,
) -> list[dict]:
    """Run every step that is not done yet; returns a log of (step, status, CPU seconds).

    ``only``: a shell pattern of step names (``"train ad/*/fold1"``); other steps are left alone, so several
    processes can build disjoint parts at once (each step's timing is merged into build.json as it finishes).
    """
    import fnmatch

    from hyperfusion import __version__

    log_path = assets / "build.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {"steps": {}}
    steps = plan(assets, quiet=quiet, workers=workers)
    # provenance is the build's as it stands: this configuration and code, and only the steps whose outputs
    # exist (a step rebuilt under a new configuration replaces its old timing; a removed output drops it)
    log["config"], log["code_version"] = DEMO, __version__
    log["steps"] = {s.name: log["steps"][s.name] for s in steps if s.name in log["steps"] and s.done()}
    done_log = []
    for step in steps:
        if only is not None and not fnmatch.fnmatchcase(step.name, only):
            continue
        if step.done():
            done_log.append({"step": step.name, "status": "done"})
            continue
        if dry_run:
            done_log.append({"step": step.name, "status": "to do"})
            continue
        print(f"demo build: {step.name} ...", flush=True)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        step.run()
        spent = {
            "wall_s": round(time.perf_counter() - wall0, 1),
            "cpu_s": round(time.process_time() - cpu0, 1),
        }
        if log_path.is_file():  # another build process may have finished steps meanwhile
            done = {s.name for s in steps if s.done()}
            theirs = {
                k: v
                for k, v in json.loads(log_path.read_text()).get("steps", {}).items()
                if k in done and v.get("code_version") == __version__
            }
            log["steps"] = {**theirs, **log["steps"]}
        log["steps"][step.name] = {**spent, "code_version": __version__}
        assets.mkdir(parents=True, exist_ok=True)
        atomic_write(log_path, json.dumps(log, indent=1))
        done_log.append({"step": step.name, "status": "built", **spent})
    return done_log


def retrain(
    label: str, assets: Path = ASSETS, quiet: bool = True, tolerance: float = 0.01
) -> tuple[bool, str]:
    """Retrain one shipped demo model (``ad/hyperfusion/fold0``, ``brain_age/concat``, ``sweep/lambda0/concat``)
    from nothing in a temporary folder with the shipped card's configuration; (validation score within
    ``tolerance`` of the shipped one?, a one-line account)."""
    import tempfile

    from hyperfusion.inference.model_files import read_card

    parts = label.strip("/").split("/")
    if parts[0] == "sweep":
        shipped = assets / "sweep" / "models" / parts[1] / parts[2]
        cohort = assets / "sweep" / "cohorts" / parts[1]
    else:
        shipped = assets / "models" / label
        cohort = assets / "cohorts" / parts[0]
    if not (shipped / "card.json").is_file():
        raise FileNotFoundError(f"no shipped demo model {label!r} (looked in {shipped})")
    card = read_card(shipped)
    init = card.training.get("init_image_from")
    with tempfile.TemporaryDirectory() as tmp:
        fresh = train_demo_model(
            card.task,
            card.name,
            card.fold,
            scans_for(cohort),
            Path(tmp) / "model",
            Path(tmp) / "work",
            quiet,
            REPO_ROOT / init if init else None,
        )
    ((metric, before),) = card.metrics["validation"].items()
    after = fresh.metrics["validation"][metric]
    same = abs(after - before) <= tolerance
    return same, f"{label}: {metric} shipped {before:.4f}, retrained {after:.4f} (|Δ| ≤ {tolerance}: {same})"


def _model_dirs(assets: Path) -> list[Path]:
    return sorted(
        p.parent
        for root in (assets / "models", assets / "sweep" / "models")
        if root.is_dir()
        for p in root.rglob("card.json")
    )


def _missing_ood(assets: Path) -> list[Path]:
    from hyperfusion.inference.model_files import read_card

    return [d for d in _model_dirs(assets) if read_card(d).ood is None]


def add_ood_references(assets: Path = ASSETS) -> list[Path]:
    """Add the out-of-distribution reference (:func:`hyperfusion.training.ood.ood_reference`) to every demo
    model card that lacks it (models trained before the reference existed), from the model's own training rows
    (the card's split membership); the weights are untouched. Returns the model directories updated."""
    from hyperfusion.data import load_cohort
    from hyperfusion.data.datasets import CohortDataset
    from hyperfusion.data.geometry import Geometry
    from hyperfusion.data.tabular import TabularPreprocessor
    from hyperfusion.inference.model_files import load_model, write_card
    from hyperfusion.training.ood import ood_reference

    updated = []
    for model_dir in _missing_ood(assets):
        network, card = load_model(model_dir)
        cohort = load_cohort(scans_for(REPO_ROOT / card.data["path"]))
        position = {p: i for i, p in enumerate(cohort.table["PTID"].astype(str))}
        train_idx = [position[p] for p in card.split["train"]]
        state = card.preprocessing
        tabular_only = not network.reads_scan
        dataset = CohortDataset(
            cohort,
            train_idx,
            task=card.task,
            views="all",
            tabular_only=tabular_only,
            preprocessor=TabularPreprocessor.from_dict(state) if state else None,
            geometry=None if tabular_only else Geometry.from_dict(card.geometry),
        )
        ood = ood_reference(network, dataset, cohort.table.iloc[train_idx])
        write_card(model_dir, card.replace(ood=ood))
        updated.append(model_dir)
    return updated
