"""The brain-age world: ageing that can be read from the anatomy, sex that changes its rate, and an AD task that
does not move by a byte."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hyperfusion.data.synthetic import (
    SynthConfig,
    calibration_report,
    ensure_cohort,
    generate_cohort,
    read_config,
    synthesize_subject,
    write_subject_scan,
)
from hyperfusion.data.synthetic.anatomy import REGION_INDEX, atlas_source
from hyperfusion.data.synthetic.effects import (
    BRAIN_AGE_AGEING,
    ageing_atrophy,
    brain_age_trajectory,
    plan_regions,
)
from hyperfusion.data.synthetic.generator import cohort_metadata
from hyperfusion.data.synthetic.report import brain_age_ceiling

SHIPPED_AD = Path(__file__).resolve().parents[3] / "assets" / "demo" / "cohorts" / "ad"
N_AGEING = 40


@pytest.fixture(scope="module")
def ageing_cohort(tmp_path_factory):
    """40 healthy adults, 20-90 years, whole brain at 8 mm (volumes are measured on the 2 mm field grid
    whatever the written voxel size, so the coarse scans keep this quick)."""
    config = SynthConfig(n=N_AGEING, seed=2, task="brain_age", voxel_size=8.0, whole_brain=True)
    return generate_cohort(tmp_path_factory.mktemp("ageing") / "ba", config, workers=1, progress=False)


def test_age_is_read_from_the_true_volumes_far_better_than_from_the_mean(ageing_cohort):
    latent = pd.read_csv(ageing_cohort / "truth" / "subjects.csv")
    assert {"cortex_L_ml", "frontal_R_ml", "white_matter_L_ml", "brain_ml"} <= set(latent.columns)
    scores = brain_age_ceiling(latent, seed=0)
    assert scores["mean"] > 12.0  # ages uniform over 20-90
    assert scores["ridge"] < 0.5 * scores["mean"], scores


def test_the_ageing_report_shows_the_ceiling_and_the_trajectories(ageing_cohort):
    text = calibration_report(ageing_cohort)
    assert "## Brain-age ceiling" in text and "| ridge on true volumes + head size |" in text
    assert "Total brain tissue" in text and "Ventricles (per litre of head size)" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for structure in ("cortex", "frontal", "white_matter", "hippocampus"):
        cells = rows[structure].split("|")[2:4]
        assert all(c.strip().startswith("-") for c in cells), rows[structure]  # shrinks with age, both sexes
    assert all(c.strip().startswith("+") for c in rows["ventricles"].split("|")[2:4])


def test_ageing_has_its_published_shape():
    def brain_like(age):  # the structures that dominate brain tissue
        return sum(brain_age_trajectory(s, age, None, 1.0) for s in ("cortex", "white_matter"))

    early = brain_like(50) - brain_like(30)
    late = brain_like(85) - brain_like(65)
    assert late < 1.3 * early < 0  # decline speeds up with age
    vent = np.exp(
        brain_age_trajectory("ventricles", 80, None, 1.0) - brain_age_trajectory("ventricles", 30, None, 1.0)
    )
    assert 1.5 < vent < 3.5  # requested; the deformation delivers more (the report measures 2-3 times)
    frontal = brain_age_trajectory("cortex", 80, None, 1.0) + brain_age_trajectory("frontal", 80, None, 1.0)
    occipital = brain_age_trajectory("cortex", 80, None, 1.0)
    assert (
        frontal < occipital < 0
    )  # frontal cortex (with temporal) thins most; the young are larger (age < 70)


def test_sex_changes_the_ageing_rate_only_when_lambda_is_positive():
    i = REGION_INDEX
    for lam, differ in ((0.0, False), (1.0, True)):
        man = ageing_atrophy({"age": 80.0, "female": False}, lam, "brain_age")
        woman = ageing_atrophy({"age": 80.0, "female": True}, lam, "brain_age")
        young_man = ageing_atrophy({"age": 20.0, "female": False}, lam, "brain_age")
        young_woman = ageing_atrophy({"age": 20.0, "female": True}, lam, "brain_age")
        np.testing.assert_allclose(young_man, young_woman)  # the sexes part from young adulthood
        loss_m = young_man - man  # how much was lost from 20 to 80
        loss_w = young_woman - woman
        if not differ:
            np.testing.assert_allclose(loss_m, loss_w)
            continue
        for region in ("cortex", "frontal_L", "temporal_R"):
            assert loss_m[i[region]] > 1.1 * loss_w[i[region]], region  # men faster
        assert loss_w[i["hippocampus_head_L"]] > 1.1 * loss_m[i["hippocampus_head_L"]]  # women faster
        assert man[i["ventricles_L"]] > woman[i["ventricles_L"]]


def test_sex_changes_the_measured_volumes_of_the_same_people():
    """The same subjects (same anatomy draws) at lambda 0 and 1: the sex-specific rates move men's frontal
    cortex down and women's up, as measured through the warp."""
    moved = {}
    for index in range(6):
        a, b = (
            synthesize_subject(
                index, 6, seed=5, task="brain_age", voxel_size=8.0, whole_brain=True, interaction_strength=lam
            )
            for lam in (0.0, 1.0)
        )
        if a.latent["age"] < 35:
            continue  # too young for the sexes to have parted much
        frontal = lambda s: s.volumes_ml["frontal_L"] + s.volumes_ml["frontal_R"]  # noqa: E731
        moved.setdefault(a.latent["female"], []).append(np.log(frontal(b) / frontal(a)))
    assert set(moved) == {True, False}, "need older men and women among the six"
    assert max(moved[False]) < -0.005 and min(moved[True]) > 0.005, moved


