"""A disk cache of preprocessed model inputs, so training and the dashboard decode each ``.nii.gz`` once.

An entry is :func:`hyperfusion.data.geometry.model_input` of one scan under one geometry, stored as a plain
``.npy`` file (float32, loaded with ``allow_pickle=False``). Its key is the sha256 of the scan's bytes, the
geometry's JSON and :data:`~hyperfusion.data.geometry.PREPROCESSING_VERSION`: a changed scan, geometry or
pipeline is a different entry, never a stale one.

Hashing a 1 mm scan costs about as much as reading it, so the content hash is memoised per
(path, size, mtime_ns), in memory and in a small JSON index next to the entries: a warm read is a ``stat``
and an ``np.load``. (Like ``make``, this trusts that a file rewritten with the same size within the same
mtime tick is unchanged.)

Several processes (DDP workers, data-loader workers, the dashboard) may share one cache: every file is
written to a temporary name and moved into place with ``os.replace``, which is atomic, so a reader sees the
old file, the new one, or none, never half of one. A file that does not load as the expected array is
recomputed and replaced, not trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from hyperfusion.data.geometry import PREPROCESSING_VERSION, Geometry, model_input
from hyperfusion.data.nifti import image_sha256
from hyperfusion.errors import DataError
from hyperfusion.files import atomic_write, cache_root

_INDEX_NAME = "content_hashes.json"
_INDEX_FORMAT = 1


def default_cache_root() -> Path:
    """``$HYPERFUSION_CACHE/volumes`` if that variable is set, else ``~/.cache/hyperfusion/volumes``."""
    return cache_root("volumes")


class VolumeCache:
    """Preprocessed volumes on disk, keyed by scan content and geometry.

    Args:
        root: the cache folder (created on first write); default :func:`default_cache_root`.

    ``cache.get(path, geometry)`` returns the same array as ``model_input(path, geometry)``: float32
    (n_views, 1, D, H, W'). ``(path, geometry) in cache`` says whether an entry exists.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_root()
        self._hashes: dict[str, tuple[int, int, str]] = {}  # resolved path -> (size, mtime_ns, sha256)
        self._index_loaded = False

    # --- public -------------------------------------------------------------------------------------------
    def get(self, source_path: str | os.PathLike, geometry: Geometry) -> np.ndarray:
        """The scan's model input under ``geometry``: read from the cache, or computed and stored."""
        entry = self.entry_path(source_path, geometry)
        expected = (geometry.n_views, 1, *geometry.input_shape)
        cached = _load_entry(entry, expected)
        if cached is not None:
            return cached
        arr = model_input(source_path, geometry)
        atomic_write(entry, lambda f: np.save(f, arr, allow_pickle=False))
        return arr

    def entry_path(self, source_path: str | os.PathLike, geometry: Geometry) -> Path:
        """Where the entry of (scan, geometry) lives (whether or not it exists yet)."""
        key = hashlib.sha256(
            "\n".join(
                [
                    self._content_sha256(source_path),
                    json.dumps(geometry.to_dict(), sort_keys=True),
                    PREPROCESSING_VERSION,
                ]
            ).encode()
        ).hexdigest()
        return self.root / key[:2] / f"{key}.npy"

    def __contains__(self, item: tuple[str | os.PathLike, Geometry]) -> bool:
        source_path, geometry = item
        return self.entry_path(source_path, geometry).is_file()

    def clear(self) -> None:
        """Delete every entry and the hash index (files this cache wrote, nothing else in ``root``)."""
        self._hashes.clear()
        self._index_loaded = False
        if not self.root.is_dir():
            return
        for sub in self.root.iterdir():
            if sub.is_dir() and len(sub.name) == 2:
                for f in sub.glob("*.npy"):
                    f.unlink(missing_ok=True)
                for f in sub.glob("*.tmp"):
                    f.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    sub.rmdir()
        (self.root / _INDEX_NAME).unlink(missing_ok=True)

    # --- content hashes -----------------------------------------------------------------------------------
    def _content_sha256(self, source_path: str | os.PathLike) -> str:
        path = Path(source_path).resolve()
        if not path.is_file():
            raise DataError(
                f"{source_path}: file not found. Check the path (cohort scans: COHORT_DIR/images/)"
            )
        st = path.stat()
        key = str(path)
        known = self._lookup(key, st)
        if known is not None:
            return known
        digest = image_sha256(path)
        self._hashes[key] = (st.st_size, st.st_mtime_ns, digest)
        self._save_index(key)
        return digest

    def _lookup(self, key: str, st: os.stat_result) -> str | None:
        if not self._index_loaded:
            # Entries this process learnt win over the disk index.
            self._hashes = {**self._read_index(), **self._hashes}
            self._index_loaded = True
        memo = self._hashes.get(key)
        if memo is not None and memo[0] == st.st_size and memo[1] == st.st_mtime_ns:
            return memo[2]
        return None

    def _read_index(self) -> dict[str, tuple[int, int, str]]:
        try:
            raw = json.loads((self.root / _INDEX_NAME).read_text())
            if raw.get("format") != _INDEX_FORMAT:
                return {}
            return {
                k: (int(v[0]), int(v[1]), str(v[2]))
                for k, v in raw["files"].items()
                if isinstance(v, list) and len(v) == 3
            }
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}  # missing or damaged: it is only a memo, the hashes can be recomputed

    def _save_index(self, key: str) -> None:
        # Merge with what other processes wrote meanwhile; a lost race costs a re-hash, never a wrong hash.
        merged = {**self._read_index(), key: self._hashes[key]}
        payload = {"format": _INDEX_FORMAT, "files": {k: list(v) for k, v in merged.items()}}
        atomic_write(self.root / _INDEX_NAME, lambda f: f.write(json.dumps(payload).encode()))


def _load_entry(path: Path, expected_shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array, or None when it is missing or not exactly what ``model_input`` would return."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # missing, truncated, garbage, or an object array that would need unpickling
    if (
        not isinstance(arr, np.ndarray)
        or arr.dtype != np.float32
        or arr.shape != expected_shape
        or not np.isfinite(arr).all()
    ):
        return None
    return arr
