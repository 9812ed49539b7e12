"""How much each region of a subject shrinks or grows: the atrophy plan (docs/synthetic.md, "Image" and
"Interactions").

A plan is three vectors over :data:`~hyperfusion.data.synthetic.anatomy.REGIONS` of log-volume changes relative
to the template (a healthy 70-year-old of average head size): ``disease``, ``age`` and ``anatomy`` (individual
variation). Their sum drives the subject's deformation; each one alone is written as a ground-truth map.

Interactions between the record and the image, each scaled by ``lam`` (the interaction strength lambda):

* I1 phenotype: a share ``w = sigmoid(lam * (0.6 (age - 72) / 7 + 0.9 (APOE4 - 0.57)))`` of the medial-temporal
  atrophy hits the limbic pattern (hippocampal head, amygdala, entorhinal), the rest the hippocampus-sparing
  one (hippocampal body and tail, parahippocampal, parietal). Head and body each hold half the hippocampus, so
  its total atrophy does not depend on ``w``.
* I2 sex x APOE4: medial-temporal atrophy times ``1 + 0.4 lam`` for women carrying APOE4, divided by that
  factor's mean in the diagnosis group so that group means do not move with ``lam``.
* I3 lateralisation: the left hemisphere takes a share ``0.5 + 0.25 lam`` of the medial-temporal atrophy in
  women and ``0.5 - 0.25 lam`` in men.
* Sex-specific ageing (men's ventricles, women's hippocampi a little faster; for brain age the lobe-wise
  pattern) also scales with ``lam``, so that ``lam = 0`` is a purely additive world.

Brain-age cohorts (healthy adults, 20-90 years) get their own ageing world (:func:`brain_age_ageing`): nearly
linear cortical thinning from early adulthood, strongest in the frontal and lateral temporal lobes (the cortex
shrinks into its sulci, which widen); white-matter loss that starts in mid-life and accelerates (a field of its
own, :data:`~hyperfusion.data.synthetic.anatomy.AGEING_REGIONS`, so plans have that many more entries);
ventricles that grow ever faster; hippocampal decline that accelerates after 60; men a little faster overall.
Its individual variation is smaller than the AD task's (:data:`BRAIN_AGE_ANATOMY_SD`), so that age can be read
from the anatomy about as well as real brain-age models read it from real scans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from hyperfusion.data.synthetic.anatomy import AGEING_REGIONS, REGION_INDEX, REGIONS
from hyperfusion.data.synthetic.records import APOE4_PROBS, FEMALE_SHARE

# Disease, log-volume per unit severity s (AD mean s = 0.85: hippocampus about -23 %, ventricles about +40 %).
MTL_DISEASE = 0.30
# Ventricles: the spec's 0.35 s, with ADNI's ages, gives +45 % in AD against the real +51 %; 0.40 meets it.
VENTRICLE_DISEASE = 0.40
CORTEX_DISEASE = 0.04
PARIETAL_DISEASE = 0.10  # the hippocampus-sparing pattern's parietal share (whole-brain scans show it)

# Normal ageing: log-volume per year at age 70, accelerating with age: the cumulative effect at ``age`` is
# rate * TAU * (exp((age - 70) / TAU) - 1), which is linear near 70 and keeps a 20-year-old's hippocampus
# about 20 % (not 50 %) larger than a 70-year-old's.
AGEING_TAU = 25.0  # years
AGEING_RATE = {
    "hippocampus": -0.008,
    "entorhinal": -0.006,
    "amygdala": -0.005,
    "parahippocampal": -0.005,
    "cortex": -0.003,
    "ventricles": 0.024,
}
AD_SEX_AGEING = 0.10  # AD task: men's ventricles and women's hippocampi age (1 + 0.1 lam) times as fast

# Brain-age task. Per structure: log-volume change per year at 70, the time constant of its acceleration
# (years; the cumulative change from 70 is rate * tau * (exp((age - 70) / tau) - 1), near linear for a long tau)
# and the sex difference in rate at lam = 1 (men age 1 + d times, women 1 - d times as fast as the average,
# counted from young adulthood, BRAIN_AGE_SEX_ONSET). The shapes follow published lifespan trajectories:
# cortical grey matter thins almost linearly from the twenties, most in frontal and lateral temporal cortex
# (lobe rates add to the cortex's); white matter holds until mid-life and then declines ever faster; the
# ventricles grow exponentially (measured: about 3-fold from 30 to 80); the hippocampus declines slowly before 60 and
# about 1 %/year after 75. Total brain tissue then falls by about 0.2 %/year before 50 and 0.5 %/year after 70.
# Sex: men faster in frontal and temporal cortex, white matter and ventricles, women in hippocampus and
# parietal cortex, men a little faster over the whole cortex (so conditioning on sex changes how a volume
# reads as an age).
BRAIN_AGE_AGEING = {
    "cortex": (-0.0070, 300.0, 0.10),
    "frontal": (-0.0030, 300.0, 0.25),
    "temporal": (-0.0030, 300.0, 0.25),
    "parietal": (-0.0010, 300.0, -0.20),
    "white_matter": (-0.0060, 30.0, 0.15),
    "ventricles": (0.018, 20.0, 0.25),
    "hippocampus": (-0.008, 25.0, -0.20),
    "entorhinal": (-0.006, 25.0, 0.0),
    "amygdala": (-0.005, 25.0, 0.0),
    "parahippocampal": (-0.005, 25.0, 0.0),
}
BRAIN_AGE_SEX_ONSET = 20.0  # years: the sexes' trajectories part from here

# Individual anatomy: log-volume sd and left/right correlation.
ANATOMY_SD = {
    "hippocampus": (0.06, 0.8),
    "entorhinal": (0.10, 0.6),
    "amygdala": (0.07, 0.7),
    "parahippocampal": (0.08, 0.6),
    "ventricles": (0.40, 0.8),
    "frontal": (0.03, 0.8),
    "temporal": (0.03, 0.8),
    "parietal": (0.03, 0.8),
}
CORTEX_SD = 0.03
# Brain-age task: healthy adults' individual variation, small enough that the true volumes predict age within
# about 4-5 years (real volumetric brain-age models: 5-7 years; CNNs on scans: 3-5).
BRAIN_AGE_ANATOMY_SD = {
    "hippocampus": (0.05, 0.8),
    "entorhinal": (0.08, 0.6),
    "amygdala": (0.06, 0.7),
    "parahippocampal": (0.06, 0.6),
    "ventricles": (0.20, 0.8),
    "frontal": (0.015, 0.8),
    "temporal": (0.015, 0.8),
    "parietal": (0.015, 0.8),
    "white_matter": (0.02, 0.8),
}
BRAIN_AGE_CORTEX_SD = 0.015

_LIMBIC = ("hippocampus_head", "amygdala", "entorhinal")
_SPARING = ("hippocampus_body", "parahippocampal")
_MTL = _LIMBIC + _SPARING


def _family(name: str) -> str:
    """``hippocampus_head_L`` -> ``hippocampus_head``; ``cortex`` -> ``cortex``."""
    return name[:-2] if name[-2:] in ("_L", "_R") else name


def _structure(family: str) -> str:
    return "hippocampus" if family.startswith("hippocampus") else family


def _side(name: str) -> str:
    return name[-1] if name[-2:] in ("_L", "_R") else ""


@dataclass(frozen=True)
class AtrophyPlan:
    """Log-volume changes per region (arrays over :func:`plan_regions`) and the interaction terms that shaped
    them."""

    disease: np.ndarray
    age: np.ndarray
    anatomy: np.ndarray
    limbic_share: float  # w of I1
    left_share: float  # I3
    sex_apoe_factor: float  # I2

    @property
    def total(self) -> np.ndarray:
        return self.disease + self.age + self.anatomy


def limbic_share(age: float, apoe4: int, lam: float) -> float:
    """I1: the share w of medial-temporal atrophy in the limbic pattern (0.5 for everyone at lam = 0)."""
    return 1.0 / (1.0 + math.exp(-lam * (0.6 * (age - 72.0) / 7.0 + 0.9 * (apoe4 - 0.57))))


def _sex_apoe_factor(female: bool, apoe4: int, dx: str, lam: float) -> float:
    carriers = 1.0 - APOE4_PROBS[dx][0]
    mean = 1.0 + 0.4 * lam * FEMALE_SHARE[dx] * carriers
    return (1.0 + 0.4 * lam * (female and apoe4 > 0)) / mean


def effective_years(age: float) -> float:
    """Years of ageing from 70 in units of the rate at 70 (negative below 70)."""
    return AGEING_TAU * math.expm1((age - 70.0) / AGEING_TAU)


def disease_atrophy(latent: dict, lam: float) -> tuple[np.ndarray, float, float, float]:
    """Disease log-volume changes per region, with the I1 share, I3 left share and I2 factor."""
    s = float(latent["severity"])
    female, apoe4, dx = bool(latent["female"]), int(latent["apoe4"]), latent["dx"]
    w = limbic_share(float(latent["age"]), apoe4, lam)
    left = 0.5 + (0.25 * lam if female else -0.25 * lam)
    i2 = _sex_apoe_factor(female, apoe4, dx, lam) if dx in APOE4_PROBS else 1.0
    out = np.zeros(len(REGIONS))
    for i, region in enumerate(REGIONS):
        fam, side = _family(region.name), _side(region.name)
        lateral = 2.0 * (left if side == "L" else 1.0 - left)
        if fam in _MTL:
            pattern = 2.0 * w if fam in _LIMBIC else 2.0 * (1.0 - w)
            out[i] = -MTL_DISEASE * s * i2 * lateral * pattern
        elif fam == "parietal":
            out[i] = -PARIETAL_DISEASE * s * 2.0 * (1.0 - w)
        elif fam == "ventricles":
            out[i] = VENTRICLE_DISEASE * s
        elif fam == "cortex":
            out[i] = -CORTEX_DISEASE * s
    return out, w, left, i2


def plan_regions(task: str) -> tuple:
    """The regions a plan of ``task`` covers: :data:`REGIONS`, and for brain age also :data:`AGEING_REGIONS`."""
    return REGIONS + AGEING_REGIONS if task == "brain_age" else REGIONS


def ageing_atrophy(latent: dict, lam: float, task: str) -> np.ndarray:
    """Normal-ageing log-volume changes per region (:func:`plan_regions`) relative to age 70."""
    if task == "brain_age":
        return brain_age_ageing(latent, lam)
    years = effective_years(float(latent["age"]))
    female = bool(latent["female"])
    sign = 1.0 if female else -1.0  # +1 where women age faster
    out = np.zeros(len(REGIONS))
    for i, region in enumerate(REGIONS):
        fam = _family(region.name)
        struct = _structure(fam)
        rate = AGEING_RATE.get(struct, 0.0)
        if struct == "ventricles":
            rate *= 1.0 - sign * AD_SEX_AGEING * lam
        elif struct == "hippocampus":
            rate *= 1.0 + sign * AD_SEX_AGEING * lam
        out[i] = rate * years
    return out


def brain_age_trajectory(structure: str, age: float, female: bool | None, lam: float) -> float:
    """Brain-age task: log-volume change of ``structure`` at ``age`` relative to age 70 (the template), for a
    woman, a man, or (``female=None``) the average of the two. 0 for structures that do not age."""
    if structure not in BRAIN_AGE_AGEING:
        return 0.0
    rate, tau, men_excess = BRAIN_AGE_AGEING[structure]

    def cumulative(a: float) -> float:
        return rate * tau * math.expm1((a - 70.0) / tau)

    change = cumulative(age)
    if female is None:
        return change
    sign = -1.0 if female else 1.0
    return change + sign * men_excess * lam * (change - cumulative(BRAIN_AGE_SEX_ONSET))


def brain_age_ageing(latent: dict, lam: float) -> np.ndarray:
    """Brain-age task: healthy ageing per region of ``plan_regions("brain_age")`` relative to age 70."""
    age, female = float(latent["age"]), bool(latent["female"])
    regions = plan_regions("brain_age")
    return np.array([brain_age_trajectory(_structure(_family(r.name)), age, female, lam) for r in regions])


def anatomical_variation(
    rng: np.random.Generator, ventricle_common: float | None = None, task: str = "ad"
) -> np.ndarray:
    """Individual log-volume offsets per region (left/right correlated; head and body share one offset).

    ``ventricle_common`` replaces the random standard-normal factor the two ventricles share (see
    :func:`stratified_normal`). Brain-age plans use :data:`BRAIN_AGE_ANATOMY_SD` over :func:`plan_regions`.
    """
    regions = plan_regions(task)
    table, cortex_sd = (
        (BRAIN_AGE_ANATOMY_SD, BRAIN_AGE_CORTEX_SD) if task == "brain_age" else (ANATOMY_SD, CORTEX_SD)
    )
    out = np.zeros(len(regions))
    for struct, (sd, rho) in table.items():
        common, left, right = rng.standard_normal(3)
        if struct == "ventricles" and ventricle_common is not None:
            common = ventricle_common
        offsets = {
            "L": sd * (math.sqrt(rho) * common + math.sqrt(1 - rho) * left),
            "R": sd * (math.sqrt(rho) * common + math.sqrt(1 - rho) * right),
        }
        for i, region in enumerate(regions):
            if _structure(_family(region.name)) == struct:
                out[i] = offsets[_side(region.name)]
    out[REGION_INDEX["cortex"]] = cortex_sd * rng.standard_normal()
    return out


_WEYL_STEP = math.sqrt(2.0) - 1.0  # rationally independent of the golden ratio that assigns diagnoses


def stratified_normal(seed: int, index: int) -> float:
    """A standard normal deviate from a Weyl sequence over subjects (stratified sampling).

    Ventricular size varies so much between people (log-volume sd 0.40) that with random draws a group
    mean of 70 patients misses its expectation by 5 % or more; drawn from this equidistributed sequence
    (independent of the diagnosis sequence), every diagnosis group gets a balanced spread of sizes, while each
    subject's size still follows the normal distribution.
    """
    u0 = np.random.SeedSequence((seed, 1)).generate_state(1)[0] / 2.0**32
    u = (u0 + (index + 0.5) * _WEYL_STEP) % 1.0
    return float(ndtri(min(max(u, 1e-9), 1 - 1e-9)))


def atrophy_plan(
    latent: dict, lam: float, task: str, rng: np.random.Generator, ventricle_common: float | None = None
) -> AtrophyPlan:
    """The subject's plan: disease (AD task only), ageing and individual anatomy, per region of
    :func:`plan_regions`."""
    if task == "ad":
        disease, w, left, i2 = disease_atrophy(latent, lam)
    else:
        disease, w, left, i2 = np.zeros(len(plan_regions(task))), 0.5, 0.5, 1.0
    return AtrophyPlan(
        disease=disease,
        age=ageing_atrophy(latent, lam, task),
        anatomy=anatomical_variation(rng, ventricle_common, task),
        limbic_share=w,
        left_share=left,
        sex_apoe_factor=i2,
    )
