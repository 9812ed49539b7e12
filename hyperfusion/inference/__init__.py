"""Inference layer: model files and cards, finding models on disk, the entry check of scans, the Predictor
(image-feature cache, hemisphere averaging, ensembles).

Names are imported on first use (PEP 562): finding models and reading their cards does not import torch.
"""

from importlib import import_module

_EXPORTS = {
    "ModelInfo": "discovery",
    "find_models": "discovery",
    "member_dirs": "discovery",
    "ModelCard": "model_files",
    "load_model": "model_files",
    "read_card": "model_files",
    "save_model": "model_files",
    "write_card": "model_files",
    "Prediction": "predictor",
    "Predictor": "predictor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f"hyperfusion.inference.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hyperfusion.inference' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
