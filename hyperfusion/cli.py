"""The ``hyperfusion`` command.

Each sub-command is declared once in :data:`COMMANDS` with its arguments and the function that runs it. The
heavy imports happen inside the functions, so ``hyperfusion --help`` stays fast. Errors meant for the user
(:class:`~hyperfusion.errors.HyperFusionError`) are printed as one line, with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from hyperfusion import __version__
from hyperfusion.errors import HyperFusionError
from hyperfusion.evaluation import ALLOW_UNREGISTERED_HELP, LABEL_COLUMN_HELP
from hyperfusion.evaluation import add_scan_check_arguments as _scan_check_args
from hyperfusion.evaluation import label_note as _label_note
from hyperfusion.evaluation import load_cohort_checked as _load_cohort


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int] | None  # None: not built yet
    issue: str = ""  # where the unbuilt command is tracked


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))


# --- inspect -----------------------------------------------------------------------------------------------
def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="cohort directory or ADNIMERGE-format CSV table")
    p.add_argument("--label-column", default=None, help=LABEL_COLUMN_HELP)
    _scan_check_args(p, allow=False)  # inspect reports failing scans (scan_check), it does not refuse them


def _inspect_run(a: argparse.Namespace) -> int:
    cohort = _load_cohort(a, a.data, allow=True, label_column=a.label_column)
    _print_json(cohort.summary())
    return 0


# --- synth -------------------------------------------------------------------------------------------------
def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=["ad", "brain_age"], default="ad")
    p.add_argument("--n", type=int, required=True, help="number of subjects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="cohort directory to write")
    p.add_argument("--voxel-size", type=float, default=2.0, help="voxel size of the written scans, mm")
    p.add_argument("--whole-brain", action="store_true", help="write whole brains, not the hippocampal box")
    p.add_argument(
        "--interaction-strength",
        type=float,
        default=1.0,
        help="strength λ in [0, 1] of the record-image interactions (docs/synthetic.md)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes; the output is the same for any number")
    p.add_argument(
        "--age-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="brain_age only: ages drawn uniformly in [LOW, HIGH] years (default 20 90)",
    )
    p.add_argument("--report", action="store_true", help="print the calibration report after generating")


def _synth_run(a: argparse.Namespace) -> int:
    from hyperfusion.data.synthetic import SynthConfig, calibration_report, generate_cohort

    config = SynthConfig(
        n=a.n,
        seed=a.seed,
        task=a.task,
        voxel_size=a.voxel_size,
        whole_brain=a.whole_brain,
        interaction_strength=a.interaction_strength,
        age_range=tuple(a.age_range) if a.age_range else None,
    )
    out = generate_cohort(a.out, config, workers=a.workers)
    print(f"wrote {config.n} synthetic subjects to {out}", file=sys.stderr)
    if a.report:
        print(calibration_report(out))
    return 0


# --- train -------------------------------------------------------------------------------------------------
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=["ad", "brain_age"], default="ad")
    p.add_argument("--model", required=True, help="architecture name, e.g. hyperfusion, image_only, daft")
    p.add_argument("--data", required=True, help="cohort directory or ADNIMERGE-format CSV table")
    p.add_argument(
        "--fold", type=int, default=0, help="validation partition 0-3 (partition 4 is the test set)"
    )
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="initialisation / shuffling seed")
    p.add_argument("--out", required=True, help="model directory to write (training logs go in OUT/training)")
    p.add_argument(
        "--preset",
        choices=["paper", "cpu"],
        default="paper",
        help="the recipe: 'paper' (the paper's settings, for paper-size runs) or 'cpu' (what the CPU demo models "
        "need: cosine decay with warm-up, early stopping, light dropout, balanced classes, anatomy-keeping "
        "augmentation, init_features 4); the flags below override the preset's values",
    )
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (paper 200, cpu 100)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 32 (ad), 64 (brain_age)")
    p.add_argument(
        "--lr", type=float, default=None, help="default: the preset's (paper: the paper's per task)"
    )
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--schedule", choices=["constant", "cosine"], default=None, help="learning-rate schedule")
    p.add_argument("--warmup-epochs", type=float, default=None, help="linear learning-rate warm-up")
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        help="stop after this many epochs without a better validation score (0: never); the best epoch is kept",
    )
    p.add_argument(
        "--augment",
        choices=["on", "off"],
        default=None,
        help="small affine + intensity augmentation of training views (cpu preset: on)",
    )
    p.add_argument(
        "--dropout",
        type=float,
        nargs=6,
        default=None,
        metavar="P",
        help="AD ResNet dropout: blocks 1-4 then before fc1 and fc2 (paper: 0.1 0.2 0.2 0.3 0.6 0.5)",
    )
    p.add_argument(
        "--init-image-from",
        default=None,
        metavar="MODEL_DIR",
        help="start the image branch (stem, blocks 1-4) from a trained image_only model of the same fold",
    )
    p.add_argument("--class-weights", choices=["paper", "balanced"], default=None)
    p.add_argument("--imputation", choices=["median", "iterative"], default="median")
    p.add_argument(
        "--pretrain-epochs", type=int, default=100, help="tabular pre-training of HyperFusion's embedding"
    )
    p.add_argument(
        "--voxel-size", type=float, default=2.0, help="model grid, mm (1 = the paper's resolution)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model override, VALUE as JSON (e.g. --set init_features=8 --set 'hyper_layers=[\"fc1\"]')",
    )
    p.add_argument("--num-workers", type=int, default=0, help="data-loading processes")
    p.add_argument("--accelerator", default="cpu", help="cpu, gpu, auto (passed to Lightning)")
    p.add_argument("--devices", default="1", help="number of devices, or 'auto'")
    p.add_argument("--strategy", default="auto", help="e.g. ddp (several GPUs or nodes)")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--precision", default="32-true", help="e.g. bf16-mixed, 16-mixed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--label-column", default=None, help=LABEL_COLUMN_HELP)
    _scan_check_args(p)


def _parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HyperFusionError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def _train_run(a: argparse.Namespace) -> int:
    from pathlib import Path

    from hyperfusion.data.geometry import ad_box, brain_box
    from hyperfusion.data.synthetic.shipped import scans_for
    from hyperfusion.inference.model_files import save_model
    from hyperfusion.models import model_class
    from hyperfusion.training.fold import recipe_config, train_fold

    data = scans_for(a.data) if model_class(a.model, a.task).reads_scan else a.data
    if not model_class(a.model, a.task).reads_scan:  # never reads a scan
        a.check_scans = "off"
    cohort = _load_cohort(a, data, label_column=a.label_column)
    _label_note(cohort)
    geometry = ad_box(a.voxel_size) if a.task == "ad" else brain_box(a.voxel_size)
    devices = int(a.devices) if str(a.devices).isdigit() else a.devices
    overrides = _parse_overrides(a.set)
    if a.dropout is not None:
        overrides.update(block_dropout=list(a.dropout[:4]), head_dropout=list(a.dropout[4:]))
    init_image = None
    if a.init_image_from:
        from hyperfusion.inference.model_files import load_model

        source, source_card = load_model(a.init_image_from)
        if source.reads_record:
            raise HyperFusionError(f"--init-image-from {a.init_image_from}: not an image-only model")
        if source_card.fold != a.fold:
            raise HyperFusionError(f"--init-image-from {a.init_image_from}: trained on another fold")
        init_image = source.state_dict()
    config = recipe_config(
        a.preset,
        task=a.task,
        model=a.model,
        fold=a.fold,
        split_seed=a.split_seed,
        seed=a.seed,
        epochs=a.epochs,
        batch_size=a.batch_size or (32 if a.task == "ad" else 64),
        lr=a.lr,
        weight_decay=a.weight_decay,
        schedule=a.schedule,
        warmup_epochs=a.warmup_epochs,
        patience=a.patience,
        class_weights=a.class_weights,
        imputation=a.imputation,
        geometry=geometry.to_dict(),
        model_overrides=overrides,
        pretrain_epochs=a.pretrain_epochs,
        num_workers=a.num_workers,
        accelerator=a.accelerator,
        devices=devices,
        strategy=a.strategy,
        num_nodes=a.num_nodes,
        precision=a.precision,
        init_image_from=a.init_image_from,
    )
    if a.augment is not None:  # "on": the default ranges (hyperfusion.data.augment.AugmentConfig)
        config.augment = {} if a.augment == "on" else None
    out = Path(a.out)
    result = train_fold(cohort, config, out / "training", quiet=a.quiet, init_image=init_image)
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # under DDP only one process writes the model
        save_model(result.network, result.card, out)
        _print_json({"model_dir": str(out), "validation": result.card.metrics["validation"]})
    return 0


# --- evaluate (hyperfusion.evaluation: the demo build runs it too) -------------------------------------------
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    from hyperfusion.evaluation import add_arguments

    add_arguments(p)


def _evaluate_run(a: argparse.Namespace) -> int:
    from hyperfusion.evaluation import run

    result = run(a)
    _print_json(
        {
            "report": a.out,
            "test_subjects": result["test_subjects"],
            "subjects": result["subjects"],
            "metrics": {k: v["metrics"] for k, v in result["runs"].items()},
        }
    )
    return 0


# --- predict / explain -------------------------------------------------------------------------------------
def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default=None,
        help="where the networks run: cpu, cuda, cuda:N (default: HYPERFUSION_DEVICE, else cpu)",
    )


def _predict_args(p: argparse.ArgumentParser, cohort: bool = True) -> None:
    p.add_argument("--model", required=not cohort, help="model or ensemble directory")
    p.add_argument("--image", help="T1 scan, NIfTI (registered to MNI152)")
    p.add_argument("--tabular", help="the record, a JSON object of ADNIMERGE column names (ROW.json)")
    p.add_argument("--data", help="cohort directory: take the scan and record of --subject from it")
    p.add_argument("--subject", help="PTID of a subject of --data")
    p.add_argument("--allow-unregistered", action="store_true", help=ALLOW_UNREGISTERED_HELP)
    _device_arg(p)
    if not cohort:
        return
    g = p.add_argument_group("a whole cohort (--cohort DIR --models ... --out predictions.csv)")
    g.add_argument("--cohort", help="cohort directory (or ADNIMERGE-format table): predict every subject")
    g.add_argument("--models", nargs="+", default=[], metavar="DIR", help="model or ensemble directories")
    g.add_argument(
        "--out", help="predictions CSV, one row per (subject, model); rows already in it are skipped (resume)"
    )
    g.add_argument("--batch-size", type=int, default=8, help="subjects encoded in one pass per model")
    g.add_argument("--workers", type=int, default=2, help="threads loading scans (and the volume cache)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _read_record(path: str) -> dict:
    from pathlib import Path

    from hyperfusion.errors import DataError

    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; --tabular takes a JSON file with the record") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); write the record as a JSON object") from None
    if not isinstance(record, dict):
        raise DataError(f'{path}: the record must be a JSON object like {{"AGE": 74, "PTGENDER": "Female"}}')
    from hyperfusion.data.cohort import parse_record, require_some_value

    require_some_value(parse_record(record, source=path), path, example='{"AGE": 74, "PTGENDER": "Female"}')
    return record


def _subject_inputs(a: argparse.Namespace):
    """(predictor, model name, scan, record, cohort) from --model and --image/--tabular or --data/--subject."""
    from pathlib import Path

    from hyperfusion.errors import DataError
    from hyperfusion.inference.predictor import Predictor

    scan, record, cohort = a.image, None, None
    if a.data is not None:
        from hyperfusion.data.synthetic.shipped import scans_for

        # the subject's own scan is checked below; the cohort's sample says whether the rest are usable
        cohort = _load_cohort(a, scans_for(a.data))
    if a.subject is not None:
        if cohort is None:
            raise DataError("--subject needs --data COHORT_DIR")
        from hyperfusion.data.cohort import cohort_subject

        subject_scan, record = cohort_subject(cohort, a.subject)
        scan = scan or subject_scan
    if a.tabular is not None:
        record = _read_record(a.tabular)
    if record is None:
        raise DataError("give the record: --tabular ROW.json, or --data COHORT_DIR --subject PTID")
    name = Path(a.model).resolve().name
    predictor = Predictor({name: a.model}, device=a.device)
    if predictor.models[name].members[0].reads_scan and scan is None:
        if a.subject is not None:
            raise DataError(
                f"{a.data}: subject {a.subject} is listed in cohort.csv but has no scan in images/, and this "
                f"model reads one. Add images/{a.subject}.nii.gz or give --image"
            )
        raise DataError("this model reads a scan: give --image X.nii.gz (or --data and --subject)")
    check = None
    if scan is not None and predictor.models[name].members[0].reads_scan:
        from hyperfusion.data.entry import require_readable, warning_lines

        # refuse (one line naming `hyperfusion preprocess`) what the model cannot read, unless overridden
        check = require_readable(scan, allow=a.allow_unregistered)
        for line in warning_lines(check):
            print(f"hyperfusion {a.command}: warning: {line}", file=sys.stderr)
    return predictor, name, scan, record, cohort, check


def _predict_cohort_run(a: argparse.Namespace) -> int:
    from pathlib import Path

    from hyperfusion.data import load_cohort
    from hyperfusion.demo import scans_for
    from hyperfusion.errors import DataError
    from hyperfusion.inference.cohort import predict_cohort
    from hyperfusion.inference.predictor import Predictor

    dirs = list(a.models) + ([a.model] if a.model else [])
    if not dirs:
        raise DataError("--cohort needs the models: --models DIR [DIR ...]")
    if not a.out:
        raise DataError("--cohort needs --out predictions.csv (rows already in it are skipped)")
    if a.image or a.tabular or a.subject or a.data:
        raise DataError("--cohort predicts every subject: leave out --image, --tabular, --data and --subject")
    names = [Path(d).resolve().name for d in dirs]
    if len(set(names)) != len(names):
        raise DataError(f"two models share a folder name ({names}): give each model its own folder name")
    predictor = Predictor(dict(zip(names, dirs)), device=a.device)
    cohort = load_cohort(scans_for(a.cohort))
    bar = None
    if not a.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(cohort), desc="predict", unit="subject", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    import time

    t0 = time.perf_counter()
    try:
        rows = predict_cohort(
            predictor, cohort, out=a.out, batch_size=a.batch_size, workers=a.workers, progress=progress
        )
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    scored = rows["PTID"].nunique()
    _print_json(
        {
            "out": str(a.out),
            "models": names,
            "subjects": len(cohort),
            "scored_now": int(scored),
            "skipped_already_in_csv": len(cohort) - int(scored),
            "rows_written": len(rows),
            "errors": int((rows["error"].fillna("") != "").sum()),
            "seconds": round(seconds, 2),
            "subjects_per_second": round(scored / seconds, 3) if scored and seconds > 0 else None,
        }
    )
    return 0


def _predict_run(a: argparse.Namespace) -> int:
    from hyperfusion.data.entry import warning_lines
    from hyperfusion.training.ood import summary

    if a.cohort is not None:
        return _predict_cohort_run(a)
    if a.model is None:
        from hyperfusion.errors import DataError

        raise DataError("give --model DIR (one subject), or --cohort DIR --models ... --out predictions.csv")
    predictor, name, scan, record, _, check = _subject_inputs(a)
    entry = predictor.models[name]
    pred = predictor.predict(scan, record)[name]
    out = {
        "model": name,
        "architecture": entry.architecture,
        "task": entry.task,
        "members": len(entry.members),
        "scan": str(scan) if scan is not None else None,
        "record": record,
    }
    if entry.task == "ad":
        out["probabilities"] = dict(zip(pred.class_names, map(float, pred.value[0])))
        out["predicted_class"] = pred.class_names[int(pred.value[0].argmax())]
        out["spread"] = dict(zip(pred.class_names, map(float, pred.spread[0])))
    else:
        out["predicted_age"] = float(pred.value[0])
        out["brain_age_gap"] = float(pred.extras["brain_age_gap"][0])
        out["spread"] = float(pred.spread[0])
    ood = pred.extras["ood"][0]
    out["in_distribution"] = {**ood, "summary": summary(ood)}
    out["scan_check"] = check.to_dict() if check is not None else None
    out["warnings"] = warning_lines(check)
    _print_json(out)
    return 0


def _explain_args(p: argparse.ArgumentParser) -> None:
    _predict_args(p, cohort=False)
    p.add_argument(
        "--method",
        default="integrated_gradients",
        help="saliency, input_x_gradient, integrated_gradients, smoothgrad, grad_cam, deeplift, occlusion",
    )
    p.add_argument("--out", required=True, help="attribution map to write, NIfTI on the scan's own grid")
    p.add_argument("--target", help="class to explain (CN, MCI, AD or 0-2); default the predicted class")
    p.add_argument(
        "--baseline",
        default="zero",
        choices=["zero", "blur", "cohort_cn_mean"],
        help="baseline scan of IG / DeepLIFT / occlusion (cohort_cn_mean needs --data)",
    )
    p.add_argument("--blur-mm", type=float, default=8.0, help="Gaussian sigma of the blur baseline, mm")
    p.add_argument("--steps", type=int, default=None, help="integration steps of integrated gradients")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='method setting, VALUE as JSON (e.g. --set internal_batch_size=4 --set output="logit")',
    )
    p.add_argument("--regions", help="also write the per-region summary here, JSON")
    p.add_argument(
        "--compare",
        metavar="ROW_B.json",
        help="write the difference map(record B) - map(record A) instead (e.g. APOE4 2 vs 0)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: HYPERFUSION_THREADS, else all)"
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=["float32", "bfloat16", "float16", "fp32", "bf16", "fp16"],
        help="float32 (default), or autocast to bfloat16 / float16 (maps move slightly; see the README)",
    )


def _explain_run(a: argparse.Namespace) -> int:
    from hyperfusion.data.entry import warning_lines
    from hyperfusion.explain.image import compare_records, explain_image

    predictor, name, scan, record, cohort, check = _subject_inputs(a)
    settings = _parse_overrides(a.set)
    if a.steps is not None:
        settings["n_steps"] = a.steps
    target = int(a.target) if a.target is not None and a.target.isdigit() else a.target
    bar = None
    if not a.quiet:
        from tqdm import tqdm

        bar = tqdm(total=100, desc=a.method, unit="%", file=sys.stderr, leave=False)

    def progress(fraction: float) -> None:
        if bar is not None:
            bar.update(round(100 * fraction) - bar.n)

    kwargs = dict(
        target=target,
        baseline=a.baseline,
        settings=settings,
        blur_mm=a.blur_mm,
        cohort=cohort,
        progress=progress,
        cache=False,
        threads=a.threads,
        precision=a.precision,
    )
    try:
        if a.compare is not None:
            attribution = compare_records(
                predictor, name, scan, record, _read_record(a.compare), a.method, **kwargs
            ).difference
        else:
            attribution = explain_image(predictor, name, scan, record, a.method, **kwargs)
    finally:
        if bar is not None:
            bar.close()
    path = attribution.save_nifti(a.out, scan, regions=a.regions)
    info = attribution.describe()
    regions = attribution.region_summary(scan)
    _print_json(
        {
            "map": str(path),
            "regions": a.regions,
            "model": name,
            "method": info["method"],
            "target": info["target_name"],
            "output": info["output"],
            "prediction": info["prediction"],
            "settings": info["settings"],
            "baseline": info["baseline"],
            "baseline_output": info["baseline_output"],
            "delta": info["delta"],
            "relative_delta": info["relative_delta"],
            "coarse": info["coarse"],
            "compared": info["compared"],
            "region_abs_share": {r["region"]: round(r["abs_share"], 4) for r in regions["regions"]},
            "region_source": regions["source"],
            "warnings": warning_lines(check),
        }
    )
    return 0


# --- preprocess --------------------------------------------------------------------------------------------
# --- report ------------------------------------------------------------------------------------------------
def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", required=True, help="model or ensemble directories")
    p.add_argument("--data", required=True, help="cohort directory (or a shipped synthetic table)")
    p.add_argument("--subject", required=True, help="PTID of a subject of --data")
    p.add_argument("--out", required=True, help="report file: .html, or .json for the same content as data")
    p.add_argument(
        "--method", default="saliency", help="attribution method of the figure ('none': no figure)"
    )


def _report_run(a: argparse.Namespace) -> int:
    from hyperfusion.report import subject_report, write_report

    method = None if a.method == "none" else a.method
    scenario, parts, synthetic = subject_report(a.models, a.data, a.subject, method=method)
    _print_json(
        {
            "report": str(write_report(a.out, scenario, parts, synthetic)),
            "predictions": parts["predictions"] or parts["brain_age"],
        }
    )
    return 0


def _preprocess_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input",
        required=True,
        help="a T1 scan (.nii/.nii.gz) or a DICOM series folder; or, for many subjects, a folder of them "
        "(sub-folders or NIfTI files, named by PTID) or a CSV table with PTID and a scan path column",
    )
    p.add_argument("--out", required=True, help="output folder (one subject) or cohort directory (many)")
    p.add_argument("--n4", action="store_true", help="N4 bias-field correction first (slower)")
    p.add_argument("--no-skull-strip", action="store_true", help="the input is already skull-stripped")
    p.add_argument("--workers", type=int, default=1, help="subjects preprocessed in parallel (many subjects)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per subject")
    p.add_argument(
        "--path-column", default=None, help="the table's scan path column (default: scan/image/path)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _preprocess_run(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hyperfusion.data.preprocess.batch import is_batch, preprocess_batch
    from hyperfusion.data.preprocess.pipeline import preprocess_scan

    options = {"n4": a.n4, "skull_strip": not a.no_skull_strip, "threads": a.threads}
    if is_batch(a.input):
        bar = tqdm(desc="subjects", unit="subject", file=sys.stderr, disable=a.quiet)

        def tick(done: int, total: int, status: dict) -> None:
            bar.total = total
            bar.update(done - bar.n)
            if status["status"] == "failed":
                bar.write(
                    f"hyperfusion preprocess: {status['PTID']} failed: {status['error']}", file=sys.stderr
                )

        statuses = preprocess_batch(
            a.input, a.out, workers=a.workers, path_column=a.path_column, progress=tick, **options
        )
        bar.close()
        counts = {k: sum(s["status"] == k for s in statuses) for k in ("done", "skipped", "failed")}
        _print_json(
            {
                "cohort": a.out,
                **counts,
                "failed_subjects": [s["PTID"] for s in statuses if s["status"] == "failed"],
                "summary": f"{a.out}/preprocess/summary.csv",
            }
        )
        return 1 if counts["failed"] else 0
    bar = tqdm(total=100, desc="preprocess", unit="%", file=sys.stderr, disable=a.quiet, leave=False)

    def progress(fraction: float, step: str) -> None:
        bar.set_postfix_str(step)
        bar.update(round(100 * fraction) - bar.n)

    try:
        result = preprocess_scan(a.input, a.out, progress=progress, **options)
    finally:
        bar.close()
    qc = result.qc
    _print_json(
        {
            "scan": str(result.scan),
            "qc": qc["verdict"],
            "box_brain_share": qc["box_brain_share"],
            "template_ncc": qc["template_ncc"],
            "mask_dice": qc["mask_dice"],
            "seconds": qc["seconds"],
            "peak_memory_mb": qc["peak_memory_mb"],
            "qc_json": f"{a.out}/qc.json",
            "qc_png": f"{a.out}/qc.png",
        }
    )
    return 0 if result.passed else 1


# --- import-reference --------------------------------------------------------------------------------------
def _import_reference_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="Lightning checkpoint written by the authors' code")
    p.add_argument("--arch", required=True, help="architecture name of the checkpoint")
    p.add_argument("--out", required=True, help="model directory to write")


def _import_reference_run(a: argparse.Namespace) -> int:
    from hyperfusion.data.geometry import authors_crop
    from hyperfusion.inference.model_files import file_sha256, save_model
    from hyperfusion.models.reference import (
        convert_reference_state_dict,
        read_reference_checkpoint,
        reference_card,
    )

    geometry = authors_crop().to_dict()
    weights, facts = read_reference_checkpoint(a.checkpoint)
    model = convert_reference_state_dict(weights, a.arch)
    card = reference_card(a.arch, {**facts, "sha256": file_sha256(a.checkpoint)}, geometry)
    out = save_model(model, card, a.out)
    _print_json({"model_dir": str(out), "architecture": model.architecture, **model.parameter_counts()})
    return 0


# --- demo --------------------------------------------------------------------------------------------------
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=["build", "status", "verify"],
        help="build: make what is missing; status: list steps; verify: re-run every evaluate command of "
        "RESULTS.md and compare (exit 1 and a diff if they differ)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes for generating the synthetic scans")
    p.add_argument("--verbose", action="store_true", help="progress bars")
    p.add_argument(
        "--only",
        metavar="PATTERN",
        default=None,
        help="build only the steps whose names match this shell pattern (see status), e.g. 'train ad/*/fold1'",
    )
    p.add_argument(
        "--retrain",
        metavar="MODEL",
        default=None,
        help="with verify: retrain one shipped model from nothing (e.g. ad/hyperfusion/fold0) and compare its "
        "validation score with the shipped one (within 0.01)",
    )


def _demo_run(a: argparse.Namespace) -> int:
    from hyperfusion.demo import build, retrain, verify

    if a.action == "verify" and a.retrain:
        same, line = retrain(a.retrain, quiet=not a.verbose)
        print(line)
        return 0 if same else 1
    if a.action == "verify":
        same, diff = verify()
        print("RESULTS.md reproduced exactly" if same else diff)
        return 0 if same else 1

    for entry in build(quiet=not a.verbose, workers=a.workers, dry_run=a.action == "status", only=a.only):
        print(json.dumps(entry))
    return 0


# --- bench / app -------------------------------------------------------------------------------------------
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median reported)")
    p.add_argument(
        "--size",
        choices=["demo", "paper"],
        default="demo",
        help="demo: the shipped models' size (2 mm box); paper: 1 mm box, two 64x96x64 views, init_features 16 "
        "(predictor, explain, training_step, cohort; minutes)",
    )


def _bench_run(a: argparse.Namespace) -> int:
    from hyperfusion.bench import run_benchmarks

    return run_benchmarks(a.names, repeats=a.repeats, size=a.size)


#: Streamlit settings of the dashboard, the same as .streamlit/config.toml at the repository root; passed as
#: flags so that they hold whichever directory ``hyperfusion app`` is started from.
SERVER_DEFAULTS: dict[str, object] = {
    "server.headless": True,
    "server.maxUploadSize": 64,  # MB
    "server.maxMessageSize": 64,  # MB
    "server.enableXsrfProtection": True,
    "server.enableCORS": True,
    "server.fileWatcherType": "none",
    "server.runOnSave": False,
    "browser.gatherUsageStats": False,
    "client.showErrorDetails": "none",
    "client.toolbarMode": "viewer",
    "global.developmentMode": False,
}


def _app_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument(
        "--max-upload-mb", type=int, default=SERVER_DEFAULTS["server.maxUploadSize"], help="upload limit, MB"
    )
    p.add_argument("--dev", action="store_true", help="development: reload pages when their source changes")


def _app_command(a: argparse.Namespace, home: str) -> list[str]:
    """The ``streamlit run`` command line of ``hyperfusion app``: the server defaults as flags."""
    options = {
        **SERVER_DEFAULTS,
        "server.address": a.address,
        "server.port": a.port,
        "server.maxUploadSize": a.max_upload_mb,
    }
    if a.dev:
        options.update({"server.fileWatcherType": "auto", "server.runOnSave": True})
    flags = [f"--{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items()]
    return [sys.executable, "-m", "hyperfusion.serve", home, *flags]  # `streamlit run`, warm


def _app_run(a: argparse.Namespace) -> int:
    import subprocess
    from pathlib import Path

    home = Path(__file__).resolve().parent.parent / "app" / "Home.py"
    if not home.exists():
        raise HyperFusionError(
            f"dashboard not found at {home}: run from a source checkout (pip install -e .)"
        )
    command = _app_command(a, str(home))
    if os.name == "posix":
        # Become the server: a SIGTERM to `hyperfusion app` (a supervisor, `kill`) then stops Streamlit itself,
        # where a child process would be left serving without its parent
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(command[0], command)
    return subprocess.call(command)


COMMANDS: list[Command] = [
    Command("inspect", "summarise a cohort directory or ADNIMERGE table (JSON)", _inspect_args, _inspect_run),
    Command(
        "synth", "generate a synthetic ADNI-like cohort from the MNI152 template", _synth_args, _synth_run
    ),
    Command("train", "train one model on one fold with the paper's protocol", _train_args, _train_run),
    Command("evaluate", "evaluate models and ensembles on the test partition", _evaluate_args, _evaluate_run),
    Command(
        "preprocess",
        "raw T1 (DICOM or NIfTI, with skull, scanner space) -> skull-stripped and registered to MNI152, with QC",
        _preprocess_args,
        _preprocess_run,
    ),
    Command("predict", "predict for one scan and record (JSON)", _predict_args, _predict_run),
    Command("explain", "write an attribution map as NIfTI", _explain_args, _explain_run),
    Command(
        "report",
        "a subject's report: record, predictions, attribution (HTML or JSON)",
        _report_args,
        _report_run,
    ),
    Command(
        "import-reference",
        "convert a checkpoint of the authors' code",
        _import_reference_args,
        _import_reference_run,
    ),
    Command(
        "demo",
        "build (resumably) or list the synthetic demo cohorts and models in assets/demo",
        _demo_args,
        _demo_run,
    ),
    Command("bench", "run the benchmarks and print their ratios", _bench_args, _bench_run),
    Command("app", "start the dashboard on 127.0.0.1", _app_args, _app_run),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperfusion",
        description="HyperFusion: fuse brain MRI with tabular records. Research use only.",
    )
    parser.add_argument("--version", action="version", version=f"hyperfusion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS:
        help_text = cmd.help if cmd.run else f"{cmd.help} [not built yet, {cmd.issue}]"
        p = sub.add_parser(cmd.name, help=help_text, description=help_text)
        cmd.add_arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cmd: Command | None = getattr(args, "_command", None)
    if cmd is None:
        parser.print_help()
        return 2
    if cmd.run is None:
        print(f"hyperfusion {cmd.name}: not built yet (tracked in issue {cmd.issue})", file=sys.stderr)
        return 2
    try:
        return int(cmd.run(args) or 0)
    except HyperFusionError as exc:
        print(f"hyperfusion {cmd.name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
