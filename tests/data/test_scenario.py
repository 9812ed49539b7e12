"""Scenario encoding without Streamlit: a subject, its record's edits and the attribution choices, round trip;
bad values reported and left out."""

import pytest

from hyperfusion.data import load_cohort
from hyperfusion.data.cohort import cohort_record, cohort_row
from hyperfusion.data.scenario import MISSING, decode, encode, from_json
from hyperfusion.errors import DataError
from tests.conftest import write_image_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return load_cohort(write_image_cohort(tmp_path_factory.mktemp("scenario") / "c", 4, seed=2))


def test_a_scenario_keeps_only_the_edits_and_decodes_to_the_same_record(cohort):
    ptid = cohort.table["PTID"].iloc[1]
    recorded = cohort_record(cohort_row(cohort, ptid))
    edited = {**recorded, "APOE4": 2.0, "AGE": 66.5, "FDG": None}
    scenario = encode(cohort, ptid, edited, {"method": "saliency", "target": "AD"})
    assert scenario["subject"] == ptid and scenario["cohort"] == str(cohort.path)
    assert scenario["method"] == "saliency" and scenario["APOE4"] == "2" and scenario["AGE"] == "66.5"
    assert set(scenario) - {"subject", "cohort", "method", "target"} <= {"APOE4", "AGE", "FDG"}
    if recorded["FDG"] is not None:
        assert scenario["FDG"] == MISSING
    back = decode(scenario, cohort)
    assert (
        back.subject == ptid and not back.problems and back.choices == {"method": "saliency", "target": "AD"}
    )
    assert float(back.record["APOE4"]) == 2 and float(back.record["AGE"]) == 66.5
    assert encode(cohort, ptid, back.record) == {
        k: v for k, v in scenario.items() if k not in ("method", "target")
    }
    assert encode(cohort, "uploaded: x.nii.gz", edited) == {"cohort": str(cohort.path)}  # never an upload


def test_bad_values_are_reported_and_left_out(cohort):
    ptid = cohort.table["PTID"].iloc[0]
    back = decode(
        {"subject": ptid, "AGE": "300", "APOE4": "1", "colour": "red", "cohort": "/elsewhere"}, cohort
    )
    text = " ".join(back.problems)
    assert "colour" in text and "plausible range" in text and "/elsewhere" in text
    assert back.record["AGE"] == cohort_record(cohort_row(cohort, ptid))["AGE"]  # left as recorded
    assert back.record["APOE4"] == "1"
    unknown = decode({"subject": "NOPE_1"}, cohort)
    assert unknown.subject is None and "NOPE_1" in unknown.problems[0]


def test_a_scenario_file_must_be_one_object_of_text_values():
    assert from_json(b'{"subject": "S1", "APOE4": "2"}') == {"subject": "S1", "APOE4": "2"}
    for bad in (b"[1, 2", b"[1, 2]", b'{"APOE4": 2}', b"\xff\xfe"):
        with pytest.raises(DataError, match="not a scenario file"):
            from_json(bad, "s.json")
