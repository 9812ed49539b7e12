import numpy as np

from hyperfusion.data.synthetic.anatomy import REGION_INDEX
from hyperfusion.data.synthetic.effects import (
    ageing_atrophy,
    disease_atrophy,
    effective_years,
    limbic_share,
    stratified_normal,
)

PATIENTS = [
    {"dx": "AD", "severity": 0.9, "age": 60.0, "apoe4": 0, "female": False},
    {"dx": "AD", "severity": 0.9, "age": 86.0, "apoe4": 2, "female": True},
    {"dx": "AD", "severity": 0.9, "age": 72.0, "apoe4": 1, "female": True},
    {"dx": "MCI", "severity": 0.9, "age": 80.0, "apoe4": 0, "female": False},
]


def test_at_lambda_zero_the_disease_pattern_ignores_age_apoe4_and_sex():
    patterns = [disease_atrophy(p, lam=0.0)[0] for p in PATIENTS]
    for pat in patterns[1:]:
        np.testing.assert_allclose(pat, patterns[0], rtol=1e-12, atol=1e-12)
    # ... and scales with severity only
    half = disease_atrophy({**PATIENTS[0], "severity": 0.45}, lam=0.0)[0]
    np.testing.assert_allclose(half, patterns[0] / 2)


def test_at_lambda_one_age_apoe4_and_sex_reshape_the_pattern():
    young_noncarrier_man, old_carrier_woman = (disease_atrophy(p, lam=1.0)[0] for p in PATIENTS[:2])
    i = REGION_INDEX
    # I1: the old APOE4 carrier's atrophy is limbic (hippocampal head), the young non-carrier's spares it
    ratio_old = old_carrier_woman[i["hippocampus_head_L"]] / old_carrier_woman[i["hippocampus_body_L"]]
    ratio_young = (
        young_noncarrier_man[i["hippocampus_head_L"]] / young_noncarrier_man[i["hippocampus_body_L"]]
    )
    assert ratio_old > 3 * ratio_young
    # I3: left-dominant in women, right-dominant in men
    assert old_carrier_woman[i["hippocampus_body_L"]] < old_carrier_woman[i["hippocampus_body_R"]]
    assert young_noncarrier_man[i["hippocampus_body_L"]] > young_noncarrier_man[i["hippocampus_body_R"]]


def test_interactions_keep_the_total_hippocampal_atrophy():
    # head and body each hold half the hippocampus, so I1 only moves atrophy within it
    i = REGION_INDEX
    for p in PATIENTS[:3]:
        d0, _, _, _ = disease_atrophy({**p, "female": False, "apoe4": 0}, lam=0.0)
        d1, _, _, i2 = disease_atrophy({**p, "female": False, "apoe4": 0}, lam=1.0)
        total = lambda d: sum(d[i[f"hippocampus_{part}_{s}"]] for part in ("head", "body") for s in "LR")  # noqa: E731
        assert abs(total(d1) - total(d0) * i2) < 1e-9


def test_limbic_share_is_a_half_without_interactions():
    assert limbic_share(60, 0, 0.0) == 0.5 == limbic_share(90, 2, 0.0)
    assert limbic_share(90, 2, 1.0) > 0.85 and limbic_share(60, 0, 1.0) < 0.2


def test_ageing_shrinks_the_hippocampus_and_grows_the_ventricles():
    i = REGION_INDEX
    old = ageing_atrophy({"age": 85.0, "female": True}, 0.0, "ad")
    young = ageing_atrophy({"age": 60.0, "female": True}, 0.0, "ad")
    assert old[i["hippocampus_head_L"]] < 0 < young[i["hippocampus_head_L"]]
    assert old[i["ventricles_L"]] > 0 > young[i["ventricles_L"]]
    assert abs(effective_years(71.0) - 1.0) < 0.03  # the rate at 70 is the rate per year


def test_stratified_ventricle_sizes_are_standard_normal():
    z = np.array([stratified_normal(0, i) for i in range(2000)])
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.03
