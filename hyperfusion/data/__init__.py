"""Data layer: cohorts, feature schema, tabular preprocessing, NIfTI geometry, volume cache, splits, datasets."""

from hyperfusion.data.cohort import Cohort, load_cohort, parse_record
from hyperfusion.data.geometry import (
    Geometry,
    ad_box,
    authors_crop,
    merge_views,
    model_input,
    resample_box,
    split_views,
    to_subject_space,
    zscore_nonzero,
)
from hyperfusion.data.nifti import image_sha256, load_nifti
from hyperfusion.data.schema import CLASS_NAMES, FEATURE_NAMES, FEATURES, Feature, feature
from hyperfusion.data.splits import fold_indices, make_partitions
from hyperfusion.data.tabular import TabularPreprocessor
from hyperfusion.data.volume_cache import VolumeCache

__all__ = [
    "CLASS_NAMES",
    "FEATURES",
    "FEATURE_NAMES",
    "Cohort",
    "Feature",
    "Geometry",
    "TabularPreprocessor",
    "VolumeCache",
    "ad_box",
    "authors_crop",
    "feature",
    "fold_indices",
    "image_sha256",
    "load_cohort",
    "load_nifti",
    "make_partitions",
    "merge_views",
    "model_input",
    "parse_record",
    "resample_box",
    "split_views",
    "to_subject_space",
    "zscore_nonzero",
]