def test_a_brain_age_plan_covers_the_white_matter_and_ad_plans_do_not():
    assert len(plan_regions("brain_age")) == len(plan_regions("ad")) + 2
    assert len(ageing_atrophy({"age": 50.0, "female": True}, 1.0, "ad")) == len(plan_regions("ad"))
    assert "white_matter" in BRAIN_AGE_AGEING


def test_a_stale_brain_age_cohort_is_not_reused(ageing_cohort, tmp_path):
    config = read_config(ageing_cohort)
    assert config is not None and config.task == "brain_age"
    stale = tmp_path / "stale"
    shutil.copytree(ageing_cohort, stale)
    meta = json.loads((stale / "cohort.json").read_text())
    del meta["brain_age_world"]  # as written by the generator before this world
    (stale / "cohort.json").write_text(json.dumps(meta))
    assert read_config(stale) is None
    stamp = (stale / "cohort.csv").stat().st_mtime_ns
    ensure_cohort(
        stale, SynthConfig(n=2, seed=2, task="brain_age", voxel_size=8.0, whole_brain=True), progress=False
    )
    assert read_config(stale) is not None and (stale / "cohort.csv").stat().st_mtime_ns != stamp


@pytest.mark.skipif(not (SHIPPED_AD / "cohort.json").is_file(), reason="the demo's AD table is not shipped")
def test_the_ad_task_is_byte_identical_to_the_shipped_demo(tmp_path):
    """The demo ships the AD table and its first subjects' scans, regenerated from the generator: the
    brain-age world must not move one byte of them."""
    meta = json.loads((SHIPPED_AD / "cohort.json").read_text())
    if meta["atlas"] != atlas_source():
        pytest.skip("another atlas source is installed than the one the demo was built with")
    config = read_config(SHIPPED_AD)
    assert config is not None and config.task == "ad"
    now = json.loads(json.dumps(cohort_metadata(config)))
    assert {k: v for k, v in now.items() if k != "hyperfusion_version"} == {
        k: v for k, v in meta.items() if k != "hyperfusion_version"
    }
    starter = sorted((SHIPPED_AD / "starter_scans").glob("SYN_*.nii.gz"))[0]
    again = write_subject_scan(config, starter.name.removesuffix(".nii.gz"), tmp_path / starter.name)
    assert again.read_bytes() == starter.read_bytes()
