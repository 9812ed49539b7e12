"""Training and evaluation with the paper's protocol (Lightning module, folds x seeds, ensembles, metrics)."""
