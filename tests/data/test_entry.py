"""The entry check (hyperfusion/data/entry.py): what a model cannot read is refused, what it can passes."""

from pathlib import Path

import numpy as np
import pytest

from hyperfusion.data.entry import check_scan, require_readable, warning_lines
from hyperfusion.errors import DataError
from tests.hardening.corpus import ENTRY_CASES, SCAN_CASES

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo" / "cohorts"
VALID = [c for c in SCAN_CASES if c[3] is None]


@pytest.mark.parametrize(
    ("name", "file_name", "build", "fragment"), ENTRY_CASES, ids=[c[0] for c in ENTRY_CASES]
)
def test_what_a_model_cannot_read_is_refused_in_one_line_naming_preprocess(name, file_name, build, fragment):
    raw = build()
    with pytest.raises(DataError) as info:
        require_readable(raw, name=file_name)
    message = str(info.value)
    assert fragment in message and "hyperfusion preprocess" in message and "\n" not in message
    # the override turns the refusal into warnings that every output carries
    check = require_readable(raw, name=file_name, allow=True)
    assert not check.passed and all(line.startswith("UNRELIABLE: ") for line in warning_lines(check))


@pytest.mark.parametrize(("name", "file_name", "build", "fragment"), VALID, ids=[c[0] for c in VALID])
def test_odd_but_valid_scans_pass(name, file_name, build, fragment):
    check = check_scan(build(), name=file_name)
    assert check.passed, check.problems
    assert check.measures["misregistration_mm"] <= 4


def test_the_synthetic_demo_scans_pass_within_the_time_budget():
    scans = sorted(DEMO.glob("*/starter_scans/*.nii.gz"))
    assert len(scans) >= 12
    seconds = []
    for path in scans:
        check = check_scan(path)
        assert check.passed, (path, check.problems)
        assert check.measures["sform_code"] == 4 and check.measures["shell_signal"] < 0.05
        seconds.append(check.measures["seconds"])
    # budget 0.2 s (measured by `hyperfusion bench entry_check`); generous here, the test CPU is shared
    assert float(np.median(seconds)) < 1.0
