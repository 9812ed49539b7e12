"""hyperfusion.pages: the Cohort, Subject, Upload, Home, Model comparison and Brain age pages' sections as data
(the computations the pages used to hold)."""

from __future__ import annotations

import hashlib
import os
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hyperfusion.data.schema import FEATURE_NAMES, FEATURES
from hyperfusion.demo import settings_from_form
from hyperfusion.pages import cohort as C
from hyperfusion.pages import plain
from hyperfusion.pages import reports as P
from hyperfusion.pages import start as H
from hyperfusion.pages import subject as S


def _table() -> pd.DataFrame:
    rows = []
    for i, (dx, age, sex, apoe, abeta) in enumerate(
        [("CN", 60.2, 0.0, 0, 900.0), ("MCI", 71.0, 1.0, 1, np.nan), ("AD", 80.9, 1.0, np.nan, 500.0)]
    ):
        row = {f: np.nan for f in FEATURE_NAMES}
        row.update(PTID=f"S{i}", DX=dx, AGE=age, PTGENDER=sex, APOE4=apoe, ABETA=abeta, TAU=1.0, PTAU=1.0)
        row.update(FDG=1.0, AV45=1.0, image_path=None if i == 2 else f"/x/S{i}.nii.gz")
        rows.append(row)
    return pd.DataFrame(rows)


def test_the_cohort_filters_narrow_the_table_and_keep_a_missing_apoe4():
    table = _table()
    assert C.age_band(table) == (60.0, 81.0)
    assert C.age_band(table.assign(AGE=np.nan)) == (40.0, 100.0)
    assert C.filtered(table, C.Filters())["PTID"].tolist() == ["S0", "S1", "S2"]
    assert C.filtered(table, C.Filters(sex="Male"))["PTID"].tolist() == ["S1", "S2"]
    assert C.filtered(table, C.Filters(apoe=(0,)))["PTID"].tolist() == ["S0", "S2"]  # S2's APOE4 is missing
    assert C.filtered(table, C.Filters(search="s1", missing_only=True))["PTID"].tolist() == ["S1"]
    view = C.filtered(table, C.Filters(age=(70.0, 90.0)))
    assert view["PTGENDER"].tolist() == ["Male", "Male"] and view["missing"].tolist() == [1, 0]
    assert view["scan"].tolist() == ["yes", "missing"]
    assert "scan" not in C.filtered(table, C.Filters(), with_scan_column=False)
    assert C.missing_scans(table).startswith("1 subject(s)") and "S2" in C.missing_scans(table)
    assert C.missing_scans(table.iloc[:2]) is None


def test_the_cohort_distribution_counts_the_missing_values_per_diagnosis():
    blocks = C.distribution(_table(), "ABETA", "box")
    assert blocks[0].kind == "figures" and blocks[0].value[0][0] == "distribution"
    assert blocks[1].value == "2 recorded values by diagnosis; missing — MCI: 1"


def test_global_importance_over_a_sample_says_so():
    rows = pd.DataFrame(
        [
            {"PTID": p, "model": m, "attribute": a, "attribution": v, "error": ""}
            for p in ("S0", "S1")
            for m, scale in (("fusion", 1.0), ("image_only", 0.0))
            for a, v in (("AGE", -0.2), ("APOE4", 0.4))
            for v in [v * scale]
        ]
    )
    blocks = C.importance(rows, 2, 10, "P(AD)")
    assert "a seeded sample of 2 of 10 subjects" in blocks[0].value
    wide = blocks[2].value.set_index("attribute")
    assert wide.loc["APOE4", "fusion"] == pytest.approx(0.4) and wide.loc["AGE", "image_only"] == 0
    assert [b.kind for b in C.importance(rows.iloc[:0], 2, 2, "P(AD)")] == ["caption"]


