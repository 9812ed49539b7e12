import json

import nibabel as nib
import numpy as np
import pytest

from hyperfusion.data.geometry import box_affine
from hyperfusion.errors import DataError
from hyperfusion.explain.cache import AttributionCache
from hyperfusion.explain.image import compare_records, explain_image
from hyperfusion.explain.maps import ImageAttribution
from tests.explain.conftest import G


def _reoriented_reference(tmp_path, voxel_mm=2.0):
    """A scan on another grid than the model's: 2 mm, axes permuted and x flipped (LIA-like), shifted so that
    every 4 mm box-voxel centre is also one of its voxel centres."""
    # world = A @ (i, j, k) + t with i -> -x, j -> -z, k -> +y
    a = np.array([[-voxel_mm, 0, 0], [0, 0, voxel_mm], [0, -voxel_mm, 0]])
    t = np.array([70.0, -65.0, 21.0])  # box centres are at -62 + 4n (x), -53 + 4n (y, z): on this 2 mm grid
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = a, t
    path = tmp_path / "reoriented.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((80, 50, 70), np.float32), affine), path)
    return path, affine


def _spike_map(view: int, voxel: tuple[int, int, int]) -> ImageAttribution:
    views = np.zeros((2, *G.input_shape), np.float32)
    views[(view, *voxel)] = 1.0
    return ImageAttribution(model="m", task="ad", method="saliency", views=views, geometry=G)


@pytest.mark.parametrize("view", [0, 1])
def test_a_map_on_a_known_voxel_comes_back_on_that_voxel(tmp_path, view):
    reference, affine = _reoriented_reference(tmp_path)
    d, h, w = 5, 17, 3
    out = _spike_map(view, (d, h, w)).save_nifti(tmp_path / "map.nii.gz", reference)
    img = nib.load(out)
    np.testing.assert_allclose(img.affine, affine)
    assert img.shape == (80, 50, 70)
    # where the spike is in the world: view 0 is the right half as is, view 1 the left half mirrored
    half = G.box_shape[2] // 2
    box_w = half + w if view == 0 else half - 1 - w
    world = box_affine(G) @ np.array([d, h, box_w, 1.0])
    expected = np.round(np.linalg.inv(affine) @ world)[:3].astype(int)
    data = img.get_fdata()
    assert tuple(np.unravel_index(np.argmax(data), data.shape)) == tuple(expected)
    assert data[tuple(expected)] == pytest.approx(1.0)
    assert (world[0] > 0) == (view == 0)  # view 0 is the right hemisphere (x > 0)


def test_explained_map_is_written_on_the_scans_grid_with_regions(env, tmp_path):
    scan, record = env.subject(4)
    attribution = explain_image(env.predictor, "hyperfusion", scan, record, "saliency", cache=False)
    path = attribution.save_nifti(tmp_path / "map.nii.gz", scan, regions=tmp_path / "regions.json")
    img, source = nib.load(path), nib.load(scan)
    assert img.shape == source.shape
    np.testing.assert_allclose(img.affine, source.affine)
    summary = json.loads((tmp_path / "regions.json").read_text())
    assert summary["attribution"]["method"] == "saliency"
    names = [r["region"] for r in summary["regions"]]
    assert names == ["hippocampus_L", "hippocampus_R", "entorhinal", "amygdala", "ventricles", "rest"]
    assert sum(r["abs_share"] for r in summary["regions"]) == pytest.approx(1.0)
    assert sum(r["voxels"] for r in summary["regions"]) == np.prod(G.box_shape)
    with pytest.raises(DataError, match="NIfTI"):
        attribution.save_nifti(tmp_path / "map.png", scan)


def test_cache_gives_the_same_map_as_computing_afresh(env, tmp_path):
    scan, record = env.subject(5)
    kwargs = {"baseline": "blur", "settings": {"n_steps": 8}}
    fresh = explain_image(
        env.predictor, "hyperfusion", scan, record, "integrated_gradients", cache=False, **kwargs
    )
    cache = AttributionCache(root=tmp_path / "maps")
    first = explain_image(
        env.predictor, "hyperfusion", scan, record, "integrated_gradients", cache=cache, **kwargs
    )
    second = explain_image(
        env.predictor, "hyperfusion", scan, record, "integrated_gradients", cache=cache, **kwargs
    )
    assert second is first and cache.hits == 1
    np.testing.assert_array_equal(first.views, fresh.views)
    assert first.describe() == fresh.describe()
    # another process reads it from disk
    reread = explain_image(
        env.predictor,
        "hyperfusion",
        scan,
        record,
        "integrated_gradients",
        cache=AttributionCache(root=tmp_path / "maps"),
        **kwargs,
    )
    np.testing.assert_array_equal(reread.views, fresh.views)
    assert reread.describe() == fresh.describe()
    # a different record, setting or baseline is a different map
    other = explain_image(
        env.predictor,
        "hyperfusion",
        scan,
        {**record, "APOE4": 2},
        "integrated_gradients",
        cache=cache,
        **kwargs,
    )
    assert other is not first and cache.misses == 2


