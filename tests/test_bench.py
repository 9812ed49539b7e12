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


def test_the_browser_benchmarks_are_discovered_at_the_demo_size_only():
    found = discover()
    browser = {"startup", "cohort_page", "load", "dashboard"}
    assert browser <= set(found)
    assert not any(takes_size(_load(found[name])) for name in browser)
    with pytest.raises(HyperFusionError, match="only the demo size"):
        run_benchmarks(["dashboard"], repeats=1, size="paper")


def test_serving_starts_a_server_on_a_free_port_and_stops_it():
    import sys
    import urllib.request

    from hyperfusion.bench import serving

    urls = []

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]

    with serving(command, timeout=30) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200
        urls.append(url)
    with pytest.raises(OSError):  # stopped: nothing answers there any more
        urllib.request.urlopen(urls[0], timeout=2)
    with pytest.raises(RuntimeError, match="did not start"):
        with serving(lambda port: [sys.executable, "-c", "pass"], timeout=10):
            pass