def test_the_subject_form_state_of_a_record():
    state = S.form_state({"AGE": 200.0, "ABETA": "<200", "FDG": float("nan"), "PTGENDER": "Male", "APOE4": 1})
    lo, hi = next(f for f in FEATURES if f.name == "AGE").plausible_range
    assert state["value_AGE"] == hi and state["value_FDG"] is None and state["value_ABETA"] == 200.0
    assert (
        state["value_PTGENDER"] == "Male"
        and state["value_APOE4"] == 1
        and isinstance(state["value_APOE4"], int)
    )
    assert S.changes_state({"APOE4": (0, 2.0), "PTGENDER": (0, 1)}) == {
        "value_APOE4": 2,
        "value_PTGENDER": next(f for f in FEATURES if f.name == "PTGENDER").categories[1],
    }


def test_the_upload_record_comes_from_the_csv_else_the_form():
    record, problems, notes = S.upload_record((b"AGE,PTGENDER,X\n70,Female,1\n", "r.csv"), None)
    assert record["AGE"] == "70" and problems == [] and "X" in notes[0]
    assert S.upload_record(None, None) == (None, [], [])  # the form not submitted yet
    record, problems, _ = S.upload_record(None, {"AGE": "70", "PTGENDER": None})
    assert record is None and "PTGENDER" in problems[0]
    state = S.upload_form_state({"AGE": 70.5, "PTGENDER": "Male"})
    assert state["upload_value_AGE"] == "70.5" and state["upload_value_PTGENDER"] == "Male"


def test_the_scan_the_models_read_is_the_preprocessed_one_of_the_same_bytes():
    raw = b"raw scan"
    done = {"source_sha256": hashlib.sha256(raw).hexdigest(), "scan": b"mni", "name": "raw_preprocessed.nii"}
    assert S.scan_to_read(raw, "raw.nii", done) == (b"mni", "raw_preprocessed.nii", done)
    assert S.scan_to_read(b"another", "b.nii", done) == (b"another", "b.nii", None)


def test_predictable_models_and_counterfactual_targets():
    network = lambda scan: SimpleNamespace(members=[SimpleNamespace(reads_scan=scan)])  # noqa: E731
    predictor = SimpleNamespace(models={"image": network(True), "tabular": network(False)})
    assert S.models_to_predict(predictor, ["image", "tabular"], "S1", True) == (["image", "tabular"], [])
    names, said = S.models_to_predict(predictor, ["image", "tabular"], "S1", False)
    assert names == ["tabular"] and "No scan for S1" in said[0].value
    prediction = SimpleNamespace(class_names=["CN", "MCI", "AD"], value=np.array([[0.1, 0.8, 0.1]] * 2))
    assert S.counterfactual_targets(prediction) == (["CN", "AD"], 1)
    prediction.value = np.array([[0.1, 0.1, 0.8]] * 2)
    assert S.counterfactual_targets(prediction) == (["CN", "MCI"], 0)


def test_the_models_overview_lists_other_tasks_and_problems(tmp_path):
    def info(name, task):
        row = {"model": name, "task": task, "architecture": "x", "members": 1}
        return SimpleNamespace(name=name, path=str(tmp_path / name), members=1, row=lambda: row)

    ad, age = info("fusion", "ad"), info("age", "brain_age")
    blocks = H.models_overview([ad, age], [ad], ["a problem"], str(tmp_path / "elsewhere"), str(tmp_path))
    assert [b.kind for b in blocks] == ["static_table", "caption", "info"]
    assert blocks[0].value["model"].tolist() == ["fusion"] and "age" in blocks[1].value
    assert H.models_overview([age], [], [], "x", str(tmp_path))[0].kind == "info"


def test_comparison_and_brain_age_texts(tmp_path):
    table = pd.DataFrame({"PTID": ["A", "B", "C"], "correct": ["fusion", "image_only", "fusion, image_only"]})
    assert P.fusion_right(table, "fusion", "fusion right")["PTID"].tolist() == ["A", "C"]
    assert P.fusion_right(table, "fusion", "fusion wrong")["PTID"].tolist() == ["B"]
    assert P.fusion_right(table, "fusion", "all of them") is table
    assert str(tmp_path / "reports") in P.no_reports(tmp_path)
    age, said = P.chronological_age("S1", {"AGE": 71.25, "PTGENDER": None}, "MCI")
    assert (
        age == 71.25
        and said[0].value == "Chronological age **71.2** · recorded sex **not recorded** · diagnosis MCI"
    )
    assert P.chronological_age("S1", {"AGE": None}, None)[0] is None
    said = P.brain_age_sources(None, "no cohort here", [], os.pathsep.join(["/m1", "/m2"]), [])
    assert len(said) == 1 and "Nothing to show yet: no brain-age cohort (no cohort here)" in said[0].value


