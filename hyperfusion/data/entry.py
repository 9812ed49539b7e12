"""The entry check: is this scan something a model can read?

Every model was trained on skull-stripped T1 scans registered to MNI152. A scan straight from a scanner (whole
head, scanner coordinates), one moved by a failed registration, a label map or a CT is still a valid NIfTI file,
and the networks would still return confident numbers from it. :func:`check_scan` looks at the scan once, in
well under 0.2 s, and names what is wrong:

- the header says nothing about the space (sform and qform codes both 0, "unknown");
- implausible intensities: no signal, a handful of distinct values (a mask or label map), Hounsfield units;
- the scan does not cover the MNI152 brain, or its signal lies elsewhere (scanner space);
- a skull: signal in the shell 8–24 mm outside the template's brain, once the scan is aligned as well as a
  quick search allows;
- misalignment: a quick rigid search (rotations and shifts on a 4 mm grid) finds a pose that matches the
  template better; how far it moves the brain is the estimated misregistration.

The thresholds are set from measurements on real brains (Colin27 with and without skull, the template itself
moved by known rigid transforms) and the synthetic demo scans; the README lists them. Each problem is one line
that names ``hyperfusion preprocess``, the command that fixes it. An explicit override (``--allow-unregistered``,
the dashboard's "predict anyway") turns the refusal into a warning carried by every output.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from hyperfusion.data.nifti import NiftiSource, load_nifti
from hyperfusion.data.preprocess.template import COARSE_MM, coarse_reference
from hyperfusion.errors import DataError
from hyperfusion.files import atomic_write, cache_root

#: A scan whose field of view holds less of the MNI152 brain than this is not in MNI space.
MIN_BRAIN_COVERAGE = 0.05
#: ... and so is one whose signal fills less than this share of the brain it covers.
MIN_BRAIN_SIGNAL = 0.01
#: Share of the shell 8–24 mm outside the template brain that holds signal above which a skull is present.
#: Measured: skull-stripped scans 0.00–0.03 (Colin27, template, synthetic demo scans), whole heads ≥ 0.4
#: (Colin27 with skull 0.6).
MAX_SHELL_SIGNAL = 0.15
#: Estimated misregistration (mean displacement over the brain, mm) above which a scan is refused. Measured:
#: registered scans 0–4.6 mm (synthetic demo scans), 0 (Colin27); Colin27 rotated by 15° 12–13 mm,
#: shifted by 20 mm 20 mm, rotated by 5° and shifted by 5 mm 7.6 mm.
MAX_MISREGISTRATION_MM = 8.0
#: Correlation with the template (at the best pose found) below which a scan does not look like a T1 brain.
#: Registered T1 scans reach 0.71–0.99 on the 4 mm grid (synthetic demo scans, Colin27 0.83); inverted
#: contrast 0.32, noise 0.06.
MIN_T1_CORRELATION = 0.5
#: Fewer distinct non-zero values than this: a mask or label map, not an intensity image.
MIN_DISTINCT_VALUES = 16

_SIGNAL_FRACTION = 0.1  # of the 99th percentile: what counts as signal rather than background


@dataclass
class ScanCheck:
    """What :func:`check_scan` found: ``problems`` (one line each, empty when the scan passes) and the
    measures behind them (JSON-able)."""

    name: str
    problems: list[str] = field(default_factory=list)
    measures: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"passed": self.passed, "problems": list(self.problems), "measures": dict(self.measures)}


#: What to do, said once after the problem. ``{name}`` is the scan.
CLI_FIX = (
    "Run `hyperfusion preprocess --input {name} --out DIR` and use DIR/scan.nii.gz "
    "(or pass --allow-unregistered to predict anyway, with a warning)"
)
DASHBOARD_FIX = (
    "Preprocess it on this page (or with `hyperfusion preprocess`), or tick 'predict anyway' to get predictions "
    "marked as unreliable"
)


def check_scan(source: NiftiSource, *, name: str | None = None) -> ScanCheck:
    """Check that a scan is a skull-stripped T1 registered to MNI152 (see the module's docstring).

    ``source``: a path, the bytes of an upload or a nibabel image. A file that cannot be read at all raises
    :class:`DataError` (from :func:`~hyperfusion.data.nifti.load_nifti`); everything else is reported in the
    returned :class:`ScanCheck`, whose ``measures`` hold the figures (shares, correlation, mm, seconds).
    """
    start = time.perf_counter()
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "scan")
    codes = _header_codes(source)
    img = source if _is_loaded(source) else load_nifti(source, name=label)
    check = ScanCheck(label)
    m = check.measures
    if codes is not None:
        m["sform_code"], m["qform_code"] = codes
        if codes == (0, 0):
            check.problems.append(
                "its orientation is unknown (sform and qform codes are 0), so nothing says it is in MNI152 space"
            )
    data = np.asarray(img.dataobj, dtype=np.float32)
    data = data.reshape(data.shape[:3])
    _intensity(data, check)
    if check.problems and "orientation" not in check.problems[-1]:
        m["seconds"] = round(time.perf_counter() - start, 3)
        return check
    ref = coarse_reference()
    coarse, affine = _downsample(data, img.affine)
    sampler = _Sampler(coarse, affine)
    values, inside = sampler(ref.points)
    m["brain_coverage"] = round(float(inside.mean()), 3)
    if m["brain_coverage"] < MIN_BRAIN_COVERAGE:
        check.problems.append(
            f"not registered to MNI152: its field of view holds only {m['brain_coverage']:.0%} of the MNI152 "
            "brain (scanner or another space?)"
        )
        return _done(check, start)
    threshold = _SIGNAL_FRACTION * _p99(coarse)
    signal = float(np.mean(values[inside] > threshold))
    m["brain_signal"] = round(signal, 3)
    if signal < MIN_BRAIN_SIGNAL:
        check.problems.append(
            "not registered to MNI152: the MNI152 brain region holds no brain (the scan's signal lies elsewhere)"
        )
        return _done(check, start)
    ncc0 = _ncc(values, ref.values, inside)
    pose, ncc_best = _align(sampler, ref, ncc0)
    moved = _apply(pose, ref.points, ref.centre)
    shift_mm = float(np.linalg.norm(moved - ref.points, axis=0).mean())
    m.update(
        ncc=round(ncc0, 3),
        ncc_aligned=round(ncc_best, 3),
        misregistration_mm=round(shift_mm, 1),
        rotation_deg=[round(float(a), 1) for a in pose[:3]],
        translation_mm=[round(float(t), 1) for t in pose[3:]],
    )
    shell_values, shell_inside = sampler(_apply(pose, ref.shell, ref.centre))
    shell = float(np.mean(shell_values[shell_inside] > threshold)) if shell_inside.any() else 0.0
    m["shell_signal"] = round(shell, 3)
    if shell > MAX_SHELL_SIGNAL:
        check.problems.append(
            f"not skull-stripped: {shell:.0%} of the band 8–24 mm outside the brain holds signal (a whole head)"
        )
    elif ncc_best < MIN_T1_CORRELATION:
        check.problems.append(
            f"implausible intensities: it does not look like a T1-weighted brain (correlation with the MNI152 "
            f"T1 template {ncc_best:.2f}, below {MIN_T1_CORRELATION}; another contrast, or not a brain?)"
        )
    elif shift_mm > MAX_MISREGISTRATION_MM:
        rot = float(np.degrees(Rotation.from_euler("xyz", pose[:3], degrees=True).magnitude()))
        check.problems.append(
            f"not aligned to MNI152: it matches the template better after moving its brain by about "
            f"{shift_mm:.0f} mm on average (a {rot:.0f}° rotation and a {np.linalg.norm(pose[3:]):.0f} mm shift)"
        )
    return _done(check, start)


def require_readable(
    source: NiftiSource, *, name: str | None = None, allow: bool = False, fix: str = CLI_FIX
) -> ScanCheck:
    """:func:`check_scan`, raising :class:`DataError` with one line (the first problem and ``fix``) unless
    ``allow``; with ``allow`` the returned check carries the problems, for the caller to attach as warnings."""
    check = check_scan(source, name=name)
    if check.problems and not allow:
        more = f" (and {len(check.problems) - 1} more problem(s))" if len(check.problems) > 1 else ""
        raise DataError(f"{check.name}: {check.problems[0]}{more}. {fix.format(name=check.name)}")
    return check


def warning_lines(check: ScanCheck | None) -> list[str]:
    """The warnings an output made from an overridden check carries (empty when the scan passed)."""
    if check is None or check.passed:
        return []
    return [f"UNRELIABLE: {check.name}: {p}; predicted anyway (--allow-unregistered)" for p in check.problems]


# --- pieces -----------------------------------------------------------------------------------------------
def _is_loaded(source: NiftiSource) -> bool:
    return isinstance(source, nib.spatialimages.SpatialImage) and source.get_filename() is None


def _header_codes(source: NiftiSource) -> tuple[int, int] | None:
    """(sform_code, qform_code) as stored in the file (None for an in-memory image without a NIfTI header)."""
    if isinstance(source, nib.spatialimages.SpatialImage):
        header = source.header
        if isinstance(header, nib.Nifti1Header):
            return int(header["sform_code"]), int(header["qform_code"])
        return None
    if isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[:2])
        raw = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.is_file():
            return None
        raw = path.open("rb")
        head = raw.read(2)
        raw.seek(0)
    try:
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if head == b"\x1f\x8b" else raw
        peek = stream.read(540)
    except (OSError, EOFError):
        return None  # load_nifti reports the damage
    finally:
        raw.close()
    for klass, size in ((nib.Nifti1Header, 348), (nib.Nifti2Header, 540)):
        for endian in "<>":
            if len(peek) >= size and int(np.frombuffer(peek[:4], dtype=f"{endian}i4")[0]) == size:
                hdr = klass(peek[:size], endianness=endian, check=False)
                return int(hdr["sform_code"]), int(hdr["qform_code"])
    return None


def _intensity(data: np.ndarray, check: ScanCheck) -> None:
    m = check.measures
    nonzero = data[data != 0]
    if nonzero.size == 0:
        check.problems.append("implausible intensities: every voxel is 0 (an empty image)")
        return
    sample = nonzero[:: max(1, nonzero.size // 200_000)]
    distinct = int(np.unique(sample).size)
    m["distinct_values"] = distinct
    if distinct < MIN_DISTINCT_VALUES:
        check.problems.append(
            f"implausible intensities: only {distinct} distinct values (a mask or label map, not a T1 image)"
        )
        return
    hounsfield = float(np.mean(sample < -100))
    m["share_below_minus_100"] = round(hounsfield, 3)
    if hounsfield > 0.05:
        check.problems.append(
            f"implausible intensities: {hounsfield:.0%} of its voxels are below -100 (Hounsfield units of a CT?); "
            "a T1-weighted MRI is needed"
        )


def _downsample(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block means to about :data:`COARSE_MM` (integer factors per axis), with the matching affine."""
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    factor = np.maximum(1, np.floor(COARSE_MM / zooms + 0.25).astype(int))
    if (factor == 1).all():
        return data, affine
    shape = [s // f * f for s, f in zip(data.shape, factor)]
    if min(shape) == 0:
        return data, affine
    blocks = data[: shape[0], : shape[1], : shape[2]].reshape(
        shape[0] // factor[0], factor[0], shape[1] // factor[1], factor[1], shape[2] // factor[2], factor[2]
    )
    out = blocks.mean(axis=(1, 3, 5), dtype=np.float32)
    new = affine.copy()
    new[:3, :3] = affine[:3, :3] * factor
    new[:3, 3] = affine[:3, :3] @ ((factor - 1) / 2.0) + affine[:3, 3]
    return out, new


class _Sampler:
    """Trilinear samples of a volume at world points, with whether each point lies in the field of view."""

    def __init__(self, data: np.ndarray, affine: np.ndarray) -> None:
        self.data = data
        self.inv = np.linalg.inv(affine)
        self.upper = np.asarray(data.shape, dtype=np.float64).reshape(3, 1) - 0.5

    def __call__(self, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ijk = self.inv[:3, :3] @ world + self.inv[:3, 3:4]
        inside = np.all((ijk >= -0.5) & (ijk <= self.upper), axis=0)
        values = ndimage.map_coordinates(self.data, ijk, order=1, mode="nearest", prefilter=False)
        return values.astype(np.float64), inside


def _p99(data: np.ndarray) -> float:
    nonzero = data[data > 0]
    return float(np.percentile(nonzero, 99)) if nonzero.size else 0.0


def _ncc(a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> float:
    if inside.sum() < 100:
        return -1.0
    x, y = a[inside], b[inside]
    x = x - x.mean()
    y = y - y.mean()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def _apply(pose: np.ndarray, points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Template points -> scan world under pose (rx, ry, rz degrees about the brain's centre; tx, ty, tz mm)."""
    rot = Rotation.from_euler("xyz", pose[:3], degrees=True).as_matrix()
    c = centre.reshape(3, 1)
    return rot @ (points - c) + c + pose[3:].reshape(3, 1)


def _align(sampler: _Sampler, ref, ncc0: float) -> tuple[np.ndarray, float]:
    """Greedy coordinate search of the rigid pose that best matches the template (8, 4, 2 degree / mm steps).

    Uses every third brain point: about 10 000 samples per trial pose, under a millisecond each.
    """
    points, values = ref.points[:, ::3], ref.values[::3]
    pose = np.zeros(6)

    def score(p: np.ndarray) -> float:
        v, inside = sampler(_apply(p, points, ref.centre))
        return _ncc(v, values, inside)

    best = score(pose)
    for step in (8.0, 4.0, 2.0):
        for _ in range(6):
            trials = []
            for k in range(6):
                for sign in (-1.0, 1.0):
                    p = pose.copy()
                    p[k] += sign * step
                    trials.append((score(p), p))
            top, p = max(trials, key=lambda t: t[0])
            if top <= best + 1e-3:
                break
            best, pose = top, p
    return pose, max(best, ncc0)


def _done(check: ScanCheck, start: float) -> ScanCheck:
    check.measures["seconds"] = round(time.perf_counter() - start, 3)
    return check


@dataclass
class UploadCheck:
    """What reading an upload found: ``accepted`` (the models may read it), a one-line ``summary`` when it
    passed, the ``warnings`` every output must carry when it was accepted despite the entry check, the
    ``problem`` (one line naming the fix) when it was refused, and the entry ``check`` itself (None when the
    file could not be read as NIfTI)."""

    name: str
    accepted: bool = False
    summary: str = ""
    warnings: list[str] = field(default_factory=list)
    problem: str = ""
    check: ScanCheck | None = None


def check_upload(data: bytes, name: str, *, allow: bool = False, fix: str = DASHBOARD_FIX) -> UploadCheck:
    """Read an uploaded scan (named .nii / .nii.gz: the name is all other tools go by) and run the entry check
    on it; ``allow`` accepts a scan that fails the check, with warnings."""
    from hyperfusion.data.nifti import check_file_name

    out = UploadCheck(name)
    try:
        check_file_name(name, data)
        img = load_nifti(data, name=name)
    except DataError as exc:
        out.problem = str(exc)
        return out
    out.check = check_scan(data, name=name)
    if out.check.passed:
        zooms = ", ".join(f"{z:g}" for z in img.header.get_zooms()[:3])
        out.accepted, out.summary = True, f"{name}: {img.shape} voxels of {zooms} mm; entry check passed"
    elif allow:
        out.accepted, out.warnings = True, warning_lines(out.check)
    else:
        more = f" (and {len(out.check.problems) - 1} more)" if len(out.check.problems) > 1 else ""
        out.problem = f"{name}: {out.check.problems[0]}{more}. {fix}"
    return out


# --- cohorts ----------------------------------------------------------------------------------------------
#: How many of a cohort's scans loading it checks by default: an even spread over its subjects (all of them
#: when it has fewer). At 0.3–0.5 s a 1 mm ``.nii.gz`` (decoding included) after about 3 s to build the template
#: reference once per process, 12 scans cost about 7 s the first time on 2 shared cores; the results are
#: remembered (see :class:`ScanCheckMemo`), so loading the cohort again costs a ``stat`` a scan.
COHORT_SAMPLE = 12
#: Bumped when the check changes meaning; with the thresholds, it keys the remembered results.
CHECK_VERSION = 1
COHORT_FIX = (
    "The models read skull-stripped T1 scans registered to MNI152: preprocess the raw scans with "
    "`hyperfusion preprocess --input RAW_FOLDER_OR_TABLE --out NEW_COHORT_DIR` and load that cohort, "
    "or pass --allow-unregistered to go on with a warning"
)


def _check_key() -> str:
    """What a remembered result depends on besides the file: the check's version and thresholds."""
    return (
        f"v{CHECK_VERSION}:{MIN_BRAIN_COVERAGE}:{MIN_BRAIN_SIGNAL}:{MAX_SHELL_SIGNAL}:{MAX_MISREGISTRATION_MM}:"
        f"{MIN_T1_CORRELATION}:{MIN_DISTINCT_VALUES}:{COARSE_MM}"
    )


class ScanCheckMemo:
    """Entry-check results of scan files, remembered on disk by (resolved path, size, mtime_ns) and the
    check's version and thresholds: a file rewritten or a threshold changed is checked again.

    ``$HYPERFUSION_CACHE/scan_checks.json`` (else ``~/.cache/hyperfusion/scan_checks.json``); written to a
    temporary name and moved into place, so processes sharing it see a whole file. It keeps the last
    :attr:`LIMIT` files. Like ``make``, it trusts that a file rewritten with the same size within the same mtime
    tick is unchanged.
    """

    LIMIT = 20_000

    def __init__(self, path: str | os.PathLike | None = None, *, persist: bool = True) -> None:
        if path is None:
            path = cache_root("scan_checks.json")
        self.path = Path(path)
        #: False: remember in this object only, write nothing (the dashboard writes nothing to disk)
        self.persist = persist
        self._memory: dict = {}

    def _read(self) -> dict:
        if not self.persist:
            return dict(self._memory)
        try:
            raw = json.loads(self.path.read_text())
            return (
                raw["files"] if raw.get("key") == _check_key() and isinstance(raw.get("files"), dict) else {}
            )
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}  # missing or damaged: only a memo, the checks can be run again

    def lookup(self, paths: list[Path]) -> dict[str, dict]:
        """The remembered results of those ``paths`` (resolved) whose size and mtime are unchanged."""
        known = self._read()
        found = {}
        for path in paths:
            memo = known.get(str(path))
            try:
                st = path.stat()
            except OSError:
                continue
            if (
                isinstance(memo, dict)
                and memo.get("stat") == [st.st_size, st.st_mtime_ns]
                and _valid(memo.get("check"))
            ):
                found[str(path)] = memo["check"]
        return found

    def store(self, results: dict[Path, dict]) -> None:
        if not results:
            return
        merged = self._read()
        for path, check in results.items():
            try:
                st = path.stat()
            except OSError:
                continue
            merged.pop(str(path), None)  # re-inserted last: the newest are kept
            merged[str(path)] = {"stat": [st.st_size, st.st_mtime_ns], "check": check}
        if len(merged) > self.LIMIT:
            merged = dict(list(merged.items())[-self.LIMIT :])
        if not self.persist:
            self._memory = merged
            return
        payload = json.dumps({"key": _check_key(), "files": merged}).encode()
        try:
            atomic_write(self.path, lambda f: f.write(payload))
        except OSError:
            pass  # a read-only cache only costs a re-check next time


def _valid(check: object) -> bool:
    """A remembered result as :func:`check_cohort_scans` stores it (anything else is checked again)."""
    if not isinstance(check, dict):
        return False
    if check.get("passed") is None:
        return isinstance(check.get("unreadable"), str)
    return (
        isinstance(check["passed"], bool)
        and isinstance(check.get("problems"), list)
        and (check["passed"] or bool(check["problems"]))
    )


@dataclass
class CohortScanCheck:
    """The entry check of a cohort's scans (:func:`check_cohort_scans`): how many it has, which were checked,
    which failed and why (``failed``: PTID, path, problems), whether it stopped at the first failure, how many
    results came from the memo, and the time taken."""

    total: int
    checked: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    remembered: int = 0
    seconds: float = 0.0
    mode: str = "sample"
    stopped_early: bool = False
    #: scans that could not be read at all (PTID, path, error): reported, not counted as failing the check;
    #: like a missing scan, such a subject is named when it is used and the rest of the cohort stays usable
    unreadable: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "mode": self.mode,
            "scans": self.total,
            "checked": len(self.checked),
            "failed": [dict(f) for f in self.failed],
            "stopped_at_first_failure": self.stopped_early,
            "unreadable": [dict(u) for u in self.unreadable],
            "remembered": self.remembered,
            "seconds": round(self.seconds, 3),
        }

    def problem(self) -> str:
        return cohort_problem(self.to_dict())


def cohort_problem(check: dict) -> str:
    """One line from a :meth:`CohortScanCheck.to_dict` that failed: which scan fails and why, and how many
    were checked."""
    first = check["failed"][0]
    if check["mode"] == "sample":
        stop = ", stopping at the first that fails" if check.get("stopped_at_first_failure") else ""
        return (
            f"the scan of {first['PTID']} fails the entry check: {first['problems'][0]} ({check['checked']} "
            f"of its {check['scans']} scans checked{stop})"
        )
    return (
        f"{len(check['failed'])} of its {check['scans']} scans fail the entry check (e.g. {first['PTID']}: "
        f"{first['problems'][0]})"
    )


def check_cohort_scans(
    scans: dict[str, str | os.PathLike],
    *,
    sample: int | None = COHORT_SAMPLE,
    memo: ScanCheckMemo | None = None,
) -> CohortScanCheck:
    """The entry check of a cohort's scans (PTID -> path), each result remembered in ``memo`` (default: the one
    in the cache folder) so that loading the cohort again does not open its scans.

    ``sample``: check an even spread of this many and stop at the first that fails (one failing scan is enough
    to refuse the cohort; a cohort of raw scans then costs one check). None: check every scan and report all
    that fail.
    """
    start = time.perf_counter()
    ptids = sorted(scans)
    if sample is not None and len(ptids) > sample:
        picks = np.unique(np.linspace(0, len(ptids) - 1, max(sample, 1)).round().astype(int))
        ptids = [ptids[i] for i in picks]
    memo = memo if memo is not None else ScanCheckMemo()
    paths = {p: Path(scans[p]).resolve() for p in ptids}
    known = memo.lookup(list(paths.values()))
    result = CohortScanCheck(total=len(scans), mode="sample" if sample is not None else "all")
    new: dict[Path, dict] = {}
    for ptid in ptids:
        path = paths[ptid]
        found = known.get(str(path))
        if found is None:
            try:
                check = check_scan(path, name=str(scans[ptid]))
                found = {"passed": check.passed, "problems": list(check.problems)}
            except DataError as exc:
                found = {"passed": None, "unreadable": str(exc)}
            new[path] = found
        else:
            result.remembered += 1
        if found["passed"] is None:  # unreadable: reported, and the sample goes on
            result.unreadable.append({"PTID": ptid, "path": str(scans[ptid]), "error": found["unreadable"]})
            continue
        result.checked.append(ptid)
        if not found["passed"]:
            result.failed.append(
                {"PTID": ptid, "path": str(scans[ptid]), "problems": list(found["problems"])}
            )
            if sample is not None:
                result.stopped_early = len(result.checked) < len(ptids)
                break
    memo.store(new)
    result.seconds = time.perf_counter() - start
    return result
