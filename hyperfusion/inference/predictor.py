"""The Predictor: every loaded model's prediction for one scan and one or many versions of a record.

It loads model directories and ensembles (directories of model directories), keyed and shared by the sha256 of
their weights, preprocesses a subject with each model's own card (geometry, intensity normalisation, fitted
tabular preprocessing), and computes each model's image features (``encode_image``) once per (model, scan).
A tabular edit then runs only ``decode``, and a batch of edited records runs as one batch: that is what makes
the dashboard's what-if live on a CPU. Both hemispheres are averaged, as in training's evaluation; an
ensemble combines its members per sample by inverse-entropy weighting and reports their spread.

``Predictor(device="cuda")`` (or ``HYPERFUSION_DEVICE``) runs the networks on a GPU: each loaded network gets
one copy per device, the image features stay there, and answers come back as NumPy arrays.
:meth:`Predictor.encode_stream` encodes many scans in batches, loading the next batch with worker threads (what
:func:`hyperfusion.inference.cohort.predict_cohort` uses).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyperfusion.data.cohort import parse_record
from hyperfusion.data.geometry import Geometry, model_input
from hyperfusion.data.nifti import image_sha256, load_nifti
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.data.tabular import TabularPreprocessor
from hyperfusion.data.volume_cache import VolumeCache
from hyperfusion.errors import ModelFileError
from hyperfusion.inference.discovery import member_dirs
from hyperfusion.inference.model_files import ModelCard, load_model, read_card
from hyperfusion.models.network import FusionNetwork, ImageFeatures, decode_records, subject_output
from hyperfusion.runtime import resolve_device
from hyperfusion.training.metrics import combine_members
from hyperfusion.training.ood import combine as ood_combine
from hyperfusion.training.ood import ood_check

_LOADED: dict[str, LoadedModel] = {}  # model key -> model, shared by every Predictor in the process
_LOAD_LOCK = threading.Lock()


@dataclass
class LoadedModel:
    """One network with what its card says about its inputs."""

    network: FusionNetwork
    card: ModelCard
    path: Path
    preprocessor: TabularPreprocessor | None
    geometry: Geometry | None
    _copies: dict[str, torch.nn.Module] = field(default_factory=dict, repr=False)

    def network_on(self, device: torch.device | str) -> torch.nn.Module:
        """The network on ``device``: itself on the CPU, else one copy per device (made once, shared)."""
        device = torch.device(device)
        if device.type == "cpu":
            return self.network
        name = str(device)
        with _LOAD_LOCK:
            if name not in self._copies:
                import copy

                self._copies[name] = copy.deepcopy(self.network).to(device).eval()
            return self._copies[name]

    @cached_property
    def key(self) -> str:
        """:func:`model_key` of the card (the card is frozen: hashed once, not on every prediction)."""
        return model_key(self.card)

    @property
    def task(self) -> str:
        return self.card.task

    @property
    def reads_scan(self) -> bool:
        return self.network.reads_scan

    @property
    def reads_record(self) -> bool:
        return self.network.reads_record

    def tabular(self, records: Sequence[Mapping[str, float]]) -> torch.Tensor:
        """(R, F) float32 model inputs for parsed records."""
        if self.task == "brain_age":
            sex = np.array([r.get("PTGENDER", np.nan) for r in records], dtype=float)
            if np.isnan(sex).any():
                from hyperfusion.errors import DataError

                raise DataError("brain-age models are conditioned on sex: PTGENDER must be given")
            return torch.from_numpy(np.stack([sex == 0, sex == 1], axis=1).astype(np.float32))
        if self.preprocessor is None and not self.reads_record:
            # An image-only network ignores the record; its card need not carry a preprocessing.
            return torch.zeros(len(records), int(getattr(self.network, "n_tabular", 0) or 0))
        return torch.from_numpy(np.asarray(self.preprocessor.transform(list(records)), dtype=np.float32))


def model_key(card: ModelCard) -> str:
    """What makes two loaded models the same: the weights' sha256 and the whole card (the same weights with
    another fitted preprocessing or geometry are another model)."""
    card_json = json.dumps(card.to_dict(), sort_keys=True, default=str).encode()
    return f"{card.weights_sha256}-{hashlib.sha256(card_json).hexdigest()[:16]}"


def load_shared(model_dir: str | Path) -> LoadedModel:
    """Load a model directory once per process (keyed by its weights' sha256 and card): a directory whose card
    names a model already loaded is not read again."""
    key = model_key(read_card(model_dir))  # (the file read outside the lock)
    with _LOAD_LOCK:
        known = _LOADED.get(key)
    if known is not None:
        return known
    network, card = load_model(model_dir)
    key = model_key(card)
    with _LOAD_LOCK:
        if key not in _LOADED:
            state, geometry = card.preprocessing, card.geometry
            _LOADED[key] = LoadedModel(
                network=network,
                card=card,
                path=Path(model_dir),
                preprocessor=TabularPreprocessor.from_dict(state) if state else None,
                geometry=Geometry.from_dict(geometry) if geometry and network.reads_scan else None,
            )
        return _LOADED[key]


@dataclass
class ModelEntry:
    """A model or an ensemble, as the user loaded it."""

    name: str
    members: list[LoadedModel]

    @property
    def task(self) -> str:
        return self.members[0].task

    @property
    def architecture(self) -> str:
        return self.members[0].card.name

    @property
    def synthetic(self) -> bool:
        return any(m.card.synthetic for m in self.members)


@dataclass
class Prediction:
    """One model's answer for R records of one subject."""

    model: str
    task: str
    value: np.ndarray  # (R, C) probabilities or (R,) predicted ages, years
    member_values: np.ndarray  # (M, R, C) or (M, R)
    class_names: list[str] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def spread(self) -> np.ndarray:
        """Standard deviation across ensemble members (zeros for a single model)."""
        return self.member_values.std(axis=0)


class Predictor:
    """Predictions of every loaded model for a subject's scan and (edited) records.

    Args:
        model_dirs: model directories or ensemble directories; names default to the folder names.
        cache: the on-disk volume cache for scans given as paths (default location if None).
        max_feature_entries: (model, scan) feature sets kept in memory (least recently used dropped).
        threads: torch's intra-op threads for the process (None: leave as is). A server answering several
            sessions wants 1: the many small decode calls of a what-if stall when two threads contend with
            other work (measured on a busy 2-core machine: an edit 18 ms at 1 thread vs 46 ms at 2).
        device: where the networks run: "cpu", "cuda", "cuda:N" (default ``HYPERFUSION_DEVICE``, else cpu).
    """

    def __init__(
        self,
        model_dirs: Sequence[str | Path] | Mapping[str, str | Path] = (),
        cache: VolumeCache | None = None,
        max_feature_entries: int = 64,
        threads: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.models: dict[str, ModelEntry] = {}
        self.cache = cache
        self.device = resolve_device(device)
        self._features: OrderedDict[tuple[str, str], ImageFeatures] = OrderedDict()
        self._max_features = max_feature_entries
        self._lock = threading.Lock()
        items = (
            model_dirs.items() if isinstance(model_dirs, Mapping) else [(Path(p).name, p) for p in model_dirs]
        )
        for name, path in items:
            self.add(path, name=name)

    def add(self, path: str | Path, name: str | None = None) -> ModelEntry:
        """Load a model or an ensemble directory under ``name``."""
        path = Path(path)
        members = [load_shared(d) for d in member_dirs(path)]
        tasks = {m.task for m in members}
        if len(tasks) > 1:
            raise ModelFileError(f"{path}: an ensemble's members must share a task, found {sorted(tasks)}")
        entry = ModelEntry(name or path.name, members)
        self.models[entry.name] = entry
        return entry

    # --- images --------------------------------------------------------------------------------------------
    def _scan_key(self, scan: str | Path | bytes) -> str:
        return image_sha256(scan)

    def views(self, member: LoadedModel, scan: str | Path | bytes, name: str | None = None) -> np.ndarray:
        """The scan as ``member`` sees it: float32 (n_views, 1, D, H, W') (through the volume cache for paths).

        ``name``: how error messages call the scan (e.g. an upload's file name; default: its path).
        """
        if isinstance(scan, str | Path) and self.cache is not None:
            array = self.cache.get(scan, member.geometry)
        else:
            source = load_nifti(scan, name=name) if isinstance(scan, bytes) else scan
            array = model_input(source, member.geometry, name=name)
        return np.ascontiguousarray(array)

    def _views(self, member: LoadedModel, scan: str | Path | bytes, name: str | None = None) -> torch.Tensor:
        return torch.from_numpy(self.views(member, scan, name))

    def features(
        self,
        member: LoadedModel,
        scan: str | Path | bytes | None,
        scan_key: str | None = None,
        name: str | None = None,
    ):
        """Image features of every view of ``scan`` for ``member`` (cached per model and scan content)."""
        if not member.reads_scan:
            return ()
        if scan is None:
            raise ModelFileError(f"model {member.path.name} needs a scan")
        key = (member.key, scan_key or self._scan_key(scan))
        with self._lock:
            if key in self._features:
                self._features.move_to_end(key)
                return self._features[key]
        with torch.no_grad():
            network = member.network_on(self.device)
            feats = network.encode_image(self._views(member, scan, name).to(self.device))
        self._keep(key, feats)
        return feats

    def _keep(self, key: tuple[str, str], feats: ImageFeatures) -> None:
        with self._lock:
            self._features[key] = feats
            self._features.move_to_end(key)
            while len(self._features) > self._max_features:
                self._features.popitem(last=False)

    def encode_stream(
        self,
        batches: Iterable[Sequence[tuple[Any, str | Path | bytes | None]]],
        models: Sequence[str] | None = None,
        workers: int = 1,
    ) -> Iterator[dict[Any, str | None]]:
        """Encode batches of scans, each in one pass per model, keeping the features for ``predict`` calls.

        ``batches`` yields lists of (id, scan) pairs (a scan of None is passed over); it is read lazily, one
        batch ahead: while a batch encodes, ``workers`` threads already load the next one's scans (through
        the volume cache for paths). For each batch this yields {id: None, or the message of the error its
        scan raised} once its features are cached; predict the batch's subjects before asking for the next
        (the feature cache keeps ``max_feature_entries`` (model, scan) entries in all).
        """
        from concurrent.futures import ThreadPoolExecutor

        from hyperfusion.errors import HyperFusionError

        names = list(self.models) if models is None else list(models)
        members = [m for name in names for m in self.models[name].members if m.reads_scan]

        def load(scan) -> tuple[str, list[np.ndarray]]:
            by_geometry: dict[str, np.ndarray] = {}  # models that share a geometry share the decoded scan
            for member in members:
                g = json.dumps(member.geometry.to_dict(), sort_keys=True)
                if g not in by_geometry:
                    by_geometry[g] = self.views(member, scan)
            arrays = [by_geometry[json.dumps(m.geometry.to_dict(), sort_keys=True)] for m in members]
            return self._scan_key(scan), arrays

        with ThreadPoolExecutor(max(1, int(workers))) as pool:

            def submit(batch):
                if batch is None:
                    return None
                return [
                    (i, pool.submit(load, scan) if scan is not None and members else None)
                    for i, scan in batch
                ]

            source = iter(batches)
            pending = submit(next(source, None))
            while pending is not None:
                upcoming = submit(next(source, None))  # the next batch loads while this one encodes
                status: dict[Any, str | None] = {}
                loaded = []
                for i, future in pending:
                    status[i] = None
                    if future is None:
                        continue
                    try:
                        loaded.append(future.result())
                    except (HyperFusionError, OSError, ValueError) as exc:
                        status[i] = str(exc)
                for j, member in enumerate(members):
                    if not loaded:
                        break
                    batch = torch.from_numpy(np.concatenate([arrays[j] for _, arrays in loaded])).to(
                        self.device
                    )
                    with torch.no_grad():
                        feats = member.network_on(self.device).encode_image(batch)
                    n_views = loaded[0][1][j].shape[0]
                    for k, (key, _) in enumerate(loaded):
                        rows = slice(k * n_views, (k + 1) * n_views)
                        self._keep((member.key, key), tuple(t[rows].clone() for t in feats))
                yield status
                pending = upcoming

    def prefetch(
        self,
        scans: Sequence[str | Path | bytes],
        models: Sequence[str] | None = None,
        batch_size: int = 8,
        workers: int = 1,
    ) -> list[str | None]:
        """Encode many scans in batches (:meth:`encode_stream`); per scan, None or its error message. Only the
        last ``max_feature_entries`` scans stay cached."""
        pairs = list(enumerate(scans))
        errors: list[str | None] = [None] * len(scans)
        batches = (pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size))
        for status in self.encode_stream(batches, models, workers):
            for i, message in status.items():
                errors[i] = message
        return errors

    def forget(self, scan: str | Path | bytes) -> int:
        """Drop every cached image feature of ``scan`` (e.g. when a user removes an upload); returns how many."""
        digest = self._scan_key(scan)
        with self._lock:
            keys = [k for k in self._features if k[1] == digest]
            for k in keys:
                del self._features[k]
        return len(keys)

    # --- predictions ---------------------------------------------------------------------------------------
    def _member_values(self, member: LoadedModel, feats: ImageFeatures, tabular: torch.Tensor) -> np.ndarray:
        network = member.network_on(self.device)
        with torch.no_grad():
            rows, views = decode_records(network, feats, tabular.to(self.device))
        out = subject_output(rows.float().cpu(), views, probabilities=member.task == "ad")
        return (out if member.task == "ad" else out.reshape(-1)).numpy()

    def predict(
        self,
        scan: str | Path | bytes | None,
        records: Mapping[str, object] | Sequence[Mapping[str, object]],
        models: Sequence[str] | None = None,
        scan_name: str | None = None,
    ) -> dict[str, Prediction]:
        """Each model's prediction for ``scan`` under each record (raw ADNIMERGE values, parsed here).

        ``scan_name``: how error messages call the scan (an upload's file name; default: its path).
        """
        if isinstance(records, Mapping):
            records = [records]
        parsed = [parse_record(r) for r in records]
        scan_key = self._scan_key(scan) if scan is not None else None
        out = {}
        for name in models or list(self.models):
            entry = self.models[name]
            values, ood_parts = [], []
            for member in entry.members:
                feats = self.features(member, scan, scan_key, scan_name)
                values.append(self._member_values(member, feats, member.tabular(parsed)))
                ages = values[-1] if member.task == "brain_age" else None
                cpu_feats = tuple(t.cpu() for t in feats) if self.device.type != "cpu" else feats
                ood_parts.append(ood_check(member.card.ood, parsed, cpu_feats or None, ages))
            stack = np.stack(values)
            value = combine_members(entry.task, stack)
            if entry.task == "ad":
                pred = Prediction(name, entry.task, value, stack, class_names=list(CLASS_NAMES))
            else:
                ages = np.array([r["AGE"] for r in parsed], dtype=float)
                pred = Prediction(name, entry.task, value, stack, extras={"brain_age_gap": value - ages})
            # whether each record (and the scan) lies inside what the models were trained on, and why not
            pred.extras["ood"] = ood_combine(ood_parts)
            out[name] = pred
        return out
