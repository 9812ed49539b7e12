"""One synthetic subject: its record, its warped template scan and its ground-truth maps, in memory.

The subject's map from scan to template, ``y = psi(x)``, is a head-size scaling about the brain's centre
followed by the exponential of one velocity field:

    v = -sum_r e_r(a_r) v_r + smooth random field      (atrophy plan a_r, calibrated strengths e_r, fields v_r)

The scan, the tissue maps, the brain mask, the measured structures and the ground-truth maps are all sampled
at ``psi(x)``, so they move together. Ground-truth maps hold the planted log-volume change per voxel
(negative: tissue lost; positive: ventricles or CSF grown): ``disease``, and the controls ``age`` and
``anatomy`` (individual variation, head size excluded: it is a global scaling, recorded as ``icv_l``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy import ndimage

from hyperfusion.data.synthetic.anatomy import TEMPLATE_GRID, load_template
from hyperfusion.data.synthetic.deform import divergence, exponentiate, identity_index, smooth_random_field
from hyperfusion.data.synthetic.effects import (
    AtrophyPlan,
    atrophy_plan,
    brain_age_trajectory,
    stratified_normal,
)
from hyperfusion.data.synthetic.fields import AgeingFields, AtrophyFields, load_ageing_fields, load_fields
from hyperfusion.data.synthetic.geometry import Grid, grid_covering, output_grid, sample
from hyperfusion.data.synthetic.records import sample_subject, subject_rng
from hyperfusion.data.synthetic.scanner import STREAM_SCANNER, acquire, bias_field, scanner_settings

STREAM_ANATOMY, STREAM_DISPLACEMENT = 1, 2
ICV_REFERENCE_L = 1.50  # the template stands for a head of average size
# Smooth random displacements (docs/synthetic.md: about 2 mm at a 32 mm scale, 0.5 mm at 12 mm): RMS length (mm)
# and lattice spacing (mm; the noise is smoothed over one lattice spacing).
RANDOM_DISPLACEMENTS = ((2.0, 8.0), (0.5, 3.0))
_FIELD_MARGIN_MM = 10.0
_MEASURE_MARGIN_MM = 12.0  # head size (up to +-10 %) and displacements move structures by a few mm
_TEMPLATE_MARGIN_MM = 24.0
TRUTH_MAPS = ("disease", "age", "anatomy")
# Brain-age task: ageing white matter loses T1 signal relative to grey matter (the GM/WM contrast falls with
# age). The scanner's GM/WM intensity ratio rises by this much per unit of white-matter log-volume lost
# relative to age 70 (about +0.04 at 90 and -0.04 at 20, against a scanner-to-scanner sd of 0.02).
WM_CONTRAST_PER_LOG_VOLUME = -0.25


@dataclass
class SyntheticSubject:
    """A generated subject. Arrays are on ``grid``; ``truth`` maps are float32 log-volume changes."""

    row: dict[str, str]
    latent: dict
    plan: AtrophyPlan
    grid: Grid
    image: np.ndarray  # int16 T1
    truth: dict[str, np.ndarray]
    volumes_ml: dict[str, float]


@dataclass
class RenderContext:
    """Everything a process needs to render subjects on one output grid; built once per process."""

    out_grid: Grid
    fields: AtrophyFields
    field_grid: Grid
    velocity: np.ndarray  # (R, 3, ...) mm per unit log-volume, on field_grid
    source: np.ndarray  # (R, ...)
    measure_grid: Grid  # the part of the field grid around the measured structures
    measure: np.ndarray  # (M, ...) on measure_grid
    measure_points: np.ndarray
    field_points: np.ndarray
    identity: np.ndarray
    lattices: tuple[Grid, ...]
    template_grid: Grid
    template: np.ndarray  # (4, ...) t1, gm, wm, mask, smoothed for the output voxel size
    # Brain-age task only: the white-matter fields and whole-brain measures, and their grid (a crop of the
    # field grid around the brain).
    ageing: AgeingFields | None = None
    ageing_velocity: np.ndarray | None = None
    ageing_source: np.ndarray | None = None
    ageing_measure_grid: Grid | None = None
    ageing_measure: np.ndarray | None = None
    ageing_measure_points: np.ndarray | None = None


def _lattice(spacing: float, fields: AtrophyFields) -> Grid:
    g = fields.grid
    bounds = [(o - spacing, o + g.spacing * (n - 1) + spacing) for o, n in zip(g.origin, g.shape)]
    return grid_covering(bounds, spacing)


@lru_cache(maxsize=2)
def render_context(voxel_size: float, whole_brain: bool, task: str = "ad") -> RenderContext:
    fields = load_fields()
    out = output_grid(voxel_size, whole_brain)
    lo = out.origin
    hi = tuple(o + out.spacing * (n - 1) for o, n in zip(out.origin, out.shape))
    # The field grid covers the written grid and every measured structure (so that volumes are measured
    # whole, e.g. the ventricles that reach above the hippocampal box), with a margin for the displacements.
    measured = np.argwhere(np.asarray(fields.measure).max(axis=0) > 0)
    m_lo = np.asarray(fields.grid.origin) + fields.grid.spacing * measured.min(axis=0)
    m_hi = np.asarray(fields.grid.origin) + fields.grid.spacing * measured.max(axis=0)
    fgrid, fsl = fields.grid.crop(
        tuple(min(a, b) - _FIELD_MARGIN_MM for a, b in zip(lo, m_lo)),
        tuple(max(a, b) + _FIELD_MARGIN_MM for a, b in zip(hi, m_hi)),
    )
    mgrid, msl = fields.grid.crop(tuple(m_lo - _MEASURE_MARGIN_MM), tuple(m_hi + _MEASURE_MARGIN_MM))
    tgrid, tsl = TEMPLATE_GRID.crop(
        tuple(v - _TEMPLATE_MARGIN_MM for v in lo), tuple(v + _TEMPLATE_MARGIN_MM for v in hi)
    )
    t = load_template()
    # The scanner's point-spread function: a Gaussian of about the output voxel's width over the 1 mm template.
    sigma_mm = 0.45 * np.sqrt(max(voxel_size**2 - 1.0, 0.0))
    template = np.stack(
        [
            ndimage.gaussian_filter(t[k][tsl], sigma_mm) if sigma_mm > 0 else np.array(t[k][tsl])
            for k in ("t1", "gm", "wm", "mask")
        ]
    ).astype(np.float32)
    extra = {}
    if task == "brain_age":
        ageing = load_ageing_fields()
        brain = np.argwhere(np.asarray(ageing.measure[-1]) > 0)  # "brain": grey + white matter
        b_lo = np.asarray(fields.grid.origin) + fields.grid.spacing * brain.min(axis=0)
        b_hi = np.asarray(fields.grid.origin) + fields.grid.spacing * brain.max(axis=0)
        agrid, asl = fields.grid.crop(tuple(b_lo - _MEASURE_MARGIN_MM), tuple(b_hi + _MEASURE_MARGIN_MM))
        extra = {
            "ageing": ageing,
            "ageing_velocity": ageing.velocity[(slice(None), slice(None), *fsl)],
            "ageing_source": ageing.source[(slice(None), *fsl)],
            "ageing_measure_grid": agrid,
            "ageing_measure": np.array(ageing.measure[(slice(None), *asl)], order="C"),
            "ageing_measure_points": agrid.world_points(),
        }
    return RenderContext(
        out_grid=out,
        fields=fields,
        field_grid=fgrid,
        # Views of the memory-mapped cache: worker processes share its pages.
        velocity=fields.velocity[(slice(None), slice(None), *fsl)],
        source=fields.source[(slice(None), *fsl)],
        measure_grid=mgrid,
        measure=np.array(fields.measure[(slice(None), *msl)], order="C"),
        measure_points=mgrid.world_points(),
        field_points=fgrid.world_points(),
        identity=identity_index(fgrid.shape),
        lattices=tuple(_lattice(spacing, fields) for _, spacing in RANDOM_DISPLACEMENTS),
        template_grid=tgrid,
        template=template,
        **extra,
    )


def _weighted_sum(weights: np.ndarray, stack: np.ndarray) -> np.ndarray:
    """sum_r weights[r] * stack[r], accumulated in a fixed order (deterministic whatever the thread count)."""
    out = np.zeros(stack.shape[1:], dtype=np.float32)
    for w, field in zip(weights, stack):
        if w != 0.0:
            out += np.float32(w) * field
    return out


def _measure_volumes(ctx: RenderContext, u_mm: np.ndarray, centre: np.ndarray, scale: np.float32) -> dict:
    """Volumes (ml) of the measured structures in the subject: the atlas's partial-volume masks carried
    through the subject's map, integrated on the 2 mm field grid around them (whatever grid the scan is
    written on). Brain-age cohorts also measure the cortex, lobes, white matter and total brain tissue."""
    out = {}
    stages = [(ctx.measure_grid, ctx.measure_points, ctx.measure, ctx.fields.measured_names)]
    if ctx.ageing is not None:
        stages.append(
            (
                ctx.ageing_measure_grid,
                ctx.ageing_measure_points,
                ctx.ageing_measure,
                ctx.ageing.measured_names,
            )
        )
    for grid, points, masks, names in stages:
        z = centre + (points - centre) / scale
        y = z + np.moveaxis(sample(u_mm, ctx.field_grid, z, "border"), 0, -1)
        warped = sample(masks, grid, y)
        voxel_ml = grid.spacing**3 / 1000.0
        out.update({name: float(warped[i].sum(dtype=np.float64) * voxel_ml) for i, name in enumerate(names)})
    return out


_SLAB_VOXELS = 1_000_000  # output voxels sampled at once: bounds memory for 1 mm whole brains


def _pull_back(
    ctx: RenderContext,
    u_mm: np.ndarray,
    centre: np.ndarray,
    scale: np.float32,
    truth_src: np.ndarray,
    bias: tuple[float, ...],
) -> np.ndarray:
    """Everything sampled on the output grid: (8, X, Y, Z) = template t1, gm, wm, mask, the three truth maps
    and the scanner's bias field, computed in slabs along x so that memory does not grow with the grid."""
    g = ctx.out_grid
    out = np.empty((8, *g.shape), dtype=np.float32)
    step = max(1, _SLAB_VOXELS // (g.shape[1] * g.shape[2]))
    for x0 in range(0, g.shape[0], step):
        x1 = min(g.shape[0], x0 + step)
        slab = Grid((x1 - x0, *g.shape[1:]), g.spacing, (g.origin[0] + g.spacing * x0, *g.origin[1:]))
        points = slab.world_points()
        z = centre + (points - centre) / scale
        y = z + np.moveaxis(sample(u_mm, ctx.field_grid, z, "border"), 0, -1)
        out[0:4, x0:x1] = sample(ctx.template, ctx.template_grid, y)
        out[4:7, x0:x1] = sample(truth_src, ctx.field_grid, y)
        out[7, x0:x1] = bias_field(points, centre, bias)
    return out


def synthesize_subject(
    index: int,
    n: int,
    *,
    seed: int = 0,
    task: str = "ad",
    voxel_size: float = 2.0,
    whole_brain: bool = False,
    interaction_strength: float = 1.0,
    age_range: tuple[float, float] | None = None,
) -> SyntheticSubject:
    """Subject ``index`` (0-based) of a cohort of ``n``: a pure function of its arguments.

    ``voxel_size`` in mm; ``whole_brain`` picks the template's field of view instead of the hippocampal box;
    ``interaction_strength`` is lambda in [0, 1]; ``age_range`` (years) only for ``task="brain_age"``.
    """
    ctx = render_context(float(voxel_size), bool(whole_brain), task)
    row, latent = sample_subject(seed, index, n, task, age_range)
    plan = atrophy_plan(
        latent,
        interaction_strength,
        task,
        subject_rng(seed, index, STREAM_ANATOMY),
        ventricle_common=stratified_normal(seed, index),
    )

    # The velocity field on the field grid (mm), atrophy plus smooth anatomical variability.
    rng_disp = subject_rng(seed, index, STREAM_DISPLACEMENT)
    v_rand = np.zeros((3, *ctx.field_grid.shape), dtype=np.float32)
    for (rms, _), lattice in zip(RANDOM_DISPLACEMENTS, ctx.lattices):
        v_rand += sample(smooth_random_field(rng_disp, lattice, rms), lattice, ctx.field_points, "border")
    n_main = len(ctx.fields.curves)
    weights = -ctx.fields.strengths(plan.total[:n_main])
    velocity = v_rand + _weighted_sum(weights, ctx.velocity)
    if ctx.ageing is not None:  # brain age: the white-matter fields
        velocity += _weighted_sum(-ctx.ageing.strengths(plan.total[n_main:]), ctx.ageing_velocity)
    spacing = np.float32(ctx.field_grid.spacing)
    u_mm = exponentiate(velocity / spacing, ctx.identity) * spacing

    # Scan -> template: undo head size about the brain's centre, then follow the displacement.
    scale = np.float32((latent["icv_l"] / ICV_REFERENCE_L) ** (1.0 / 3.0))
    centre = np.asarray(ctx.fields.brain_centre_mm, dtype=np.float32)
    truth_src = np.stack(
        [_weighted_sum(a[:n_main], ctx.source) for a in (plan.disease, plan.age, plan.anatomy)]
    )
    if ctx.ageing is not None:
        for i, a in enumerate((plan.disease, plan.age, plan.anatomy)):
            truth_src[i] += _weighted_sum(a[n_main:], ctx.ageing_source)
    # The random velocity's own volume change: flowing along +v shrinks where div v > 0.
    truth_src[2] -= divergence(v_rand, float(spacing))
    settings = scanner_settings(latent["field_strength"], subject_rng(seed, index, STREAM_SCANNER))
    if task == "brain_age":  # ageing white matter: less GM/WM contrast (the same random draws as before)
        age, female = float(latent["age"]), bool(latent["female"])
        wm_change = brain_age_trajectory("white_matter", age, female, interaction_strength)
        settings = replace(settings, gm_ratio=settings.gm_ratio + WM_CONTRAST_PER_LOG_VOLUME * wm_change)
    pulled = _pull_back(ctx, u_mm, centre, scale, truth_src, settings.bias)
    t1, gm, wm, mask = pulled[:4]
    pulled[4:7] *= mask > 0.5  # truth only inside the brain
    truth = {name: pulled[4 + i] for i, name in enumerate(TRUTH_MAPS)}
    volumes = _measure_volumes(ctx, u_mm, centre, scale)
    image = acquire(
        {"t1": t1, "gm": gm, "wm": wm, "mask": mask},
        pulled[7],
        ctx.out_grid.spacing,
        settings,
        subject_rng(seed, index, STREAM_SCANNER + 10),
    )
    latent = {
        **latent,
        "limbic_share": round(plan.limbic_share, 6),
        "left_share": round(plan.left_share, 6),
        "sex_apoe_factor": round(plan.sex_apoe_factor, 6),
        **({"scanner_gm_ratio": round(settings.gm_ratio, 4)} if task == "brain_age" else {}),
        "scanner_wm_level": round(settings.wm_level, 3),
        "scanner_noise_fraction": round(settings.noise_fraction, 5),
    }
    return SyntheticSubject(row, latent, plan, ctx.out_grid, image, truth, volumes)
