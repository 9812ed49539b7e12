"""The ``hyperfusion`` command.

Each sub-command is declared once in :data:`COMMANDS` with its arguments and the function that runs it. The
heavy imports happen inside the functions, so ``hyperfusion --help`` stays fast. Errors meant for the user
(:class:`~hyperfusion.errors.HyperFusionError`) are printed as one line, with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

from hyperfusion import __version__
from hyperfusion.errors import HyperFusionError


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
    p.add_argument(
        "--label-column",
        default=None,
        help="diagnosis column to use (Group, DX_bl or DX); default: the first of these the table has",
    )


def _inspect_run(a: argparse.Namespace) -> int:
    from hyperfusion.data import load_cohort

    cohort = load_cohort(a.data, label_column=a.label_column)
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
        "--interaction-strength", type=float, default=1.0, help="lambda of SYNTHETIC.md, in [0, 1]"
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
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--devices", default="1")
    p.add_argument("--strategy", default="auto")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--precision", default="32-true")


# --- evaluate ----------------------------------------------------------------------------------------------
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True)
    p.add_argument("--models", nargs="+", required=True, help="model or ensemble directories")
    p.add_argument("--out", required=True, help="report directory to write")


# --- predict / explain -------------------------------------------------------------------------------------
def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model or ensemble directory")
    p.add_argument("--image", help="T1 scan, NIfTI")
    p.add_argument("--tabular", help="the record, a JSON object of ADNIMERGE column names")


def _explain_args(p: argparse.ArgumentParser) -> None:
    _predict_args(p)
    p.add_argument("--method", default="integrated_gradients")
    p.add_argument("--out", required=True, help="attribution map to write, NIfTI")


# --- import-reference --------------------------------------------------------------------------------------
def _import_reference_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="Lightning checkpoint written by the authors' code")
    p.add_argument("--arch", required=True, help="architecture name of the checkpoint")
    p.add_argument("--out", required=True, help="model directory to write")


# --- bench / app -------------------------------------------------------------------------------------------
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median reported)")


def _bench_run(a: argparse.Namespace) -> int:
    from hyperfusion.bench import run_benchmarks

    return run_benchmarks(a.names, repeats=a.repeats)


def _app_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1", help="address to bind (default: loopback only)")


def _app_run(a: argparse.Namespace) -> int:
    import subprocess
    from pathlib import Path

    home = Path(__file__).resolve().parent.parent / "app" / "Home.py"
    if not home.exists():
        raise HyperFusionError(
            f"dashboard not found at {home}: run from a source checkout (pip install -e .)"
        )
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(home),
        "--server.address", a.address, "--server.port", str(a.port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    return subprocess.call(cmd)


COMMANDS: list[Command] = [
    Command("inspect", "summarise a cohort directory or ADNIMERGE table (JSON)", _inspect_args, _inspect_run),
    Command(
        "synth", "generate a synthetic ADNI-like cohort from the MNI152 template", _synth_args, _synth_run
    ),
    Command("train", "train one model on one fold with the paper's protocol", _train_args, None, "#5"),
    Command("evaluate", "evaluate models and ensembles on the test partition", _evaluate_args, None, "#5"),
    Command("predict", "predict for one scan and record (JSON)", _predict_args, None, "#6"),
    Command("explain", "write an attribution map as NIfTI", _explain_args, None, "#6"),
    Command(
        "import-reference", "convert a checkpoint of the authors' code", _import_reference_args, None, "#4"
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
