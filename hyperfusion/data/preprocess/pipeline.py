"""One subject from a raw scan to what the models read: ``hyperfusion preprocess``.

Steps (each timed and reported in ``qc.json``):

1. read: a NIfTI file, or a DICOM series folder converted with dcm2niix (the binary inside its PyPI wheel);
2. reorient to RAS (nibabel); optional N4 bias-field correction (SimpleITK);
3. brain extraction with deepbet (a 3-D U-Net; its TorchScript weights ship inside the wheel; CPU);
4. affine registration of the extracted brain to the ICBM152 2009a template of nilearn (SimpleITK: a rigid
   then an affine stage, Mattes mutual information, against the 2 mm template, the scan binned to 2 mm);
5. resampling onto the 1 mm template grid; quality measures and a picture.

Writes ``scan.nii.gz`` (skull-stripped T1 on the MNI grid, sform/qform code MNI), ``brain_mask.nii.gz``,
``transform.tfm`` (the ITK transform, readable by ANTs, ITK and SimpleITK: it maps template points, LPS mm, to
the input scan's physical points), ``qc.json`` and ``qc.png``. What it does not do: nonlinear registration,
longitudinal processing, other contrasts than T1.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from hyperfusion.data.nifti import load_nifti
from hyperfusion.data.preprocess.template import brain_mask as template_mask
from hyperfusion.data.preprocess.template import template
from hyperfusion.errors import DataError, HyperFusionError

Progress = Callable[[float, str], None]

#: Thresholds of the quality verdict in qc.json (README: "Preprocessing real scans", with the measurements).
#: Dice of the extracted brain mask with the template's, after registration: good extractions 0.93–0.97,
#: a registered head whose skull was left on 0.60–0.66.
MIN_MASK_DICE = 0.88
#: Correlation with the template inside its brain mask (1 mm): the template itself 1.0, real brains
#: 0.60–0.85 when registered, 0.3 and below when the registration failed.
MIN_TEMPLATE_NCC = 0.45
#: The model box (the AD default) must be mostly brain: about 0.70 on a registered brain, 0.28 on a
#: whole-head scan in scanner space.
MIN_BOX_BRAIN = 0.5

OUTPUTS = ("scan.nii.gz", "brain_mask.nii.gz", "transform.tfm", "qc.json", "qc.png")
_LPS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class PreprocessResult:
    out_dir: Path
    qc: dict

    @property
    def scan(self) -> Path:
        return self.out_dir / "scan.nii.gz"

    @property
    def passed(self) -> bool:
        return bool(self.qc["verdict"]["passed"])


def _steps(progress: Progress | None):
    clock = {"t": time.perf_counter()}
    timings: dict[str, float] = {}

    def step(name: str, fraction: float) -> None:
        now = time.perf_counter()
        if timings or clock.get("name"):
            timings[clock["name"]] = round(now - clock["t"], 2)
        clock.update(t=now, name=name)
        if progress is not None:
            progress(fraction, name)

    def done() -> dict[str, float]:
        if clock.get("name"):
            timings[clock["name"]] = round(time.perf_counter() - clock["t"], 2)
        return timings

    return step, done


def preprocess_scan(
    source: str | Path,
    out_dir: str | Path,
    *,
    n4: bool = False,
    skull_strip: bool = True,
    threads: int = 2,
    progress: Progress | None = None,
) -> PreprocessResult:
    """Preprocess one subject (see the module docstring) into ``out_dir``; returns the QC record.

    Args:
        source: a ``.nii`` / ``.nii.gz`` file, or a folder holding one DICOM series.
        out_dir: where the outputs go (created).
        n4: run N4 bias-field correction first (slower; useful on 3 T scans with strong shading).
        skull_strip: False for a scan that is already skull-stripped.
        threads: CPU threads for deepbet (torch) and SimpleITK.
        progress: called as ``progress(fraction_done, step_name)``.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    step, done = _steps(progress)
    step("read", 0.0)
    img, origin = _read(Path(source), out)
    info = _describe(img, origin)
    step("reorient", 0.05)
    ras = nib.as_closest_canonical(img)
    data = np.asarray(ras.dataobj, dtype=np.float32)
    if n4:
        step("n4 bias correction", 0.1)
        data = _n4(data, ras.affine, threads)
    step("brain extraction", 0.2)
    if skull_strip:
        mask = _extract_brain(nib.Nifti1Image(data, ras.affine), threads)
    else:  # already stripped: the brain is what is not (near) zero
        positive = data[data > 0]
        mask = data > (0.01 * float(np.percentile(positive, 99)) if positive.size else 0.0)
    if mask.sum() < 1000:
        raise DataError(f"{source}: brain extraction found no brain; is this a T1-weighted head scan?")
    info["input_signal_outside_brain"] = _outside_share(data, mask)
    brain = np.where(mask, data, 0).astype(np.float32)
    step("registration", 0.45)
    transform = _register(brain, ras.affine, threads)
    step("resampling", 0.85)
    scan, out_mask = _resample(brain, mask, ras.affine, transform)
    _write(scan, out / "scan.nii.gz", np.float32)
    _write(out_mask, out / "brain_mask.nii.gz", np.uint8)
    import SimpleITK as sitk

    sitk.WriteTransform(transform, str(out / "transform.tfm"))
    step("quality measures", 0.93)
    qc = quality(out / "scan.nii.gz", out_mask)
    qc["input"] = info
    qc["settings"] = {"n4": n4, "skull_strip": skull_strip, "threads": threads}
    timings = done()
    qc["seconds"] = {**timings, "total": round(time.perf_counter() - start, 2)}
    qc["peak_memory_mb"] = round(_peak_rss_mb(), 1)
    qc["versions"] = versions()
    qc["outputs"] = list(OUTPUTS)
    qc_picture(out / "scan.nii.gz", out / "qc.png", title=f"{Path(source).name}: {qc['verdict']['summary']}")
    (out / "qc.json").write_text(json.dumps(qc, indent=2))
    if progress is not None:
        progress(1.0, "done")
    return PreprocessResult(out, qc)