def test_baseline_and_target_are_recorded(env):
    scan, record = env.subject(6)
    ig = explain_image(
        env.predictor,
        "hyperfusion",
        scan,
        record,
        "integrated_gradients",
        target="AD",
        baseline="cohort_cn_mean",
        cohort=env.cohort,
        settings={"n_steps": 4},
        cache=False,
    )
    assert ig.target == 2 and ig.target_name == "AD"
    assert (
        ig.baseline["kind"] == "cohort_cn_mean"
        and ig.baseline["subjects"] == (env.cohort.table["DX"] == "CN").sum()
    )
    sal = explain_image(env.predictor, "hyperfusion", scan, record, "saliency", cache=False)
    predicted = env.predictor.predict(scan, record, ["hyperfusion"])["hyperfusion"].value[0].argmax()
    assert sal.baseline is None and sal.target == predicted
    with pytest.raises(DataError, match="cohort"):
        explain_image(
            env.predictor, "hyperfusion", scan, record, "deeplift", baseline="cohort_cn_mean", cache=False
        )


def test_ensemble_map_is_the_members_mean(env):
    scan, record = env.subject(7)
    ens = explain_image(env.predictor, "hf_ensemble", scan, record, "saliency", target=1, cache=False)
    assert ens.members == 2 and len(ens.weights) == 2
    from hyperfusion.data import parse_record
    from hyperfusion.explain.methods import attribute_views

    maps = []
    for member in env.predictor.models["hf_ensemble"].members:
        views = env.predictor.views(member, scan)
        maps.append(
            attribute_views(
                member.network, views, member.tabular([parse_record(record)]), "saliency", target=1
            ).views
        )
    brain = np.asarray(views)[:, 0] != 0  # a saliency map is kept on the brain's voxels
    np.testing.assert_allclose(ens.views, np.where(brain, np.mean(maps, axis=0), 0), rtol=1e-6)


def test_record_difference_maps(env):
    scan, record = env.subject(2)
    a, b = {**record, "APOE4": 0}, {**record, "APOE4": 2}
    image_only = compare_records(env.predictor, "image_only", scan, a, b, "input_x_gradient", cache=False)
    assert np.abs(image_only.difference.views).max() == 0  # the record cannot move an image-only model's map
    hyper = compare_records(env.predictor, "hyperfusion", scan, a, b, "input_x_gradient", cache=False)
    np.testing.assert_allclose(hyper.difference.views, hyper.second.views - hyper.first.views)
    assert np.abs(hyper.difference.views).max() > 0  # HyperFusion's generated shortcut reads APOE4
    assert hyper.difference.compared["first"]["record"]["APOE4"] == 0
    assert hyper.difference.method == "input_x_gradient difference"
    assert hyper.first.target == hyper.second.target


def test_tabular_only_models_have_no_image_map(env):
    scan, record = env.subject(1)
    with pytest.raises(DataError, match="record"):
        explain_image(env.predictor, "tabular_only", scan, record, "saliency")


def test_brain_age_models_explain_years(env, tmp_path):
    import torch

    from hyperfusion.data.geometry import brain_box
    from hyperfusion.explain.tabular import explain_record
    from hyperfusion.explain.whatif import ice_curves
    from hyperfusion.inference.model_files import save_model
    from hyperfusion.inference.predictor import Predictor
    from hyperfusion.models import build_model

    g = brain_box(4.0)  # whole brain at 4 mm: one 45×54×45 view
    torch.manual_seed(0)
    net = build_model(
        "hyperfusion", "brain_age", input_shape=list(g.input_shape), channels=[2, 2, 2], hidden=[4, 4, 4]
    ).eval()
    predictor = Predictor({"age": save_model(net, {"geometry": g.to_dict()}, tmp_path / "age")})
    scan, record = env.subject(1)
    ig = explain_image(
        predictor, "age", scan, record, "integrated_gradients", settings={"n_steps": 8}, cache=False
    )
    assert ig.target is None and ig.settings["output"] == "years" and ig.views.shape == (1, 45, 54, 45)
    assert ig.output == pytest.approx(predictor.predict(scan, record)["age"].value[0], rel=1e-5)
    assert nib.load(ig.save_nifti(tmp_path / "age.nii.gz", scan)).shape == nib.load(scan).shape
    cam = explain_image(predictor, "age", scan, record, "grad_cam", cache=False)
    assert cam.coarse["layer"] == "stage3"
    sex = explain_record(predictor, "age", scan, record)
    assert list(sex.attributes) == ["PTGENDER"]
    assert ice_curves(predictor, scan, record, "PTGENDER").predictions["age"].shape == (2,)
    with pytest.raises(DataError, match="years"):
        explain_image(predictor, "age", scan, record, "saliency", target="AD")


