"""`hyperfusion bench --size`: which benchmarks measure the paper size, and the refusals (nothing is timed)."""

import pytest

from hyperfusion.bench import _load, discover, run_benchmarks, takes_size
from hyperfusion.cli import build_parser
from hyperfusion.errors import HyperFusionError


def test_paper_size_benchmarks():
    sized = {name for name, path in discover().items() if takes_size(_load(path))}
    assert {"predictor", "explain", "training_step", "cohort"} <= sized
    assert "volume_cache" not in sized  # demo-only benchmarks are left out of a paper run


def test_size_refusals():
    with pytest.raises(HyperFusionError, match="only the demo size"):
        run_benchmarks(["volume_cache"], repeats=1, size="paper")
    with pytest.raises(HyperFusionError, match="unknown size"):
        run_benchmarks(["volume_cache"], repeats=1, size="huge")
    assert build_parser().parse_args(["bench", "--size", "paper", "explain"]).size == "paper"
    assert build_parser().parse_args(["bench"]).size == "demo"
