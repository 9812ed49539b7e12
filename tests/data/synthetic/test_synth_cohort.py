import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from hyperfusion.data.synthetic import (
    SynthConfig,
    ensure_cohort,
    generate_cohort,
    read_config,
    synthesize_subject,
)
from hyperfusion.data.synthetic.anatomy import load_template, template_path
from hyperfusion.data.synthetic.records import CSV_COLUMNS, diagnosis_of
from hyperfusion.errors import DataError


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_provenance_say_synthetic(small_cohort, small_config):
    meta = json.loads((small_cohort / "cohort.json").read_text())
    assert meta["source"] == "synthetic" and "not real patients" in meta["notice"]
    assert meta["seed"] == 0 and meta["generator_version"]
    assert meta["knobs"] == small_config.knobs()
    assert meta["label_column"] == "DX_bl"
    table = pd.read_csv(small_cohort / "cohort.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == list(CSV_COLUMNS) and len(table) == small_config.n
    for pid in table["PTID"]:
        assert pid.startswith("SYN_")
        for rel in (
            f"images/{pid}.nii.gz",
            f"truth/{pid}.nii.gz",
            f"truth/{pid}_age.nii.gz",
            f"truth/{pid}_anatomy.nii.gz",
        ):
            assert (small_cohort / rel).exists(), rel
    latent = pd.read_csv(small_cohort / "truth" / "subjects.csv")
    assert list(latent["PTID"]) == list(table["PTID"])
    assert read_config(small_cohort) == small_config


def test_scans_are_mni_niftis_of_the_box(small_cohort):
    img = nib.load(small_cohort / "images" / "SYN_0001.nii.gz")
    assert img.shape == (64, 48, 32) and img.get_data_dtype() == np.int16
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    np.testing.assert_allclose(img.affine @ [0, 0, 0, 1], [-63, -54, -54, 1])  # first voxel centre, mm
    affine, code = img.header.get_sform(coded=True)
    assert code == 4  # NIFTI_XFORM_MNI_152
    assert b"not a real person" in img.header["descrip"].tobytes()
    data = np.asarray(img.dataobj)
    assert data.min() == 0 and 500 < np.percentile(data[data > 0], 99) < 2000
    truth = nib.load(small_cohort / "truth" / "SYN_0001.nii.gz")
    assert truth.shape == img.shape and np.allclose(truth.affine, img.affine)
    assert truth.get_data_dtype() == np.float32


def test_the_scan_sits_where_the_affine_says(small_cohort):
    """Sample the MNI template at each voxel's world position (from the file's affine): the scan must match
    it. The template is nearly symmetric, so left and right are checked through lateralised atrophy below."""
    latent = pd.read_csv(small_cohort / "truth" / "subjects.csv")
    # a CN subject of average head size (a big head is a scaled template, which fits best when scaled back)
    cn = latent[latent["dx"] == "CN"]
    pid = cn.loc[(cn["icv_l"] - 1.5).abs().idxmin(), "PTID"]
    img = nib.load(small_cohort / "images" / f"{pid}.nii.gz")
    data = np.asarray(img.dataobj, dtype=np.float64)
    ijk = np.indices(img.shape).reshape(3, -1)
    world = nib.affines.apply_affine(img.affine, ijk.T)
    tmpl = nib.load(template_path("t1"))
    tvox = nib.affines.apply_affine(np.linalg.inv(tmpl.affine), world).T
    expected = ndimage.map_coordinates(load_template()["t1"], tvox, order=1)
    r = np.corrcoef(data.ravel(), expected)[0, 1]
    assert r > 0.75  # individual anatomy, head size and scanner noise keep it below 1
    # shifting the expectation by 4 mm along any axis, either way, fits worse
    for axis in range(3):
        for step in (-4, 4):
            shifted = tvox.copy()
            shifted[axis] += step
            moved = ndimage.map_coordinates(load_template()["t1"], shifted, order=1)
            assert np.corrcoef(data.ravel(), moved)[0, 1] < r - 0.02, (axis, step)


def test_disease_truth_is_in_the_hippocampi_and_lateralised(small_cohort):
    """A woman with AD at lambda = 1: atrophy in the medial temporal lobes, more on her left (negative x)."""
    latent = pd.read_csv(small_cohort / "truth" / "subjects.csv")
    woman = latent[(latent["dx"] == "AD") & latent["female"]].iloc[0]
    truth = nib.load(small_cohort / "truth" / f"{woman['PTID']}.nii.gz")
    loss = np.clip(-np.asarray(truth.dataobj), 0, None)
    world = nib.affines.apply_affine(truth.affine, np.indices(loss.shape).reshape(3, -1).T)
    mtl = (np.abs(world[:, 0]) > 15) & (world[:, 2] < 0) & (world[:, 1] > -45)
    w = loss.ravel() * mtl * (loss.ravel() > 0.1)  # focal atrophy, not the diffuse cortical thinning
    left, right = world[:, 0] < 0, world[:, 0] >= 0
    assert w[left].sum() > 2 * w[right].sum()  # planted: 3 to 1
    centroid = (world[left] * w[left, None]).sum(0) / w[left].sum()
    # the left hippocampus is at (-25, -23, -14); amygdala and entorhinal pull the centroid forward and down
    assert np.linalg.norm(centroid - np.array([-25.0, -17.0, -18.0])) < 10


def test_ad_subjects_lose_hippocampal_volume(small_cohort):
    latent = pd.read_csv(small_cohort / "truth" / "subjects.csv")
    hippo = (latent["hippocampus_L_ml"] + latent["hippocampus_R_ml"]) / latent["icv_l"]
    by_dx = hippo.groupby(latent["dx"]).mean()
    assert by_dx["AD"] < 0.85 * by_dx["CN"]
    # ... and the written scans show it: CSF-dark voxels open up around the hippocampi
    from hyperfusion.data.synthetic.anatomy import atlas_labels

    labels, _ = atlas_labels()
    around = ndimage.binary_dilation(np.isin(labels, (17, 53)), iterations=4)
    world = np.argwhere(around) - np.array([98, 134, 72])  # template voxel -> MNI mm (1 mm, RAS)
    dark = {}
    for _, row in latent.iterrows():
        img = nib.load(small_cohort / "images" / f"{row['PTID']}.nii.gz")
        data = np.asarray(img.dataobj, dtype=np.float64)
        vox = nib.affines.apply_affine(np.linalg.inv(img.affine), world).T
        roi = ndimage.map_coordinates(data, vox, order=1)
        dark[row["PTID"]] = (roi < 0.55 * np.percentile(data[data > 0], 95)).mean()
    csf = latent["PTID"].map(dark).groupby(latent["dx"]).mean()
    assert csf["AD"] > 1.3 * csf["CN"]


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_atrophy_pattern_depends_on_the_record_only_when_lambda_is_positive(lam):
    """Left share and anterior (hippocampal head) share of each patient's disease map."""
    ad = [i for i in range(40) if diagnosis_of(0, i) == "AD"][:5]
    stats = []
    for i in ad:
        s = synthesize_subject(i, 40, seed=0, interaction_strength=lam)
        loss = np.clip(-s.truth["disease"], 0, None)
        pts = s.grid.world_points()
        mtl = (np.abs(pts[..., 0]) > 15) & (pts[..., 2] < 0)
        stats.append(
            (
                s.latent["female"],
                s.latent["limbic_share"],
                loss[pts[..., 0] < 0].sum() / loss.sum(),
                loss[mtl & (pts[..., 1] > -20)].sum() / loss[mtl].sum(),
            )
        )
    female, limbic, left, anterior = (np.array(c, dtype=float) for c in zip(*stats))
    assert female.any() and not female.all()
    if lam == 0.0:
        assert left.std() < 0.03 and anterior.std() < 0.03
    else:
        assert left[female == 1].mean() > left[female == 0].mean() + 0.08
        assert np.corrcoef(limbic, anterior)[0, 1] > 0.8 and anterior.std() > 0.05


def test_outputs_are_byte_identical_whatever_the_workers(small_cohort, small_config, tmp_path):
    again = generate_cohort(tmp_path / "w2", small_config, workers=2, progress=False)
    assert _files(again) == _files(small_cohort)


def test_a_different_seed_gives_different_subjects(small_config, tmp_path):
    other = generate_cohort(tmp_path / "s1", SynthConfig(n=2, seed=1), progress=False)
    first = (other / "images" / "SYN_0001.nii.gz").read_bytes()
    same_seed = generate_cohort(tmp_path / "s0", SynthConfig(n=2, seed=0), progress=False)
    assert first != (same_seed / "images" / "SYN_0001.nii.gz").read_bytes()


def test_ensure_cohort_keeps_a_finished_cohort(small_cohort, small_config):
    stamp = (small_cohort / "cohort.json").stat().st_mtime_ns
    ensure_cohort(small_cohort, small_config, progress=False)
    assert (small_cohort / "cohort.json").stat().st_mtime_ns == stamp


def test_refuses_to_overwrite_other_data(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        generate_cohort(tmp_path, SynthConfig(n=1), progress=False)
    with pytest.raises(DataError, match="interaction-strength"):
        SynthConfig(n=1, interaction_strength=2.0)


def test_brain_age_whole_brain_subject():
    s = synthesize_subject(0, 1, task="brain_age", whole_brain=True, voxel_size=4.0, age_range=(20.0, 90.0))
    assert s.row["DX"] == "CN" and s.grid.shape == (50, 59, 48)
    assert not s.truth["disease"].any() and s.truth["age"].any()
