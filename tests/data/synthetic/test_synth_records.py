import re

import numpy as np
import pandas as pd

from hyperfusion.data.synthetic.records import (
    CSV_COLUMNS,
    DX_SHARES,
    diagnosis_of,
    ptid,
    sample_subject,
)


def _table(n: int, seed: int = 0, **kw) -> pd.DataFrame:
    return pd.DataFrame([sample_subject(seed, i, n, **kw)[0] for i in range(n)])


def test_rows_have_the_adnimerge_columns_and_values():
    t = _table(300)
    assert list(t.columns) == list(CSV_COLUMNS)
    assert set(t["VISCODE"]) == {"bl"}
    assert set(t["DX"]) == {"CN", "MCI", "Dementia"}
    assert set(t["DX_bl"]) <= {"CN", "EMCI", "LMCI", "MCI", "AD"}
    assert set(t["PTGENDER"]) == {"Male", "Female"}
    # DX_bl and DX agree on the three-way diagnosis
    three_way = t["DX_bl"].replace({"EMCI": "MCI", "LMCI": "MCI", "AD": "Dementia"})
    assert (three_way == t["DX"]).all()


def test_ptids_are_synthetic_and_never_adni_like():
    t = _table(50)
    assert all(re.fullmatch(r"SYN_\d{4}", p) for p in t["PTID"])
    assert not any(re.fullmatch(r"\d{3}_S_\d{4}", p) for p in t["PTID"])
    assert ptid(0, 20000) == "SYN_00001"


def test_missing_cells_and_censored_strings_are_present():
    t = _table(400)
    for col in ("APOE4", "ABETA", "FDG", "AV45"):
        assert (t[col] == "").any(), col
    assert (t["ABETA"] == ">1700").any()
    # CSF is measured together: ABETA, TAU and PTAU are missing in the same rows
    assert ((t["ABETA"] == "") == (t["TAU"] == "")).all() and ((t["TAU"] == "") == (t["PTAU"] == "")).all()
    # censored strings look like ADNIMERGE's and nothing else is non-numeric
    for col in ("ABETA", "TAU", "PTAU"):
        v = t[col][t[col] != ""]
        assert v.str.fullmatch(r"[<>]\d+|\d+\.\d+").all(), col


def test_missingness_is_informative_like_adni():
    t = _table(1500)
    miss = (t["ABETA"] == "").groupby(t["DX"]).mean()
    assert miss["CN"] > miss["MCI"] + 0.1  # real: 66 % vs 43 %
    fdg = (t["FDG"] == "").groupby(t["DX"]).mean()
    assert fdg["CN"] > fdg["MCI"] + 0.2  # real: 62 % vs 24 %


def test_diagnosis_shares_hold_at_every_size():
    for n in (10, 57, 400):
        dx = [diagnosis_of(3, i) for i in range(n)]
        for g, share in zip(("CN", "MCI", "AD"), DX_SHARES):
            assert abs(dx.count(g) - share * n) <= 2


def test_subject_depends_on_seed_and_index_only():
    a = sample_subject(5, 7, 10)
    b = sample_subject(5, 7, 10)
    assert a == b
    # a bigger cohort holds the same subject (the PTID width aside)
    big_row, big_latent = sample_subject(5, 7, 1000)
    assert {k: v for k, v in big_latent.items() if k != "PTID"} == {
        k: v for k, v in a[1].items() if k != "PTID"
    }
    assert sample_subject(6, 7, 10) != a


def test_biomarkers_follow_the_diagnosis():
    t = _table(600)
    ptau = pd.to_numeric(t["PTAU"].str.lstrip("<>"), errors="coerce")
    fdg = pd.to_numeric(t["FDG"], errors="coerce")
    mmse = t["MMSE"].astype(int)
    by = t["DX"]
    assert ptau[by == "Dementia"].mean() > ptau[by == "CN"].mean() * 1.4
    assert fdg[by == "Dementia"].mean() < fdg[by == "CN"].mean() - 0.15
    assert mmse[by == "Dementia"].max() <= 27 and mmse[by == "CN"].min() >= 24


def test_brain_age_records_are_healthy_and_span_the_age_range():
    rows = [sample_subject(0, i, 200, task="brain_age", age_range=(20, 90)) for i in range(200)]
    ages = np.array([lat["age"] for _, lat in rows])
    assert {r["DX"] for r, _ in rows} == {"CN"}
    assert ages.min() >= 20 and ages.max() <= 90 and ages.min() < 30 and ages.max() > 80
