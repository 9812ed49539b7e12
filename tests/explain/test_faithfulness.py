import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from hyperfusion.data import load_cohort
from hyperfusion.data.geometry import box_affine
from hyperfusion.errors import DataError
from hyperfusion.explain.faithfulness import deletion_curve, evaluate_faithfulness, mask_scores, truth_mask
from hyperfusion.explain.image import explain_image
from tests.explain.conftest import G


def test_scores_of_a_perfect_and_of_a_uniform_map():
    rng = np.random.default_rng(0)
    mask = rng.random((2, 4, 5, 6)) < 0.1
    perfect = mask * rng.uniform(1, 2, mask.shape)
    s = mask_scores(perfect, mask)
    assert s["mass_share"] == pytest.approx(1) and s["auroc"] == 1 and s["pointing_game"]
    assert s["volume_share"] == pytest.approx(mask.mean()) and s["enrichment"] == pytest.approx(
        1 / mask.mean()
    )
    uniform = mask_scores(np.ones(mask.shape), mask)
    assert uniform["enrichment"] == pytest.approx(1.0) and uniform["auroc"] == pytest.approx(0.5)
    within = np.zeros(mask.shape, bool)
    within[0] = True
    assert mask_scores(perfect, mask, within)["volume_share"] == pytest.approx(mask[0].mean())


