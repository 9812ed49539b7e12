"""Writing a synthetic cohort directory (docs/architecture.md, "Cohort on disk").

    COHORT_DIR/
      cohort.csv                 ADNIMERGE columns, one baseline row per subject, PTIDs SYN_0001...
      images/SYN_0001.nii.gz     T1, int16, MNI152 (sform/qform code 4), the hippocampal box or whole brain
      truth/SYN_0001.nii.gz      planted disease log-volume change per voxel (float32, same grid)
      truth/SYN_0001_age.nii.gz  control: normal ageing only
      truth/SYN_0001_anatomy.nii.gz  control: individual anatomical variation only
      truth/subjects.csv         latent truth per subject (amyloid, severity, study phase, field strength,
                                 ICV, interaction terms, structure volumes measured through the warped atlas)
      cohort.json                provenance: "source": "synthetic", generator version, seed, every knob

Subjects stream to disk one at a time (memory does not grow with N), in worker processes if asked; each
subject depends only on (seed, index, knobs), so the bytes are the same whatever the number of workers.
``cohort.json`` is written last: a directory without it is an unfinished run.
"""

from __future__ import annotations

import multiprocessing
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from hyperfusion import __version__
from hyperfusion.data.cohort import METADATA_FILE, read_cohort_metadata
from hyperfusion.data.synthetic.anatomy import REGIONS
from hyperfusion.data.synthetic.geometry import HIPPOCAMPAL_BOX_MM, output_grid
from hyperfusion.data.synthetic.records import CSV_COLUMNS
from hyperfusion.data.synthetic.writer import write_csv, write_json, write_nifti
from hyperfusion.errors import DataError

