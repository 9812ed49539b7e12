"""Data layer: cohorts, feature schema, tabular preprocessing, NIfTI geometry, splits and datasets."""

from hyperfusion.data.cohort import Cohort, load_cohort, parse_record
from hyperfusion.data.schema import CLASS_NAMES, FEATURE_NAMES, FEATURES, Feature, feature
from hyperfusion.data.splits import fold_indices, make_partitions
from hyperfusion.data.tabular import TabularPreprocessor

__all__ = [
    "CLASS_NAMES",
    "FEATURES",
    "FEATURE_NAMES",
    "Cohort",
    "Feature",
    "TabularPreprocessor",
    "feature",
    "fold_indices",
    "load_cohort",
    "make_partitions",
    "parse_record",
]
