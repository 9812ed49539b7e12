"""The tabular record of a synthetic subject, in ADNIMERGE conventions (docs/synthetic.md, "Tabular record").

Each subject is drawn from its own random stream (seed, index), so a cohort of N subjects is the first N of any
larger one. Two kinds of output: the ``row`` that goes to ``cohort.csv`` (strings, as the real table has them:
censored assay values such as ">1700", empty cells for missing values) and the ``latent`` truth that the
image generator and the calibration report use (diagnosis, amyloid status, disease severity, the hidden study
phase that decides what is missing, scanner field strength, intracranial volume).

Figures are the real ADNI baseline summaries (docs/synthetic.md) and the literature; where the spec
leaves a choice (cognitive scores, the study-phase missingness model) it is documented next to its numbers.
"""

from __future__ import annotations

import math

import numpy as np

DIAGNOSES = ("CN", "MCI", "AD")
DX_SHARES = (0.349, 0.479, 0.172)
FEMALE_SHARE = {"CN": 0.582, "MCI": 0.439, "AD": 0.458}
AGE_MEAN_SD = {"CN": (72.2, 6.8), "MCI": (72.7, 7.6), "AD": (75.1, 7.9)}  # years
AGE_RANGE = (55.0, 91.0)
EDUCATION_MEAN_SD = {"CN": (16.4, 2.5), "MCI": (16.0, 2.7), "AD": (15.3, 3.0)}  # years
APOE4_PROBS = {"CN": (0.690, 0.281, 0.029), "MCI": (0.509, 0.379, 0.112), "AD": (0.320, 0.477, 0.203)}
AMYLOID_PROB = {"CN": (0.27, 0.54, 0.79), "MCI": (0.38, 0.75, 0.92), "AD": (0.71, 0.96, 0.99)}  # by APOE4
# Real ADNI: women are about 2 years younger (corr(age, female) = -0.16) and have 0.9 years less education;
# APOE4 carriers are younger (corr about -0.1 to -0.2).
AGE_BY_SEX, AGE_BY_APOE4, EDUCATION_BY_SEX = 2.2, 1.0, 0.85

# Biomarkers. ABETA (pg/mL): log-normal by amyloid status, censored like the Elecsys assay's range.
ABETA_MEDIAN_LOGSD = {True: (640.0, 0.28), False: (1450.0, 0.20)}
# Amyloid load is a continuum: among the amyloid-positive, CSF ABETA falls and AV45 rises with disease severity
# (centred on the amyloid-positive mean severity, 0.45). This carries the real within-group correlations of
# ABETA and AV45 with stage, and moves the CN and AD means of both toward the real ones.
AMYLOID_LOAD_SEVERITY = {"ABETA_log": -0.25, "AV45": 0.18, "centre": 0.45}
# PTAU (pg/mL): log-linear in age, amyloid and severity; CN / MCI / AD means about 22 / 28 / 37.
PTAU_LOG = {"intercept": math.log(17.0), "age": 0.012, "amyloid": 0.45, "severity": 0.40, "sd": 0.33}
TAU_PER_PTAU, TAU_LOG_SD = 10.6, 0.07  # rho(TAU, PTAU) about 0.98
CENSOR = {
    "ABETA": (200.0, 1700.0),
    "TAU": (80.0, 1300.0),
    "PTAU": (8.0, 120.0),
}  # the assays' reportable ranges
FDG = {"intercept": 1.295, "severity": -0.25, "age": -0.0035, "sd": 0.115}
AV45_MEAN_SD = {True: (1.40, 0.17), False: (1.01, 0.06)}  # SUVR

# Cognitive scores, consistent with the diagnosis (ADNI inclusion ranges): mean, sd, clip range.
MMSE = {"CN": (29.4, 1.1, 24, 30), "MCI": (27.8, 1.8, 24, 30), "AD": (23.2, 2.1, 18, 27)}
ADAS13 = {"CN": (8.7, 4.2), "MCI": (16.2, 6.5), "AD": (30.2, 7.5)}
CDRSB = {"CN": (0.0, 0.0), "MCI": (1.5, 0.85), "AD": (4.4, 1.5)}
MEAN_SEVERITY = {"CN": 0.0, "MCI": 0.39, "AD": 0.85}

