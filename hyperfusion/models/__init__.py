"""Hyper layers, blocks, task networks and the model registry."""
