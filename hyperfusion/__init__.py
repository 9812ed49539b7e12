"""HyperFusion: hypernetwork fusion of brain MRI and tabular patient records.

Duenias, Nichyporuk, Arbel, Riklin Raviv, Medical Image Analysis 102:103503 (2025). Layers, left to right:
``data -> models -> training -> inference -> explain -> app``; each imports only the layers to its left.
"""

__version__ = "0.1.0"
