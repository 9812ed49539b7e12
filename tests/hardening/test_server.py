"""Server defaults of the dashboard and what it logs.

The settings are read back the way Streamlit itself reads them (its config loader, in a fresh process): from
.streamlit/config.toml when started in the repository, and from the flags of ``hyperfusion app`` anywhere
else. A real ``hyperfusion app`` server is started once to show that it listens on loopback only and refuses
an upload without the XSRF token.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tomllib

from hyperfusion.cli import SERVER_DEFAULTS, _app_command, build_parser, main
from tests.hardening.corpus import MODEL, RECORD, write_ok_scan, write_record

REPO = Path(__file__).resolve().parents[2]
KEYS = [*SERVER_DEFAULTS, "server.address", "server.port"]

_READ_CONFIG = """
import json, sys
from streamlit import config
def value(text):  # what click does for the typed options of `streamlit run`
    return {"true": True, "false": False}.get(text, int(text) if text.isdigit() else text)
flags = {k: value(v) for k, v in (arg[2:].split("=", 1) for arg in sys.argv[1:])}
config.get_config_options(force_reparse=True, options_from_flags=flags)
print(json.dumps({k: config.get_option(k) for k in json.loads(sys.stdin.readline())}))
"""


def _effective(cwd: Path, flags: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _READ_CONFIG, *flags],
        input=json.dumps(KEYS) + "\n",
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "HOME": str(cwd)},
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _app_flags(*args: str) -> list[str]:
    return [
        f for f in _app_command(build_parser().parse_args(["app", *args]), "Home.py") if f.startswith("--")
    ]


def _expected(**changes) -> dict:
    expected = {**SERVER_DEFAULTS, "server.address": "127.0.0.1", "server.port": 8501, **changes}
    expected["client.showErrorDetails"] = "none"
    return expected


def test_config_toml_holds_the_same_settings_as_the_command():
    toml = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    flat = {f"{section}.{k}": v for section, values in toml.items() for k, v in values.items()}
    assert flat == {**SERVER_DEFAULTS, "server.address": "127.0.0.1"}


def test_streamlit_reads_the_defaults_from_the_repository_config(tmp_path):
    got = _effective(REPO, [])
    assert {k: got[k] for k in SERVER_DEFAULTS} == {k: _expected()[k] for k in SERVER_DEFAULTS}
    assert got["server.address"] == "127.0.0.1"


def test_hyperfusion_app_passes_the_defaults_from_any_directory(tmp_path):
    assert _effective(tmp_path, _app_flags()) == _expected()
    assert _effective(tmp_path, []) != _expected()  # without the flags Streamlit's own defaults differ


def test_address_upload_limit_and_dev_mode_are_the_only_knobs(tmp_path):
    got = _effective(tmp_path, _app_flags("--address", "0.0.0.0", "--max-upload-mb", "16", "--dev"))
    assert got == _expected(
        **{
            "server.address": "0.0.0.0",
            "server.maxUploadSize": 16,
            "server.fileWatcherType": "auto",
            "server.runOnSave": True,
        }
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _other_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_real_server_listens_on_loopback_only_and_checks_xsrf(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hyperfusion.cli", "app", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "HOME": str(tmp_path),
            "PYTHONPATH": str(REPO),
        },  # this checkout's code, not an install
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    assert r.read() == b"ok"
                    break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the dashboard did not start within 60 s")
                time.sleep(0.3)
        other = _other_address()
        if other is not None:
            with pytest.raises(OSError), socket.create_connection((other, port), timeout=2):
                pass
        upload = urllib.request.Request(
            f"http://127.0.0.1:{port}/_stcore/upload_file/session/file", data=b"x" * 100, method="PUT"
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(upload, timeout=5)
        assert info.value.code == 403 and b"XSRF" in info.value.read()  # no XSRF token, no upload
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # `hyperfusion app` is the server process itself: stopping it stops the server (none is left running)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


# --- logs ------------------------------------------------------------------------------------------------
def test_app_and_inference_code_never_log_or_print_values():
    for folder in ["app", "hyperfusion/inference", "hyperfusion/explain", "hyperfusion/data"]:
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            assert "import logging" not in text and "getLogger" not in text, path
            if folder != "hyperfusion/data":  # data/synthetic prints progress only from the CLI
                assert not re.search(r"(?<![\w.])print\(", text), path  # fingerprint( is not print(


def test_a_prediction_logs_nothing_of_the_record_or_scan(tmp_path, capsys, caplog):
    record = {**RECORD, "AGE": 87.25, "ABETA": 1234.5, "FDG": 1.137}
    scan, row = write_ok_scan(tmp_path), write_record(tmp_path, record)
    caplog.set_level(logging.DEBUG)
    assert main(["predict", "--model", str(MODEL), "--image", str(scan), "--tabular", str(row)]) == 0
    out = capsys.readouterr()
    logged = caplog.text + out.err
    for value in ["87.25", "1234.5", "1.137", "Female"]:
        assert value not in logged
    assert "87.25" in out.out  # the answer itself, on stdout, echoes the record
