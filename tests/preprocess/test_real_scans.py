"""``hyperfusion preprocess`` on real heads (Colin27 with and without skull, Debian's mricron-data) and on
nilearn's template moved by a known rigid transform; and the entry check on the same real scans."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from hyperfusion.cli import main
from hyperfusion.data.entry import check_scan
from hyperfusion.data.preprocess.pipeline import preprocess_scan, quality, transform_points
from hyperfusion.data.preprocess.template import brain_mask, template
from tests.hardening.corpus import MODEL, RECORD
from tests.preprocess.conftest import MOVE, REAL, moved


def _brain_points(step: int = 20) -> np.ndarray:
    m = brain_mask(2)
    ijk = np.argwhere(np.asarray(m.dataobj) > 0)[::step]
    return (m.affine[:3, :3] @ ijk.T + m.affine[:3, 3:4]).T


def _error_mm(transform, expected) -> float:
    """Mean distance over the template's brain between where the transform sends each point and where it
    should go (``expected``: (N, 3) RAS mm)."""
    return float(np.linalg.norm(transform_points(transform, _brain_points()) - expected, axis=1).mean())


@pytest.fixture(scope="module")
def head(real_scans, tmp_path_factory):
    """Colin27's whole head moved into 'scanner' coordinates, preprocessed once (deepbet + registration)."""
    root = tmp_path_factory.mktemp("head")
    raw = root / "colin_scanner_space.nii.gz"
    nib.save(moved(nib.load(real_scans / "ch2.nii.gz")), raw)
    return raw, preprocess_scan(raw, root / "out", threads=2)


@pytest.fixture(scope="module")
def reference(real_scans, tmp_path_factory):
    """Colin27's skull-stripped scan registered where it lies (MNI space): where a correct pipeline must send
    the moved head, moved back (registration only)."""
    return preprocess_scan(real_scans / "ch2bet.nii.gz", tmp_path_factory.mktemp("ref"), skull_strip=False)


def _expected_under_move(reference) -> np.ndarray:
    """Where the template's brain points lie in a Colin27 moved by MOVE: the reference's transform, then MOVE."""
    expected = transform_points(sitk.ReadTransform(str(reference.out_dir / "transform.tfm")), _brain_points())
    return (MOVE[:3, :3] @ expected.T + MOVE[:3, 3:4]).T


def test_template_moved_by_a_known_transform_is_recovered(tmp_path):
    raw = tmp_path / "template_moved.nii.gz"
    nib.save(moved(template(1)), raw)
    result = preprocess_scan(raw, tmp_path / "out", skull_strip=False)
    truth = (MOVE[:3, :3] @ _brain_points().T + MOVE[:3, 3:4]).T
    error = _error_mm(sitk.ReadTransform(str(tmp_path / "out" / "transform.tfm")), truth)
    assert error <= 1.5, error
    assert result.passed and result.qc["template_ncc"] > 0.9 and result.qc["mask_dice"] > 0.95


def test_a_real_head_in_scanner_space_is_stripped_registered_and_passes_qc(head, reference):
    raw, result = head
    qc = result.qc
    assert result.passed, qc["verdict"]
    out = result.out_dir
    for name in ("scan.nii.gz", "brain_mask.nii.gz", "transform.tfm", "qc.json", "qc.png"):
        assert (out / name).is_file(), name
    img = nib.load(out / "scan.nii.gz")
    assert int(img.header["sform_code"]) == 4 and np.allclose(img.affine, template(1).affine)
    # the skull was there, and is gone: the input's signal lay half outside the brain, the output's does not
    assert qc["input"]["input_signal_outside_brain"] > 0.3 and not qc["skull_present"]
    assert qc["mask_dice"] >= 0.9 and qc["box_brain_share"] > 0.6
    assert json.loads((out / "qc.json").read_text())["verdict"] == qc["verdict"]
    # registration error on the known transform: compare with Colin27's skull-stripped scan registered where
    # it lies (in MNI space), moved by the same transform
    error = _error_mm(sitk.ReadTransform(str(out / "transform.tfm")), _expected_under_move(reference))
    assert error <= 1.5, error
    # the brain mask against Colin27's own skull-stripped version, both in MNI space through the reference
    ref_mask = np.asarray(nib.load(reference.out_dir / "brain_mask.nii.gz").dataobj) > 0
    mask = np.asarray(nib.load(out / "brain_mask.nii.gz").dataobj) > 0
    assert 2 * (mask & ref_mask).sum() / (mask.sum() + ref_mask.sum()) > 0.9


