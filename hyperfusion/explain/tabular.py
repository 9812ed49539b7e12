"""What the record contributes: tabular attributions of one subject, and the image-versus-record split.

Everything here runs through the Predictor's cached image features: the scan is encoded once per model and
every evaluation is a ``decode`` of the record (milliseconds), so Shapley value sampling's hundreds of
evaluations stay interactive.

- :func:`explain_record` attributes the output to the model's record inputs with Captum's
  ``IntegratedGradients`` or ``ShapleyValueSampling``, against a baseline record, and reports them per
  attribute: each value together with its missing indicator, and the two sex one-hot columns as one
  attribute (the model cannot change one without the other).
- The same call splits the output change between the scan and the record: with the image baseline ``b_i``
  and the record baseline ``b_t``, the exact two-player Shapley values are
  ``φ_image = ½[f(x, t) − f(b_i, t) + f(x, b_t) − f(b_i, b_t)]`` and
  ``φ_record = ½[f(x, t) − f(x, b_t) + f(b_i, t) − f(b_i, b_t)]``; they sum to ``f(x, t) − f(b_i, b_t)``,
  and the record's share is ``|φ_record| / (|φ_image| + |φ_record|)``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from captum.attr import IntegratedGradients, ShapleyValueSampling
from torch import Tensor

from hyperfusion.data.cohort import Cohort, parse_record
from hyperfusion.data.nifti import image_sha256
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.errors import DataError
from hyperfusion.explain.baselines import DEFAULT_BLUR_MM, make_baseline
from hyperfusion.explain.image import resolve_target
from hyperfusion.explain.methods import OUTPUTS, seeded_rng
from hyperfusion.inference.predictor import LoadedModel, Predictor
from hyperfusion.models.network import ImageFeatures, decode_records, subject_output

__all__ = ["RECORD_METHODS", "RecordAttribution", "explain_record", "feature_groups", "input_names"]

_ZERO_FEATURES: dict[str, tuple[ImageFeatures, dict]] = {}  # model key -> the zero scan's features
_ZERO_LOCK = threading.Lock()


def _baseline_features(predictor, member, scan, image_baseline, blur_mm, cohort) -> tuple:
    """(image features of the baseline scan, its description) for the image-versus-record split. The zero
    scan's are computed once per model (they depend on nothing of the subject's scan, so an upload leaves
    nothing behind): a record edit then costs only the record's decodes."""
    if image_baseline == "zero":
        with _ZERO_LOCK:
            if member.key in _ZERO_FEATURES:
                return _ZERO_FEATURES[member.key]
    views = predictor.views(member, scan)
    b = make_baseline(
        image_baseline, views, member.geometry, sigma_mm=blur_mm, cohort=cohort, cache=predictor.cache
    )
    with torch.no_grad():
        entry = (member.network.encode_image(torch.from_numpy(b.views.copy())), b.describe())
    if image_baseline == "zero":
        with _ZERO_LOCK:
            _ZERO_FEATURES[member.key] = entry
    return entry


RECORD_METHODS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 64},
    "shapley_sampling": {"n_samples": 64, "batch_size": 64, "seed": 0},
}


def input_names(member: LoadedModel) -> list[str]:
    """The names of a model's record inputs (columns of its tabular tensor)."""
    if member.preprocessor is not None:
        return list(member.preprocessor.output_names_)
    if member.task == "brain_age":
        return ["PTGENDER_Female", "PTGENDER_Male"]
    n = int(getattr(member.network, "n_tabular", 0) or 0)
    return [f"input_{i}" for i in range(n)]


def feature_groups(names: Sequence[str]) -> dict[str, list[int]]:
    """Attribute -> its input columns: a value with its ``_missing`` indicator, the sex one-hot together."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        attribute = "PTGENDER" if name.startswith("PTGENDER_") else name.removesuffix("_missing")
        groups.setdefault(attribute, []).append(i)
    return groups


def _record_baseline(member: LoadedModel, baseline: str | Mapping[str, object]) -> Tensor:
    """(1, F) baseline record on the model's input scale."""
    if isinstance(baseline, Mapping):
        return member.tabular([parse_record(baseline, source="baseline record")])
    if baseline != "training_mean":
        raise DataError(f"record baseline {baseline!r}: use 'training_mean' or a record (a dict)")
    names = input_names(member)
    pre = member.preprocessor
    values = []
    for name in names:
        if name.startswith("PTGENDER_"):
            values.append(0.5)  # neither sex: the one-hot's midpoint
        elif name.endswith("_missing") and pre is not None:
            values.append(pre.fit_missing_rate_.get(name.removesuffix("_missing"), 0.0))
        else:
            values.append(0.0)  # z-scores: the training mean (after imputation) is 0 by construction
    return torch.tensor([values], dtype=torch.float32)


