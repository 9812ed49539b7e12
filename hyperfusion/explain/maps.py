"""An image attribution map of one subject, and its way back to the subject's own scan.

:class:`ImageAttribution` holds the map on the model grid (every hemisphere view) with everything needed to
say what it is: the model's weights, the scan's hash, the record, the method and its settings, the class
explained, the baseline. :meth:`~ImageAttribution.to_subject` undoes the hemisphere mirror and resamples the
map onto the scan's own grid through the geometry functions of the data layer, so the NIfTI it writes opens
over the subject's scan in FSLeyes or ITK-SNAP with the scan's affine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from hyperfusion.data.geometry import Geometry, merge_views, to_subject_space
from hyperfusion.data.nifti import NiftiSource
from hyperfusion.errors import DataError
from hyperfusion.explain.regions import region_summary

__all__ = ["ImageAttribution"]


class Completeness:
    """``output_gap`` and ``relative_delta`` of a result with ``output``, ``baseline_output`` and ``delta``."""

    @property
    def output_gap(self) -> float | None:
        """output − baseline_output: what IG's and DeepLIFT's maps sum to; None without a baseline."""
        return None if self.baseline_output is None else self.output - self.baseline_output

    @property
    def relative_delta(self) -> float | None:
        """|delta| / |output gap|: the completeness error as a share of the change explained."""
        gap = self.output_gap
        if self.delta is None or gap is None:
            return None
        if gap == 0:
            return 0.0 if self.delta == 0 else float("inf")
        return abs(self.delta) / abs(gap)


@dataclass(frozen=True)
class ImageAttribution(Completeness):
    """One subject's attribution map on the model grid, and its provenance.

    Attributes:
        model: the model's name in the Predictor.
        task: "ad" or "brain_age".
        method: the attribution method (a key of ``hyperfusion.explain.methods.METHODS``), or
            "<method> difference" for :meth:`minus`.
        views: float32 (V, D, H, W'): view 0 as the model saw it, view 1 mirrored (see ``split_views``).
        geometry: the model's input geometry.
        target: the class explained (index into ``class_names``), None for brain age.
        target_name: its name ("AD"), None for brain age.
        output: the explained output at the scan (``settings["output"]``: probability, logit or years); the
            members' mean for an ensemble, since that is what the averaged map's sums refer to (completeness).
        prediction: the model's prediction of the explained class (its probability) or age, as the Predictor
            gives it (:func:`hyperfusion.inference.tables.subject_value`: an ensemble by the inverse-entropy
            rule): the number to show beside the map, equal to the Subject page's. For one network and a
            probability output it equals ``output``; for an ensemble the two differ slightly.
        baseline_output: the output at the baseline scan, None for methods without one.
        delta: the convergence delta (IG, DeepLIFT): sum(map) − (output − baseline_output).
        settings: the method's settings, defaults included.
        baseline: the baseline's description (``Baseline.describe()``), None if the method has none.
        coarse: Grad-CAM: the layer, its grid (d, h, w) and voxel size (z, y, x) in mm before upsampling.
        weights: sha256 of each member's weights.
        scan_sha256: sha256 of the scan file.
        record: the parsed record (ADNIMERGE names; None where missing).
        members: how many networks were averaged (an ensemble's maps are averaged with equal weights).
        compared: for a difference, both maps' records and outputs.
        steps: integrated gradients only: the path points the map used (``n_steps``, or a quarter of them when
            the ``tolerance`` setting is > 0 and their convergence delta was within it; for an ensemble the most
            any member used), else None.
    """

    model: str
    task: str
    method: str
    views: np.ndarray = field(repr=False)
    geometry: Geometry
    target: int | None = None
    target_name: str | None = None
    output: float = 0.0
    baseline_output: float | None = None
    delta: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    coarse: dict[str, Any] | None = None
    weights: tuple[str, ...] = ()
    scan_sha256: str = ""
    record: dict[str, Any] = field(default_factory=dict)
    members: int = 1
    compared: dict[str, Any] | None = None
    prediction: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        expected = (self.geometry.n_views, *self.geometry.input_shape)
        if tuple(self.views.shape) != expected:
            raise DataError(f"attribution views of shape {self.views.shape}; the geometry expects {expected}")
        views = np.array(self.views, dtype=np.float32)
        views.flags.writeable = False  # maps are shared through the cache: nobody may change one in place
        object.__setattr__(self, "views", views)

    # --- numbers ---------------------------------------------------------------------------------------
    @property
    def box(self) -> np.ndarray:
        """The map over the full box (D, H, W), mirror undone, in MNI order for ``mni_box`` geometries."""
        return merge_views(self.views, self.geometry)

    def describe(self) -> dict[str, Any]:
        """Everything but the voxels, JSON-able (provenance for the per-region JSON and the dashboard)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("views", "geometry")}
        d.update(
            geometry=self.geometry.to_dict(),
            weights=list(self.weights),
            output_gap=self.output_gap,
            relative_delta=self.relative_delta,
            sum=float(self.views.astype(np.float64).sum()),
        )
        return d

    # --- back to the subject -------------------------------------------------------------------------------
    def to_subject(self, reference: NiftiSource, order: int = 1) -> nib.Nifti1Image:
        """The map on the reference scan's own grid and affine (float32, 0 outside the model's box).

        Args:
            reference: the subject's scan the map was computed from (path, bytes or nibabel image).
            order: interpolation order (1 = trilinear).
        """
        img = to_subject_space(self.views, self.geometry, reference, order=order)
        # NIfTI's 80-character description: enough to tell two exported maps apart in a viewer
        img.header["descrip"] = f"hyperfusion {self.method} {self.target_name or ''} {self.model}"[:79]
        return img

    def save_nifti(self, path: str | Path, reference: NiftiSource, regions: str | Path | None = None) -> Path:
        """Write the map on the subject's grid as NIfTI; optionally the per-region summary as JSON.

        Returns the NIfTI path.
        """
        path = Path(path)
        if not path.name.endswith((".nii", ".nii.gz")):
            raise DataError(f"{path}: an attribution map is written as NIfTI; name it .nii.gz or .nii")
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(self.to_subject(reference), path)
        if regions is not None:
            Path(regions).write_text(json.dumps(self.summary(reference), indent=2, default=float) + "\n")
        return path

    def region_summary(self, reference: NiftiSource | None = None) -> dict[str, Any]:
        """How the map distributes over hippocampus L / R, entorhinal, amygdala, ventricles and the rest.

        See :func:`hyperfusion.explain.regions.region_summary`; ``reference`` is needed only for
        ``voxel_crop`` geometries.
        """
        needs = reference if self.geometry.mode == "voxel_crop" else None
        return region_summary(self.views, self.geometry, needs)

    def summary(self, reference: NiftiSource | None = None) -> dict[str, Any]:
        """The map's description and its region summary, as one JSON-able dict."""
        return {"attribution": self.describe(), **self.region_summary(reference)}

    # --- comparing -----------------------------------------------------------------------------------------
    def minus(self, other: ImageAttribution) -> ImageAttribution:
        """``self − other`` voxel by voxel: e.g. the map under APOE4 = 2 minus the map under APOE4 = 0.

        Both must come from the same model, scan, method, settings, target and baseline; only the record
        may differ. The difference's ``output`` is the difference of outputs.
        """
        same = ("model", "method", "geometry", "target", "settings", "baseline", "weights", "scan_sha256")
        differing = [k for k in same if getattr(self, k) != getattr(other, k)]
        if differing:
            raise DataError(f"maps to compare differ in {differing}; only the record may differ")
        compared = {
            "first": {"record": other.record, "output": other.output, "prediction": other.prediction},
            "second": {"record": self.record, "output": self.output, "prediction": self.prediction},
        }
        return replace(
            self,
            method=f"{self.method} difference",
            views=self.views - other.views,
            output=self.output - other.output,
            prediction=None,
            baseline_output=None,
            delta=None,
            record={},
            compared=compared,
            steps=None,
        )

    # --- storage (the attribution cache) -----------------------------------------------------------------
    def to_state(self) -> tuple[np.ndarray, dict[str, Any]]:
        """(views, JSON-able everything else): what :meth:`from_state` needs."""
        meta = {k: v for k, v in asdict(self).items() if k not in ("views", "geometry")}
        meta["geometry"] = self.geometry.to_dict()
        meta["weights"] = list(self.weights)
        return self.views, meta

    @classmethod
    def from_state(cls, views: np.ndarray, meta: dict[str, Any]) -> ImageAttribution:
        meta = dict(meta)
        meta["geometry"] = Geometry.from_dict(meta["geometry"])
        meta["weights"] = tuple(meta["weights"])
        return cls(views=views, **meta)
