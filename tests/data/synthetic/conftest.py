"""Shared small cohorts for the synthetic-generator tests (2 mm hippocampal box, a few seconds each).

The atrophy fields are cached in the user's cache (``HYPERFUSION_CACHE`` or ``~/.cache/hyperfusion``); on a fresh
machine the first test builds them once (about 15 s on two cores).
"""

from __future__ import annotations

import pytest

from hyperfusion.data.synthetic import SynthConfig, generate_cohort

SMALL_N = 12


@pytest.fixture(scope="session")
def small_config() -> SynthConfig:
    return SynthConfig(n=SMALL_N, seed=0, voxel_size=2.0, interaction_strength=1.0)


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory, small_config):
    """A 12-subject AD cohort written with one worker."""
    return generate_cohort(
        tmp_path_factory.mktemp("cohort") / "synth", small_config, workers=1, progress=False
    )
