import subprocess
import sys

import pytest

from hyperfusion.cli import COMMANDS, main

DESIGN_COMMANDS = {"synth", "train", "evaluate", "predict", "explain", "import-reference", "bench", "app"}


def test_help_lists_every_design_command():
    out = subprocess.run(
        [sys.executable, "-m", "hyperfusion.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in DESIGN_COMMANDS | {"inspect"}:
        assert name in out


def test_unbuilt_commands_say_so(capsys):
    unbuilt = [c for c in COMMANDS if c.run is None]
    for cmd in unbuilt:
        assert main([cmd.name, *_minimal_args(cmd.name)]) == 2
        assert "not built yet" in capsys.readouterr().err


def _minimal_args(name: str) -> list[str]:
    return {
        "predict": ["--model", "m"],
        "explain": ["--model", "m", "--out", "o"],
    }[name]


def test_user_errors_are_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "hyperfusion.cli", "inspect", "--data", str(tmp_path / "nope.csv")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "nope.csv" in proc.stderr


@pytest.mark.parametrize("argv", [["--version"]])
def test_version(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "hyperfusion" in capsys.readouterr().out
