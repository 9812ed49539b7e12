"""Which subjects an evaluation may score: partition membership stored in the model file, and the checks on it.

A split recomputed from the table at evaluation time is only the training split if the table has not changed:
dropping one row reshuffles the strata and moves hundreds of subjects between partitions, so test subjects can
silently be training subjects. Training therefore stores the fold's membership in the model card
(``card.split``, written by ``hyperfusion.training.fold.split_membership``): the PTIDs of its training, validation and test rows, the cohort
they belong to (:func:`~hyperfusion.data.cohort.cohort_identity`: synthetic cohorts reuse SYN_0001 … across
seeds, so a PTID alone does not name a subject) and a hash of it all.

:func:`select_subjects` turns that into the rows ``evaluate`` scores:

- ``subjects="test"`` (the paper's protocol): the models' stored test PTIDs found in the table; every member of
  every run must have the same test subjects, of this very cohort;
- ``subjects="all"``: every subject of an *independent* cohort; refused on the cohort a model was trained on
  (or on one of the same synthetic generator seed, whose subjects' records are the training cohort's);
- cards written before the membership was stored: the partition is recomputed from the table with the card's
  split seed, as before, and the report says so.

In every case an evaluated subject that was in any model's training or validation rows of the same cohort is
refused (:class:`~hyperfusion.errors.DataError`, one line naming the count and the model).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hyperfusion.data.cohort import Cohort, cohort_identity, synthetic_identity, synthetic_lineage
from hyperfusion.data.splits import TEST_PARTITION, fold_indices, make_partitions
from hyperfusion.errors import DataError
from hyperfusion.models import ModelCard

if TYPE_CHECKING:
    from hyperfusion.training.evaluate import Member, Run

SUBJECT_MODES = ("test", "all")
_PARTS = ("train", "validation", "test")


def membership_sha256(split: dict) -> str:
    """The hash of a stored membership (as training writes it, ``hyperfusion.training.fold.split_membership``):
    the sorted training, validation and test PTID lists."""
    parts = {part: sorted(split[part]) for part in _PARTS}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def stored_split(card: ModelCard, label: str) -> dict | None:
    """A card's membership, its hash checked; None for cards written before it was stored."""
    split = card.split
    if split is None:
        return None
    try:
        ok = membership_sha256(split) == split["sha256"]
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise DataError(
            f"{label}: the model card's partition membership does not match its hash (edited or damaged); "
            "copy the model directory again from its source"
        )
    return split


def _training_identity(card: ModelCard) -> tuple[str | None, str | None]:
    """(cohort identity, synthetic lineage) of the cohort a card was trained on; None where the card cannot say."""
    split = card.split
    data = card.data
    provenance = data.get("provenance") or {}
    lineage = synthetic_lineage(provenance) if provenance else None
    if split is not None:
        return split["cohort_id"], lineage
    if data.get("synthetic") and provenance:
        return synthetic_identity(provenance), lineage
    if data.get("source") and not data.get("synthetic"):
        return str(data["source"]), None
    return None, lineage


@dataclass
class Selection:
    """The rows to score and how they were chosen."""

    rows: np.ndarray
    mode: str  # "stored" (the cards' test PTIDs), "recomputed" (older cards), "all" (independent cohort)
    split_seed: int | None = None
    notes: list[str] = field(default_factory=list)


def _members(runs: Sequence[Run]) -> list[tuple[str, Member]]:
    out = []
    for run in runs:
        for i, member in enumerate(run.members):
            fold = member.card.fold
            name = run.label if len(run.members) == 1 else f"{run.label} (member {i}, fold {fold})"
            out.append((name, member))
    return out


def _recomputed_membership(cohort: Cohort, card: ModelCard, name: str) -> dict[str, set[str]]:
    """Training / validation / test PTIDs of an older card, from the table as it is now (split seed, fold)."""
    if card.split_seed is None:
        raise DataError(f"{name}: the model card records neither its partition nor its split seed")
    partition = make_partitions(
        cohort.table, card.split_seed, label_column="DX" if card.task == "ad" else None
    )
    train, val, test = fold_indices(partition, int(card.fold or 0))
    ptids = cohort.table["PTID"].to_numpy()
    return {"train": set(ptids[train]), "validation": set(ptids[val]), "test": set(ptids[test])}


def _split_seed(run: Run) -> int:
    seeds = {m.card.split_seed for m in run.members}
    if len(seeds) != 1:
        raise DataError(f"{run.label}: ensemble members come from different split seeds {sorted(seeds)}")
    return seeds.pop()


def held_out_rows(cohort: Cohort, runs: Sequence[Run]) -> tuple[np.ndarray, int]:
    """The test partition shared by every run (refuses runs trained on different splits)."""
    seeds = {_split_seed(r) for r in runs}
    if len(seeds) != 1:
        raise DataError(
            f"the models come from different split seeds {sorted(seeds)}; compare them on one split"
        )
    seed = seeds.pop()
    task = runs[0].task
    partition = make_partitions(cohort.table, seed, label_column="DX" if task == "ad" else None)
    return np.flatnonzero(partition == TEST_PARTITION), seed


def check_label_column(cohort: Cohort, runs: Sequence[Run]) -> None:
    """Refuse labels read from another diagnosis column than the one a model was trained on."""
    for name, member in _members(runs):
        if member.card.task != "ad":
            continue
        expected = member.card.label_column
        if expected and cohort.label_column and expected != cohort.label_column:
            raise DataError(
                f"{name} was trained on labels of column {expected}, but the table's labels are read from "
                f"{cohort.label_column}; pass --label-column {expected}"
            )


