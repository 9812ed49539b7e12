"""Small real evaluation reports for the Model comparison and Brain age pages' tests (and for looking at them).

Untrained, randomly perturbed tiny networks on small image cohorts, scored by the real
hyperfusion.training.evaluate.write_report: the results.json has every field the pages read, computed the way the
CLI computes them, on subjects whose scans and records exist.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hyperfusion.data import TabularPreprocessor, ad_box, load_cohort
from hyperfusion.data.geometry import brain_box
from hyperfusion.inference.model_files import save_model
from hyperfusion.models import build_model
from hyperfusion.training.evaluate import Member, Run, write_report
from tests.conftest import write_image_cohort


def _perturbed(net: torch.nn.Module, seed: int, scale: float) -> torch.nn.Module:
    """Larger random weights, so models disagree and the record (or sex) visibly moves the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net.eval()


def build_ad_report(root: Path, n: int = 50, n_boot: int = 50) -> dict:
    """An AD cohort of ``n`` subjects, five runs (a 2-fold and a 1-fold HyperFusion, two image_only, one
    tabular_only: repeated runs, so the report has groups with a spread and Mann–Whitney tests) and their report
    under ``root/assets/reports/ad``."""
    cohort_dir = write_image_cohort(root / "cohort", n, seed=7)
    cohort = load_cohort(cohort_dir)
    g = ad_box(4.0)
    pre = TabularPreprocessor().fit(cohort.table)
    card = {
        "geometry": g.to_dict(),
        "tabular": {"preprocessing": pre.to_dict()},
        "data": {"synthetic": True},
        "training": {"split_seed": 0},
    }
    models = root / "models"
    shape = {"init_features": 4, "input_shape": list(g.input_shape)}
    specs = [  # (run label, architecture, member folders): repeated runs give groups with a spread
        ("hyperfusion", "hyperfusion", ["fold0", "fold1"]),
        ("hyperfusion#2", "hyperfusion", [""]),
        ("image_only", "image_only", [""]),
        ("image_only#2", "image_only", [""]),
        ("tabular_only", "tabular_only", [""]),
    ]
    runs = []
    for k, (label, arch, folders) in enumerate(specs):
        members = []
        for j, folder in enumerate(folders):
            seed = 10 * k + j
            torch.manual_seed(seed)
            net = _perturbed(build_model(arch, "ad", **({} if arch == "tabular_only" else shape)), seed, 0.05)
            out = save_model(net, card, models / label.replace("#", "_") / folder)
            members.append(Member(net, _card(out)))
        runs.append(Run(label=label, members=members))
    out = root / "assets" / "reports" / "ad"
    result = write_report(cohort, runs, out, n_boot=n_boot)
    return {
        "cohort": cohort_dir,
        "models": models,
        "report": out / "results.json",
        "result": result,
        "assets": root / "assets",
        "table": cohort.table,
    }


def _card(path: Path) -> dict:
    return json.loads((path / "card.json").read_text())


def build_brain_age(root: Path, n: int = 40, n_boot: int = 50, report: bool = True) -> dict:
    """A brain-age demo layout under ``root/assets``: the cohort (``cohorts/brain_age``, ``n`` subjects with
    scans), a HyperFusion and an image_only brain-age model (``models/brain_age``), and, if ``report``, their
    evaluation report (``reports/brain_age``)."""
    assets = root / "assets"
    cohort_dir = write_image_cohort(assets / "cohorts" / "brain_age", n, seed=11)
    meta = {
        "source": "synthetic",
        "generator": "tests",
        "task": "brain_age",
        "label_column": "AGE",
        "allow_unregistered": True,
    }  # noise boxes: loaded with the entry check's warning
    (cohort_dir / "cohort.json").write_text(json.dumps(meta))
    cohort = load_cohort(cohort_dir)
    g = brain_box(4.0)
    card = {
        "geometry": g.to_dict(),
        "data": {"synthetic": True},
        "training": {"split_seed": 0},
        "metrics": {"age_bias": {"slope": 0.5, "intercept": 30.0}},
    }
    tiny = {"input_shape": list(g.input_shape), "channels": [2, 2, 2], "hidden": [4, 4, 4]}
    runs = []
    for k, arch in enumerate(["hyperfusion", "image_only"]):
        torch.manual_seed(20 + k)
        net = _perturbed(build_model(arch, "brain_age", **tiny), 20 + k, 0.3)
        with torch.no_grad():  # centre the untrained output on plausible ages (years) rather than 0
            bias = net.output.bias_head.bias if arch == "hyperfusion" else net.output.bias
            bias.add_(70.0)
        out = save_model(net, card, assets / "models" / "brain_age" / arch)
        runs.append(Run(label=arch, members=[Member(net, _card(out))]))
    result = None
    if report:
        result = write_report(cohort, runs, assets / "reports" / "brain_age", n_boot=n_boot)
    return {
        "cohort": cohort_dir,
        "models": assets / "models",
        "assets": assets,
        "result": result,
        "ptids": cohort.table["PTID"].tolist(),
    }