def test_the_settings_form_and_plain_text():
    s = settings_from_form({"cohort": "/a", "models": "/m", "assets": "/x"}, " /b ", "/m1\n\n /m2 \n")
    assert s == {"cohort": "/b", "models": os.pathsep.join(["/m1", "/m2"]), "assets": "/x"}
    assert plain("1. $x$ *y*") == r"1\. \$x\$ \*y\*"


def test_the_edited_record_is_read_from_the_form_state_as_the_form_reads_it():
    """The Subject page reads its record from the widgets' state before drawing the form (so that the
    predictions are sent first): the same record the form's widgets give, field by field."""
    recorded = {f.name: None for f in FEATURES}
    recorded.update(AGE=71.0, PTGENDER="Male", APOE4=1, ABETA="<200", FDG=None)
    state = S.form_state(recorded)
    assert S.form_complete(state) and not S.form_complete({k: v for k, v in state.items() if "AGE" not in k})
    edited = S.edited_record(recorded, state)
    assert edited["AGE"] == 71.0 and edited["ABETA"] == "<200" and edited["FDG"] is None
    by_field = {f.name: S.form_value(recorded[f.name], state[f"value_{f.name}"]) for f in FEATURES}
    assert edited == {name: value for name, (value, _) in by_field.items()}
    state.update(value_AGE=80.5, value_APOE4=None, value_ABETA=150.0)
    edited = S.edited_record(recorded, state)
    assert edited["AGE"] == 80.5 and edited["APOE4"] is None and edited["ABETA"] == 150.0


def test_the_subject_predictions_say_what_was_left_out_and_why_they_failed():
    from hyperfusion.errors import DataError
    from hyperfusion.inference import Prediction

    network = lambda scan: SimpleNamespace(members=[SimpleNamespace(reads_scan=scan)])  # noqa: E731
    asked = []

    def predict(scan, records, models):
        asked.append(models)
        value = np.array([[0.2, 0.3, 0.5], [0.1, 0.2, 0.7]])
        ood = {"ood": [{"inside": True}] * 2}
        return {m: Prediction(m, "ad", value, value[None], ["CN", "MCI", "AD"], ood) for m in models}

    predictor = SimpleNamespace(models={"image": network(True), "tabular": network(False)}, predict=predict)
    records = [{"AGE": 70}, {"AGE": 75}]
    blocks, preds, parts = S.prediction_view(predictor, ["image", "tabular"], "S1", None, records, ["odd"])
    assert asked == [["tabular"]] and list(preds) == ["tabular"]  # no scan: the image model is left out
    kinds = [b.kind for b in blocks]
    assert kinds[:2] == ["info", "warning"] and "figures" in kinds and blocks[1].value == "odd"
    assert parts["predictions"][0]["P(AD)"] == 0.7 and "brain_age" not in parts

    def refuse(scan, records, models):
        raise DataError("the scan is outside the models' box")

    predictor.predict = refuse
    blocks, preds, parts = S.prediction_view(predictor, ["tabular"], "S1", "scan.nii", records)
    assert preds is None and parts == {} and [b.kind for b in blocks] == ["error"]
    assert "outside the models' box" in blocks[0].value


def test_uploads_are_held_in_memory_up_to_the_upload_limit():
    from starlette.formparsers import MultiPartParser

    from hyperfusion.pages import keep_uploads_in_memory

    before = MultiPartParser.spool_max_size
    try:
        assert keep_uploads_in_memory(200) == 201 * 2**20 == MultiPartParser.spool_max_size
        assert keep_uploads_in_memory(10) == 201 * 2**20  # never lowered (another session's limit)
    finally:
        MultiPartParser.spool_max_size = before