# Missingness like ADNI, driven by a hidden study phase whose share depends on the diagnosis: ADNI1 had no
# amyloid PET and CSF for about half, ADNI-GO enrolled early MCI only, ADNI3 baselines lack most CSF and FDG
# and some genotypes. Shares and per-phase availability were fitted (least squares, close to the real phase
# enrolments) to the real missing rates: CSF 66/43/43 %, FDG 62/24/27 %, AV45 58/48/55 %, APOE4 12/8/4 %
# for CN/MCI/AD. Measured together: CSF (ABETA, TAU, PTAU).
PHASES = ("ADNI1", "ADNIGO", "ADNI2", "ADNI3")
PHASE_SHARES = {"CN": (0.34, 0.0, 0.20, 0.46), "MCI": (0.39, 0.13, 0.35, 0.13), "AD": (0.51, 0.0, 0.44, 0.05)}
AVAILABLE = {  # P(measured | diagnosis, phase) for (CSF, FDG, AV45, APOE4)
    "CN": (
        (0.44, 0.36, 0.0, 0.98),
        (0.83, 0.92, 0.94, 0.98),
        (0.80, 0.91, 0.95, 0.98),
        (0.08, 0.17, 0.50, 0.77),
    ),
    "MCI": (
        (0.44, 0.63, 0.0, 0.96),
        (0.83, 0.97, 0.94, 0.97),
        (0.81, 0.97, 0.95, 0.96),
        (0.08, 0.39, 0.52, 0.65),
    ),
    "AD": (
        (0.43, 0.57, 0.0, 0.97),
        (0.82, 0.96, 0.95, 0.97),
        (0.80, 0.96, 0.96, 0.97),
        (0.07, 0.33, 0.55, 0.73),
    ),
}
P_3T_ADNI1 = 0.2  # ADNI1 scanned mostly at 1.5 T; later phases at 3 T
ADAS13_MISSING = 0.01
# Head size: intracranial volume by sex (litres).
ICV_MEAN_SD = {True: (1.41, 0.12), False: (1.60, 0.16)}

CSV_COLUMNS = (
    "PTID",
    "VISCODE",
    "DX_bl",
    "DX",
    "AGE",
    "PTGENDER",
    "PTEDUCAT",
    "APOE4",
    "ABETA",
    "TAU",
    "PTAU",
    "FDG",
    "AV45",
    "MMSE",
    "ADAS13",
    "CDRSB",
)
ATTRIBUTES = ("AGE", "PTGENDER", "PTEDUCAT", "APOE4", "ABETA", "TAU", "PTAU", "FDG", "AV45")
STREAM_RECORD = 0
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def ptid(index: int, n: int) -> str:
    """Subject ID: ``SYN_0001``... (never the ``011_S_0002`` pattern of real ADNI IDs)."""
    return f"SYN_{index + 1:0{max(4, len(str(n)))}d}"


def subject_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The random stream ``stream`` of subject ``index``: independent of every other subject and stream."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(index, stream))))


def diagnosis_of(seed: int, index: int) -> str:
    """Diagnosis from a golden-ratio sequence: the shares hold to within 1/N at every cohort size N, and the
    subject's diagnosis does not depend on N."""
    u0 = np.random.SeedSequence(seed).generate_state(1)[0] / 2.0**32
    u = (u0 + index * _GOLDEN) % 1.0
    return DIAGNOSES[min(int(np.searchsorted(np.cumsum(DX_SHARES), u, side="right")), len(DIAGNOSES) - 1)]


def _censored(value: float, name: str, decimals: int) -> str:
    lo, hi = CENSOR[name]
    if value < lo:
        return f"<{lo:g}"
    if value > hi:
        return f">{hi:g}"
    return f"{value:.{decimals}f}"


def _dx_bl(dx: str, phase: str, severity: float) -> str:
    if dx != "MCI":
        return dx
    if phase == "ADNI1":
        return "LMCI"  # ADNI1 enrolled amnestic MCI only, labelled LMCI
    if phase == "ADNI3":
        return "MCI"
    return "EMCI" if severity < 0.40 else "LMCI"