def preprocess_bytes(raw: bytes, name: str, *, threads: int = 2, progress: Progress | None = None) -> dict:
    """:func:`preprocess_scan` of a scan held in memory (an upload): the pipeline's tools read and write files,
    so this step works in a private temporary folder, deleted as soon as the result is read back.

    Returns {"name": "<stem>_preprocessed.nii.gz", "scan": its bytes, "qc": the QC record, "png": the QC
    figure's bytes, "source_sha256": the input's hash}.
    """
    import hashlib
    import tempfile

    suffix = ".nii.gz" if raw[:2] == b"\x1f\x8b" else ".nii"
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name.rsplit(".", 1)[0]
    with tempfile.TemporaryDirectory(prefix="hyperfusion-upload-") as tmp:
        source = Path(tmp) / f"upload{suffix}"
        source.write_bytes(raw)
        result = preprocess_scan(source, Path(tmp) / "out", threads=threads, progress=progress)
        return {
            "name": f"{stem}_preprocessed.nii.gz",
            "scan": result.scan.read_bytes(),
            "qc": result.qc,
            "png": (result.out_dir / "qc.png").read_bytes(),
            "source_sha256": hashlib.sha256(raw).hexdigest(),
        }


# --- steps ------------------------------------------------------------------------------------------------
def _read(source: Path, out: Path) -> tuple[nib.Nifti1Image, dict]:
    if source.is_dir():
        return _from_dicom(source, out)
    if not source.is_file():
        raise DataError(f"{source}: no such file or folder; give a NIfTI file or a DICOM series folder")
    img = load_nifti(source)
    header = nib.load(source).header  # the codes as stored (load_nifti's copy may not keep them)
    return img, {
        "format": "nifti",
        "sform_code": int(header["sform_code"]),
        "qform_code": int(header["qform_code"]),
    }


