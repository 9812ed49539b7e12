"""The row layout of cohort predictions, shared by ``hyperfusion predict --cohort`` (:mod:`.cohort`) and the
dashboard's stored rows (:mod:`.cohort_cache`, which reads them back without importing torch)."""

from hyperfusion.data.schema import CLASS_NAMES

#: The CSV's columns, in order (probabilities for AD models, the age and gap for brain-age models).
COLUMNS = (
    "PTID",
    "model",
    "task",
    "prediction",
    *(f"p_{c}" for c in CLASS_NAMES),
    "predicted_age",
    "brain_age_gap",
    "spread",
    "in_distribution",
    "ood_summary",
    "error",
)
#: The ``error`` of a subject that has no scan, for a model that reads one.
NO_SCAN = "no scan for this subject"
