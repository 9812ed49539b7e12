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

__all__ = ["atomic_write", "cache_root", "shown_path"]


def cache_root(*parts: str) -> Path:
    """``$HYPERFUSION_CACHE`` (default ``~/.cache/hyperfusion``), joined with ``parts`` (e.g. "volumes")."""
    env = os.environ.get("HYPERFUSION_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "hyperfusion"
    return root.joinpath(*parts)


def shown_path(path: str | os.PathLike | None, *roots: str | os.PathLike) -> str:
    """A path as a page or a report may show it, never absolute: relative to the first of ``roots`` (e.g.
    the demo's assets folder, then the working directory) that holds it, ``~/…`` under the home folder, else
    its last two parts after ``…/`` (a path recorded on another machine, such as the one a demo was built on,
    says nothing about this one and would leak that machine's layout)."""
    if path is None or str(path) == "":
        return ""
    p = Path(path).expanduser()
    if not p.is_absolute():
        return p.as_posix()
    for root in (*roots, Path.cwd()):
        root = Path(root).expanduser().resolve()
        with contextlib.suppress(ValueError):
            relative = p.resolve().relative_to(root)
            return (
                (Path(root.name) / relative).as_posix()
                if roots and root != Path.cwd()
                else relative.as_posix()
            )
    with contextlib.suppress(ValueError, RuntimeError):
        return (Path("~") / p.resolve().relative_to(Path.home().resolve())).as_posix()
    return "…/" + "/".join(p.parts[-2:])


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