def _from_dicom(folder: Path, out: Path) -> tuple[nib.Nifti1Image, dict]:
    exe = shutil.which("dcm2niix") or str(Path(sys.executable).parent / "dcm2niix")
    if not Path(exe).exists() and shutil.which("dcm2niix") is None:
        raise HyperFusionError("dcm2niix is not installed; pip install dcm2niix (see requirements.txt)")
    with tempfile.TemporaryDirectory(prefix=".dcm2niix-", dir=out) as tmp:
        run = subprocess.run(
            [exe, "-z", "y", "-b", "n", "-f", "series_%s", "-o", tmp, str(folder)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        files = sorted(Path(tmp).glob("*.nii.gz"))
        if run.returncode != 0 and not files:
            last = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DataError(
                f"{folder}: dcm2niix could not convert it ({last[0]}); is it a DICOM series folder?"
            )
        volumes = [(p, nib.load(p)) for p in files]
        volumes = [(p, v) for p, v in volumes if len(v.shape) == 3 or (len(v.shape) == 4 and v.shape[3] == 1)]
        if not volumes:
            raise DataError(f"{folder}: holds no 3-D DICOM series (dcm2niix found {len(files)} file(s))")
        path, _ = max(volumes, key=lambda pv: int(np.prod(pv[1].shape[:3])))
        img = load_nifti(path.read_bytes(), name=f"{folder} ({path.name})")
        version = run.stdout.split("version", 1)[-1].split()[0] if "version" in run.stdout else "unknown"
    return img, {"format": "dicom", "dcm2niix": version, "series_found": len(files)}


def _describe(img: nib.Nifti1Image, origin: dict) -> dict:
    zooms = [round(float(z), 3) for z in img.header.get_zooms()[:3]]
    return {
        **origin,
        "shape": [int(s) for s in img.shape[:3]],
        "voxel_mm": zooms,
        "orientation": "".join(nib.aff2axcodes(img.affine)),
    }


def _to_sitk(data: np.ndarray, affine: np.ndarray):
    """A RAS-canonical array and its affine as a SimpleITK image (ITK is LPS; arrays are (k, j, i))."""
    import SimpleITK as sitk

    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0), dtype=np.float32))
    image.SetSpacing([float(z) for z in zooms])
    image.SetOrigin([float(v) for v in _LPS @ affine[:3, 3]])
    image.SetDirection([float(v) for v in (_LPS @ (affine[:3, :3] / zooms)).ravel()])
    return image


def _n4(data: np.ndarray, affine: np.ndarray, threads: int) -> np.ndarray:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    image = _to_sitk(data, affine)
    small = sitk.Shrink(image, [4, 4, 4])
    mask = sitk.OtsuThreshold(small, 0, 1, 200)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([30, 20, 10])
    n4.Execute(small, mask)
    log_field = n4.GetLogBiasFieldAsImage(image)
    corrected = image / sitk.Exp(log_field)
    return sitk.GetArrayFromImage(corrected).transpose(2, 1, 0).astype(np.float32)


def _extract_brain(img: nib.Nifti1Image, threads: int) -> np.ndarray:
    """deepbet's brain mask (bool, on the RAS grid of ``img``)."""
    import warnings

    import torch

    torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, mask, _ = _bet().run(img)
    return np.asarray(mask.dataobj).reshape(img.shape[:3]) > 0


_BET: list = []


def _bet():
    """One deepbet network per process (loading its two TorchScript files takes about a second)."""
    if not _BET:
        from deepbet import BrainExtraction

        _BET.append(BrainExtraction(no_gpu=True))
    return _BET[0]


def _outside_share(data: np.ndarray, mask: np.ndarray) -> float:
    """Share of the input's signal voxels (above 10 % of its 99th percentile) outside the brain mask: about 0
    for a skull-stripped input, 0.4 and more for a whole head."""
    positive = data[data > 0]
    if positive.size == 0:
        return 0.0
    signal = data > 0.1 * float(np.percentile(positive, 99))
    return round(float((signal & ~mask).sum() / max(signal.sum(), 1)), 3)