def test_gradient_maps_stay_on_the_brain_and_baseline_maps_stay_whole(env):
    scan, record = env.subject(4)
    entry = env.predictor.models["hyperfusion"]
    support = np.asarray(env.predictor.views(entry.members[0], scan))[:, 0] != 0
    assert 0 < support.mean() < 1  # the test scan has background inside the box
    saliency = explain_image(env.predictor, "hyperfusion", scan, record, "saliency", cache=False)
    assert np.all(saliency.views[~support] == 0) and np.abs(saliency.views[support]).sum() > 0
    ig = explain_image(
        env.predictor,
        "hyperfusion",
        scan,
        record,
        "integrated_gradients",
        baseline="blur",
        settings={"n_steps": 8},
        cache=False,
    )
    assert np.abs(ig.views[~support]).sum() > 0  # completeness needs every voxel: left whole


def test_a_map_carries_the_predictors_prediction_not_only_the_members_mean(env):
    """The number shown beside a map is the Predictor's (inverse-entropy ensemble), the Subject page's; the
    map's own ``output`` stays the members' mean its sums refer to."""
    from hyperfusion.inference.tables import subject_value

    scan, record = env.subject(7)
    ens = explain_image(env.predictor, "hf_ensemble", scan, record, "saliency", target=2, cache=False)
    pred = env.predictor.predict(scan, record, ["hf_ensemble"])["hf_ensemble"]
    assert ens.prediction == pytest.approx(float(pred.value[0, 2]), abs=1e-6)
    assert ens.prediction == pytest.approx(
        subject_value(env.predictor, "hf_ensemble", scan, record, "AD"), abs=1e-9
    )
    assert ens.output == pytest.approx(float(pred.member_values[:, 0, 2].mean()), abs=1e-5)
    assert ens.describe()["prediction"] == ens.prediction
    single = explain_image(env.predictor, "hyperfusion", scan, record, "saliency", target=2, cache=False)
    assert single.prediction == pytest.approx(single.output, abs=1e-5)  # one network: the same number
    diff = compare_records(
        env.predictor,
        "hf_ensemble",
        scan,
        {**record, "APOE4": 0},
        {**record, "APOE4": 2},
        "saliency",
        target=2,
        cache=False,
    ).difference
    assert diff.prediction is None and diff.compared["second"]["prediction"] is not None


def test_a_map_reports_the_integrated_gradients_steps_it_used(env, tmp_path):
    """``steps``: n_steps without a tolerance; a quarter of them when a tolerance is set and their convergence
    delta meets it (and the map is then that 4-step map); n_steps when it misses; None for other methods.
    It survives the disk cache and appears in the description."""
    scan, record = env.subject(5)

    def ig(model="hyperfusion", cache=False, **settings):
        return explain_image(
            env.predictor,
            model,
            scan,
            record,
            "integrated_gradients",
            target=1,
            settings={"n_steps": 16, **settings},
            cache=cache,
        )

    full, quarter = ig(), ig(n_steps=4)
    assert full.steps == 16 and quarter.steps == 4 and full.describe()["steps"] == 16
    converged = ig(tolerance=min(0.99, 2 * quarter.relative_delta + 1e-3))
    assert converged.steps == 4 < converged.settings["n_steps"]
    np.testing.assert_allclose(
        converged.views, quarter.views, rtol=0, atol=1e-5 * np.abs(quarter.views).max()
    )
    missed = ig(tolerance=quarter.relative_delta / 2)
    assert missed.steps == 16
    np.testing.assert_allclose(missed.views, full.views, rtol=0, atol=1e-5 * np.abs(full.views).max())
    cached = ig(cache=AttributionCache(root=tmp_path / "maps"), tolerance=converged.settings["tolerance"])
    reread = ig(cache=AttributionCache(root=tmp_path / "maps"), tolerance=converged.settings["tolerance"])
    assert cached.steps == reread.steps == 4
    ensemble = ig(model="hf_ensemble")
    assert ensemble.members > 1 and ensemble.steps == 16
    assert explain_image(env.predictor, "hyperfusion", scan, record, "saliency", cache=False).steps is None
