from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

import hyperfusion.data.volume_cache as volume_cache
from hyperfusion.data.geometry import Geometry, ad_box, model_input
from hyperfusion.data.volume_cache import VolumeCache, default_cache_root
from hyperfusion.errors import DataError


@pytest.fixture
def hash_calls(monkeypatch) -> list[Path]:
    """Records every content hash the cache computes."""
    calls: list[Path] = []
    real = volume_cache.image_sha256

    def counting(source):
        calls.append(Path(source))
        return real(source)

    monkeypatch.setattr(volume_cache, "image_sha256", counting)
    return calls


@pytest.fixture
def model_input_calls(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = volume_cache.model_input

    def counting(source, geometry):
        calls.append(Path(source))
        return real(source, geometry)

    monkeypatch.setattr(volume_cache, "model_input", counting)
    return calls


def test_miss_computes_and_stores_then_hit_reads_the_same_array(tmp_path, small_scan, model_input_calls):
    cache = VolumeCache(tmp_path / "cache")
    g = ad_box(2.0)
    assert (small_scan, g) not in cache
    first = cache.get(small_scan, g)
    assert (small_scan, g) in cache
    np.testing.assert_array_equal(first, model_input(small_scan, g))
    assert first.shape == (2, 1, 32, 48, 32) and first.dtype == np.float32

    second = cache.get(small_scan, g)
    np.testing.assert_array_equal(second, first)
    assert len(model_input_calls) == 1
    entries = list((tmp_path / "cache").rglob("*.npy"))
    assert entries == [cache.entry_path(small_scan, g)]
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # no half-written leftovers


def test_warm_reads_never_rehash_the_scan(tmp_path, small_scan, hash_calls):
    g = ad_box(2.0)
    cache = VolumeCache(tmp_path)
    cache.get(small_scan, g)
    cache.get(small_scan, g)
    assert len(hash_calls) == 1
    # A new process (a new cache object) finds the hash in the on-disk index.
    fresh = VolumeCache(tmp_path)
    fresh.get(small_scan, g)
    assert len(hash_calls) == 1


def test_a_changed_scan_is_rehashed_and_recomputed(tmp_path, small_scan, write_nifti, hash_calls):
    g = ad_box(2.0)
    cache = VolumeCache(tmp_path)
    before = cache.get(small_scan, g)
    st = small_scan.stat()

    # Same path, new content (a flipped brain), new mtime.
    import nibabel as nib

    img = nib.load(small_scan)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::-1].copy(), img.affine), small_scan)
    os.utime(small_scan, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    after = cache.get(small_scan, g)
    assert len(hash_calls) == 2
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, model_input(small_scan, g))


def test_key_depends_on_geometry_and_preprocessing_version(tmp_path, small_scan, monkeypatch):
    cache = VolumeCache(tmp_path)
    g2 = ad_box(2.0)
    whole = Geometry.from_dict({**g2.to_dict(), "hemispheres": False})
    assert cache.get(small_scan, whole).shape == (1, 1, 32, 48, 64)
    assert cache.entry_path(small_scan, g2) != cache.entry_path(small_scan, whole)
    assert (small_scan, g2) not in cache

    old = cache.entry_path(small_scan, whole)
    monkeypatch.setattr(volume_cache, "PREPROCESSING_VERSION", "a-newer-pipeline")
    assert cache.entry_path(small_scan, whole) != old
    assert (small_scan, whole) not in cache


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),  # truncated
        lambda p: p.write_bytes(b"not an array at all"),
        lambda p: np.save(p, np.zeros((2, 1, 32, 48, 31), np.float32)),  # wrong shape
        lambda p: np.save(p, np.zeros((2, 1, 32, 48, 32), np.float64)),  # wrong dtype
        lambda p: np.save(p, np.full((2, 1, 32, 48, 32), np.nan, np.float32)),
        lambda p: np.save(p, np.array([{"payload": 1}], dtype=object), allow_pickle=True),  # pickled
    ],
)
def test_a_damaged_entry_is_recomputed_not_trusted(tmp_path, small_scan, model_input_calls, damage):
    g = ad_box(2.0)
    cache = VolumeCache(tmp_path)
    good = cache.get(small_scan, g)
    entry = cache.entry_path(small_scan, g)
    damage(entry)

    again = cache.get(small_scan, g)
    np.testing.assert_array_equal(again, good)
    assert len(model_input_calls) == 2
    np.testing.assert_array_equal(np.load(entry, allow_pickle=False), good)  # repaired on disk


def test_a_damaged_index_only_costs_a_rehash(tmp_path, small_scan, hash_calls):
    g = ad_box(2.0)
    VolumeCache(tmp_path).get(small_scan, g)
    (tmp_path / "content_hashes.json").write_text("{ half a json")
    np.testing.assert_array_equal(VolumeCache(tmp_path).get(small_scan, g), model_input(small_scan, g))
    assert len(hash_calls) == 2


def test_a_failed_write_leaves_no_file(tmp_path, small_scan, monkeypatch):
    g = ad_box(2.0)
    cache = VolumeCache(tmp_path)
    cache.entry_path(small_scan, g)  # the hash index is written; now the entry's write fails

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(volume_cache.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.get(small_scan, g)
    assert not list(tmp_path.rglob("*.npy"))
    assert not list(tmp_path.rglob("*.tmp"))


def test_concurrent_writers_leave_one_valid_entry(tmp_path, small_scan):
    g = ad_box(2.0)
    expected = model_input(small_scan, g)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def worker():
        try:
            results.append(VolumeCache(tmp_path).get(small_scan, g))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 4
    for r in results:
        np.testing.assert_array_equal(r, expected)
    assert len(list(tmp_path.rglob("*.npy"))) == 1
    assert not list(tmp_path.rglob("*.tmp"))


def test_clear_removes_entries_and_index_only(tmp_path, small_scan, model_input_calls):
    g = ad_box(2.0)
    cache = VolumeCache(tmp_path)
    cache.get(small_scan, g)
    bystander = tmp_path / "README.txt"
    bystander.write_text("not the cache's")
    cache.clear()
    assert not list(tmp_path.rglob("*.npy"))
    assert not (tmp_path / "content_hashes.json").exists()
    assert bystander.exists()
    assert (small_scan, g) not in cache
    cache.get(small_scan, g)
    assert len(model_input_calls) == 2


def test_a_missing_scan_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="gone.nii.gz: file not found"):
        VolumeCache(tmp_path).get(tmp_path / "gone.nii.gz", ad_box(2.0))


def test_default_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERFUSION_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_root() == tmp_path / "elsewhere" / "volumes"
    assert VolumeCache().root == tmp_path / "elsewhere" / "volumes"
    monkeypatch.delenv("HYPERFUSION_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert VolumeCache().root == tmp_path / "home" / ".cache" / "hyperfusion" / "volumes"