class _RecordOutput:
    """f(record) for one scan: decode of the cached image features, views averaged. (N, F) -> (N, C)."""

    def __init__(self, member: LoadedModel, features: ImageFeatures, output: str) -> None:
        self.network = member.network
        self.features = features
        self.reads_scan = member.reads_scan
        self.output = output

    def __call__(self, tabular: Tensor) -> Tensor:
        rows, views = decode_records(self.network, self.features, tabular)
        return subject_output(rows, views, probabilities=self.output == "probability")


@dataclass(frozen=True)
class RecordAttribution:
    """One subject's record attributions and the image-versus-record split, for one model.

    Attributes:
        model, task, method: as asked; ``method`` is "integrated_gradients" or "shapley_sampling".
        target, target_name: the class explained (None for brain age).
        attributes: attribute -> contribution in output units (value and missing indicator together, sex as
            one), in the order of the model's inputs.
        columns: model input column -> contribution (IG only; Shapley values are per attribute).
        output: the explained output (``settings["output"]``) with the subject's record; ensemble mean.
        baseline_output: with the baseline record (same scan).
        delta: IG's convergence delta, sum(attributes) − (output − baseline_output); 0 for Shapley sampling
            (its values always sum to the gap).
        record_baseline: "training_mean" or the baseline record.
        image_contribution, record_contribution: the two-player Shapley values φ_image and φ_record.
        record_share: |φ_record| / (|φ_image| + |φ_record|); image_share = 1 − record_share.
        image_baseline: the baseline scan's description.
        settings: the method's settings and ``output``.
    """

    model: str
    task: str
    method: str
    target: int | None
    target_name: str | None
    attributes: dict[str, float]
    columns: dict[str, float]
    output: float
    baseline_output: float
    delta: float
    record_baseline: Any
    image_contribution: float
    record_contribution: float
    record_share: float
    image_baseline: dict[str, Any] | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def image_share(self) -> float:
        return 1.0 - self.record_share

    def describe(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"image_share": self.image_share}