def sample_subject(
    seed: int, index: int, n: int, task: str = "ad", age_range: tuple[float, float] | None = None
) -> tuple[dict[str, str], dict]:
    """The ``cohort.csv`` row (strings, "" for missing) and latent truth of subject ``index`` of ``n``.

    ``task="brain_age"`` draws healthy controls only, with ages uniform over ``age_range`` (years).
    """
    rng = subject_rng(seed, index, STREAM_RECORD)
    if task == "brain_age":
        dx = "CN"
        female = bool(rng.random() < 0.5)
    else:
        dx = diagnosis_of(seed, index)
        female = bool(rng.random() < FEMALE_SHARE[dx])
    apoe4 = int(rng.choice(3, p=APOE4_PROBS[dx]))
    apoe_mean = float(np.dot(APOE4_PROBS[dx], (0, 1, 2)))
    if task == "brain_age":
        lo, hi = age_range or (20.0, 90.0)
        age = float(rng.uniform(lo, hi))
    else:
        mu, sd = AGE_MEAN_SD[dx]
        pf = FEMALE_SHARE[dx]
        var_apoe = float(np.dot(APOE4_PROBS[dx], (np.arange(3) - apoe_mean) ** 2))
        sd_res = math.sqrt(sd**2 - AGE_BY_SEX**2 * pf * (1 - pf) - AGE_BY_APOE4**2 * var_apoe)
        age = (
            mu
            + AGE_BY_SEX * (pf - female)
            + AGE_BY_APOE4 * (apoe_mean - apoe4)
            + sd_res * rng.standard_normal()
        )
        age = float(np.clip(age, *AGE_RANGE))
    age = round(age, 1)
    mu_e, sd_e = EDUCATION_MEAN_SD[dx]
    pf = FEMALE_SHARE.get(dx, 0.5) if task != "brain_age" else 0.5
    education = int(
        np.clip(round(mu_e + EDUCATION_BY_SEX * (pf - female) + sd_e * rng.standard_normal()), 6, 20)
    )
    p_amyloid = AMYLOID_PROB[dx][apoe4]
    if task == "brain_age":  # amyloid positivity is rare before 60
        p_amyloid *= float(np.clip((age - 45.0) / 27.0, 0.0, 1.0))
    amyloid = bool(rng.random() < p_amyloid)
    if dx == "CN":
        severity = 0.0
    elif dx == "MCI":
        severity = float(np.clip(rng.normal(0.30 + 0.15 * amyloid, 0.15), 0.0, 1.0))
    else:
        severity = float(np.clip(rng.normal(0.85, 0.20), 0.3, 1.3))

    med, lsd = ABETA_MEDIAN_LOGSD[amyloid]
    load = (severity - AMYLOID_LOAD_SEVERITY["centre"]) if amyloid else 0.0
    abeta = med * math.exp(AMYLOID_LOAD_SEVERITY["ABETA_log"] * load + lsd * rng.standard_normal())
    p = PTAU_LOG
    ptau = math.exp(
        p["intercept"]
        + p["age"] * (age - 72)
        + p["amyloid"] * amyloid
        + p["severity"] * severity
        + p["sd"] * rng.standard_normal()
    )
    tau = TAU_PER_PTAU * ptau * math.exp(TAU_LOG_SD * rng.standard_normal())
    fdg = (
        FDG["intercept"]
        + FDG["severity"] * severity
        + FDG["age"] * (age - 72)
        + FDG["sd"] * rng.standard_normal()
    )
    m_av, sd_av = AV45_MEAN_SD[amyloid]
    av45 = m_av + AMYLOID_LOAD_SEVERITY["AV45"] * load + sd_av * rng.standard_normal()

    ds = severity - MEAN_SEVERITY[dx]
    mu, sd, lo, hi = MMSE[dx]
    mmse = int(
        np.clip(
            round(mu - 3.0 * ds - 0.05 * (age - 72) + 0.15 * (education - 16) + sd * rng.standard_normal()),
            lo,
            hi,
        )
    )
    mu, sd = ADAS13[dx]
    adas = float(
        np.clip(
            mu + 12.0 * ds + 0.15 * (age - 72) - 0.4 * (education - 16) + sd * rng.standard_normal(), 0, 85
        )
    )
    mu, sd = CDRSB[dx]
    if dx == "CN":
        cdrsb = 0.5 if rng.random() < 0.07 else 0.0
    elif dx == "MCI":
        cdrsb = float(np.clip(round(2 * (mu + 2.0 * ds + sd * rng.standard_normal())) / 2, 0.5, 4.5))
    else:
        cdrsb = float(np.clip(round(2 * (mu + 3.0 * ds + sd * rng.standard_normal())) / 2, 1.0, 10.0))
    adas_missing = rng.random() < ADAS13_MISSING

    phase_i = int(rng.choice(len(PHASES), p=PHASE_SHARES[dx]))
    phase = PHASES[phase_i]
    has_csf, has_fdg, has_av45, has_apoe = (rng.random(4) < np.asarray(AVAILABLE[dx][phase_i])).tolist()
    field_strength = 1.5 if phase == "ADNI1" and rng.random() >= P_3T_ADNI1 else 3.0
    icv_mean, icv_sd = ICV_MEAN_SD[female]
    icv = float(np.clip(rng.normal(icv_mean, icv_sd), 1.0, 2.2))

    dx_bl = _dx_bl(dx, phase, severity)
    row = {
        "PTID": ptid(index, n),
        "VISCODE": "bl",
        "DX_bl": dx_bl,
        "DX": {"CN": "CN", "MCI": "MCI", "AD": "Dementia"}[dx],
        "AGE": f"{age:.1f}",
        "PTGENDER": "Female" if female else "Male",
        "PTEDUCAT": str(education),
        "APOE4": str(apoe4) if has_apoe else "",
        "ABETA": _censored(abeta, "ABETA", 1) if has_csf else "",
        "TAU": _censored(tau, "TAU", 2) if has_csf else "",
        "PTAU": _censored(ptau, "PTAU", 2) if has_csf else "",
        "FDG": f"{fdg:.4f}" if has_fdg else "",
        "AV45": f"{av45:.4f}" if has_av45 else "",
        "MMSE": str(mmse),
        "ADAS13": "" if adas_missing else f"{round(3 * adas) / 3:.2f}",
        "CDRSB": f"{cdrsb:.1f}",
    }
    latent = {
        "PTID": row["PTID"],
        "index": index,
        "dx": dx,
        "female": female,
        "age": age,
        "apoe4": apoe4,
        "amyloid": amyloid,
        "severity": round(severity, 4),
        "phase": phase,
        "field_strength": field_strength,
        "icv_l": round(icv, 4),
    }
    return row, latent