def test_qc_fails_a_head_with_its_skull_and_a_misregistered_brain(real_scans, tmp_path):
    ch2 = nib.load(real_scans / "ch2.nii.gz")  # Colin27 with skull, already in MNI space
    on_grid = tmp_path / "ch2_on_template_grid.nii.gz"
    resampled = _on_template_grid(ch2)
    nib.save(resampled, on_grid)
    head_mask = np.asarray(resampled.dataobj) > 0.1 * np.percentile(np.asarray(resampled.dataobj), 99)
    bad = quality(on_grid, head_mask)
    assert not bad["verdict"]["passed"] and bad["skull_present"] and bad["mask_dice"] < 0.8
    shifted = tmp_path / "ch2bet_shifted.nii.gz"
    shift = np.eye(4)
    shift[1, 3] = 20.0
    bet = _on_template_grid(
        nib.Nifti1Image(
            np.asarray(nib.load(real_scans / "ch2bet.nii.gz").dataobj, np.float32), shift @ ch2.affine
        )
    )
    nib.save(bet, shifted)
    off = quality(shifted, np.asarray(bet.dataobj) > 0)
    assert not off["verdict"]["passed"] and any("not aligned" in r for r in off["verdict"]["reasons"])


def _on_template_grid(img: nib.Nifti1Image) -> nib.Nifti1Image:
    from nilearn.image import resample_to_img

    out = resample_to_img(img, template(1), interpolation="linear", force_resample=True, copy_header=True)
    data = np.asarray(out.dataobj, dtype=np.float32)
    result = nib.Nifti1Image(data, template(1).affine)
    result.header.set_sform(template(1).affine, code=4)
    return result


