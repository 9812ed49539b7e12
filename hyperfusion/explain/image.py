"""Image attribution maps of a subject through the Predictor: the call the dashboard and the CLI make.

:func:`explain_image` takes what the Predictor takes (a loaded model's name, a scan, a raw record), runs any
method of :mod:`.methods` on every member of the model (an ensemble's maps are averaged), and returns an
:class:`~hyperfusion.explain.maps.ImageAttribution` that knows how to go back onto the subject's scan. Maps
are cached by (weights, scan, record, method, settings, target, baseline). :func:`compare_records` gives the
maps of one subject under two records and their difference: for HyperFusion it shows how the record moves
where the model looks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hyperfusion.data.cohort import Cohort, parse_record
from hyperfusion.data.nifti import image_sha256
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.errors import DataError
from hyperfusion.explain.baselines import DEFAULT_BLUR_MM, describe_baseline, make_baseline
from hyperfusion.explain.cache import AttributionCache, attribution_key, canonical_record
from hyperfusion.explain.maps import ImageAttribution
from hyperfusion.explain.methods import attribute_views, get_method, resolve_settings
from hyperfusion.inference.predictor import ModelEntry, Predictor
from hyperfusion.inference.tables import subject_value
from hyperfusion.runtime import resolve_precision

__all__ = ["RecordComparison", "compare_records", "default_cache", "explain_image", "resolve_target"]

#: Changes whenever the maps this module computes would change for the same inputs (cache keys use it).
EXPLAIN_VERSION = (
    "hyperfusion-explain-3"  # 2: baseline-free maps restricted to the brain voxels; 3: prediction
)

_DEFAULT_CACHE = AttributionCache()

Scan = str | Path | bytes


def default_cache() -> AttributionCache:
    """The process-wide in-memory cache :func:`explain_image` uses unless given another (or ``False``)."""
    return _DEFAULT_CACHE


def _entry(predictor: Predictor, model: str) -> ModelEntry:
    try:
        return predictor.models[model]
    except KeyError:
        raise DataError(f"no model {model!r} is loaded; loaded: {list(predictor.models)}") from None


def resolve_target(
    predictor: Predictor,
    model: str,
    scan: Scan | None,
    record: Mapping[str, object],
    target: int | str | None,
) -> int | None:
    """The class index to explain: ``target`` as an index or a class name, or the predicted class if None.

    Brain-age models have no classes: None.
    """
    entry = _entry(predictor, model)
    if entry.task == "brain_age":
        if target is not None:
            raise DataError("a brain-age model predicts years: there is no class to choose")
        return None
    if target is None:
        value = predictor.predict(scan, record, models=[model])[model].value[0]
        return int(np.argmax(value))
    if isinstance(target, str):
        if target not in CLASS_NAMES:
            raise DataError(f"unknown class {target!r}; classes: {list(CLASS_NAMES)}")
        return CLASS_NAMES.index(target)
    if not 0 <= int(target) < len(CLASS_NAMES):
        raise DataError(f"class index {target} is out of range 0-{len(CLASS_NAMES) - 1}")
    return int(target)


def _cache_for(cache: AttributionCache | bool | None) -> AttributionCache | None:
    if cache is True:
        return _DEFAULT_CACHE
    return cache if isinstance(cache, AttributionCache) else None  # (an empty cache is falsy: len 0)


def _on_support(views: np.ndarray, support: np.ndarray | None, uses_baseline: bool) -> np.ndarray:
    """A gradient map (saliency, SmoothGrad, Grad-CAM) restricted to the scan's brain voxels.

    Outside a skull-stripped brain the input is a constant fill (0 after normalisation) in every scan the model
    ever saw; the gradient there answers "what if tissue appeared in the background", which no training scan
    asked, and an untrained network of the same shape puts as much of its top decile there as a trained one.
    Methods that compare with a baseline (integrated gradients, DeepLIFT, input × gradient) are left whole:
    their maps must add up to the output's change (completeness), and at a zero baseline they are 0 there anyway.
    """
    if uses_baseline or support is None:
        return views
    return np.where(support, views, 0).astype(views.dtype, copy=False)


def explain_image(
    predictor: Predictor,
    model: str,
    scan: Scan,
    record: Mapping[str, object],
    method: str = "integrated_gradients",
    *,
    target: int | str | None = None,
    baseline: str = "zero",
    settings: Mapping[str, Any] | None = None,
    blur_mm: float = DEFAULT_BLUR_MM,
    cohort: Cohort | None = None,
    cache: AttributionCache | bool | None = True,
    progress: Callable[[float], None] | None = None,
    threads: int | None = None,
    precision: str | None = None,
) -> ImageAttribution:
    """One subject's attribution map for one loaded model, with any method.

    Args:
        predictor: holds the model (its preprocessing, geometry, volume cache).
        model: the model's name in ``predictor.models`` (a single model or an ensemble).
        scan: the subject's T1 (path or file bytes).
        record: the raw record (ADNIMERGE names -> values, as for ``Predictor.predict``).
        method: a key of ``hyperfusion.explain.methods.METHODS``.
        target: class index or name to explain (AD); default the predicted class. None for brain age.
        baseline: "zero", "blur" or "cohort_cn_mean", for methods that use one (recorded in the result).
        settings: the method's settings (see ``available_methods()``), e.g. ``{"n_steps": 64}``.
        blur_mm: the blur baseline's Gaussian sigma, mm.
        cohort: the cohort whose CN subjects make the ``cohort_cn_mean`` baseline.
        cache: True: the process-wide cache; an :class:`AttributionCache`; False / None: compute afresh.
        progress: called with the fraction done (0-1) while the map is computed.
        threads: intra-op threads for this map (default ``HYPERFUSION_THREADS``, else every usable core).
        precision: "float32" (default, ``HYPERFUSION_PRECISION``), "bfloat16" or "float16" (autocast). The
            map runs on the Predictor's device (``Predictor(device=...)``, ``HYPERFUSION_DEVICE``).

    Returns:
        The map on the model grid (``.views`` (V, D, H, W'), ``.box`` (D, H, W)) with its provenance;
        ``.to_subject(scan)`` / ``.save_nifti(path, scan)`` put it on the scan's own grid.
    """
    entry = _entry(predictor, model)
    m = get_method(method)
    members = entry.members
    if not members[0].reads_scan:
        raise DataError(f"model {model!r} does not read the scan: explain its record (explain_record)")
    geometry = members[0].geometry
    if any(member.geometry != geometry for member in members):
        raise DataError(f"the members of {model!r} use different geometries; explain them one by one")
    parsed = parse_record(record)
    precision = resolve_precision(precision)
    target_index = resolve_target(predictor, model, scan, record, target)
    subject_voxels = geometry.n_views * int(np.prod(geometry.input_shape))
    resolved = resolve_settings(method, settings, members[0].network, entry.task, subject_voxels)
    base_kw = {"sigma_mm": blur_mm, "cohort": cohort, "cache": predictor.cache}
    baseline_info = describe_baseline(baseline, geometry, **base_kw) if m.uses_baseline else None
    scan_sha = image_sha256(scan)
    store = _cache_for(cache)
    key = attribution_key(
        version=EXPLAIN_VERSION,
        weights=[member.key for member in members],
        scan=scan_sha,
        record=canonical_record(parsed),
        method=method,
        settings=resolved,
        target=target_index,
        baseline=baseline_info,
        **({} if precision == "float32" else {"precision": precision}),
    )
    if store is not None and (hit := store.get(key)) is not None:
        if progress is not None:
            progress(1.0)
        return hit
    results = []
    support = None
    for i, member in enumerate(members):
        views = predictor.views(member, scan)
        support = np.asarray(views)[:, 0] != 0
        base = make_baseline(baseline, views, geometry, **base_kw).views if m.uses_baseline else None

        def member_progress(f: float, i: int = i) -> None:
            if progress is not None:
                progress((i + f) / len(members))

        results.append(
            attribute_views(
                member.network_on(getattr(predictor, "device", "cpu")),
                views,
                member.tabular([parsed]),
                method,
                task=entry.task,
                target=target_index,
                baseline=base,
                settings=resolved,
                voxel_mm=geometry.voxel_size_mm,
                progress=member_progress,
                threads=threads,
                precision=precision,
            )
        )
    first = results[0]
    attribution = ImageAttribution(
        model=model,
        task=entry.task,
        method=method,
        views=_on_support(np.mean([r.views for r in results], axis=0), support, m.uses_baseline),
        geometry=geometry,
        target=target_index,
        target_name=None if target_index is None else CLASS_NAMES[target_index],
        output=float(np.mean([r.output for r in results])),
        baseline_output=None
        if first.baseline_output is None
        else float(np.mean([r.baseline_output for r in results])),
        delta=None if first.delta is None else float(np.mean([r.delta for r in results])),
        settings=resolved,
        baseline=baseline_info,
        coarse=first.coarse,
        weights=tuple(member.key for member in members),
        scan_sha256=scan_sha,
        record=canonical_record(parsed),
        members=len(members),
        prediction=subject_value(predictor, model, scan, record, CLASS_NAMES[target_index or 0]),
        # an ensemble's members may stop at different steps under a tolerance: the most any of them used
        steps=None if first.steps is None else max(r.steps for r in results),
    )
    if store is not None:
        store.put(key, attribution)
    return attribution


@dataclass(frozen=True)
class RecordComparison:
    """One subject's maps under two records and ``difference = second − first``."""

    first: ImageAttribution
    second: ImageAttribution
    difference: ImageAttribution


def compare_records(
    predictor: Predictor,
    model: str,
    scan: Scan,
    first: Mapping[str, object],
    second: Mapping[str, object],
    method: str = "integrated_gradients",
    *,
    target: int | str | None = None,
    **kwargs: Any,
) -> RecordComparison:
    """The maps of ``scan`` under two records (e.g. APOE4 0 and 2) for the same class, and their difference.

    ``target`` defaults to the class predicted under the ``first`` record; every other keyword is passed to
    :func:`explain_image`. For a model that ignores the record (image-only) the difference is zero.
    """
    target_index = resolve_target(predictor, model, scan, first, target)
    a = explain_image(predictor, model, scan, first, method, target=target_index, **kwargs)
    b = explain_image(predictor, model, scan, second, method, target=target_index, **kwargs)
    return RecordComparison(first=a, second=b, difference=b.minus(a))
