"""Captum attributions, what-if sweeps, counterfactuals and attribution faithfulness.

Everything takes what the Predictor takes (a loaded model's name, a scan, a raw record) and returns plain
data, so the dashboard never special-cases a method:

- :func:`explain_image` (any method of :data:`METHODS`, listed by :func:`available_methods`) ->
  :class:`ImageAttribution` (``.to_subject(scan)``, ``.save_nifti(path, scan, regions=...)``,
  ``.region_summary()``); :func:`compare_records` -> the maps under two records and their difference;
- :func:`explain_record` -> :class:`RecordAttribution` (per attribute, and the image-versus-record split);
- :func:`ice_curves`, :func:`partial_dependence` -> :class:`IceCurves`;
- :func:`counterfactual` -> :class:`Counterfactual`; :func:`nearest_subject`;
- :func:`evaluate_faithfulness`, :func:`mask_scores`, :func:`deletion_curve`.

Modules: :mod:`.methods` (the Captum calls), :mod:`.baselines`, :mod:`.maps`, :mod:`.image`, :mod:`.cache`,
:mod:`.regions`, :mod:`.tabular`, :mod:`.whatif`, :mod:`.counterfactual`, :mod:`.faithfulness`,
:mod:`.records`.
"""

from hyperfusion.data.cohort import cohort_record, cohort_subject
from hyperfusion.explain.baselines import BASELINES
from hyperfusion.explain.cache import AttributionCache
from hyperfusion.explain.counterfactual import (
    Counterfactual,
    Robustness,
    counterfactual,
    nearest_subject,
    robustness,
)
from hyperfusion.explain.faithfulness import deletion_curve, evaluate_faithfulness, mask_scores, truth_mask
from hyperfusion.explain.image import RecordComparison, compare_records, default_cache, explain_image
from hyperfusion.explain.maps import ImageAttribution
from hyperfusion.explain.methods import METHODS, attribute_views, available_methods
from hyperfusion.explain.regions import REGION_NAMES, region_summary
from hyperfusion.explain.tabular import RECORD_METHODS, RecordAttribution, explain_record
from hyperfusion.explain.whatif import IceCurves, attribute_grid, ice_curves, partial_dependence

__all__ = [
    "BASELINES",
    "METHODS",
    "RECORD_METHODS",
    "REGION_NAMES",
    "AttributionCache",
    "Counterfactual",
    "IceCurves",
    "ImageAttribution",
    "RecordAttribution",
    "RecordComparison",
    "Robustness",
    "attribute_grid",
    "attribute_views",
    "available_methods",
    "cohort_record",
    "cohort_subject",
    "compare_records",
    "counterfactual",
    "default_cache",
    "deletion_curve",
    "evaluate_faithfulness",
    "explain_image",
    "explain_record",
    "ice_curves",
    "mask_scores",
    "nearest_subject",
    "partial_dependence",
    "region_summary",
    "robustness",
    "truth_mask",
]
