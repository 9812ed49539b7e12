"""Where and how torch runs a request: the thread budget, the device and the precision (issue #17).

- :func:`thread_budget`: run a block with n intra-op threads, set for the calling thread only (OpenMP's
  per-thread setting) and restored after; :func:`default_threads`: ``HYPERFUSION_THREADS``, else every core
  this process may use.
- :func:`resolve_device`: ``--device`` / ``HYPERFUSION_DEVICE`` / "cpu", refusing a CUDA device torch lacks.
- :func:`resolve_precision` and :func:`autocast`: "float32" (default), "bfloat16" or "float16" through
  ``torch.autocast`` (``HYPERFUSION_PRECISION``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from hyperfusion.errors import DataError

__all__ = [
    "PRECISIONS",
    "autocast",
    "default_threads",
    "resolve_device",
    "resolve_precision",
    "thread_budget",
]

#: Precisions a map may run in: float32 (default), or autocast to bfloat16 / float16.
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_threads() -> int:
    """The per-request thread budget: ``HYPERFUSION_THREADS``, else every core this process may use."""
    raw = os.environ.get("HYPERFUSION_THREADS")
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise DataError(f"HYPERFUSION_THREADS must be a positive whole number of threads, not {raw!r}")
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def thread_budget(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads (None: :func:`default_threads`), then restore.

    torch's thread count is set for the calling thread (OpenMP's per-thread setting), so a dashboard session
    that explains with two threads leaves another session's one-thread predictions as they were.
    """
    n = default_threads() if threads is None else int(threads)
    if n < 1:
        raise DataError(f"threads must be a positive whole number, not {threads!r}")
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, else ``HYPERFUSION_DEVICE``, else "cpu"; refuses a CUDA device this machine does not have."""
    raw = device if device is not None else os.environ.get("HYPERFUSION_DEVICE") or "cpu"
    try:
        resolved = torch.device(raw)
    except (RuntimeError, TypeError):
        raise DataError(
            f"unknown device {raw!r}: use cpu, cuda or cuda:N (or set HYPERFUSION_DEVICE)"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DataError(
                f"device {raw!r} was asked for, but torch sees no CUDA GPU here (torch {torch.__version__}): "
                "use --device cpu / HYPERFUSION_DEVICE=cpu, or install a CUDA build of torch"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DataError(f"device {raw!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif resolved.type != "cpu":
        raise DataError(f"device {raw!r} is not supported: use cpu or cuda")
    return resolved


def resolve_precision(precision: str | None = None) -> str:
    """``precision``, else ``HYPERFUSION_PRECISION``, else "float32"; one of :data:`PRECISIONS`."""
    value = precision if precision is not None else os.environ.get("HYPERFUSION_PRECISION") or "float32"
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    value = aliases.get(str(value).lower(), str(value).lower())
    if value not in PRECISIONS:
        raise DataError(f"unknown precision {precision!r}: use one of {list(PRECISIONS)} (or bf16, fp16)")
    return value


@contextmanager
def autocast(device: torch.device | str, precision: str) -> Iterator[None]:
    """``torch.autocast`` to the precision's dtype on ``device``'s type; nothing for float32."""
    dtype = PRECISIONS[resolve_precision(precision)]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
        yield
