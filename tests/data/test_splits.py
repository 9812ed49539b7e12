from collections import Counter

import numpy as np
import pytest

from hyperfusion.data import fold_indices, make_partitions
from hyperfusion.data.splits import stratum_keys
from tests.conftest import random_cohort_table


@pytest.fixture(scope="module")
def table():
    return random_cohort_table(1000, seed=7)


def test_deterministic_in_seed(table):
    a = make_partitions(table, split_seed=0)
    np.testing.assert_array_equal(a, make_partitions(table, split_seed=0))
    assert (a != make_partitions(table, split_seed=1)).mean() > 0.5


def test_every_stratum_spread_evenly(table):
    part = make_partitions(table, split_seed=3)
    keys = stratum_keys(table)
    for key in set(keys):
        members = [p for p, k in zip(part, keys) if k == key]
        counts = Counter(members)
        sizes = [counts.get(i, 0) for i in range(5)]
        assert max(sizes) - min(sizes) <= 1, (key, sizes)
    sizes = np.bincount(part, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    for label in ("CN", "MCI", "AD"):  # class shares match the cohort's in every partition
        share = [(table["DX"][part == p] == label).mean() for p in range(5)]
        assert max(share) - min(share) < 0.03


def test_folds(table):
    part = make_partitions(table, split_seed=0)
    seen_val = []
    for k in range(4):
        train, val, test = fold_indices(part, k)
        assert set(train).isdisjoint(val) and set(train).isdisjoint(test) and set(val).isdisjoint(test)
        assert len(train) + len(val) + len(test) == len(table)
        assert (part[test] == 4).all() and (part[val] == k).all()
        seen_val.append(set(val))
    assert set().union(*seen_val) == set(np.flatnonzero(part != 4))
    with pytest.raises(ValueError, match="test set"):
        fold_indices(part, 4)


def test_brain_age_split_ignores_label(table):
    part = make_partitions(table, split_seed=0, label_column=None)
    keys = stratum_keys(table, label_column=None)
    assert len(set(keys)) <= 2 * 21
    sizes = np.bincount(part, minlength=5)
    assert sizes.max() - sizes.min() <= 1
