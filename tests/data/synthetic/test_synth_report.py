import pandas as pd

from hyperfusion.cli import main
from hyperfusion.data.synthetic import calibration_report
from hyperfusion.data.synthetic.records import sample_subject
from hyperfusion.data.synthetic.report import attribute_matrix, balanced_accuracies, numeric, volume_changes


def test_report_has_every_section(small_cohort):
    text = calibration_report(small_cohort)
    for heading in ("## Volumes", "## The record", "## Balanced accuracy", "## Interactions"):
        assert heading in text
    assert "| hippocampus | AD |" in text and "| ventricles | MCI |" in text


def test_censored_strings_read_at_their_bound():
    assert numeric(pd.Series([">1700", "<8", "", "12.5"])).tolist()[:2] == [1700.0, 8.0]


def test_volume_changes_are_relative_to_cn():
    latent = pd.DataFrame(
        {f"{s}_{h}_ml": [1.0, 0.9, 0.5] for s in ("hippocampus", "entorhinal", "ventricles") for h in "LR"}
    )
    out = volume_changes(latent, pd.Series(["CN", "MCI", "AD"]))
    assert round(out["hippocampus"]["MCI"], 6) == -10.0 and round(out["ventricles"]["AD"], 6) == -50.0


def test_balanced_accuracy_beats_chance_on_the_records():
    table = pd.DataFrame([sample_subject(0, i, 300)[0] for i in range(300)])
    dx = table["DX"].map({"CN": "CN", "MCI": "MCI", "Dementia": "AD"})
    assert attribute_matrix(table).shape == (300, 9)
    scores = balanced_accuracies(table, dx, repeats=1)
    assert 0.45 < scores["median imputation + missing indicators"] < 0.8


def test_cli_synth_writes_a_cohort_and_prints_the_report(tmp_path, capsys):
    assert main(["synth", "--n", "3", "--out", str(tmp_path / "c"), "--report"]) == 0
    assert "# Synthetic cohort calibration report" in capsys.readouterr().out
    assert main(["synth", "--n", "3", "--out", str(tmp_path / "c"), "--interaction-strength", "3"]) == 2


def test_brain_age_report_shows_ageing(tmp_path):
    from hyperfusion.data.synthetic import SynthConfig, generate_cohort

    cohort = generate_cohort(tmp_path / "ba", SynthConfig(n=8, task="brain_age"), progress=False)
    text = calibration_report(cohort)
    assert "## Ageing" in text and "| hippocampus |" in text
    hippocampus = next(line for line in text.splitlines() if line.startswith("| hippocampus |"))
    assert all(cell.strip().startswith("-") for cell in hippocampus.split("|")[2:4])  # shrinks with age