def test_predict_refuses_real_raw_scans_and_reads_the_preprocessed_one(head, real_scans, tmp_path, capsys):
    raw, result = head
    row = tmp_path / "row.json"
    row.write_text(json.dumps(RECORD))
    cases = [(raw, "not skull-stripped"), (real_scans / "ch2.nii.gz", "not skull-stripped")]
    for scan, fragment in cases:
        rc = main(["predict", "--model", str(MODEL), "--image", str(scan), "--tabular", str(row)])
        err = capsys.readouterr().err
        assert rc == 2 and fragment in err and "hyperfusion preprocess" in err and len(err.splitlines()) == 1
    # the skull-stripped Colin27, moved out of MNI space: refused as not aligned
    bet_moved = tmp_path / "ch2bet_scanner.nii.gz"
    nib.save(moved(nib.load(real_scans / "ch2bet.nii.gz")), bet_moved)
    rc = main(["predict", "--model", str(MODEL), "--image", str(bet_moved), "--tabular", str(row)])
    assert rc == 2 and "not aligned to MNI152" in capsys.readouterr().err
    # real skull-stripped brains in MNI space pass the entry check; so does the preprocessed head
    assert check_scan(real_scans / "ch2bet.nii.gz").passed
    rc = main(["predict", "--model", str(MODEL), "--image", str(result.scan), "--tabular", str(row)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["scan_check"]["passed"] and out["warnings"] == []
    assert out["in_distribution"]["inside"] in (True, False, None) and out["in_distribution"]["summary"]


def test_a_folder_that_is_not_dicom_is_refused_by_dcm2niix(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a DICOM file")
    rc = main(["preprocess", "--input", str(folder), "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 2


def test_transform_tfm_is_an_itk_transform_that_reproduces_the_scan_from_the_input(head):
    """What an ITK, SimpleITK or ANTs user does with the outputs: read the raw input and transform.tfm, resample
    the input onto scan.nii.gz's grid, and get scan.nii.gz back (inside its brain mask)."""
    raw, result = head
    out = result.out_dir
    transform = sitk.ReadTransform(str(out / "transform.tfm"))
    assert transform.GetName() == "AffineTransform" and transform.GetDimension() == 3
    grid = sitk.ReadImage(str(out / "scan.nii.gz"))
    applied = sitk.Resample(sitk.ReadImage(str(raw), sitk.sitkFloat32), grid, transform, sitk.sitkLinear, 0.0)
    ours = sitk.GetArrayFromImage(grid)  # both (k, j, i) on the same grid
    theirs = sitk.GetArrayFromImage(applied)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "brain_mask.nii.gz"))) > 0
    # away from the mask's edge (where the pipeline interpolated between brain and removed skull) the two agree
    interior = ndimage.binary_erosion(mask, iterations=3)
    assert interior.sum() > 500_000
    scale = float(np.percentile(ours[interior], 99))
    assert np.abs(ours[interior] - theirs[interior]).max() < 1e-3 * scale
    assert np.corrcoef(ours[mask], theirs[mask])[0, 1] > 0.99
    # and the same holds written by hand: the file is plain ITK text (Insight Transform File V1.0)
    assert (out / "transform.tfm").read_text().startswith("#Insight Transform File V1.0")


@pytest.mark.slow
def test_a_dicom_series_of_a_real_head_is_converted_preprocessed_and_registered(
    head, reference, tmp_path, capsys
):
    """No openly licensed real 3-D T1 DICOM series installs from Debian or PyPI: the series is Colin27 (real
    pixels, resampled to 2 mm to keep the test short) moved into scanner coordinates and written as DICOM MR
    slices by SimpleITK (scripts/make_dicom_series.py); the header is made, not a scanner's."""
    import importlib.util
    import locale
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "make_dicom_series.py"
    spec = importlib.util.spec_from_file_location("make_dicom_series", script)
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    assert np.allclose(maker.move_matrix(), MOVE)
    source = maker.prepare(nib.load(REAL / "ch2.nii.gz"), voxel_mm=2.0, move=True)
    series = tmp_path / "DICOM" / "T1"
    encoding = locale.getpreferredencoding(False)
    files = maker.write_series(source, series)
    assert len(files) == source.shape[2]
    assert locale.getpreferredencoding(False) == encoding  # ITK's DICOM writer's C locale was undone
    out = tmp_path / "sub01"
    rc = main(["preprocess", "--input", str(series), "--out", str(out), "--quiet"])
    printed = json.loads(capsys.readouterr().out)
    qc = json.loads((out / "qc.json").read_text())
    assert rc == 0 and printed["qc"]["passed"], qc["verdict"]
    assert qc["input"]["format"] == "dicom" and qc["input"]["series_found"] == 1
    assert sorted(qc["input"]["shape"]) == sorted(source.shape) and qc["input"]["voxel_mm"] == [2.0, 2.0, 2.0]
    assert qc["input"]["input_signal_outside_brain"] > 0.3  # a whole head went in ...
    assert not qc["skull_present"] and qc["mask_dice"] >= 0.9  # ... a brain came out
    # registered where the NIfTI route sends the same head (through the known move): within 1.5 mm
    error = _error_mm(sitk.ReadTransform(str(out / "transform.tfm")), _expected_under_move(reference))
    assert error <= 1.5, error
    # and the registered scan matches the one made from the 1 mm NIfTI of the same moved head
    ours = np.asarray(nib.load(out / "scan.nii.gz").dataobj)
    theirs = np.asarray(nib.load(head[1].scan).dataobj)
    both = (ours > 0) & (theirs > 0)
    assert np.corrcoef(ours[both], theirs[both])[0, 1] > 0.9
