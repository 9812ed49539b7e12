"""Model files: a directory with ``model.safetensors`` (weights) and ``card.json`` (everything else).

docs/architecture.md (Model files). The card holds ``architecture`` = {"name", "task", "config"} (what
:func:`~hyperfusion.models.build_model` needs to rebuild the network) and ``weights_sha256``, both written by
:func:`save_model`, plus whatever the caller passes: geometry, intensity normalisation, tabular schema and
fitted preprocessing, class names, provenance, split seed, fold, metrics. Loading never unpickles anything:
weights are read with safetensors only, after their sha256 is checked against the card, and every tensor's
name and shape is checked against the rebuilt network.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperfusion import __version__
from hyperfusion.errors import HyperFusionError, ModelFileError, read_json_object
from hyperfusion.files import atomic_write
from hyperfusion.models.card import Architecture, ModelCard

if TYPE_CHECKING:
    from hyperfusion.models import FusionNetwork

__all__ = [
    "CARD_FILE",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "Architecture",
    "ModelCard",
    "file_sha256",
    "load_model",
    "read_card",
    "save_model",
    "write_card",
]

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
FORMAT_VERSION = 1

# First bytes of files that need unpickling: a raw pickle (protocol 2-5) or torch.save's zip archive
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")


def save_model(model: FusionNetwork, card: ModelCard | dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``model`` and its ``card`` to the directory ``out_dir`` (created; an existing model is replaced).

    Args:
        model: a network made by :func:`~hyperfusion.models.build_model` (it knows its name, task and config).
        card: the caller's card fields (geometry, preprocessing, provenance, class names, metrics, ...); numpy
            numbers and arrays are accepted. ``architecture``, ``weights_sha256``, ``format_version`` and
            ``hyperfusion_version`` are set here.

    Returns the directory.
    """
    out_dir = Path(out_dir)
    if isinstance(card, ModelCard):
        card = card.to_dict()
    try:
        architecture = model.architecture
    except ValueError as exc:
        raise ModelFileError(str(exc)) from None
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = save(tensors, metadata={"format": "pt", "architecture": architecture["name"]})
    full_card = {
        **card,
        "architecture": architecture,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "format_version": FORMAT_VERSION,
        "hyperfusion_version": __version__,
    }
    try:
        card_text = json.dumps(full_card, indent=2, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"the model card is not JSON-serialisable: {exc}") from None
    # each file is written beside its target, then renamed: a reader never sees half a file
    atomic_write(out_dir / WEIGHTS_FILE, weights)
    atomic_write(out_dir / CARD_FILE, card_text + "\n")
    return out_dir


def load_model(model_dir: str | Path) -> tuple[FusionNetwork, ModelCard]:
    """(network in eval mode, its validated :class:`ModelCard`) of a model directory written by
    :func:`save_model`.

    Refuses with :class:`~hyperfusion.errors.ModelFileError`: a missing directory, card or weights file; a
    pickle or PyTorch checkpoint where safetensors is expected; weights whose sha256 differs from the card's;
    an architecture this version does not know; tensors whose names or shapes do not fit the network.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFileError(f"model directory not found: {model_dir}")
    card_path, weights_path = model_dir / CARD_FILE, model_dir / WEIGHTS_FILE
    if not card_path.is_file() or not weights_path.is_file():
        missing = [p.name for p in (card_path, weights_path) if not p.is_file()]
        hint = ""
        if any((model_dir / d / CARD_FILE).is_file() for d in os.listdir(model_dir)):
            hint = " It holds model directories: it is an ensemble, load each member."
        elif any(p.suffix in (".ckpt", ".pt", ".pth") for p in model_dir.iterdir()):
            hint = " PyTorch checkpoints are never loaded; convert the authors' with `hyperfusion import-reference`."
        raise ModelFileError(f"{model_dir} is not a model directory: {', '.join(missing)} missing.{hint}")
    card = read_card(model_dir)
    _check_weights_file(weights_path, card)
    model = _build(card.architecture, model_dir)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from hyperfusion.models.network import state_dict_mismatches

    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise ModelFileError(f"cannot read {weights_path} as safetensors: {exc}") from None
    problems = state_dict_mismatches(model, tensors)
    if problems:
        raise ModelFileError(f"{model_dir}: the weights do not fit the card's architecture: {problems}")
    model.load_state_dict(tensors, strict=True)
    return model.eval(), card


def read_card(model_dir: str | Path) -> ModelCard:
    """The validated card of a model directory, without loading the weights (the one card reader)."""
    card_path = Path(model_dir) / CARD_FILE
    if not card_path.is_file():
        raise ModelFileError(f"{model_dir} is not a model directory: {CARD_FILE} missing")
    raw = read_json_object(card_path, ModelFileError, ": the model file is damaged")
    return ModelCard.from_dict(raw, source=str(card_path), owned=True)


def write_card(model_dir: str | Path, card: ModelCard) -> Path:
    """Replace a model directory's card (e.g. to add a reference computed later); the weights stay, and must
    still be the ones the card names."""
    model_dir = Path(model_dir)
    _check_weights_file(model_dir / WEIGHTS_FILE, card)
    atomic_write(model_dir / CARD_FILE, json.dumps(card.to_dict(), indent=2, default=_json_default) + "\n")
    return model_dir


def _check_weights_file(weights_path: Path, card: ModelCard) -> None:
    with weights_path.open("rb") as f:
        head = f.read(8)
    if head.startswith(_PICKLE_MAGIC):
        raise ModelFileError(
            f"{weights_path} is a pickle / PyTorch checkpoint, not safetensors; it is refused because unpickling "
            "can run code. Re-export the model with hyperfusion's save_model (or `hyperfusion import-reference` "
            "for the authors' checkpoints)."
        )
    expected = card.weights_sha256
    if expected is None:
        raise ModelFileError(
            f"{weights_path.parent / CARD_FILE} has no weights_sha256: the weights cannot be verified"
        )
    actual = file_sha256(weights_path)
    if actual != expected:
        raise ModelFileError(
            f"{weights_path} does not match its card (sha256 {actual[:12]}..., card says {expected[:12]}...): the "
            "weights were changed or damaged; copy the model directory again from its source"
        )


def _build(arch: Architecture, model_dir: Path) -> FusionNetwork:
    from hyperfusion.models import build_model

    try:
        return build_model(arch.name, arch.task, **arch.config)
    except HyperFusionError as exc:
        raise ModelFileError(
            f"{model_dir}: unknown or invalid architecture {arch.name!r} ({arch.task}) for hyperfusion "
            f"{__version__}: {exc}"
        ) from None


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    """numpy numbers and arrays, tensors and paths as JSON; anything else is refused."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serialisable")
