"""``hyperfusion evaluate`` as a library call: load the runs, write the report, add attribution faithfulness.

The CLI and the demo build (which re-runs every report of RESULTS.md) both call :func:`evaluate`; the demo
passes the same argument lists a user would type (:func:`evaluate_argv`). Heavy imports happen inside the
functions, so the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from hyperfusion.errors import HyperFusionError

__all__ = [
    "ALLOW_UNREGISTERED_HELP",
    "LABEL_COLUMN_HELP",
    "add_arguments",
    "add_scan_check_arguments",
    "evaluate",
    "evaluate_argv",
    "label_note",
    "load_cohort_checked",
    "load_run",
    "run",
]

LABEL_COLUMN_HELP = "diagnosis column to use (Group, DX_bl or DX); default: the first of these the table has"


ALLOW_UNREGISTERED_HELP = (
    "go on even when scans fail the entry check (not skull-stripped, not in MNI152 space, implausible "
    "intensities); every output then carries a warning. Better: hyperfusion preprocess"
)


def add_scan_check_arguments(p: argparse.ArgumentParser, allow: bool = True) -> None:
    """The entry check of a cohort's scans when a command loads it (:func:`hyperfusion.data.load_cohort`)."""
    p.add_argument(
        "--check-scans",
        choices=["sample", "all", "off"],
        default="sample",
        help="entry check of the cohort's scans when it is loaded: an even sample of 12 (default), all, or none; "
        "results are remembered per file in the cache folder",
    )
    if allow:
        p.add_argument("--allow-unregistered", action="store_true", help=ALLOW_UNREGISTERED_HELP)


def load_cohort_checked(a: argparse.Namespace, data, *, allow: bool | None = None, **kwargs):
    """``load_cohort`` with a command's ``--check-scans`` / ``--allow-unregistered``; the warnings of a cohort
    loaded despite failing scans go to stderr."""
    from hyperfusion.data import load_cohort

    allow = getattr(a, "allow_unregistered", False) if allow is None else allow
    cohort = load_cohort(
        data, check_scans=getattr(a, "check_scans", "sample"), allow_unregistered=allow, **kwargs
    )
    for line in cohort.scan_warnings():
        print(f"hyperfusion {getattr(a, 'command', 'evaluate')}: warning: {line}", file=sys.stderr)
    return cohort


def label_note(cohort) -> None:
    """Say on stderr which diagnosis column was used when the table's label columns disagree."""
    note = cohort.label_note()
    if note:
        print(f"note: {note}", file=sys.stderr)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``hyperfusion evaluate``."""
    p.add_argument("--data", required=True, help="cohort directory or ADNIMERGE-format CSV table")
    p.add_argument(
        "--models",
        nargs="+",
        required=True,
        help="model directories, or ensemble directories (a directory of fold-model directories)",
    )
    p.add_argument("--out", required=True, help="report directory to write")
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples for the 95%% intervals")
    p.add_argument(
        "--faithfulness",
        metavar="METHOD",
        default=None,
        help="synthetic cohorts: also score METHOD's maps (e.g. saliency) against the planted truth",
    )
    p.add_argument("--faithfulness-subjects", type=int, default=20, help="AD test subjects scored per model")
    p.add_argument(
        "--subjects",
        choices=["test", "all"],
        default="test",
        help="test: the test subjects stored in the model files (the paper's partition 4); all: every subject "
        "of an independent cohort (refused on the cohort the models were trained on)",
    )
    p.add_argument(
        "--permutations",
        type=int,
        default=5,
        help="seeds of the modality-reliance measure (scans, then records, permuted among the subjects); 0: skip",
    )
    p.add_argument("--label-column", default=None, help=LABEL_COLUMN_HELP)
    p.add_argument("--batch-size", type=int, default=16, help="subjects per pass of the image encoders")
    add_scan_check_arguments(p)


def load_run(path: str | Path):
    """A model or ensemble directory as a :class:`~hyperfusion.training.evaluate.Run` (networks and cards)."""
    from hyperfusion.inference.discovery import member_dirs
    from hyperfusion.inference.model_files import load_model
    from hyperfusion.training.evaluate import Member, Run

    root = Path(path)
    dirs = member_dirs(root)
    # one fold of an ensemble folder is named with its parent (film/fold0), so the report says what it is
    label = f"{root.resolve().parent.name}/{root.name}" if re.fullmatch(r"fold\d+", root.name) else root.name
    return Run(label=label, members=[Member(*load_model(d)) for d in dirs])


def evaluate(
    data: str | Path,
    models: Sequence[str | Path],
    out: str | Path,
    *,
    bootstrap: int = 500,
    faithfulness: str | None = None,
    faithfulness_subjects: int = 20,
    subjects: str = "test",
    permutations: int = 5,
    label_column: str | None = None,
    batch_size: int = 16,
    check_scans: str = "sample",
    allow_unregistered: bool = False,
) -> dict:
    """Write the report of ``models`` on the cohort ``data`` to ``out`` (results.json, results.md, figures);
    returns results.json's content. The arguments are those of ``hyperfusion evaluate``."""
    from hyperfusion.data.synthetic.shipped import scans_for
    from hyperfusion.training.evaluate import write_report

    checks = argparse.Namespace(
        command="evaluate", check_scans=check_scans, allow_unregistered=allow_unregistered
    )
    cohort = load_cohort_checked(checks, scans_for(data), label_column=label_column)
    label_note(cohort)
    runs = [load_run(p) for p in models]
    labels = [r.label for r in runs]
    # two folders of one name (seed0/hyperfusion, seed1/hyperfusion) stay apart
    for i, r in enumerate(runs):
        if labels.count(r.label) > 1:
            r.label = f"{r.label}#{i}"
    result = write_report(
        cohort,
        runs,
        out,
        n_boot=bootstrap,
        data_label=str(data),
        subjects=subjects,
        permutations=permutations,
        batch_size=batch_size,
    )
    if faithfulness:
        if not cohort.is_synthetic:
            raise HyperFusionError(
                "--faithfulness needs a synthetic cohort: only it knows where effects were planted"
            )
        from hyperfusion.explain.faithfulness import add_faithfulness

        paths = dict(zip((r.label for r in runs), models))
        add_faithfulness(cohort, paths, runs, result, faithfulness, faithfulness_subjects, out)
    return result


def run(a: argparse.Namespace) -> dict:
    """:func:`evaluate` with parsed ``hyperfusion evaluate`` arguments."""
    return evaluate(
        a.data,
        a.models,
        a.out,
        bootstrap=a.bootstrap,
        faithfulness=a.faithfulness,
        faithfulness_subjects=a.faithfulness_subjects,
        subjects=a.subjects,
        permutations=a.permutations,
        label_column=a.label_column,
        batch_size=a.batch_size,
        check_scans=a.check_scans,
        allow_unregistered=a.allow_unregistered,
    )


def evaluate_argv(argv: Sequence[str]) -> dict:
    """:func:`evaluate` with the argument list of ``hyperfusion evaluate`` (what the demo's commands are)."""
    parser = argparse.ArgumentParser(prog="hyperfusion evaluate")
    add_arguments(parser)
    return run(parser.parse_args(list(argv)))
