"""A cache of attribution maps, so a slow map (integrated gradients: seconds) is computed once.

A map's key is the sha256 of everything that determines it: the weights' sha256 of every member, the
scan's sha256, the parsed record, the method, its resolved settings (output and seed included), the target
class and the baseline's description (:func:`attribution_key`). Entries live in memory (least recently used
dropped beyond ``max_bytes``) and, with a ``root`` folder, on disk as ``KEY.npy`` (float32, read with
``allow_pickle=False``) plus ``KEY.json``, each written under a temporary name and moved into place, so the
dashboard keeps its maps across restarts and processes sharing the folder never read half a file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyperfusion.explain.maps import ImageAttribution
from hyperfusion.files import atomic_write

__all__ = ["AttributionCache", "attribution_key", "canonical_record"]

DEFAULT_MAX_BYTES = 256 * 2**20


def canonical_record(parsed: Mapping[str, Any]) -> dict[str, Any]:
    """A parsed record as JSON-able plain values, NaN as None, keys sorted (a stable part of a key)."""
    out = {}
    for key in sorted(parsed):
        value = parsed[key]
        if isinstance(value, float | np.floating) and math.isnan(value):
            value = None
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def attribution_key(**parts: Any) -> str:
    """sha256 of the JSON of ``parts`` (sorted keys): e.g. weights, scan, record, method, settings, target,
    baseline."""
    text = json.dumps(parts, sort_keys=True, default=str, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


class AttributionCache:
    """Attribution maps by key, in memory and optionally on disk. Thread-safe.

    Args:
        max_bytes: the in-memory entries' total size above which the least recently used are dropped.
        root: a folder for the on-disk copies (created on first write); None keeps maps in memory only.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, root: str | os.PathLike | None = None) -> None:
        self.max_bytes = int(max_bytes)
        self.root = Path(root).expanduser() if root is not None else None
        self._entries: OrderedDict[str, ImageAttribution] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> ImageAttribution | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
        found = self._read(key)
        with self._lock:
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._remember(key, found)
        return found

    def put(self, key: str, attribution: ImageAttribution) -> None:
        with self._lock:
            self._remember(key, attribution)
        if self.root is not None:
            self._write(key, attribution)

    def clear(self) -> None:
        """Forget the in-memory entries (files on disk stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _remember(self, key: str, attribution: ImageAttribution) -> None:
        if key in self._entries:
            self._bytes -= self._entries.pop(key).views.nbytes
        self._entries[key] = attribution
        self._bytes += attribution.views.nbytes
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.views.nbytes

    # --- disk ------------------------------------------------------------------------------------------
    def _read(self, key: str) -> ImageAttribution | None:
        if self.root is None:
            return None
        try:
            meta = json.loads((self.root / f"{key}.json").read_text())
            views = np.load(self.root / f"{key}.npy", allow_pickle=False)
            return ImageAttribution.from_state(views, meta)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or unreadable: recomputed and rewritten, never trusted

    def _write(self, key: str, attribution: ImageAttribution) -> None:
        views, meta = attribution.to_state()
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / f"{key}.npy", lambda f: np.save(f, np.asarray(views), allow_pickle=False))
        atomic_write(self.root / f"{key}.json", lambda f: f.write(json.dumps(meta, default=float).encode()))
