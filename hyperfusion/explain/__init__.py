"""Captum attributions, what-if sweeps, counterfactuals and attribution faithfulness."""
