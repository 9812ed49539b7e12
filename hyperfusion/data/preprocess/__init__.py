"""Preprocessing of real scans: template, pipeline, quality measures (filled below)."""
