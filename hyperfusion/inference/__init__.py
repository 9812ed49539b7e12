"""Model files and the Predictor (image-feature cache, hemisphere averaging, ensembles)."""

from hyperfusion.inference.model_files import load_model, save_model

__all__ = ["load_model", "save_model"]