def test_truth_mask_lands_on_the_model_grid_and_marks_tissue_loss_only():
    truth = np.zeros(G.box_shape, np.float32)
    truth[3, 10, 5] = -0.4  # tissue lost: in the mask
    truth[3, 12, 5] = 0.4  # ventricle / CSF grown into the space: not the disease the maps should find
    truth[3, 14, 5] = -0.01  # the smooth fields' tiny tails: below the threshold
    views = truth_mask(nib.Nifti1Image(truth, box_affine(G)), G)
    assert views.shape == (2, *G.input_shape) and views.sum() == 1
    assert views[1, 3, 10, G.box_shape[2] // 2 - 1 - 5]  # x < 0: the left hemisphere, mirrored


def test_deletion_curve_starts_at_the_output_and_falls_faster_than_random(env):
    scan, record = env.subject(3)
    attribution = explain_image(
        env.predictor,
        "image_only",
        scan,
        record,
        "integrated_gradients",
        target=2,
        settings={"n_steps": 16},
        cache=False,
    )
    curve = deletion_curve(env.predictor, attribution, scan, record, steps=8)
    assert curve["outputs"].shape == (9,) and curve["fractions"][-1] == 1
    assert curve["outputs"][0] == pytest.approx(attribution.output, rel=1e-5)
    assert curve["outputs"][-1] == pytest.approx(attribution.baseline_output, rel=1e-4, abs=1e-6)
    random = deletion_curve(env.predictor, attribution, scan, record, steps=8, order="random")
    assert curve["area"] < random["area"]  # deleting the evidence first lowers the AD probability faster


def test_evaluate_faithfulness_on_a_cohort_with_truth(env, tmp_path):
    root = tmp_path / "cohort"
    shutil.copytree(env.cohort.path, root)
    (root / "truth").mkdir()
    ptids = list(env.cohort.table["PTID"][:2])
    for ptid in ptids:  # the test cohort's planted "hippocampi": where its scans are brightest
        img = nib.load(root / "images" / f"{ptid}.nii.gz")
        data = img.get_fdata()
        lost = -(data > np.percentile(data, 97)).astype(np.float32)  # tissue loss is negative in the truth
        nib.save(nib.Nifti1Image(lost, img.affine), root / "truth" / f"{ptid}.nii.gz")
    cohort = load_cohort(root)
    report = evaluate_faithfulness(
        env.predictor, "hyperfusion", cohort, "saliency", subjects=ptids, deletion_steps=2
    )
    assert [r["PTID"] for r in report["subjects"]] == ptids
    assert set(report["mean"]) >= {
        "mass_share",
        "volume_share",
        "enrichment",
        "auroc",
        "deletion_area_random",
    }
    assert 0 < report["mean"]["volume_share"] < 1
    with pytest.raises(DataError, match="truth"):
        evaluate_faithfulness(env.predictor, "hyperfusion", env.cohort, "saliency")


def test_lattice_is_high_for_a_lattice_map_and_near_one_for_smooth_maps():
    from scipy import ndimage

    from hyperfusion.explain.faithfulness import lattice_index

    rng = np.random.default_rng(0)
    shape = (2, 32, 48, 32)
    lattice = rng.uniform(0.0, 0.1, shape)
    lattice[:, 3::16, 5::16, 7::16] += 5.0  # a hot spot every 16 voxels, the AD ResNet's total stride
    assert lattice_index(lattice, 16)["lattice"] > 5
    assert lattice_index(lattice, 16)["stride"] == [16, 16, 16]
    assert lattice_index(np.ones(shape), 16)["lattice"] == pytest.approx(1.0)
    smooth = ndimage.gaussian_filter(rng.normal(size=shape), (0, 6, 6, 6))
    smooth += 0.1 - smooth.min()
    assert lattice_index(smooth, 16)["lattice"] < 1.3
    with pytest.raises(DataError, match="does not fit"):
        lattice_index(np.ones((2, 8, 8, 8)), 16)


def test_top_decile_scores_count_where_the_most_attributed_voxels_lie():
    from hyperfusion.explain.faithfulness import top_decile_scores

    brain = np.zeros((1, 10, 10, 10), bool)
    brain[:, :, :, :8] = True  # 80 % brain
    mask = np.zeros_like(brain)
    mask[:, :, :2, :4] = True  # 8 % of the grid, 10 % of the brain
    a = np.zeros(brain.shape)
    a[mask] = 1.0 + np.arange(mask.sum())  # 80 voxels of the mask hottest ...
    a[:, :, :2, 8:] = 0.5  # ... then 40 outside the brain; the top decile is 100 voxels
    s = top_decile_scores(a, mask, brain)
    assert s["mask_share"] == pytest.approx(0.1)
    assert s["top_decile_in_mask"] == pytest.approx(0.8) and s["top_decile_enrichment"] == pytest.approx(8.0)
    assert s["top_decile_outside_brain"] == pytest.approx(0.2)
    # an even map is no better than chance: the top decile (by position on ties) is spread as the grid
    even = top_decile_scores(np.ones(brain.shape), mask, brain)
    assert even["top_decile_enrichment"] < 2


def test_network_stride_and_the_untrained_control(env):
    from hyperfusion.explain.faithfulness import network_stride, untrained_control

    member = env.predictor.models["hyperfusion"].members[0]
    assert network_stride(member.network, G.input_shape) == (16, 16, 16)  # pool 2 × three stride-2 blocks
    a, b = untrained_control(member.card, seed=0), untrained_control(member.card, seed=0)
    state = member.network.state_dict()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())  # fixed seed
    assert any(not torch.equal(v, state[k]) for k, v in a.state_dict().items() if v.is_floating_point())


def test_faithfulness_summary_of_a_model_and_its_untrained_control(env, tmp_path):
    from hyperfusion.explain.faithfulness import faithfulness_summary

    root = tmp_path / "cohort"
    shutil.copytree(env.cohort.path, root)
    (root / "truth").mkdir()
    lost = np.zeros(G.box_shape, np.float32)
    lost[4:10, 8:16, 4:12] = -0.3
    for ptid in env.cohort.table["PTID"]:
        nib.save(nib.Nifti1Image(lost, box_affine(G)), root / "truth" / f"{ptid}.nii.gz")
    cohort = load_cohort(root)
    s = faithfulness_summary(env.dirs["hyperfusion"], cohort, [0, 1, 2], "saliency")
    assert s["subjects"] == cohort.table["PTID"][:3].tolist() and s["stride"] == [16, 16, 16]
    for values in (s, s["untrained"]):
        assert 0 <= values["outside_brain"] <= 1 and values["enrichment"] >= 0 and values["lattice"] >= 1
    assert s["untrained"]["lattice"] != s["lattice"]  # another network, another map
    assert s["enrichment_vs_untrained"] == pytest.approx(s["enrichment"] / s["untrained"]["enrichment"])
