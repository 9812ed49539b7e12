"""hyperfusion.serve: the server process of `hyperfusion app` warms the first page's imports once it listens."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

from hyperfusion import serve
from hyperfusion.cli import _app_command, build_parser


def test_app_runs_the_warm_server_with_streamlits_own_flags():
    command = _app_command(build_parser().parse_args(["app", "--port", "8600"]), "Home.py")
    assert command[1:4] == ["-m", "hyperfusion.serve", "Home.py"] and "--server.port=8600" in command


def test_every_warm_module_exists_and_none_of_them_imports_torch():
    script = (
        "import sys\nfrom hyperfusion.serve import warm\n"
        "print(warm(), 'torch' in sys.modules, 'pandas' in sys.modules, 'streamlit.emojis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]", "False", "True", "True"]
    assert serve.warm(["hyperfusion.no_such_module"]) == ["hyperfusion.no_such_module"]  # said, not raised


def test_the_imports_wait_until_the_server_listens(monkeypatch):
    done = []
    monkeypatch.setattr(serve, "warm", lambda: done.append(time.monotonic()))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waiting = threading.Thread(target=serve._after_listening, args=(port, 30.0))
    waiting.start()
    time.sleep(0.5)
    assert not done  # nothing listens yet
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        opened = time.monotonic()
        waiting.join(10)
    assert done and done[0] >= opened


def test_the_later_imports_start_once_per_process_after_the_first_page(monkeypatch):
    started = threading.Event()
    monkeypatch.setattr(serve, "_later_started", False)
    monkeypatch.setattr(serve, "warm", lambda modules: started.set() or [])
    assert serve.after_first_page(delay=0.05) is True
    assert serve.after_first_page(delay=0.05) is False  # every later page run: nothing more
    assert started.wait(5)
    assert "torch" in serve.LATER_MODULES


def test_the_predictor_imports_neither_sklearn_nor_scipys_statistics_and_images():
    """The first predictions (the Cohort page's job, an edit) wait for torch only: the metrics' and the
    resampling's scipy / sklearn (about 0.7 s here) are imported where they are used."""
    script = (
        "import sys\nfrom hyperfusion.inference.predictor import Predictor\n"
        "print(sorted(m for m in ('sklearn', 'scipy.stats', 'scipy.ndimage') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
