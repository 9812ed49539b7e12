"""Loading models before a page asks for them: torch's import and the networks (about 1.5 s on a 2-core CPU
for the seven demo models) are paid in the background while the user reads the Home page, not when the
Subject or Cohort page first needs a prediction. Importing this module does not import torch."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterable
from pathlib import Path

from hyperfusion.errors import HyperFusionError

_STARTED: dict[tuple[str, ...], threading.Thread] = {}
_LOCK = threading.Lock()


def warm_up(model_dirs: Iterable[str | Path]) -> threading.Thread:
    """Load every member of the models in ``model_dirs`` in a daemon thread, once per set of directories per
    process (:func:`~hyperfusion.inference.predictor.load_shared` keeps them, and every Predictor made later
    finds them loaded). Returns the thread (the one started earlier for the same set). A model that cannot be
    loaded is skipped: the page that uses it says why."""
    key = tuple(sorted(str(Path(d)) for d in model_dirs))
    with _LOCK:
        if key not in _STARTED:
            _STARTED[key] = threading.Thread(
                target=_load, args=(key,), daemon=True, name="hyperfusion-warm-up"
            )
            _STARTED[key].start()
        return _STARTED[key]


def _load(model_dirs: tuple[str, ...]) -> None:
    from hyperfusion.inference.discovery import member_dirs
    from hyperfusion.inference.predictor import load_shared

    for model_dir in model_dirs:
        try:
            for member in member_dirs(model_dir):
                load_shared(member)
        except (HyperFusionError, OSError):
            continue


@atexit.register
def _join(timeout: float = 20.0) -> None:
    """At exit, wait for a warm-up still loading (a daemon thread inside torch at shutdown can abort)."""
    for thread in list(_STARTED.values()):
        thread.join(timeout)
