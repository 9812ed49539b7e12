import numpy as np
import pytest

from hyperfusion.data.schema import feature
from hyperfusion.errors import DataError
from hyperfusion.explain.whatif import attribute_grid, ice_curves, partial_dependence


def test_grids_respect_types_and_ranges(env):
    assert attribute_grid("APOE4").tolist() == [0.0, 1.0, 2.0]
    assert attribute_grid("PTGENDER").tolist() == [0.0, 1.0]
    lo, hi = feature("AGE").plausible_range
    age = attribute_grid("AGE", 64)
    assert len(age) == 64 and age[0] == lo and age[-1] == hi
    education = attribute_grid("PTEDUCAT", 64)
    assert np.array_equal(education, np.arange(0, 31))
    training = attribute_grid("AGE", 16, support="training", preprocessor=env.pre)
    j = env.pre.numeric_features.index("AGE")
    assert training[0] == pytest.approx(max(lo, env.pre.means_[j] - 3 * env.pre.scales_[j]))
    with pytest.raises(DataError, match="unknown attribute"):
        attribute_grid("MMSE")


def test_ice_curve_equals_one_prediction_per_value(env):
    scan, record = env.subject(2)
    curves = ice_curves(env.predictor, scan, record, "AGE", n_points=5)
    assert set(curves.predictions) == set(env.predictor.models)
    assert curves.current == record["AGE"]
    for i, age in enumerate(curves.values):
        alone = env.predictor.predict(scan, {**record, "AGE": float(age)})
        for name, pred in alone.items():
            np.testing.assert_allclose(curves.predictions[name][i], pred.value[0], rtol=1e-5, atol=1e-6)
    assert curves.predictions["hyperfusion"].shape == (5, 3)
    sex = ice_curves(env.predictor, scan, record, "PTGENDER", models=["tabular_only"])
    assert list(sex.predictions) == ["tabular_only"] and sex.predictions["tabular_only"].shape == (2, 3)


def test_partial_dependence_is_the_mean_of_ice_curves(env):
    subjects = [env.subject(i) for i in range(3)]
    pd = partial_dependence(env.predictor, subjects, "APOE4", models=["hyperfusion", "apoe4"])
    assert pd.subjects == 3 and pd.curves["apoe4"].shape == (3, 3, 3)
    one = [ice_curves(env.predictor, s, r, "APOE4", models=["hyperfusion"]) for s, r in subjects]
    expected = np.mean([c.predictions["hyperfusion"] for c in one], axis=0)
    np.testing.assert_allclose(pd.predictions["hyperfusion"], expected, rtol=1e-5, atol=1e-7)
    # the hand-wired model: AD exactly at two alleles, whoever the subject is
    assert pd.predictions["apoe4"].argmax(axis=1).tolist() == [1, 1, 2]
