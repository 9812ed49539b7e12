"""hyperfusion.pages: the dashboard's page sections as data, without Streamlit."""

from __future__ import annotations

import pandas as pd
import pytest

from hyperfusion.demo import dashboard_settings
from hyperfusion.errors import HyperFusionError
from hyperfusion.inference import models_for_task
from hyperfusion.pages import column_help
from hyperfusion.pages import subject as S
from hyperfusion.pages.reports import brain_age_cohort, comparison_tabs


def test_column_help_names_metrics_and_says_what_a_cell_holds():
    help_ = column_help(["model", "balanced_accuracy", "mae_female", "mae_bias_corrected"], "one-sided p")
    assert "model" not in help_
    assert help_["balanced_accuracy"][0] == "BA" and help_["balanced_accuracy"][1].endswith("· one-sided p")
    assert help_["mae_female"][0] == "MAE women"
    assert help_["mae_bias_corrected"][0] == "MAE (years) bias-corrected"


def test_form_value_keeps_a_censored_value_and_says_what_was_edited():
    assert S.form_value("<200", 200.0) == ("<200", ["recorded as <200 (beyond the assay range)"])
    assert S.form_value(3.0, 4.0) == (4.0, ["edited · recorded: 3.0"])
    assert S.form_value(None, None) == (None, ["missing → imputed by each model (training median)"])
    assert S.form_value(3.0, None)[1][-1] == "edited · recorded: 3.0"  # emptied: missing now


def test_form_record_refuses_a_form_without_sex_and_csv_record_names_ignored_columns():
    with pytest.raises(HyperFusionError, match="PTGENDER"):
        S.form_record({"AGE": "70", "PTGENDER": None})
    record, note = S.csv_record(b"AGE,PTGENDER,EXTRA\n70,Female,1\n", "r.csv")
    assert record["AGE"] == "70" and "ignored 1 column(s)" in note and "EXTRA" in note


def test_qc_table_is_one_row_of_the_preprocessing_figures():
    qc = {"box_brain_share": 0.4, "template_ncc": 0.9, "mask_dice": 0.8, "skull_present": False}
    qc["seconds"] = {"total": 3.0}
    table = S.qc_table(qc)
    assert isinstance(table, pd.DataFrame) and len(table) == 1 and table["seconds"].iloc[0] == 3.0


def test_dashboard_settings_from_the_environment(tmp_path):
    s = dashboard_settings({"HYPERFUSION_DEMO_ASSETS": str(tmp_path), "HYPERFUSION_COHORT": "/c"})
    assert s == {"cohort": "/c", "models": str(tmp_path / "models"), "assets": str(tmp_path)}


def test_brain_age_cohort_says_what_is_missing(tmp_path):
    cohort, why = brain_age_cohort(None, tmp_path, load=lambda p: pytest.fail("nothing to load"))
    assert cohort is None and "no brain-age cohort" in why


class _Info:
    def __init__(self, task):
        self.task = task


def test_models_for_task_keeps_all_when_the_task_is_unknown():
    models = [_Info("ad"), _Info("brain_age")]
    assert models_for_task(models, None) == models and models_for_task(models, "ad") == models[:1]


def test_comparison_tabs_follow_the_task():
    class R:
        task, synthetic = "brain_age", False

    assert comparison_tabs(R()) == ["Summary", "Subgroups", "Modality reliance"]
    R.task, R.synthetic = "ad", True
    assert comparison_tabs(R())[-2:] == ["Disagreements", "Faithfulness"]