GENERATOR_VERSION = "1.0.0"
# The brain-age task's world (its ageing model) has a version of its own, recorded in brain-age cohorts only:
# bumping it makes stale brain-age cohorts regenerate while AD cohorts, and their bytes, stay as they are.
# 2: cortical, lobar and white-matter ageing, a measured ageing signal strong enough to read age within ~5 years.
BRAIN_AGE_WORLD_VERSION = 2
NOTICE = (
    "Synthetic data generated from the ICBM152 2009a template by hyperfusion; not real patients, "
    "not ADNI data. Research use only."
)
_DESCRIPTION = f"hyperfusion synthetic v{GENERATOR_VERSION} - not a real person"


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of a synthetic cohort.

    ``n`` subjects; ``seed`` (>= 0); ``task`` "ad" (CN / MCI / AD) or "brain_age" (healthy, ages in
    ``age_range`` years, default 20-90); ``voxel_size`` of the written scans (mm); ``whole_brain`` writes the
    template's field of view instead of the hippocampal box; ``interaction_strength`` is lambda in [0, 1].
    """

    n: int
    seed: int = 0
    task: str = "ad"
    voxel_size: float = 2.0
    whole_brain: bool = False
    interaction_strength: float = 1.0
    age_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise DataError(f"--n must be at least 1, got {self.n}")
        if self.seed < 0:
            raise DataError(f"--seed must be >= 0, got {self.seed}")
        if self.task not in ("ad", "brain_age"):
            raise DataError(f"--task must be 'ad' or 'brain_age', got {self.task!r}")
        if not 0.5 <= self.voxel_size <= 8.0:
            raise DataError(f"--voxel-size must be between 0.5 and 8 mm, got {self.voxel_size}")
        if not 0.0 <= self.interaction_strength <= 1.0:
            raise DataError(f"--interaction-strength must be in [0, 1], got {self.interaction_strength}")
        if self.task == "ad" and self.age_range is not None:
            raise DataError("--age-range applies to --task brain_age only (AD ages follow ADNI)")
        if self.task == "brain_age":
            lo, hi = self.age_range or (20.0, 90.0)
            if not 18.0 <= lo < hi <= 95.0:
                raise DataError(f"--age-range must satisfy 18 <= low < high <= 95, got {lo} {hi}")
            object.__setattr__(self, "age_range", (float(lo), float(hi)))
        object.__setattr__(self, "voxel_size", float(self.voxel_size))
        object.__setattr__(self, "interaction_strength", float(self.interaction_strength))

    def knobs(self) -> dict:
        d = asdict(self)
        d["age_range"] = list(self.age_range) if self.age_range else None
        return d

    def subject_kwargs(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "n"}


def cohort_metadata(config: SynthConfig) -> dict:
    """The content of ``cohort.json`` (no timestamps: it is part of the byte-reproducible output)."""
    from hyperfusion.data.synthetic import effects, records, subject
    from hyperfusion.data.synthetic.fields import load_fields  # scipy: not needed to read a config

    fields = load_fields()
    grid = output_grid(config.voxel_size, config.whole_brain)
    meta = {
        "source": "synthetic",
        "notice": NOTICE,
        "generator": "hyperfusion.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "hyperfusion_version": __version__,
        "seed": config.seed,
        "n": config.n,
        "task": config.task,
        "label_column": "DX_bl" if config.task == "ad" else "AGE",
        "knobs": config.knobs(),
        "geometry": {
            "space": "MNI152NLin2009aSym",
            "field_of_view": "whole_brain" if config.whole_brain else "hippocampal_box",
            "box_mm": None if config.whole_brain else [list(b) for b in HIPPOCAMPAL_BOX_MM],
            "voxel_size_mm": grid.spacing,
            "shape": list(grid.shape),
            "affine": grid.affine.tolist(),
        },
        "files": {
            "image": "images/{PTID}.nii.gz",
            "truth_disease": "truth/{PTID}.nii.gz",
            "truth_age": "truth/{PTID}_age.nii.gz",
            "truth_anatomy": "truth/{PTID}_anatomy.nii.gz",
            "latent": "truth/subjects.csv",
        },
        "truth_units": (
            "planted log-volume change per voxel in the subject's space: negative where tissue was lost, "
            "positive where ventricles or CSF grew; the disease mask is truth < -0.02"
        ),
        "template": "ICBM152 2009a nonlinear symmetric (nilearn package data)",
        "atlas": fields.atlas_source,
        "fields": fields.key,
        "regions": [r.name for r in REGIONS],
        "region_gains_at_-0.25": [round(float(g), 4) for g in fields.gains(-0.25)],
        "model": {
            "mtl_disease_per_severity": effects.MTL_DISEASE,
            "ventricle_disease_per_severity": effects.VENTRICLE_DISEASE,
            "cortex_disease_per_severity": effects.CORTEX_DISEASE,
            "parietal_disease_per_severity": effects.PARIETAL_DISEASE,
            "ageing_rate_per_year_at_70": effects.AGEING_RATE,
            "ageing_tau_years": effects.AGEING_TAU,
            "anatomy_sd_and_lr_correlation": effects.ANATOMY_SD,
            "icv_mean_sd_l": {"female": records.ICV_MEAN_SD[True], "male": records.ICV_MEAN_SD[False]},
            "icv_reference_l": subject.ICV_REFERENCE_L,
            "random_displacement_rms_mm_and_lattice_mm": subject.RANDOM_DISPLACEMENTS,
            "diagnosis_shares": dict(zip(records.DIAGNOSES, records.DX_SHARES)),
            "study_phase_shares": {
                dx: dict(zip(records.PHASES, s)) for dx, s in records.PHASE_SHARES.items()
            },
        },
    }
    if config.task == "brain_age":
        from hyperfusion.data.synthetic.fields import load_ageing_fields

        model = meta["model"]
        for key in ("ageing_rate_per_year_at_70", "ageing_tau_years", "anatomy_sd_and_lr_correlation"):
            del model[key]  # the AD world's; brain age has its own
        model["brain_age_ageing_rate_at_70_tau_and_men_excess"] = effects.BRAIN_AGE_AGEING
        model["brain_age_sex_onset_years"] = effects.BRAIN_AGE_SEX_ONSET
        model["anatomy_sd_and_lr_correlation"] = effects.BRAIN_AGE_ANATOMY_SD
        model["cortex_sd"] = effects.BRAIN_AGE_CORTEX_SD
        model["wm_contrast_per_log_volume"] = subject.WM_CONTRAST_PER_LOG_VOLUME
        meta["brain_age_world"] = BRAIN_AGE_WORLD_VERSION
        meta["ageing_fields"] = load_ageing_fields().key
        meta["regions"] = [r.name for r in effects.plan_regions(config.task)]
    return meta


# --- worker side -----------------------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(config: SynthConfig, out_dir: str) -> None:
    import torch

    torch.set_num_threads(1)  # the workers are the parallelism; grid_sample in 3D is single-threaded anyway
    _WORKER["config"], _WORKER["out"] = config, Path(out_dir)


def _write_subject(index: int) -> tuple[dict, dict]:
    from hyperfusion.data.synthetic.subject import synthesize_subject

    config: SynthConfig = _WORKER["config"]
    out: Path = _WORKER["out"]
    s = synthesize_subject(index, config.n, **config.subject_kwargs())
    pid, affine = s.row["PTID"], s.grid.affine
    write_nifti(out / "images" / f"{pid}.nii.gz", s.image, affine, _DESCRIPTION)
    write_nifti(out / "truth" / f"{pid}.nii.gz", s.truth["disease"], affine, _DESCRIPTION + " (disease)")
    write_nifti(out / "truth" / f"{pid}_age.nii.gz", s.truth["age"], affine, _DESCRIPTION + " (age)")
    write_nifti(
        out / "truth" / f"{pid}_anatomy.nii.gz", s.truth["anatomy"], affine, _DESCRIPTION + " (anatomy)"
    )
    latent = {**s.latent, **{f"{k}_ml": round(v, 4) for k, v in s.volumes_ml.items()}}
    return s.row, latent


def write_subject_scan(config: SynthConfig, ptid: str, path: str | Path) -> Path:
    """Write one subject's T1 of the cohort of ``config`` to ``path``, byte for byte the file
    :func:`generate_cohort` writes as ``images/PTID.nii.gz`` (subjects are generated independently), so a
    dashboard can show one subject without generating the whole cohort."""
    from hyperfusion.data.synthetic.subject import synthesize_subject

    match = re.fullmatch(r"SYN_(\d+)", ptid)
    index = int(match.group(1)) - 1 if match else -1
    if not 0 <= index < config.n:
        raise DataError(f"{ptid!r} is not a subject of this synthetic cohort (SYN_0001 … SYN_{config.n:04d})")
    s = synthesize_subject(index, config.n, **config.subject_kwargs())
    if s.row["PTID"] != ptid:  # the numbering is the generator's; never hand out another subject's scan
        raise DataError(f"subject {index} of the generator is {s.row['PTID']}, not {ptid}")
    write_nifti(Path(path), s.image, s.grid.affine, _DESCRIPTION)
    return Path(path)


# --- driver ------------------------------------------------------------------------------------------------------
def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if (out / METADATA_FILE).exists():
            try:
                source = read_cohort_metadata(out).get("source")
            except DataError:
                source = None
            if source != "synthetic":
                raise DataError(f"{out} holds a cohort that is not synthetic; refusing to overwrite it")
        elif not ((out / "images").is_dir() and (out / "truth").is_dir()):
            raise DataError(f"{out} is not empty and is not a synthetic cohort; choose an empty directory")
        for name in ("images", "truth"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("cohort.csv", "cohort.json"):
            (out / name).unlink(missing_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)


def generate_cohort(
    out_dir: str | Path, config: SynthConfig, workers: int = 1, progress: bool = True
) -> Path:
    """Write the cohort of ``config`` to ``out_dir`` (replacing an earlier synthetic cohort there).

    ``workers`` processes share the subjects; the output is byte-identical for any number. Shows a tqdm
    progress bar on stderr when ``progress``. Returns the cohort directory.
    """
    from tqdm import tqdm

    if workers < 1:
        raise DataError(f"--workers must be at least 1, got {workers}")
    out = Path(out_dir)
    _prepare(out)
    from hyperfusion.data.synthetic.fields import load_fields

    load_fields()  # build the field cache once, before any worker looks for it
    results: list[tuple[dict, dict]] = []
    bar = tqdm(total=config.n, desc="synth", unit="subject", disable=not progress)
    try:
        if workers == 1:
            _init_worker(config, str(out))
            for i in range(config.n):
                results.append(_write_subject(i))
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork: torch's thread pools are not fork-safe
            with ctx.Pool(workers, initializer=_init_worker, initargs=(config, str(out))) as pool:
                for res in pool.imap(_write_subject, range(config.n), chunksize=1):
                    results.append(res)
                    bar.update()
    finally:
        bar.close()
    rows = [r for r, _ in results]
    latents = [lat for _, lat in results]
    write_csv(out / "cohort.csv", list(CSV_COLUMNS), rows)
    write_csv(out / "truth" / "subjects.csv", list(latents[0]), latents)
    write_json(out / "cohort.json", cohort_metadata(config))
    return out


def read_config(cohort_dir: str | Path) -> SynthConfig | None:
    """The configuration a finished synthetic cohort was generated with, or None."""
    try:
        meta = read_cohort_metadata(cohort_dir)
        if meta.get("source") != "synthetic" or meta.get("generator_version") != GENERATOR_VERSION:
            return None
        if meta.get("task") == "brain_age" and meta.get("brain_age_world") != BRAIN_AGE_WORLD_VERSION:
            return None  # an older brain-age world: regenerate rather than reuse
        knobs = dict(meta["knobs"])
        knobs["age_range"] = tuple(knobs["age_range"]) if knobs.get("age_range") else None
        return SynthConfig(**knobs)
    except (ValueError, KeyError, TypeError, DataError):
        return None


def ensure_cohort(out_dir: str | Path, config: SynthConfig, workers: int = 1, progress: bool = True) -> Path:
    """The cohort of ``config`` at ``out_dir``: kept if already there (same knobs, generator version and
    atrophy fields; for brain age also the same ageing world and white-matter fields), generated otherwise."""
    from hyperfusion.data.synthetic.fields import AGEING_FIELDS_VERSION, fields_key

    out = Path(out_dir)
    if read_config(out) == config and (out / "cohort.csv").exists():
        meta = read_cohort_metadata(out)
        if meta.get("fields") == fields_key()[0] and (
            config.task != "brain_age"
            or meta.get("ageing_fields") == f"{AGEING_FIELDS_VERSION}-{meta['fields']}"
        ):
            return out
    return generate_cohort(out, config, workers=workers, progress=progress)