def select_subjects(cohort: Cohort, runs: Sequence[Run], subjects: str = "test") -> Selection:
    """The rows of ``cohort.table`` to score for ``runs`` (see the module doc); refuses leaks."""
    if subjects not in SUBJECT_MODES:
        raise DataError(f"subjects must be one of {SUBJECT_MODES}, not {subjects!r}")
    members = _members(runs)
    here = cohort_identity(cohort)
    here_lineage = synthetic_lineage(cohort.provenance) if cohort.is_synthetic else None
    splits = {name: stored_split(m.card, name) for name, m in members}
    notes: list[str] = []
    ptids = cohort.table["PTID"].to_numpy()

    if subjects == "all":
        unknown = []
        for name, member in members:
            trained_on, lineage = _training_identity(member.card)
            if trained_on is None:
                unknown.append(name)
            elif trained_on == here and cohort.is_synthetic:
                raise DataError(
                    f"--subjects all scores an independent cohort, but {cohort.path} is the cohort {name} was "
                    "trained on; leave out --subjects to score its test partition"
                )
            elif here_lineage is not None and lineage == here_lineage:
                raise DataError(
                    f"--subjects all: {cohort.path} comes from the same generator seed as the cohort {name} was "
                    "trained on, so it holds the same subjects' records; generate the independent cohort with "
                    "another seed"
                )
        if unknown:
            notes.append(
                f"The model card(s) of {', '.join(unknown)} do not say which cohort they were trained on: that "
                "this cohort is independent of it could not be checked."
            )
        selection = Selection(np.arange(len(cohort.table)), "all", notes=notes)
    elif all(split is not None for split in splits.values()):
        foreign = [name for name, split in splits.items() if split["cohort_id"] != here]
        if foreign:
            raise DataError(
                f"{cohort.path} is not the cohort {foreign[0]} was trained on (cohort {here}, the model's "
                f"{splits[foreign[0]]['cohort_id']}); score an independent cohort with --subjects all"
            )
        tests = {name: frozenset(split["test"]) for name, split in splits.items()}
        if len(set(tests.values())) > 1:
            first, *_ = tests
            other = next(n for n in tests if tests[n] != tests[first])
            raise DataError(
                f"{first} and {other} were tested on different subjects (another split seed or table); "
                "compare models of one split"
            )
        wanted = next(iter(tests.values()))
        rows = np.flatnonzero(np.isin(ptids, list(wanted)))
        if not len(rows):
            raise DataError(f"none of the models' {len(wanted)} test subjects is in {cohort.path}")
        if len(rows) < len(wanted):
            notes.append(
                f"{len(wanted) - len(rows)} of the models' {len(wanted)} test subjects are not in this table; "
                f"the {len(rows)} found are scored."
            )
        seeds = {split["seed"] for split in splits.values()}
        selection = Selection(
            rows, "stored", split_seed=seeds.pop() if len(seeds) == 1 else None, notes=notes
        )
    else:
        for name, member in members:
            trained_on, _ = _training_identity(member.card)
            if trained_on is not None and trained_on != here:
                raise DataError(
                    f"{cohort.path} is not the cohort {name} was trained on (cohort {here}, the model's "
                    f"{trained_on}); score an independent cohort with --subjects all"
                )
        rows, seed = held_out_rows(cohort, runs)
        old = [run.label for run in runs if any(m.card.split is None for m in run.members)]
        notes.append(
            f"The model file(s) of {', '.join(old)} do not record their partition membership (written before it "
            f"was stored): the test partition was recomputed from this table with split seed {seed}. If the "
            "table changed since training, test subjects may have been training subjects."
        )
        selection = Selection(rows, "recomputed", split_seed=seed, notes=notes)

    check_no_leak(cohort, members, splits, selection.rows, here, independent=subjects == "all")
    return selection


def check_no_leak(
    cohort: Cohort,
    members: list[tuple[str, Member]],
    splits: dict,
    rows: np.ndarray,
    here: str,
    independent: bool = False,
) -> None:
    """Refuse when an evaluated subject was in a model's training or validation rows of this cohort."""
    evaluated = set(cohort.table["PTID"].to_numpy()[rows])
    for name, member in members:
        split = splits.get(name)
        if split is not None:
            if split["cohort_id"] != here:
                continue
            seen = set(split["train"]) | set(split["validation"])
        else:
            trained_on, _ = _training_identity(member.card)
            # an older card: its partition is recomputed on this table, which only means something when this
            # is (or may be, for the test partition) the cohort it was trained on
            if trained_on != here and (trained_on is not None or independent):
                continue
            if member.card.split_seed is None:
                continue
            membership = _recomputed_membership(cohort, member.card, name)
            seen = membership["train"] | membership["validation"]
        leaked = evaluated & seen
        if leaked:
            raise DataError(
                f"{len(leaked)} of the {len(evaluated)} evaluated subjects were in the training or validation "
                f"rows of {name}; evaluate on its test subjects or on an independent cohort"
            )


__all__ = [
    "held_out_rows",
    "SUBJECT_MODES",
    "Selection",
    "TEST_PARTITION",
    "check_label_column",
    "check_no_leak",
    "membership_sha256",
    "select_subjects",
    "stored_split",
]
