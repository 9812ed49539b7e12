import numpy as np

from hyperfusion.data import parse_record
from hyperfusion.data.cohort import cohort_record, cohort_subject
from hyperfusion.data.schema import FEATURE_NAMES


def test_cohort_rows_round_trip_through_raw_records(env, adnimerge_path):
    from hyperfusion.data import load_cohort

    for cohort in (env.cohort, load_cohort(adnimerge_path)):
        for _, row in cohort.table.iterrows():
            parsed = parse_record(cohort_record(row))
            for name in FEATURE_NAMES:
                expected = float(row[name])
                assert np.isnan(parsed[name]) if np.isnan(expected) else parsed[name] == expected
    censored = load_cohort(adnimerge_path)
    s1 = cohort_subject(censored, "S1")[1]
    assert s1["ABETA"] == ">1700" and s1["PTGENDER"] == "Female"
    scan, record = cohort_subject(env.cohort, env.cohort.table["PTID"].iloc[0])
    assert scan.endswith(".nii.gz") and set(record) == set(FEATURE_NAMES)
