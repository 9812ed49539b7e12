import shutil

import nibabel as nib
import numpy as np
import pytest

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
    attribution = explain_image(env.predictor, "image_only", scan, record, "integrated_gradients", target=2,
                                settings={"n_steps": 16}, cache=False)  # fmt: skip
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
    report = evaluate_faithfulness(env.predictor, "hyperfusion", cohort, "saliency", subjects=ptids,
                                   deletion_steps=2)  # fmt: skip
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
