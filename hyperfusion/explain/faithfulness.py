"""Is an attribution map right? Scores against the truth of synthetic subjects, and a deletion curve.

A synthetic cohort knows where it planted the disease (``truth/PTID.nii.gz``, docs/synthetic.md "Ground truth").
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

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from hyperfusion.data.cohort import Cohort, cohort_record, parse_record
from hyperfusion.data.geometry import Geometry, resample_box, split_views
from hyperfusion.data.nifti import NiftiSource
from hyperfusion.errors import DataError
from hyperfusion.explain.baselines import DEFAULT_BLUR_MM, make_baseline
from hyperfusion.explain.image import explain_image
from hyperfusion.explain.maps import ImageAttribution
from hyperfusion.explain.methods import SubjectOutput
from hyperfusion.inference.predictor import Predictor
from hyperfusion.models import ModelCard

if TYPE_CHECKING:
    from hyperfusion.training.evaluate import Run

__all__ = [
    "add_faithfulness",
    "faithfulness_markdown",
    "brain_mask",
    "deletion_curve",
    "evaluate_faithfulness",
    "faithfulness_summary",
    "lattice_index",
    "mask_scores",
    "network_stride",
    "top_decile_scores",
    "truth_mask",
    "untrained_control",
]


# The generator writes the planted log-volume change per voxel: negative where tissue was lost, positive where the
# ventricles or CSF grew into the space. The disease the maps should find is the tissue loss, truth < -0.02 (the
# smooth fields leave tiny values far from the regions, so 0 would be too wide); the grown CSF is not tissue.
TRUTH_THRESHOLD = 0.02
#: The share of voxels whose attribution counts as "top" in the top-decile scores
TOP_FRACTION = 0.1


def truth_mask(truth: NiftiSource, geometry: Geometry, threshold: float = TRUTH_THRESHOLD) -> np.ndarray:
    """The planted tissue loss on the model grid as a mask, bool (V, D, H, W'): truth < -``threshold``.

    Sampled by nearest neighbour, so the mask is not smeared by interpolation.
    """
    box = resample_box(truth, geometry, order=0)
    return split_views(box < -threshold, geometry)


@functools.lru_cache(maxsize=8)
def _template_brain(geometry_json: str) -> np.ndarray:
    from hyperfusion.data.synthetic.anatomy import template_path

    geometry = Geometry.from_dict(json.loads(geometry_json))
    box = resample_box(template_path("t1"), geometry, order=0) > 0
    views = split_views(box, geometry)
    views.setflags(write=False)
    return views


def brain_mask(geometry: Geometry, views: np.ndarray | None = None) -> np.ndarray:
    """The brain on the model grid, bool (V, D, H, W').

    An MNI box: the skull-stripped MNI152 2009a template (what registered scans and the synthetic generator
    share), sampled by nearest neighbour. Another geometry (a voxel crop of the authors' arrays) has no place in
    MNI space: the scan's own non-zero voxels (``views``, (V, 1, D, H, W') or (V, D, H, W')) are the brain.
    """
    if geometry.mode == "mni_box":
        return _template_brain(json.dumps(geometry.to_dict(), sort_keys=True))
    if views is None:
        raise DataError("a voxel-crop geometry has no template brain: pass the scan's views")
    views = np.asarray(views)
    return (views[:, 0] if views.ndim == 5 else views) != 0


def top_decile_scores(
    attribution: np.ndarray, mask: np.ndarray, brain: np.ndarray, fraction: float = TOP_FRACTION
) -> dict[str, float]:
    """Where the most attributed voxels lie: the top ``fraction`` of all voxels of the model grid by
    |attribution| (ties broken by position), against the truth ``mask`` and the ``brain``.

    Returns:
        {"top_decile_in_mask": share of the top voxels inside the mask, "mask_share": the mask's share of the
        brain, "top_decile_enrichment": their ratio (1 = no better than a map spread evenly over the brain),
        "top_decile_outside_brain": share of the top voxels outside the brain}.
    """
    a = np.abs(np.asarray(attribution, dtype=np.float64)).ravel()
    m, b = np.asarray(mask, bool).ravel(), np.asarray(brain, bool).ravel()
    if not (a.shape == m.shape == b.shape):
        raise DataError(f"attribution {a.shape}, mask {m.shape} and brain {b.shape} differ in size")
    k = max(1, int(round(fraction * a.size)))
    top = np.argsort(-a, kind="stable")[:k]
    in_mask = float(m[top].mean())
    share = float((m & b).sum() / b.sum()) if b.any() else float("nan")
    return {
        "top_decile_in_mask": in_mask,
        "mask_share": share,
        "top_decile_enrichment": in_mask / share if share > 0 else float("nan"),
        "top_decile_outside_brain": float(1.0 - b[top].mean()),
    }


#: The hottest phases the lattice measure averages: a 2 × 2 × 2 block, the width of a hot spot that one
#: stride-2 layer before the last spreads over
HOT_PHASES = 8


def lattice_index(
    attribution: np.ndarray, stride: int | Sequence[int] = 16, hot_phases: int = HOT_PHASES
) -> dict[str, Any]:
    """How much a map is a lattice at the network's total stride.

    Every voxel has a phase, its index modulo the stride on each axis (16³ = 4096 phases for the AD ResNet).
    The map's |attribution| is averaged per phase, each phase's share of the sum of those averages taken, and
    the mean share of the ``hot_phases`` hottest phases divided by the even share 1 / #phases. A map without
    structure at that period scores near 1 (a little above: each phase holds few voxels on a small grid); a
    map that is a lattice of hot spots one per stride scores up to #phases / ``hot_phases``. On a grid only a
    few strides long, a map concentrated in a few voxels anywhere also scores high: read it beside the
    untrained control's value and the maps themselves.

    Args:
        attribution: (V, D, H, W') or (D, H, W); views are folded together (they share the network's grid).
        stride: the network's total stride, one for every axis or one per axis (:func:`network_stride`).
        hot_phases: how many of the hottest phases are averaged.

    Returns:
        {"lattice": the ratio, "stride": [sD, sH, sW]}.
    """
    a = np.abs(np.asarray(attribution, dtype=np.float64))
    if a.ndim == 3:
        a = a[None]
    strides = [int(stride)] * 3 if np.isscalar(stride) else [int(s) for s in stride]
    if any(s < 1 for s in strides) or any(s > n for s, n in zip(strides, a.shape[1:])):
        raise DataError(f"stride {strides} does not fit a map of shape {a.shape[1:]}")
    index = np.indices(a.shape[1:])
    phase = (index[0] % strides[0]) * (strides[1] * strides[2]) + (index[1] % strides[1]) * strides[2]
    phase = np.broadcast_to(phase + index[2] % strides[2], a.shape).ravel()
    n_phases = int(np.prod(strides))
    means = np.bincount(phase, weights=a.ravel(), minlength=n_phases) / np.bincount(phase, minlength=n_phases)
    total = means.sum()
    if n_phases < 2 or total <= 0:
        return {"lattice": float("nan"), "stride": strides}
    hottest = np.sort(means)[::-1][: max(1, min(hot_phases, n_phases))]
    return {"lattice": float(hottest.mean() / total * n_phases), "stride": strides}


def network_stride(network: torch.nn.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """The network's total stride (the same on every axis): its input size over the size of its last image
    feature map (the Grad-CAM layer), measured with one forward pass of zeros. The AD ResNet: 2 (stem pool) ×
    2 × 2 × 2 = 16."""
    layer = getattr(network, "gradcam_layer", None)
    if layer is None:
        raise DataError("the network reads no image: it has no stride")
    shapes: list[tuple[int, ...]] = []
    hook = layer.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[2:])))
    was_training = network.training
    try:
        with torch.no_grad():
            n_tabular = int(getattr(network, "n_tabular", 0) or 0)
            network.eval()(torch.zeros(1, 1, *input_shape), torch.zeros(1, n_tabular))
    finally:
        hook.remove()
        network.train(was_training)
    # out = ceil(in / stride) on every axis: each axis bounds the stride from below by ceil(in / out), and the
    # axis whose size the stride divides gives it exactly (the networks here downsample all axes alike)
    stride = max(-(-int(i) // int(o)) for i, o in zip(input_shape, shapes[-1]))
    return (stride,) * len(input_shape)


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
    stride: int | Sequence[int] | None = None,
) -> dict[str, Any]:
    """Score ``method``'s maps of ``model`` on the synthetic cohort's subjects against their truth maps.

    Args:
        predictor, model: the model (loaded in the Predictor).
        cohort: a synthetic cohort (it has ``truth/PTID.nii.gz``).
        method, baseline, settings: as for :func:`~hyperfusion.explain.image.explain_image`.
        subjects: PTIDs to score (default every subject with a scan and a truth map).
        target: the class explained (default AD, whose effects the truth maps mark).
        threshold: truth below -``threshold`` (tissue loss) is the mask.
        deletion_steps: points of the deletion curves (0: skip them).
        stride: of the lattice measure (default: the network's, :func:`network_stride`).

    Returns:
        {"subjects": [per subject: PTID, DX, :func:`mask_scores` within the brain, :func:`top_decile_scores`,
        ``lattice``, deletion and random-order areas], "mean": the mean of each score over subjects,
        "stride"}.
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
    member = predictor.models[model].members[0]
    if stride is None:
        stride = network_stride(member.network, member.geometry.input_shape)
    rows = []
    for _, row in table.iterrows():
        truth = truth_dir / f"{row['PTID']}.nii.gz"
        if not truth.is_file():
            continue
        scan, record = row["image_path"], cohort_record(row)
        attribution = explain_image(
            predictor,
            model,
            scan,
            record,
            method,
            target=target,
            baseline=baseline,
            settings=settings,
            cohort=cohort,
        )
        brain = brain_mask(attribution.geometry, predictor.views(member, scan))
        mask = truth_mask(truth, attribution.geometry, threshold)
        scores: dict[str, Any] = {"PTID": row["PTID"], "DX": row["DX"]}
        scores.update(mask_scores(attribution.views, mask, brain))
        scores.update(top_decile_scores(attribution.views, mask, brain))
        scores["lattice"] = lattice_index(attribution.views, stride)["lattice"]
        if deletion_steps:
            for order in ("attribution", "random"):
                curve = deletion_curve(
                    predictor,
                    attribution,
                    scan,
                    record,
                    steps=deletion_steps,
                    baseline=baseline,
                    cohort=cohort,
                    order=order,
                )
                scores[f"deletion_area_{order}"] = curve["area"]
        rows.append(scores)
    if not rows:
        raise DataError(f"{cohort.path}: no subject has both a scan and a truth map to score")
    keys = [k for k in rows[0] if k not in ("PTID", "DX")]
    mean = {k: float(np.nanmean([float(r[k]) for r in rows])) for k in keys}
    strides = [int(stride)] * 3 if np.isscalar(stride) else [int(x) for x in stride]
    return {
        "model": model,
        "method": method,
        "target": target,
        "subjects": rows,
        "mean": mean,
        "stride": strides,
    }


def untrained_control(card: ModelCard, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised network of the card's architecture (``torch.manual_seed(seed)`` first), in eval
    mode: what the maps show before any learning. Its hypernetwork heads keep the principled init of the
    card's recorded input variance, as training starts them."""
    from hyperfusion.models import build_model

    arch = card.architecture
    torch.manual_seed(seed)
    return build_model(arch.name, arch.task, **arch.config).eval()


#: The numbers of :func:`faithfulness_summary`, for the trained model and the untrained control
SUMMARY_KEYS = ("top_decile_enrichment", "top_decile_outside_brain", "lattice", "enrichment", "auroc")


def faithfulness_summary(
    model: str | Path | Any,
    cohort: Cohort,
    indices: Sequence[int] | np.ndarray | None = None,
    method: str = "saliency",
    *,
    target: int | str = "AD",
    settings: Mapping[str, Any] | None = None,
    stride: int | Sequence[int] | None = None,
    control_seed: int = 0,
    predictor: Predictor | None = None,
) -> dict[str, Any]:
    """Does ``method`` on ``model`` show what the model learned? Its maps against the planted tissue loss, the
    same for an untrained network of the same configuration, and the lattice at the network's stride.

    Args:
        model: a model or ensemble directory, or a :class:`~hyperfusion.training.evaluate.Member` (network and
            card, e.g. straight from training).
        cohort: a synthetic cohort with ``truth/`` (loaded with its scans).
        indices: rows of ``cohort.table`` to score (default all with a scan and a truth map); pass AD subjects:
            the truth of a CN subject has little tissue loss to find.
        method, target, settings: as for :func:`~hyperfusion.explain.image.explain_image`.
        stride: of the lattice measure (default the network's, :func:`network_stride`).
        control_seed: the untrained control's initialisation seed.
        predictor: to reuse its volume cache (a fresh one otherwise).

    Returns:
        {"model", "method", "subjects" (PTIDs), "stride", "enrichment" (top decile in the mask ÷ the mask's share
        of the brain), "outside_brain" (share of the top decile outside the brain), "lattice" (hottest phase's
        share ÷ the even share), "untrained": the same three for the control, "enrichment_vs_untrained" (the
        ratio of the two enrichments), "trained_mean" / "untrained_mean" (every score's mean)}.
    """
    import tempfile

    from hyperfusion.inference.model_files import save_model

    subjects = None if indices is None else cohort.table["PTID"].iloc[np.asarray(indices, dtype=int)].tolist()
    predictor = predictor or Predictor()
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(model, str | Path):
            path = Path(model)
            predictor.add(path, "trained")
        else:  # a Member: network and card
            path = save_model(model.network, model.card, Path(tmp) / "trained")
            predictor.add(path, "trained")
        card = predictor.models["trained"].members[0].card
        control = save_model(untrained_control(card, control_seed), card, Path(tmp) / "untrained")
        predictor.add(control, "untrained")
        kwargs = dict(subjects=subjects, target=target, settings=settings, deletion_steps=0, stride=stride)
        trained = evaluate_faithfulness(predictor, "trained", cohort, method, **kwargs)
        untrained = evaluate_faithfulness(predictor, "untrained", cohort, method, **kwargs)
    t, u = trained["mean"], untrained["mean"]

    def three(m: dict) -> dict[str, float]:
        return {
            "enrichment": m["top_decile_enrichment"],
            "outside_brain": m["top_decile_outside_brain"],
            "lattice": m["lattice"],
        }

    return {
        "model": str(path) if isinstance(model, str | Path) else card.name,
        "method": method,
        "subjects": [r["PTID"] for r in trained["subjects"]],
        "stride": trained["stride"],
        **three(t),
        "untrained": three(u),
        "enrichment_vs_untrained": t["top_decile_enrichment"] / u["top_decile_enrichment"]
        if u["top_decile_enrichment"] > 0
        else float("nan"),
        "trained_mean": t,
        "untrained_mean": u,
    }


# --- the faithfulness section of a hyperfusion evaluate report ----------------------------------------------
#: The faithfulness columns of results.md: (key of the scores, header); the first three also for the control
FAITHFULNESS_COLUMNS = [
    ("top_decile_enrichment", "top-decile enrichment"),
    ("top_decile_outside_brain", "top decile outside brain"),
    ("lattice", "lattice"),
    ("enrichment", "mass enrichment"),
    ("auroc", "AUROC"),
    ("pointing_game", "pointing game"),
    ("deletion_area_attribution", "deletion area"),
    ("deletion_area_random", "random deletion area"),
]
CONTROLLED = ("top_decile_enrichment", "top_decile_outside_brain", "lattice")


def add_faithfulness(
    cohort: Cohort,
    paths: dict[str, str | Path],
    runs: Sequence[Run],
    result: dict,
    method: str,
    n_subjects: int,
    out: str | Path,
    control_seed: int = 0,
) -> dict:
    """Score ``method``'s maps of every image run against the planted tissue loss, and those of an untrained
    network of the same configuration (the control: what the architecture draws before any learning), on the
    first ``n_subjects`` AD subjects of the report; add them to results.json and results.md.

    ``paths``: run label -> its model or ensemble directory. A synthetic cohort with ``truth/`` is needed.
    """
    import tempfile

    from hyperfusion.inference.model_files import save_model

    out = Path(out)
    dx = cohort.table.set_index("PTID").loc[result["test_ptids"], "DX"]
    ad = [p for p, d in zip(result["test_ptids"], dx) if d == "AD"][:n_subjects]
    predictor = Predictor({run.label: paths[run.label] for run in runs})
    scores, control, strides = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(runs):
            if not run.members[0].network.reads_scan:
                continue
            trained = evaluate_faithfulness(predictor, run.label, cohort, method, subjects=ad)
            scores[run.label], strides[run.label] = trained["mean"], trained["stride"]
            card = run.members[0].card
            name = f"untrained control {i}"
            predictor.add(save_model(untrained_control(card, control_seed), card, Path(tmp) / str(i)), name)
            untrained = evaluate_faithfulness(
                predictor, name, cohort, method, subjects=ad, deletion_steps=0, stride=trained["stride"]
            )
            control[run.label] = {k: untrained["mean"][k] for k in CONTROLLED}
    result["faithfulness"] = {
        "method": method,
        "subjects": ad,
        "mask": f"planted tissue loss, truth < -{TRUTH_THRESHOLD}",
        "brain": "the MNI152 2009a template's brain on the model grid",
        "top_fraction": 0.1,
        "stride": strides,
        "control_seed": control_seed,
        "mean": scores,
        "untrained": control,
    }
    (out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    with (out / "results.md").open("a") as f:
        f.write(faithfulness_markdown(result["faithfulness"]))
    return result["faithfulness"]


def faithfulness_markdown(entry: dict) -> str:
    """The faithfulness table of results.md (trained value, and the untrained control's in parentheses)."""
    head = [h for _, h in FAITHFULNESS_COLUMNS]
    lines = ["| model | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for label, values in entry["mean"].items():
        cells = []
        for key, _ in FAITHFULNESS_COLUMNS:
            v = values.get(key)
            cell = "–" if v is None else f"{v:.3f}"
            if key in CONTROLLED and label in entry.get("untrained", {}):
                cell += f" ({entry['untrained'][label][key]:.3f})"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(
        [
            "",
            f"### Attribution faithfulness ({entry['method']}, {len(entry['subjects'])} AD subjects, against the "
            "planted truth)",
            "",
            *lines,
            "",
            f"Mask: the {entry['mask']}. Top decile: the 10 % most attributed voxels of the model grid; enrichment: "
            "their share inside the mask ÷ the mask's share of the brain (1 = no better than an even spread). "
            "Lattice: the hottest voxel phases modulo the network's stride ÷ an even share (1 = no lattice). In "
            "parentheses: an untrained network of the same configuration (seed "
            f"{entry.get('control_seed', 0)}): what the architecture draws before any learning.",
            "",
        ]
    )
