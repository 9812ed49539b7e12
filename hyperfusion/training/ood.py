"""Out of distribution, said rather than hidden: does a prediction's input look like the model's training data?

A network answers for any input, and an answer far outside what it was trained on is a guess with the same
confident face. At the end of training, :func:`ood_reference` records what the training rows looked like, as
plain JSON stored in the model's card (``card.ood``):

- ``records``: the range [min, max] of every record value over the training rows;
- ``ages``: the training subjects' ages (chronological age; for brain age also the range a prediction should
  stay in);
- ``image``: the mean and spread of the pooled image features (each feature map of ``encode_image`` averaged
  over space, then over the hemispheres) over the training scans, and the 99th percentile of the training
  scans' own distances to that mean: the threshold.

At prediction time :func:`ood_check` compares one input with that reference and returns, per record, whether it
lies inside and every reason why not. A model file without the entry gets "no OOD reference in this model
file", never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from hyperfusion.data.schema import FEATURES

OOD_VERSION = 1
#: The percentile of the training scans' distances used as the threshold.
PERCENTILE = 99.0
#: Pooled feature vectors longer than this are averaged in groups down to it, to keep the card small.
MAX_FEATURES = 256
NO_REFERENCE = "no OOD reference in this model file"


def pooled_features(features: Sequence[torch.Tensor]) -> np.ndarray:
    """(n_views, F) float64: every image-feature tensor averaged over its spatial axes, concatenated."""
    parts = []
    for t in features:
        t = t.detach().float()
        parts.append(t.mean(dim=tuple(range(2, t.ndim))) if t.ndim > 2 else t.reshape(t.shape[0], -1))
    vec = torch.cat(parts, dim=1).double().numpy()
    n = vec.shape[1]
    if n > MAX_FEATURES:
        groups = np.array_split(np.arange(n), MAX_FEATURES)
        vec = np.stack([vec[:, g].mean(axis=1) for g in groups], axis=1)
    return vec


def scan_vector(features: Sequence[torch.Tensor]) -> np.ndarray:
    """(F,) the pooled features of one scan, averaged over its views (hemispheres)."""
    return pooled_features(features).mean(axis=0)


def _distance(vec: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> float:
    """Root-mean-square z-score: a Mahalanobis distance with a diagonal covariance, per feature."""
    return float(np.sqrt(np.mean(((vec - mean) / scale) ** 2)))


def ood_reference(network: torch.nn.Module, dataset, rows) -> dict:
    """The OOD reference of a trained ``network`` from its training ``dataset`` (a
    :class:`~hyperfusion.data.datasets.CohortDataset`) and its training ``rows`` (the cohort table's rows).

    Returns JSON-able data for ``card.ood``. The image part needs the dataset's scans (one forward pass of
    the image encoder per training scan, no gradients) and is left out for a model that reads no scan.
    """
    records = {}
    for f in FEATURES:
        if f.name not in rows:
            continue
        values = rows[f.name].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if values.size:
            records[f.name] = [float(values.min()), float(values.max())]
    ref: dict = {"version": OOD_VERSION, "n_train": int(len(rows)), "records": records}
    if "AGE" in records:
        ref["ages"] = list(records["AGE"])
    reads_scan = bool(network.reads_scan) and not getattr(dataset, "tabular_only", False)
    if reads_scan and len(dataset):
        was_training = network.training
        network.eval()
        vectors = []
        with torch.no_grad():
            for i in range(len(dataset)):
                vectors.append(scan_vector(network.encode_image(dataset.image(i))))
        network.train(was_training)
        stack = np.stack(vectors)
        mean = stack.mean(axis=0)
        scale = stack.std(axis=0)
        scale = np.where(scale > 1e-8, scale, max(float(scale.max()), 1e-8))
        distances = np.array([_distance(v, mean, scale) for v in stack])
        ref["image"] = {
            "method": "rms z-score of the pooled image features (mean over space and hemispheres)",
            "mean": [float(x) for x in mean],
            "scale": [float(x) for x in scale],
            "threshold": float(np.percentile(distances, PERCENTILE)),
            "percentile": PERCENTILE,
            "train_distance_median": float(np.median(distances)),
            "n_scans": int(len(stack)),
        }
    return ref


def ood_check(
    reference: Mapping | None,
    records: Sequence[Mapping[str, float]],
    features: Sequence[torch.Tensor] | None = None,
    predicted_ages: np.ndarray | None = None,
) -> list[dict]:
    """Per record: ``{"inside": bool | None, "reasons": [...], "image_distance", "image_threshold"}``.

    ``records``: parsed records (:func:`~hyperfusion.data.cohort.parse_record`); ``features``: the scan's image
    features (``encode_image``, all views) or None for a model without a scan; ``predicted_ages``: a brain-age
    model's predictions, one per record. ``inside`` is None when the model file has no reference.
    """
    if not reference:
        return [{"inside": None, "reasons": [NO_REFERENCE]} for _ in records]
    image_reasons, distance, threshold = [], None, None
    image = reference.get("image")
    if image is not None and features:
        vec = scan_vector(features)
        mean, scale = np.asarray(image["mean"]), np.asarray(image["scale"])
        if vec.shape == mean.shape:
            distance, threshold = _distance(vec, mean, scale), float(image["threshold"])
            if distance > threshold:
                image_reasons.append(
                    f"the scan's image features lie far from the training scans' (distance {distance:.2f}, "
                    f"above the training {image['percentile']:g}th percentile {threshold:.2f})"
                )
    ranges = reference.get("records", {})
    ages = reference.get("ages")
    out = []
    for r, record in enumerate(records):
        reasons = list(image_reasons)
        for name, (lo, hi) in ranges.items():
            value = record.get(name)
            if value is None or not np.isfinite(value):
                continue
            if value < lo or value > hi:
                reasons.append(f"{name} {value:g} is outside the training range {lo:g}–{hi:g}")
        if ages is not None and predicted_ages is not None:
            age = float(predicted_ages[r])
            if age < ages[0] or age > ages[1]:
                reasons.append(
                    f"the predicted brain age {age:.1f} is outside the training ages {ages[0]:g}–{ages[1]:g}"
                )
        out.append(
            {
                "inside": not reasons,
                "reasons": reasons,
                "image_distance": distance,
                "image_threshold": threshold,
            }
        )
    return out


def combine(parts: Sequence[list[dict]]) -> list[dict]:
    """The members of an ensemble, per record: outside if any member says so (reasons without repeats);
    unknown (None) only when no member has a reference."""
    if not parts:
        return []
    out = []
    for per_member in zip(*parts):
        known = [p for p in per_member if p["inside"] is not None]
        if not known:
            out.append(dict(per_member[0]))
            continue
        reasons = list(dict.fromkeys(r for p in known for r in p["reasons"]))
        distances = [p["image_distance"] for p in known if p.get("image_distance") is not None]
        thresholds = [p["image_threshold"] for p in known if p.get("image_threshold") is not None]
        out.append(
            {
                "inside": not reasons,
                "reasons": reasons,
                "image_distance": max(distances) if distances else None,
                "image_threshold": max(thresholds) if thresholds else None,
                "members_without_reference": len(per_member) - len(known),
            }
        )
    return out


def summary(result: Mapping) -> str:
    """One line for a person: "inside the training data" / "OUTSIDE the training data: ..." / no reference."""
    if result.get("inside") is None:
        return NO_REFERENCE
    if result["inside"]:
        return "inside the training data"
    return "OUTSIDE the training data: " + "; ".join(result["reasons"])
