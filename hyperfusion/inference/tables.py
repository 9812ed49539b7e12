"""Predictions as tables a person reads: one row per model, for one of the records a Prediction holds.

The dashboard's Subject, Upload and Cohort pages and the subject report (:mod:`hyperfusion.report`) show these
rows; a notebook gets the same with ``pandas.DataFrame(prediction_rows(...))``.
"""

from __future__ import annotations

from collections.abc import Mapping

from hyperfusion.inference.predictor import Prediction, Predictor
from hyperfusion.training.ood import summary as ood_summary

__all__ = ["predicted_label", "prediction_rows", "shown_value", "subject_value"]


def shown_value(p: Prediction, row: int = 0, class_name: str = "AD") -> float:
    """The number every page shows for one model and record ``row``: P(``class_name``) as the Predictor
    gives it (hemisphere views averaged as probabilities, an ensemble's members by the inverse-entropy rule of
    :func:`hyperfusion.training.metrics.combine_members`), or the predicted age in years (brain age)."""
    if p.task != "ad":
        return float(p.value[row])
    return float(p.value[row, p.class_names.index(class_name)])


def subject_value(
    predictor: Predictor,
    model: str,
    scan: str | bytes | None,
    record: Mapping[str, object],
    class_name: str = "AD",
) -> float:
    """One (subject, record, model) prediction: :func:`shown_value` of ``predictor.predict``. The Subject,
    Attribution and Brain age pages and the explain engine all show this number, so one subject under one
    record gets one answer everywhere."""
    return shown_value(predictor.predict(scan, record, models=[model])[model], 0, class_name)


def predicted_label(p: Prediction, row: int = 0) -> str | float:
    """The predicted class (AD) or the predicted age rounded to 0.1 year (brain age) for record ``row``."""
    return p.class_names[int(p.value[row].argmax())] if p.task == "ad" else round(float(p.value[row]), 1)


def prediction_rows(
    predictions: Mapping[str, Prediction], task: str, row: int = 0, reference: int | None = None
) -> list[dict]:
    """One dict per model of ``task`` for record ``row``: class probabilities, the predicted class, the spread
    across ensemble members and whether the record lies inside the training data (AD); the predicted age and
    its gap to the chronological age (brain age). With ``reference`` (another record's row, e.g. the recorded
    values), the change from that record's prediction is added."""
    rows = []
    for name, p in predictions.items():
        if p.task != task:
            continue
        if task == "ad":
            out = {
                "model": name,
                **{f"P({c})": round(float(v), 3) for c, v in zip(p.class_names, p.value[row])},
            }
            out["predicted"] = predicted_label(p, row)
            ad = p.class_names.index("AD")
            if reference is not None:
                out["Δ P(AD) vs recorded"] = round(float(p.value[row, ad] - p.value[reference, ad]), 3)
            out["spread P(AD)"] = round(float(p.spread[row, ad]), 3)
            out["members"] = int(p.member_values.shape[0])
        else:
            out = {
                "model": name,
                "brain age (years)": round(float(p.value[row]), 1),
                "gap (years)": round(float(p.extras["brain_age_gap"][row]), 1),
            }
            if reference is not None:
                out["Δ vs recorded"] = round(float(p.value[row] - p.value[reference]), 2)
            out["spread"] = round(float(p.spread[row]), 2)
        out["training data"] = ood_summary(p.extras["ood"][row])  # out of the training distribution, said
        rows.append(out)
    return rows
