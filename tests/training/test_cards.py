"""Model cards as Mitchell et al.'s sections (hyperfusion.training.cards)."""

from __future__ import annotations

from pathlib import Path

from hyperfusion.models.card import ModelCard
from hyperfusion.training.cards import card_sections, report_run
from hyperfusion.training.reports import Report

HEADINGS = [
    "Model details",
    "Intended use",
    "Training data",
    "Metrics",
    "Reliance on each input",
    "Faithfulness of the attribution maps",
    "Caveats and recommendations",
]


def _card(fold: int, synthetic: bool = True, collapsed: bool = False) -> ModelCard:
    return ModelCard.from_dict(
        {
            "architecture": {
                "name": "hyperfusion",
                "task": "ad",
                "config": {"hyper_layers": ["block4.shortcut"]},
            },
            "task": "ad",
            "weights_sha256": "ab" * 32,
            "geometry": {"voxel_size_mm": 2.0},
            "data": {
                "source": "synthetic" if synthetic else "ADNI",
                "synthetic": synthetic,
                "path": "/home/builder/secret/cohorts/ad",
            },
            "split": {
                "seed": 0,
                "fold": fold,
                "label_column": "DX_bl",
                "train": ["a", "b", "c"],
                "validation": ["d"],
                "test": ["e", "f"],
            },
            "training": {"epochs": 40, "imputation": "median"},
            "metrics": {"validation": {"val_balanced_accuracy": 0.70 + fold / 100}},
            "collapse": {"collapsed": collapsed},
        }
    )


def _report(name: str, label: str) -> Report:
    result = {
        "task": "ad",
        "test_subjects": 160,
        "test_ptids": [],
        "runs": {
            label: {
                "architecture": "hyperfusion",
                "metrics": {"balanced_accuracy": 0.7265, "ece": 0.05},
                "ci95": {"balanced_accuracy": {"value": 0.7265, "ci95": [0.6951, 0.7562]}},
                "reliance": {
                    "scan": {
                        "applicable": True,
                        "seeds": 5,
                        "uses": True,
                        "balanced_accuracy": {
                            "unpermuted": 0.7265,
                            "permuted_mean": 0.4833,
                            "permuted_sd": 0.0207,
                        },
                    },
                    "record": {
                        "applicable": True,
                        "seeds": 5,
                        "uses": False,
                        "balanced_accuracy": {
                            "unpermuted": 0.7265,
                            "permuted_mean": 0.7201,
                            "permuted_sd": 0.01,
                        },
                    },
                },
            }
        },
        "faithfulness": {
            "method": "saliency",
            "subjects": ["S1", "S2"],
            "mean": {label: {"top_decile_enrichment": 1.79, "auroc": 0.61}},
            "untrained": {label: {"top_decile_enrichment": 1.19}},
        },
    }
    return Report(name, Path("/nowhere") / name / "results.json", result)


def test_sections_hold_the_report_numbers_with_intervals_reliance_and_faithfulness():
    cards = [_card(0), _card(1, collapsed=True)]
    sections = card_sections(cards, "ad/hyperfusion", "hyperfusion", [_report("ad_test", "hyperfusion")])
    assert [h for h, _ in sections] == HEADINGS
    text = dict(sections)
    assert "2 member(s)" in text["Model details"] and "block4.shortcut" in text["Model details"]
    assert "SYNTHETIC" in text["Intended use"] and "Not for" in text["Intended use"]
    assert "3 train, 1 validation, 2 test" in text["Training data"]
    assert "**0.727** (95 % bootstrap interval 0.695–0.756)" in text["Metrics"]
    assert "report **ad_test**" in text["Metrics"] and "ECE 0.050" in text["Metrics"]
    assert (
        "fold 0: balanced accuracy 0.700" in text["Metrics"]
        and "fold 1: balanced accuracy 0.710" in text["Metrics"]
    )
    assert "scan (ad_test): BA 0.727 → 0.483 ± 0.021" in text["Reliance on each input"]
    assert "**uses it**" in text["Reliance on each input"]
    assert (
        "record (ad_test)" in text["Reliance on each input"]
        and "does not measurably use it" in text["Reliance on each input"]
    )
    assert (
        "**1.79×**" in text["Faithfulness of the attribution maps"]
        and "1.19×" in text["Faithfulness of the attribution maps"]
    )
    assert "Member(s) [1]" in text["Caveats and recommendations"]
    assert not any("/home/builder" in t or "/nowhere" in t for t in text.values())  # no machine's path


def test_a_model_no_report_measured_says_so_and_runs_match_by_folder():
    report = _report("ad", "film/fold0")
    assert report_run(report, "ad/film", "hyperfusion") == "film/fold0"
    assert report_run(report, "ad/concat", "hyperfusion") is None
    assert report_run(_report("ad", "hyperfusion"), "ad/hyperfusion", "image_only") is None  # another network
    text = dict(card_sections([_card(0, synthetic=False)], "mine", "hyperfusion", [report]))
    assert "no interval" in text["Metrics"] and "report" not in text["Metrics"]
    assert text["Reliance on each input"].startswith("Not measured")
    assert text["Faithfulness of the attribution maps"].startswith("Not measured")
    assert "SYNTHETIC" not in text["Intended use"]


def test_a_card_made_from_a_callers_dict_does_not_share_its_values():
    raw = {"architecture": {"name": "concat", "task": "ad", "config": {}}, "data": {"path": "a", "n": [1, 2]}}
    card = ModelCard.from_dict(raw)
    raw["data"]["n"].append(3)
    raw["data"]["path"] = "b"
    assert card.data == {"path": "a", "n": [1, 2]}
    # a dict parsed for the card alone is taken as it is (read_card: no copy)
    owned = {"architecture": {"name": "concat", "task": "ad", "config": {}}, "data": {"n": [1]}}
    assert ModelCard.from_dict(owned, owned=True).data["n"] is owned["data"]["n"]
