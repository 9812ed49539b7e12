"""Data layer: cohorts, feature schema, tabular preprocessing, NIfTI geometry, volume cache, splits, datasets.

Names are imported on first use (PEP 562), so ``from hyperfusion.data.cohort import load_cohort`` does not pay
for scipy / nibabel: the dashboard's first page stays fast.
"""

from hyperfusion.lazy import lazy_exports

_EXPORTS = {
    "Cohort": "cohort",
    "cohort_identity": "cohort",
    "load_cohort": "cohort",
    "parse_record": "cohort",
    "Geometry": "geometry",
    "ad_box": "geometry",
    "authors_crop": "geometry",
    "brain_box": "geometry",
    "merge_views": "geometry",
    "model_input": "geometry",
    "new_image_like": "geometry",
    "resample_box": "geometry",
    "split_views": "geometry",
    "to_subject_space": "geometry",
    "zscore_nonzero": "geometry",
    "image_sha256": "nifti",
    "load_nifti": "nifti",
    "CLASS_NAMES": "schema",
    "FEATURE_NAMES": "schema",
    "FEATURES": "schema",
    "Feature": "schema",
    "feature": "schema",
    "fold_indices": "splits",
    "make_partitions": "splits",
    "TabularPreprocessor": "tabular",
    "VolumeCache": "volume_cache",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