def _register(brain: np.ndarray, affine: np.ndarray, threads: int):
    """Affine transform (template -> scan, ITK convention) of the extracted brain onto the 2 mm template."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    t2 = template(2)
    fixed = _to_sitk(np.asarray(t2.dataobj, dtype=np.float32), t2.affine)
    moving = _to_sitk(brain, affine)
    if max(moving.GetSpacing()) < 1.5:  # bin a 1 mm scan to 2 mm: the template's grid, 8× fewer voxels
        moving = sitk.BinShrink(moving, [2, 2, 2])
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )

    def stage(transform, shrink: list[int], smooth: list[float]):
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(32)
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(0.1, seed=1)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=2.0, minStep=1e-3, numberOfIterations=100, relaxationFactor=0.6
        )
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel(shrink)
        reg.SetSmoothingSigmasPerLevel(smooth)
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        reg.SetInitialTransform(transform, inPlace=False)
        return reg.Execute(fixed, moving)

    rigid = sitk.Euler3DTransform(_innermost(stage(initial, [4, 2], [4.0, 2.0])))
    affine_tx = sitk.AffineTransform(3)
    affine_tx.SetCenter(rigid.GetCenter())
    affine_tx.SetMatrix(rigid.GetMatrix())
    affine_tx.SetTranslation(rigid.GetTranslation())
    return sitk.AffineTransform(_innermost(stage(affine_tx, [2, 1], [2.0, 0.0])))


def _innermost(transform):
    import SimpleITK as sitk

    if isinstance(transform, sitk.CompositeTransform):
        return transform.GetNthTransform(transform.GetNumberOfTransforms() - 1)
    return transform


def transform_points(transform, points_ras: np.ndarray) -> np.ndarray:
    """Template points (N, 3), RAS mm -> where they lie in the input scan (RAS mm), through an ITK transform."""
    return np.array([_LPS @ np.asarray(transform.TransformPoint(tuple(_LPS @ p))) for p in points_ras])


def _resample(brain: np.ndarray, mask: np.ndarray, affine: np.ndarray, transform):
    """The brain (linear) and its mask (nearest) on the 1 mm template grid."""
    import SimpleITK as sitk

    t1 = template(1)
    reference = _to_sitk(np.zeros(t1.shape, np.float32), t1.affine)
    moving = _to_sitk(brain, affine)
    scan = sitk.Resample(moving, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    moved_mask = sitk.Resample(
        _to_sitk(mask.astype(np.float32), affine),
        reference,
        transform,
        sitk.sitkNearestNeighbor,
        0.0,
        sitk.sitkFloat32,
    )
    out_mask = sitk.GetArrayFromImage(moved_mask).transpose(2, 1, 0) > 0.5
    out_scan = np.where(out_mask, sitk.GetArrayFromImage(scan).transpose(2, 1, 0), 0).astype(np.float32)
    return np.clip(out_scan, 0, None), out_mask


def _write(data: np.ndarray, path: Path, dtype) -> None:
    img = nib.Nifti1Image(data.astype(dtype), template(1).affine)
    img.header.set_sform(template(1).affine, code=4)  # 4: MNI152
    img.header.set_qform(template(1).affine, code=4)
    img.header["descrip"] = b"hyperfusion preprocess: MNI152 2009a"
    nib.save(img, path)


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return own / 1024.0  # Linux reports kB


# --- quality ----------------------------------------------------------------------------------------------
def quality(scan_path: Path, mask: np.ndarray) -> dict:
    """The quality measures of a registered, skull-stripped scan on the 1 mm template grid (see the README)."""
    from hyperfusion.data.entry import check_scan
    from hyperfusion.data.geometry import ad_box, box_affine

    scan = np.asarray(nib.load(scan_path).dataobj, dtype=np.float32)
    tmask = np.asarray(template_mask(1).dataobj) > 0
    tvalues = np.asarray(template(1).dataobj, dtype=np.float32)
    dice = float(2 * (mask & tmask).sum() / max(mask.sum() + tmask.sum(), 1))
    x, y = scan[tmask].astype(np.float64), tvalues[tmask].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    ncc = float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-12))
    g = ad_box(2.0)
    idx = np.indices(g.box_shape).reshape(3, -1)
    world = box_affine(g)[:3, :3] @ idx + box_affine(g)[:3, 3:4]
    inv = np.linalg.inv(template(1).affine)
    ijk = np.rint(inv[:3, :3] @ world + inv[:3, 3:4]).astype(int)
    box_share = float(mask[ijk[0], ijk[1], ijk[2]].mean())
    template_share = float(tmask[ijk[0], ijk[1], ijk[2]].mean())
    entry = check_scan(scan_path)
    reasons = []
    if dice < MIN_MASK_DICE:
        reasons.append(f"brain-mask Dice with the template {dice:.2f} < {MIN_MASK_DICE} (brain extraction?)")
    if ncc < MIN_TEMPLATE_NCC:
        reasons.append(f"correlation with the template {ncc:.2f} < {MIN_TEMPLATE_NCC} (registration?)")
    if box_share < MIN_BOX_BRAIN:
        reasons.append(f"only {box_share:.0%} of the model box is brain (< {MIN_BOX_BRAIN:.0%})")
    reasons.extend(entry.problems)
    return {
        "box_brain_share": round(box_share, 3),
        "box_brain_share_template": round(template_share, 3),
        "template_ncc": round(ncc, 3),
        "mask_dice": round(dice, 3),
        "skull_present": bool(entry.measures.get("shell_signal", 0) > 0.15),
        "entry_check": entry.to_dict(),
        "thresholds": {
            "mask_dice": MIN_MASK_DICE,
            "template_ncc": MIN_TEMPLATE_NCC,
            "box_brain_share": MIN_BOX_BRAIN,
        },
        "verdict": {
            "passed": not reasons,
            "reasons": reasons,
            "summary": "QC passed" if not reasons else "QC FAILED: " + "; ".join(reasons),
        },
    }


def qc_picture(scan_path: Path, png: Path, title: str = "") -> None:
    """Three views of the registered scan with the template brain's outline (red) and its white-matter
    boundary (yellow) drawn over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scan = np.asarray(nib.load(scan_path).dataobj, dtype=np.float32)
    tmask = (np.asarray(template_mask(1).dataobj) > 0).astype(float)
    tvalues = np.asarray(template(1).dataobj, dtype=np.float32)
    inv = np.linalg.inv(template(1).affine)
    i, j, k = np.rint(inv[:3, :3] @ np.array([0.0, -18.0, 12.0]) + inv[:3, 3]).astype(int)
    views = [
        ("sagittal x = 0", np.s_[i, :, :]),
        ("coronal y = -18", np.s_[:, j, :]),
        ("axial z = 12", np.s_[:, :, k]),
    ]
    vmax = float(np.percentile(scan[scan > 0], 99.5)) if (scan > 0).any() else 1.0
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), facecolor="black")
    for ax, (name, sl) in zip(axes, views):
        ax.imshow(scan[sl].T, origin="lower", cmap="gray", vmin=0, vmax=vmax)
        ax.contour(tmask[sl].T, levels=[0.5], colors="red", linewidths=0.8)
        ax.contour(tvalues[sl].T, levels=[0.6], colors="yellow", linewidths=0.5)
        ax.set_title(name, color="white", fontsize=10)
        ax.axis("off")
    fig.suptitle(title + "\nred: MNI152 brain outline, yellow: its white matter", color="white", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=80, facecolor="black")
    plt.close(fig)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from hyperfusion import __version__

    out = {"hyperfusion": __version__, "template": "ICBM152 2009a (nilearn)"}
    for package in ("SimpleITK", "deepbet", "nibabel", "nilearn", "torch", "dcm2niix"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out
