"""The paper's split (docs/models.md §1, Protocol).

Subjects are shuffled with the split seed, grouped into strata of sex × label × age bin (20 equal-width bins
over the cohort's age range), and dealt round-robin into 5 partitions within each stratum. Partition 4 is
the test set; fold k in {0, 1, 2, 3} validates on partition k and trains on the other three.

One deliberate detail: the dealing position carries over from one stratum to the next. Within every stratum
the partitions still differ by at most one subject, and the partitions as a whole stay within one subject of
each other, whereas restarting at partition 0 in every stratum would overfill partition 0 with the many
one- and two-subject strata a cohort has.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_PARTITIONS = 5
TEST_PARTITION = 4
N_AGE_BINS = 20


def stratum_keys(
    table: pd.DataFrame, *, label_column: str | None = "DX", n_age_bins: int = N_AGE_BINS
) -> list:
    """Stratum of each subject: (sex, label, age bin); missing values form their own stratum value."""
    age = table["AGE"].to_numpy(dtype=float)
    finite = age[np.isfinite(age)]
    if len(finite) and finite.max() > finite.min():
        edges = np.linspace(finite.min(), finite.max(), n_age_bins + 1)
        age_bin = np.clip(np.searchsorted(edges, age, side="right") - 1, 0, n_age_bins - 1)
    else:
        age_bin = np.zeros(len(age), dtype=int)
    age_bin = np.where(np.isfinite(age), age_bin, -1)
    sex = table["PTGENDER"].to_numpy(dtype=float)
    sex = np.where(np.isfinite(sex), sex, -1).astype(int)
    labels = table[label_column].astype(str).to_numpy() if label_column else np.full(len(table), "")
    return [(int(s), str(lab), int(b)) for s, lab, b in zip(sex, labels, age_bin)]


def make_partitions(
    table: pd.DataFrame,
    split_seed: int,
    *,
    label_column: str | None = "DX",
    n_partitions: int = N_PARTITIONS,
    n_age_bins: int = N_AGE_BINS,
) -> np.ndarray:
    """Partition index (0..n_partitions-1) of every row of ``table``, shape (N,), int64.

    Deterministic in ``split_seed`` and the table's rows; ``label_column=None`` stratifies by sex and age only
    (brain age).
    """
    keys = stratum_keys(table, label_column=label_column, n_age_bins=n_age_bins)
    order = np.random.default_rng(split_seed).permutation(len(table))
    strata: dict[tuple, list[int]] = {}
    for i in order:
        strata.setdefault(keys[i], []).append(int(i))
    partition = np.empty(len(table), dtype=np.int64)
    position = 0
    for key in sorted(strata):
        for i in strata[key]:
            partition[i] = position % n_partitions
            position += 1
    return partition


def fold_indices(partition: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) row indices for ``fold`` in 0..3."""
    if not 0 <= fold < TEST_PARTITION:
        raise ValueError(
            f"fold must be in 0..{TEST_PARTITION - 1} (partition {TEST_PARTITION} is the test set)"
        )
    idx = np.arange(len(partition))
    test = idx[partition == TEST_PARTITION]
    val = idx[partition == fold]
    train = idx[(partition != TEST_PARTITION) & (partition != fold)]
    return train, val, test
