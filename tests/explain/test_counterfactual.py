import numpy as np
import pytest

from hyperfusion.data.schema import feature
from hyperfusion.errors import DataError
from hyperfusion.explain.counterfactual import counterfactual, nearest_subject


def _check(env, cf, record, scan):
    """The counterfactual really is what it claims: the class, the ranges, the types, the immutables."""
    probabilities = env.predictor.predict(scan, cf.record, [cf.model])[cf.model].value[0]
    np.testing.assert_allclose(probabilities, cf.probabilities, rtol=1e-5, atol=1e-6)
    if cf.found:
        assert probabilities.argmax() == cf.target
    assert cf.record["PTGENDER"] == record["PTGENDER"]
    for name, (old, new) in cf.changes.items():
        f = feature(name)
        assert f.plausible_range[0] <= new <= f.plausible_range[1]
        if f.type == "count":
            assert new == round(new)
        assert old == pytest.approx(float(record[name]))


def test_smallest_change_is_found_and_flips_the_prediction(env):
    scan, record = env.subject(3)
    record = {**record, "APOE4": 0}
    assert env.predictor.predict(scan, record, ["apoe4"])["apoe4"].value[0].argmax() == 1  # MCI
    cf = counterfactual(env.predictor, "apoe4", scan, record, "AD")
    assert cf.found and cf.target_name == "AD"
    assert cf.changes == {"APOE4": (0.0, 2.0)}  # the only way to AD, and the smallest
    j = env.pre.numeric_features.index("APOE4")
    assert cf.distance == pytest.approx(2.0 / env.pre.scales_[j])
    _check(env, cf, record, scan)


def test_an_unreachable_class_is_reported_not_faked(env):
    scan, record = env.subject(3)
    cf = counterfactual(env.predictor, "apoe4", scan, record, "CN")  # this model never predicts CN
    assert not cf.found and "no change" in cf.message
    _check(env, cf, record, scan)


def test_immutable_and_missing_values_stay(env):
    scan, record = env.subject(3)
    record = {**record, "APOE4": 0}
    cf = counterfactual(env.predictor, "apoe4", scan, record, "AD", immutable=["PTGENDER", "APOE4"])
    assert not cf.found and "APOE4" not in cf.changes
    missing = {**record, "APOE4": None}
    cf = counterfactual(env.predictor, "apoe4", scan, missing, "AD")
    assert "APOE4" not in cf.editable and cf.record["APOE4"] is None and "missing" in cf.message


@pytest.mark.parametrize("model", ["hyperfusion", "tabular_only", "concat"])
def test_random_models_flips_are_real(env, model):
    found = []
    for subject in (5, 6, 7, 8):  # a random network may hold one subject in place; not all of them
        scan, record = env.subject(subject)
        predicted = env.predictor.predict(scan, record, [model])[model].value[0].argmax()
        for target in {0, 1, 2} - {int(predicted)}:
            cf = counterfactual(env.predictor, model, scan, record, target, n_random=128, grid_points=12)
            _check(env, cf, record, scan)  # every answer, found or not, is what it claims
            found.append(cf.found)
        if any(found):
            break
    assert any(found)  # these seeds' random networks can be moved to at least one other class


def test_nearest_real_subject_has_the_class_sex_and_a_similar_age(env):
    scan, record = env.subject(0)
    table = env.cohort.table
    for target in ("CN", "MCI", "AD"):
        found = nearest_subject(env.cohort, record, target, min_shared=1)  # (the minimum: tested below)
        same_sex = table[(table["DX"] == target) & (table["PTGENDER"] == (record["PTGENDER"] == "Male"))]
        if same_sex.empty:
            assert found is None
            continue
        row = table[table["PTID"] == found["PTID"]].iloc[0]
        assert row["DX"] == target and found["record"]["PTGENDER"] == record["PTGENDER"]
        closest_age = (same_sex["AGE"] - record["AGE"]).abs().min()
        assert abs(found["age_difference"]) <= max(5.0, closest_age)
    cf = counterfactual(env.predictor, "apoe4", scan, {**record, "APOE4": 0}, "AD", cohort=env.cohort)
    assert cf.nearest is None or cf.nearest["DX"] == "AD"
    with pytest.raises(DataError, match="brain-age|CN / MCI / AD|unknown class"):
        counterfactual(env.predictor, "apoe4", scan, record, "dementia")


def test_margin_and_robustness_say_how_far_past_the_boundary_and_warn_below_the_threshold(env):
    from hyperfusion.explain.counterfactual import MARGIN_WARNING, robustness

    scan, record = env.subject(3)
    cf = counterfactual(env.predictor, "apoe4", scan, {**record, "APOE4": 0}, "AD")
    assert cf.found
    p = cf.probabilities
    assert cf.margin == pytest.approx(p[cf.target] - np.delete(p, cf.target).max()) and cf.margin > 0
    trust = robustness(env.predictor, cf, scan)
    assert (trust.members, trust.members_agreeing, trust.spread) == (1, 1, 0.0)
    assert trust.fragile == (cf.margin < MARGIN_WARNING)
    strict = robustness(env.predictor, cf, scan, threshold=cf.margin + 0.01)
    assert strict.fragile and strict.message.startswith("Fragile") and f"{cf.margin:.3f}" in strict.message
    assert not robustness(env.predictor, cf, scan, threshold=cf.margin - 0.01).fragile


def test_the_nearest_subject_shares_at_least_the_minimum_of_measured_values_and_says_which(env):
    from dataclasses import replace

    scan, record = env.subject(0)
    found = nearest_subject(env.cohort, record, "AD", min_shared=1)
    assert found is not None and len(found["shared"]) >= 1 and found["min_shared"] == 1
    # the same subject with only age and education measured: too little to compare on with a minimum of 4
    sparse = {k: (v if k in ("AGE", "PTEDUCAT", "PTGENDER") else None) for k, v in record.items()}
    assert nearest_subject(env.cohort, sparse, "AD", min_shared=4) is None
    two = nearest_subject(env.cohort, sparse, "AD", min_shared=2)
    assert two is not None and set(two["shared"]) == {"AGE", "PTEDUCAT"}
    # the nearest one loses its measurements: it is no longer offered, someone sharing enough is
    table = env.cohort.table.copy()
    blank = [c for c in ("APOE4", "ABETA", "TAU", "PTAU", "FDG", "AV45") if c in table.columns]
    table.loc[table["PTID"] == found["PTID"], blank] = np.nan
    again = nearest_subject(replace(env.cohort, table=table), record, "AD", min_shared=4)
    assert again is None or (again["PTID"] != found["PTID"] and len(again["shared"]) >= 4)
