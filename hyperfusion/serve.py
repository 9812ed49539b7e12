"""The dashboard's server process (``hyperfusion app``): Streamlit's own ``streamlit run``, with the modules the
first page needs imported in a background thread while the server starts and the browser loads Streamlit's
front end. They are then imported already when the first page runs (pandas and the cohort reader: about 0.4 s
here; Streamlit's emoji table, which its first alert compiles: about 0.2 s). ``streamlit run app/Home.py``
serves the same dashboard, only its first page waits for those imports. Once the first page has been sent,
torch and the networks' code follow (:func:`after_first_page`, called by the Home script either way).

Run: ``python -m hyperfusion.serve app/Home.py [streamlit flags]`` (what ``hyperfusion app`` executes).
"""

from __future__ import annotations

import sys
import threading

#: Imported before the first page asks for them: what Home.py and every page's shared parts import, and the
#: modules Streamlit imports on its first use of an alert (not torch: the first page does not need it).
WARM_MODULES = (
    "pandas",
    "hyperfusion.data.cohort",
    "hyperfusion.data.scenario",
    "hyperfusion.pages.session",
    "hyperfusion.inference.model_files",
    "hyperfusion.report",
    "streamlit.emojis",
)


#: Imported in the background once the first page has been sent (:func:`after_first_page`): what the other
#: pages need first, torch and the networks' code (about a second here). A page opened later (the Cohort page's
#: background job, the Subject page's predictions) then finds them imported.
LATER_MODULES = ("torch", "hyperfusion.inference.predictor", "hyperfusion.models")
#: Seconds after the first page's run before :data:`LATER_MODULES` are imported: its last messages are sent first
LATER_DELAY_S = 0.1

_later_lock = threading.Lock()
_later_started = False


def after_first_page(delay: float = LATER_DELAY_S) -> bool:
    """Called at the end of every run of the dashboard's Home script: the first call in this process imports
    :data:`LATER_MODULES` in a daemon thread ``delay`` seconds later (under ``streamlit run`` as under
    ``hyperfusion app``). Returns whether this call started it."""
    global _later_started  # noqa: PLW0603 - once per process
    with _later_lock:
        if _later_started:
            return False
        _later_started = True
    timer = threading.Timer(delay, warm, args=(LATER_MODULES,))
    timer.daemon = True
    timer.name = "hyperfusion-later-imports"
    timer.start()
    return True


def warm(modules=WARM_MODULES) -> list[str]:
    """Import ``modules``; returns those that failed (they are then imported, or refused, where they are used)."""
    import importlib

    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a warm-up never stops the server; the page reports the real error
            failed.append(name)
    return failed


def wait_for_port(port: int, timeout: float = 60.0, proc=None) -> bool:
    """Whether 127.0.0.1:``port`` answers within ``timeout`` s (False at once when the subprocess ``proc`` has
    ended)."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _after_listening(port: int, timeout: float = 60.0) -> None:
    """Warm the imports once the server listens on ``port`` (not before: they would delay its start)."""
    wait_for_port(port, timeout)
    warm()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    port = next((int(a.split("=", 1)[1]) for a in args if a.startswith("--server.port=")), 8501)
    threading.Thread(
        target=_after_listening, args=(port,), name="hyperfusion-warm-imports", daemon=True
    ).start()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", *args]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
