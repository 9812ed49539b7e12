"""Distributed data parallel for real: two CPU processes (gloo) train one tiny model through the CLI."""

import json
import os
import subprocess
import sys

import pytest

from hyperfusion.inference.model_files import load_model
from tests.conftest import write_image_cohort


@pytest.mark.slow
def test_two_process_ddp_training(tmp_path):
    data = write_image_cohort(tmp_path / "cohort", 40, seed=6)
    out = tmp_path / "model"
    env = {**os.environ, "HYPERFUSION_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "hyperfusion.cli",
        "train",
        "--model",
        "hyperfusion",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--pretrain-epochs",
        "1",
        "--voxel-size",
        "4",
        "--set",
        "init_features=4",
        "--batch-size",
        "4",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world_size: 2" in proc.stderr or "distributed_backend=gloo" in proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["model_dir"] == str(out)
    network, card = load_model(out)
    assert card.training["strategy"] == "ddp" and card.training["devices"] == 2
    assert card.training["epochs_run"] == 2