def explain_record(
    predictor: Predictor,
    model: str,
    scan: str | Path | bytes | None,
    record: Mapping[str, object],
    method: str = "integrated_gradients",
    *,
    target: int | str | None = None,
    record_baseline: str | Mapping[str, object] = "training_mean",
    image_baseline: str = "zero",
    blur_mm: float = DEFAULT_BLUR_MM,
    cohort: Cohort | None = None,
    settings: Mapping[str, Any] | None = None,
) -> RecordAttribution:
    """Attribute one subject's prediction to its record, per attribute, and split it between scan and record.

    Args:
        predictor: holds the model; its image features for ``scan`` are reused (computed once).
        model: the model's name in ``predictor.models`` (an ensemble's attributions are averaged).
        scan: the subject's scan (None for a tabular-only model).
        record: the raw record (ADNIMERGE names).
        method: "integrated_gradients" (``n_steps``) or "shapley_sampling" (``n_samples`` permutations,
            ``batch_size`` evaluations per decode, ``seed``).
        target: class index or name (AD); default the predicted class.
        record_baseline: "training_mean" (every z-scored value at its training mean, sex one-hot (½, ½),
            indicators at the training missing rates) or a raw record to compare with.
        image_baseline: the scan baseline of the image-versus-record split: "zero", "blur" or
            "cohort_cn_mean" (see :mod:`.baselines`).
        blur_mm, cohort: for the blur and cohort-mean image baselines.
        settings: the method's settings and ``output`` ("probability" or "logit"; "years" for brain age).
    """
    if method not in RECORD_METHODS:
        raise DataError(f"unknown record attribution method {method!r}; choose one of {list(RECORD_METHODS)}")
    entry = predictor.models.get(model)
    if entry is None:
        raise DataError(f"no model {model!r} is loaded; loaded: {list(predictor.models)}")
    settings = dict(settings or {})
    output = settings.pop("output", OUTPUTS[entry.task][0])
    if output not in OUTPUTS[entry.task]:
        raise DataError(f"output {output!r} does not exist for task {entry.task}; use {OUTPUTS[entry.task]}")
    unknown = sorted(set(settings) - set(RECORD_METHODS[method]))
    if unknown:
        raise DataError(f"{method}: unknown setting(s) {unknown}; it takes {sorted(RECORD_METHODS[method])}")
    s = {**RECORD_METHODS[method], **settings}
    parsed = parse_record(record)
    target_index = resolve_target(predictor, model, scan, record, target)
    column = target_index or 0
    scan_key = image_sha256(scan) if scan is not None else None
    per_member = []
    image_info = None
    for member in entry.members:
        names = input_names(member)
        x = member.tabular([parsed])
        base = _record_baseline(member, record_baseline)
        feats = predictor.features(member, scan, scan_key)
        f = _RecordOutput(member, feats, output)
        if not member.network.reads_record:
            # The network ignores its record (image-only): every attribution is exactly 0.
            groups = {a: 0.0 for a in feature_groups(names)}
            cols = np.zeros(len(names)) if method == "integrated_gradients" else None
            delta = 0.0
        elif method == "integrated_gradients":
            attr, delta = IntegratedGradients(f).attribute(
                x, baselines=base, target=target_index, n_steps=s["n_steps"], return_convergence_delta=True
            )
            delta = float(delta.reshape(-1)[0])
            cols = attr[0].detach().numpy().astype(float)
            groups = {a: float(cols[idx].sum()) for a, idx in feature_groups(names).items()}
        else:
            groups_idx = feature_groups(names)
            mask = torch.zeros(1, len(names), dtype=torch.long)
            for g, idx in enumerate(groups_idx.values()):
                mask[0, idx] = g
            with seeded_rng(s["seed"]):
                attr = ShapleyValueSampling(f).attribute(
                    x,
                    baselines=base,
                    target=target_index,
                    feature_mask=mask,
                    n_samples=s["n_samples"],
                    perturbations_per_eval=s["batch_size"],
                )
            # every column of a group carries the group's whole value
            groups = {a: float(attr[0, idx[0]]) for a, idx in groups_idx.items()}
            cols, delta = None, 0.0
        with torch.no_grad():
            out_x = float(f(x)[0, column])
            out_b = float(f(base)[0, column])
            if member.reads_scan:
                base_feats, image_info = _baseline_features(
                    predictor, member, scan, image_baseline, blur_mm, cohort
                )
                g = _RecordOutput(member, base_feats, output)
                bi_t, bi_b = float(g(x)[0, column]), float(g(base)[0, column])
            else:
                bi_t, bi_b = out_x, out_b  # no image: changing it changes nothing
        phi_image = 0.5 * ((out_x - bi_t) + (out_b - bi_b))
        phi_record = 0.5 * ((out_x - out_b) + (bi_t - bi_b))
        per_member.append((names, groups, cols, delta, out_x, out_b, phi_image, phi_record))
    names, groups, cols, _, _, _, _, _ = per_member[0]
    mean = lambda i: float(np.mean([m[i] for m in per_member]))  # noqa: E731
    attributes = {a: float(np.mean([m[1][a] for m in per_member])) for a in groups}
    columns = {} if cols is None else dict(zip(names, np.mean([m[2] for m in per_member], axis=0).tolist()))
    phi_image, phi_record = mean(6), mean(7)
    total = abs(phi_image) + abs(phi_record)
    return RecordAttribution(
        model=model,
        task=entry.task,
        method=method,
        target=target_index,
        target_name=None if target_index is None else CLASS_NAMES[target_index],
        attributes=attributes,
        columns=columns,
        output=mean(4),
        baseline_output=mean(5),
        delta=mean(3),
        record_baseline=record_baseline if isinstance(record_baseline, str) else dict(record_baseline),
        image_contribution=phi_image,
        record_contribution=phi_record,
        record_share=abs(phi_record) / total if total > 0 else 0.0,
        image_baseline=image_info,
        settings={**s, "output": output},
    )
