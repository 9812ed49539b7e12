"""Where hyperfusion keeps files, and how it writes them: the cache root and the one atomic writer.

Both sit beside :mod:`hyperfusion.errors` below every layer, so each layer writes files the same way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "cache_root"]


def cache_root(*parts: str) -> Path:
    """``$HYPERFUSION_CACHE`` (default ``~/.cache/hyperfusion``), joined with ``parts`` (e.g. "volumes")."""
    env = os.environ.get("HYPERFUSION_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "hyperfusion"
    return root.joinpath(*parts)


def atomic_write(path: str | Path, data: bytes | str | Callable[[BinaryIO], object]) -> Path:
    """Write ``data`` (bytes, UTF-8 text, or a function that writes to a binary file object) to a temporary
    file beside ``path`` and rename it into place: a reader sees the old file or the new one, never half of
    one, and concurrent writers of the same content are safe. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
