"""Fixtures of the explanation tests: the Predictor tests' tiny cohort and models (4 mm box, init_features 4),
plus an image-only model and a hand-wired tabular model whose answer is known."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from hyperfusion.data import ad_box
from hyperfusion.inference.model_files import save_model
from hyperfusion.inference.predictor import Predictor
from hyperfusion.models import build_model
from tests.inference.test_predictor import setup  # noqa: F401  (the tiny cohort, preprocessing and models)

G = ad_box(4.0)


@dataclass
class Env:
    cohort: object
    pre: object
    dirs: dict[str, Path]
    predictor: Predictor
    card: dict

    def subject(self, i: int):
        from hyperfusion.data.cohort import cohort_subject

        return cohort_subject(self.cohort, self.cohort.table["PTID"].iloc[i])


def apoe4_model(pre) -> torch.nn.Module:
    """A tabular-only network wired by hand: AD exactly when APOE4 >= 2, else MCI (never CN).

    logits = (0, 1, 4 z − b) with z the z-scored APOE4 and b putting the AD boundary at 1.5 alleles.
    """
    net = build_model("tabular_only", "ad")
    j = pre.output_names_.index("APOE4")
    mean, sd = (
        pre.means_[pre.numeric_features.index("APOE4")],
        pre.scales_[pre.numeric_features.index("APOE4")],
    )
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        linear, bn, prelu = net.embedding
        linear.weight[0, j] = 1.0
        bn.weight.fill_(1.0)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        prelu.weight.fill_(1.0)  # PReLU with slope 1: the identity
        net.head.weight[2, 0] = 4.0
        net.head.bias[1] = 1.0
        net.head.bias[2] = 1.0 - 4.0 * (1.5 - mean) / sd
    return net.eval()


@pytest.fixture(scope="module")
def env(setup, tmp_path_factory) -> Env:  # noqa: F811
    cohort, pre, dirs = setup
    card = {"geometry": G.to_dict(), "tabular": {"preprocessing": pre.to_dict()}, "data": {"synthetic": True}}
    root = tmp_path_factory.mktemp("explain_models")
    torch.manual_seed(3)
    image_only = build_model("image_only", "ad", init_features=4, input_shape=list(G.input_shape)).eval()
    dirs = {
        **dirs,
        "image_only": save_model(image_only, card, root / "image_only"),
        "apoe4": save_model(apoe4_model(pre), card, root / "apoe4"),
    }
    return Env(cohort, pre, dirs, Predictor(dirs), card)
