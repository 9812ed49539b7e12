"""Uploads against the real dashboard server: the size limit holds, and an upload never touches the disk.

The server is started with exactly the command line of ``hyperfusion app --max-upload-mb 4`` (this checkout's
code). A client does what the browser does: it takes the XSRF cookie, opens a session over the WebSocket
(rerunning a page), and PUTs multipart files to Streamlit's upload endpoint with the token.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from hyperfusion.cli import _app_command, build_parser

ws_client = pytest.importorskip("websockets.sync.client")
from streamlit.proto.BackMsg_pb2 import BackMsg  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
LIMIT_MB = 4
MB = 2**20


@dataclass
class Server:
    port: int
    proc: subprocess.Popen
    tmpdir: Path  # the server's TMPDIR
    watched: list[Path]  # folders nothing may be written to

    def get(self, path: str) -> tuple[int, bytes, list[str]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return r.status, r.read(), r.headers.get_all("Set-Cookie") or []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("live")
    home, tmp, cwd = root / "home", root / "tmp", root / "cwd"
    for folder in (home, tmp, cwd):
        folder.mkdir()
    port = _free_port()
    args = build_parser().parse_args(["app", "--port", str(port), "--max-upload-mb", str(LIMIT_MB)])
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)}
    env.pop("XDG_CACHE_HOME", None)
    with (root / "server.log").open("w") as log:
        proc = subprocess.Popen(
            _app_command(args, str(REPO / "app" / "Home.py")), cwd=cwd, env=env, stdout=log, stderr=log
        )
    server = Server(port, proc, tmp, [home, tmp, cwd])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert server.get("/_stcore/health")[1] == b"ok"
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the dashboard did not start: " + (root / "server.log").read_text()[-2000:])
                time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Session:
    """A browser's view of the server: the XSRF cookie, and a script session over the WebSocket
    (``with Session(server, page) as s``: ``s.texts`` is what ``page`` showed)."""

    def __init__(self, server: Server, page: str) -> None:
        self.server, self.page = server, page
        cookies = SimpleCookie()
        for header in server.get("/_stcore/health")[2]:
            cookies.load(header)
        self.xsrf = cookies["_streamlit_xsrf"].value
        self.id = ""
        self.texts: list[str] = []

    def __enter__(self) -> Session:
        self._connection = ws_client.connect(
            f"ws://127.0.0.1:{self.server.port}/_stcore/stream",
            subprotocols=["streamlit", self.xsrf],  # Streamlit's client passes the token as the 2nd protocol
            additional_headers={
                "Cookie": f"_streamlit_xsrf={self.xsrf}",
                "Origin": f"http://127.0.0.1:{self.server.port}",
            },
            open_timeout=20,
        )
        self.ws = self._connection.__enter__()
        self.texts = self.run(self.page)
        return self

    def __exit__(self, *exc) -> None:
        self._connection.__exit__(*exc)

    def run(self, page: str) -> list[str]:
        """Run ``page`` (e.g. "Upload"; "" for Home) in this session; the headings and text it showed."""
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_name = page
        self.ws.send(msg.SerializeToString())
        texts = []
        while True:
            fwd = ForwardMsg()
            fwd.ParseFromString(self.ws.recv(timeout=60))
            kind = fwd.WhichOneof("type")
            if kind == "new_session":
                self.id = fwd.new_session.initialize.session_id
            elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                element = fwd.delta.new_element
                field = element.WhichOneof("type")
                if field in ("heading", "markdown"):
                    texts.append(getattr(element, field).body)
            elif kind == "script_finished":
                return texts

    def put(self, size: int, chunked: bool = False, pause_after: int | None = None, during=None) -> int:
        """PUT a file of ``size`` bytes; with ``pause_after``, stop sending there and call ``during()`` first."""
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="scan.nii.gz"\r\n'
            "Content-Type: application/gzip\r\n\r\n"
        ).encode()
        body = head + os.urandom(size) + f"\r\n--{boundary}--\r\n".encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        try:
            conn.putrequest("PUT", f"/_stcore/upload_file/{self.id}/{uuid.uuid4()}")
            conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
            conn.putheader("X-Xsrftoken", self.xsrf)
            conn.putheader("Cookie", f"_streamlit_xsrf={self.xsrf}")
            if chunked:  # no Content-Length: the server must count what arrives
                conn.putheader("Transfer-Encoding", "chunked")
            else:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            parts = [body] if pause_after is None else [body[:pause_after], body[pause_after:]]
            for n, part in enumerate(parts):
                if n == 1 and during is not None:
                    time.sleep(1.0)  # the server has read what was sent
                    during()
                for start in range(0, len(part), 256 * 1024):
                    chunk = part[start : start + 256 * 1024]
                    conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                conn.send(b"0\r\n\r\n")
            return conn.getresponse().status
        except (BrokenPipeError, ConnectionResetError):  # refused before the whole body was sent
            return conn.getresponse().status
        finally:
            conn.close()


def _snapshot(folders: list[Path]) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for f in folders for p in f.rglob("*")}


def test_an_upload_over_the_limit_is_refused_and_the_server_goes_on(server):
    with Session(server, "Upload") as session:
        assert "Upload a subject" in session.texts
        # with the same session and token a small file is taken: the refusals below are about size alone
        assert session.put(1000) == 204
        assert session.put((LIMIT_MB + 1) * MB) == 413  # an honest Content-Length: refused before the body
        assert (
            session.put(2 * LIMIT_MB * MB, chunked=True) == 413
        )  # no Content-Length: cut off while streaming
        assert server.proc.poll() is None
        # the same session goes on: another upload, another run of the page
        assert session.put(1000) == 204
        assert "Upload a subject" in session.run("Upload")
    # and the server answers anyone
    assert server.get("/_stcore/health")[:2] == (200, b"ok")
    status, page, _ = server.get("/")
    assert status == 200 and b"<html" in page.lower()
    with Session(server, "") as home:  # a new session, on the Home page
        assert "HyperFusion" in home.texts


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads the server's open files from /proc")
def test_an_upload_is_received_in_memory_not_in_a_temporary_file(server):
    """Starlette spools a file part above 1 MB to an unnamed temporary file while it arrives; the Upload page
    raises that threshold to the upload limit, so a scan under the limit never touches the disk."""
    before = _snapshot(server.watched)
    open_files: list[str] = []

    def look() -> None:  # mid-upload: every file the server holds open
        fds = Path(f"/proc/{server.proc.pid}/fd")
        open_files.extend(os.readlink(fd) for fd in fds.iterdir() if fd.exists())

    with Session(server, "Upload") as session:
        assert session.put(3 * MB, pause_after=2 * MB, during=look) == 204
    assert open_files  # the look happened
    assert [f for f in open_files if f.startswith(str(server.tmpdir)) or "(deleted)" in f] == []
    assert _snapshot(server.watched) == before
