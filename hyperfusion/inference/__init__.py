"""Model files and the Predictor (image-feature cache, hemisphere averaging, ensembles)."""
