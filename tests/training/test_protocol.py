"""The evaluation protocol: partition membership stored in the model file, leaks refused, independent cohorts,
the label column."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hyperfusion.cli import main
from hyperfusion.data import load_cohort
from hyperfusion.data.cohort import cohort_identity
from hyperfusion.errors import DataError
from hyperfusion.evaluation import load_run as _load_run
from hyperfusion.training.evaluate import Member, Run
from hyperfusion.training.protocol import membership_sha256, select_subjects
from tests.conftest import random_cohort_table

TRAIN = ["--model", "tabular_only", "--epochs", "2", "--batch-size", "16", "--lr", "0.01", "--quiet"]


def _write(root, n=150, seed=11, provenance=None, disagree=0):
    """A cohort directory (table + cohort.json) with both DX_bl and DX, ``disagree`` rows differing."""
    root.mkdir(parents=True, exist_ok=True)
    table = random_cohort_table(n, seed=seed)
    table["PTGENDER"] = table["PTGENDER"].map({0.0: "Female", 1.0: "Male"})
    table = table.rename(columns={"DX": "DX_bl"})
    table["DX"] = table["DX_bl"]
    other = {"CN": "MCI", "MCI": "AD", "AD": "CN"}
    table.loc[: disagree - 1, "DX"] = table.loc[: disagree - 1, "DX_bl"].map(other)
    table.to_csv(root / "cohort.csv", index=False)
    prov = provenance or {
        "source": "synthetic",
        "generator": "tests",
        "knobs": {"task": "ad", "seed": seed, "n": n, "interaction_strength": 1.0},
    }
    (root / "cohort.json").write_text(json.dumps(prov))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    data = _write(root / "cohort", disagree=9)
    models = root / "models"
    for fold in (0, 1):
        assert (
            main(
                [
                    "train",
                    *TRAIN,
                    "--data",
                    str(data),
                    "--out",
                    str(models / "ens" / f"fold{fold}"),
                    "--fold",
                    str(fold),
                    "--label-column",
                    "DX_bl",
                ]
            )
            == 0
        )
    return data, models


def test_the_card_stores_the_partition_membership(trained, capsys):
    data, models = trained
    card = json.loads((models / "ens" / "fold0" / "card.json").read_text())
    split = card["split"]
    cohort = load_cohort(data)
    assert split["cohort_id"] == cohort_identity(cohort) and split["label_column"] == "DX_bl"
    assert (split["seed"], split["fold"]) == (0, 0) and split["sha256"] == membership_sha256(split)
    parts = [set(split[k]) for k in ("train", "validation", "test")]
    assert sum(map(len, parts)) == len(cohort.table) == len(set.union(*parts))  # disjoint, every subject once
    other = json.loads((models / "ens" / "fold1" / "card.json").read_text())["split"]
    assert other["test"] == split["test"] and set(other["validation"]) <= set(split["train"])


def test_evaluate_scores_the_stored_test_subjects_even_when_the_table_changed(trained, tmp_path, capsys):
    data, models = trained
    card = json.loads((models / "ens" / "fold0" / "card.json").read_text())
    changed = tmp_path / "changed"
    shutil.copytree(data, changed)
    csv = (changed / "cohort.csv").read_text().splitlines()
    (changed / "cohort.csv").write_text("\n".join([csv[0], *csv[2:]]) + "\n")  # one row dropped
    out = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(changed),
                "--models",
                str(models / "ens"),
                "--out",
                str(out),
                "--bootstrap",
                "20",
                "--permutations",
                "2",
            ]
        )
        == 0
    )
    result = json.loads((out / "results.json").read_text())
    kept = set(load_cohort(changed).table["PTID"])
    assert set(result["test_ptids"]) == set(card["split"]["test"]) & kept
    assert result["subjects"]["mode"] == "stored"
    # the recomputed partition of the changed table is another set of subjects: the old way would have leaked
    from hyperfusion.training.protocol import held_out_rows

    recomputed, _ = held_out_rows(load_cohort(changed), [_load_run(str(models / "ens"))])
    ptids = load_cohort(changed).table["PTID"].to_numpy()
    assert set(ptids[recomputed]) & (set(card["split"]["train"]) | set(card["split"]["validation"]))
    reliance = result["runs"]["ens"]["reliance"]
    assert reliance["scan"]["applicable"] is False and reliance["record"]["seeds"] == 2
    assert "### Modality reliance" in (out / "results.md").read_text()


def _edited(member: Member, **split_changes) -> Member:
    split = {**member.card.split, **split_changes}
    split["sha256"] = membership_sha256(split)
    return Member(member.network, member.card.replace(split=split))


def test_a_test_subject_in_a_models_training_rows_is_refused(trained):
    data, models = trained
    cohort = load_cohort(data)
    run = _load_run(str(models / "ens"))
    assert len(select_subjects(cohort, [run]).rows) == len(run.members[0].card.split["test"])
    split = run.members[1].card.split
    leaked = _edited(run.members[1], train=[*split["train"], split["test"][0]])
    with pytest.raises(
        DataError, match=r"1 of the \d+ evaluated subjects were in the training or validation rows"
    ):
        select_subjects(cohort, [Run("ens", [run.members[0], leaked])])
    card = run.members[0].card
    tampered = card.replace(split={**card.split, "test": card.split["test"][1:]})  # edited without its hash
    with pytest.raises(DataError, match="does not match its hash"):
        select_subjects(cohort, [Run("x", [Member(None, tampered)])])
    moved = _edited(run.members[1], test=split["test"][1:])
    with pytest.raises(DataError, match="tested on different subjects"):
        select_subjects(cohort, [run, Run("other", [moved])])


def test_older_cards_recompute_the_partition_and_say_so(trained, tmp_path):
    data, models = trained
    cohort = load_cohort(data)
    run = _load_run(str(models / "ens"))
    old = [Member(m.network, m.card.replace(split=None)) for m in run.members]
    selection = select_subjects(cohort, [Run("old", old)])
    assert selection.mode == "recomputed" and "do not record their partition" in selection.notes[0]
    assert set(cohort.table["PTID"].to_numpy()[selection.rows]) == set(run.members[0].card.split["test"])
    other = load_cohort(_write(tmp_path / "other", seed=5))  # the card's provenance names another cohort
    with pytest.raises(DataError, match="is not the cohort old"):
        select_subjects(other, [Run("old", old)])


def test_subjects_all_is_refused_on_the_training_cohort_and_scores_an_independent_one(
    trained, tmp_path, capsys
):
    data, models = trained
    argv = [
        "evaluate",
        "--models",
        str(models / "ens"),
        "--bootstrap",
        "20",
        "--permutations",
        "0",
        "--subjects",
        "all",
    ]
    assert main([*argv, "--data", str(data), "--out", str(tmp_path / "r0")]) == 2
    assert "is the cohort ens (member 0, fold 0) was trained on" in capsys.readouterr().err
    # the same generator seed at another λ holds the same subjects' records: refused too
    same_seed = _write(
        tmp_path / "lambda0",
        provenance={
            "source": "synthetic",
            "generator": "tests",
            "knobs": {"task": "ad", "seed": 11, "n": 150, "interaction_strength": 0.0},
        },
    )
    assert main([*argv, "--data", str(same_seed), "--out", str(tmp_path / "r1")]) == 2
    assert "same generator seed" in capsys.readouterr().err
    independent = _write(tmp_path / "independent", n=90, seed=12)
    assert main([*argv, "--data", str(independent), "--out", str(tmp_path / "r2")]) == 0
    result = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert result["test_subjects"] == 90 and result["subjects"]["mode"] == "all"
    assert (tmp_path / "r2" / "results.md").read_text().count(
        "All 90 subjects of the independent cohort"
    ) == 1
    # without --subjects all, another cohort is not mistaken for the training one (its PTIDs repeat)
    assert main([*argv[:-2], "--data", str(independent), "--out", str(tmp_path / "r3")]) == 2
    assert "is not the cohort" in capsys.readouterr().err


def test_label_column_is_recorded_and_a_mismatch_refused(trained, tmp_path, capsys):
    data, models = trained
    argv = [
        "evaluate",
        "--data",
        str(data),
        "--models",
        str(models / "ens"),
        "--bootstrap",
        "20",
        "--permutations",
        "0",
    ]
    assert main([*argv, "--label-column", "DX", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "trained on labels of column DX_bl" in err and "pass --label-column DX_bl" in err
    assert "DX_bl differs for 9 of 150 subjects" in err  # which column, and how many disagree
    assert main([*argv, "--out", str(tmp_path / "ok")]) == 0
    assert (
        "Labels from column DX_bl; DX differs for 9 of 150 subjects"
        in (tmp_path / "ok" / "results.md").read_text()
    )
    card = json.loads((models / "ens" / "fold0" / "card.json").read_text())
    assert card["data"]["label_column"] == "DX_bl"


def test_cohort_identity_tells_synthetic_cohorts_apart_and_names_real_sources(tmp_path):
    a = load_cohort(_write(tmp_path / "a", n=30, seed=1))
    b = load_cohort(_write(tmp_path / "b", n=30, seed=2))
    assert cohort_identity(a) != cohort_identity(b) and "seed=1" in cohort_identity(a)
    assert cohort_identity(load_cohort(_write(tmp_path / "a2", n=30, seed=1))) == cohort_identity(a)
    # the first 30 subjects of a cohort of 60 of the same seed are the same people: the same identity
    bigger = _write(
        tmp_path / "a3",
        n=60,
        seed=1,
        provenance={
            "source": "synthetic",
            "generator": "tests",
            "knobs": {"task": "ad", "seed": 1, "n": 60, "interaction_strength": 1.0},
        },
    )
    assert cohort_identity(load_cohort(bigger)) == cohort_identity(a)
    real = load_cohort(_write(tmp_path / "r", n=30, provenance={"source": "ADNI"}))
    assert cohort_identity(real) == "ADNI"
    assert np.array_equal(a.table["PTID"], b.table["PTID"])  # the PTIDs alone would not tell them apart
