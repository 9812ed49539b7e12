"""Is an attribution map right? Scores against the truth of synthetic subjects, and a deletion curve.

A synthetic cohort knows where it planted the disease (``truth/PTID.nii.gz``, SYNTHETIC.md "Ground truth").
On the model grid and inside the brain (non-zero input voxels), a map is scored by

- ``mass_share``: the share of its total |attribution| that falls inside the truth mask, against
  ``volume_share``, the mask's share of the voxels; ``enrichment`` = their ratio (1 = no better than a
  uniform map);
- ``auroc``: the voxel-wise area under the ROC curve of |attribution| as a detector of the mask;
- ``pointing_game``: whether the voxel of largest |attribution| lies in the mask.

The deletion curve (Samek et al. 2017; Petsiuk et al. 2018) needs no truth: the brain voxels are replaced by
the baseline's, most attributed first, and the model's output is recorded as the deleted share grows. A
faithful map makes it fall fast: a small area under the curve, below the area of a random deletion order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from hyperfusion.data.cohort import Cohort, parse_record
from hyperfusion.data.geometry import Geometry, resample_box, split_views
from hyperfusion.data.nifti import NiftiSource
from hyperfusion.errors import DataError
from hyperfusion.explain.baselines import DEFAULT_BLUR_MM, make_baseline
from hyperfusion.explain.image import explain_image
from hyperfusion.explain.maps import ImageAttribution
from hyperfusion.explain.methods import SubjectOutput
from hyperfusion.explain.records import cohort_record
from hyperfusion.inference.predictor import Predictor

__all__ = ["deletion_curve", "evaluate_faithfulness", "mask_scores", "truth_mask"]


# The generator writes the planted log-volume change per voxel (negative: tissue lost, positive: CSF grown) and
# calls |change| > 0.02 an effect; the smooth fields leave tiny values far from the regions, so 0 would be too wide.
TRUTH_THRESHOLD = 0.02


def truth_mask(truth: NiftiSource, geometry: Geometry, threshold: float = TRUTH_THRESHOLD) -> np.ndarray:
    """The truth map on the model grid as a mask, bool (V, D, H, W'): |truth| > ``threshold``.

    Sampled by nearest neighbour, so the mask is not smeared by interpolation.
    """
    box = resample_box(truth, geometry, order=0)
    return split_views(np.abs(box) > threshold, geometry)


def mask_scores(
    attribution: np.ndarray, mask: np.ndarray, within: np.ndarray | None = None
) -> dict[str, float | bool]:
    """Scores of a map against a truth mask, over the voxels ``within`` (default all).

    Args:
        attribution: (V, D, H, W') or any shape; its absolute value is scored.
        mask: bool, same shape: where the effect truly is.
        within: bool, same shape: the voxels that count (e.g. the brain).

    Returns:
        {"mass_share", "volume_share", "enrichment", "auroc" (NaN if the mask is empty or full),
        "pointing_game"}.
    """
    a = np.abs(np.asarray(attribution, dtype=np.float64))
    m = np.asarray(mask, dtype=bool)
    if a.shape != m.shape:
        raise DataError(f"attribution of shape {a.shape} and mask of shape {m.shape} differ")
    if within is not None:
        a, m = a[within], m[within]
    a, m = a.ravel(), m.ravel()
    total = a.sum()
    mass = float(a[m].sum() / total) if total > 0 else 0.0
    volume = float(m.mean()) if m.size else 0.0
    auroc = float(roc_auc_score(m, a)) if 0 < m.sum() < m.size else float("nan")
    return {
        "mass_share": mass,
        "volume_share": volume,
        "enrichment": mass / volume if volume > 0 else float("nan"),
        "auroc": auroc,
        "pointing_game": bool(m[np.argmax(a)]) if a.size else False,
    }


def deletion_curve(
    predictor: Predictor,
    attribution: ImageAttribution,
    scan: str | Path | bytes,
    record: Mapping[str, object],
    *,
    steps: int = 10,
    baseline: str = "zero",
    blur_mm: float = DEFAULT_BLUR_MM,
    cohort: Cohort | None = None,
    order: str = "attribution",
    seed: int = 0,
    batch_size: int = 4,
) -> dict[str, Any]:
    """The model's output as the most attributed brain voxels are replaced by the baseline's.

    Args:
        predictor: holds the attribution's model.
        attribution: the map to test (from :func:`~hyperfusion.explain.image.explain_image`).
        scan, record: the subject it was computed for.
        steps: the curve has ``steps + 1`` points, deleted shares 0, 1/steps, ..., 1.
        baseline, blur_mm, cohort: what deleted voxels become (see :mod:`.baselines`).
        order: "attribution" (largest signed attribution first) or "random" (seeded: the reference).
        seed: of the random order.
        batch_size: curve points per forward pass.

    Returns:
        {"fractions" (steps + 1,), "outputs" (steps + 1,) in the map's output units (ensemble mean),
        "area": mean output over the curve (trapezoid on [0, 1]), "order"}.
    """
    if order not in ("attribution", "random"):
        raise DataError(f"deletion order must be 'attribution' or 'random', not {order!r}")
    entry = predictor.models[attribution.model]
    fractions = np.linspace(0.0, 1.0, steps + 1)
    column = attribution.target or 0
    parsed = parse_record(record)
    outputs = np.zeros(len(fractions))
    for member in entry.members:
        views = predictor.views(member, scan)
        base = make_baseline(
            baseline, views, member.geometry, sigma_mm=blur_mm, cohort=cohort, cache=predictor.cache
        ).views
        brain = np.flatnonzero(views[:, 0].ravel() != 0)
        if order == "attribution":
            ranked = brain[np.argsort(-attribution.views.ravel()[brain], kind="stable")]
        else:
            ranked = np.random.default_rng(seed).permutation(brain)
        forward = SubjectOutput(member.network, entry.task, attribution.settings.get("output", "years"))
        tab = member.tabular([parsed])
        flat, flat_base = views[:, 0].ravel(), base[:, 0].ravel()
        values = []
        for start in range(0, len(fractions), batch_size):
            batch = []
            for f in fractions[start : start + batch_size]:
                x = flat.copy()
                gone = ranked[: int(round(f * len(ranked)))]
                x[gone] = flat_base[gone]
                batch.append(x.reshape(views.shape))
            with torch.no_grad():
                out = forward(torch.from_numpy(np.stack(batch)), tab.expand(len(batch), -1))
            values.extend(out[:, column].tolist())
        outputs += np.asarray(values) / len(entry.members)
    area = float(np.sum((outputs[1:] + outputs[:-1]) / 2 * np.diff(fractions)))
    return {"fractions": fractions, "outputs": outputs, "area": area, "order": order}


def evaluate_faithfulness(
    predictor: Predictor,
    model: str,
    cohort: Cohort,
    method: str = "integrated_gradients",
    *,
    subjects: Sequence[str] | None = None,
    target: int | str = "AD",
    baseline: str = "zero",
    settings: Mapping[str, Any] | None = None,
    threshold: float = TRUTH_THRESHOLD,
    deletion_steps: int = 10,
) -> dict[str, Any]:
    """Score ``method``'s maps of ``model`` on the synthetic cohort's subjects against their truth maps.

    Args:
        predictor, model: the model (loaded in the Predictor).
        cohort: a synthetic cohort (it has ``truth/PTID.nii.gz``).
        method, baseline, settings: as for :func:`~hyperfusion.explain.image.explain_image`.
        subjects: PTIDs to score (default every subject with a scan and a truth map).
        target: the class explained (default AD, whose effects the truth maps mark).
        threshold: |truth| above this is the mask.
        deletion_steps: points of the deletion curves (0: skip them).

    Returns:
        {"subjects": [per subject: PTID, DX, :func:`mask_scores`, deletion and random-order areas],
        "mean": the mean of each score over subjects}.
    """
    truth_dir = Path(cohort.path) / "truth"
    if not truth_dir.is_dir():
        raise DataError(
            f"{cohort.path}: no truth/ folder. Faithfulness is scored on synthetic cohorts "
            "(hyperfusion synth) that record where effects were planted"
        )
    table = cohort.table[cohort.table["image_path"].notna()]
    if subjects is not None:
        table = table[table["PTID"].isin(list(subjects))]
    rows = []
    for _, row in table.iterrows():
        truth = truth_dir / f"{row['PTID']}.nii.gz"
        if not truth.is_file():
            continue
        scan, record = row["image_path"], cohort_record(row)
        attribution = explain_image(
            predictor, model, scan, record, method, target=target, baseline=baseline, settings=settings,
            cohort=cohort,
        )  # fmt: skip
        member = predictor.models[model].members[0]
        brain = predictor.views(member, scan)[:, 0] != 0
        mask = truth_mask(truth, attribution.geometry, threshold)
        scores: dict[str, Any] = {"PTID": row["PTID"], "DX": row["DX"]}
        scores.update(mask_scores(attribution.views, mask, brain))
        if deletion_steps:
            for order in ("attribution", "random"):
                curve = deletion_curve(
                    predictor, attribution, scan, record, steps=deletion_steps, baseline=baseline,
                    cohort=cohort, order=order,
                )  # fmt: skip
                scores[f"deletion_area_{order}"] = curve["area"]
        rows.append(scores)
    if not rows:
        raise DataError(f"{cohort.path}: no subject has both a scan and a truth map to score")
    keys = [k for k in rows[0] if k not in ("PTID", "DX")]
    mean = {k: float(np.nanmean([float(r[k]) for r in rows])) for k in keys}
    return {"model": model, "method": method, "target": target, "subjects": rows, "mean": mean}
