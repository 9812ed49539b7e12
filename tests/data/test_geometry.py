from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from hyperfusion.data.geometry import (
    Geometry,
    ad_box,
    authors_crop,
    box_affine,
    merge_views,
    model_input,
    resample_box,
    split_views,
    to_subject_space,
    zscore_nonzero,
)
from hyperfusion.errors import DataError
from tests.data.conftest import smooth_field, world_coords

RIGHT_HIPPOCAMPUS_MM = np.array([27.0, -21.0, -14.0])
LEFT_HIPPOCAMPUS_MM = np.array([-27.0, -21.0, -14.0])


# --- the geometry object --------------------------------------------------------------------------------
def test_ad_box_shapes_match_the_papers_crop():
    one = ad_box(1.0)
    assert one.box_shape == (64, 96, 128)
    assert one.input_shape == (64, 96, 64)
    assert one.n_views == 2
    two = ad_box(2.0)
    assert (two.box_shape, two.input_shape) == ((32, 48, 64), (32, 48, 32))
    assert ad_box() == two
    whole = Geometry.from_dict({**two.to_dict(), "hemispheres": False})
    assert (whole.input_shape, whole.n_views) == ((32, 48, 64), 1)


def test_authors_crop_shapes():
    g = authors_crop()
    assert (g.crop_start, g.crop_stop, g.source_shape) == ((25, 55, 21), (89, 151, 149), (170, 186, 170))
    assert g.box_shape == (64, 96, 128)
    assert g.input_shape == (64, 96, 64)


CUSTOM_BOX = Geometry("mni_box", 1.5, (-63.0, -54.3, -54.0), (63.0, 41.7, 9.0), hemispheres=True)


@pytest.mark.parametrize("geometry", [ad_box(1.0), ad_box(2.0), authors_crop(), CUSTOM_BOX])
def test_json_round_trip_is_exact(geometry):
    text = json.dumps(geometry.to_dict())
    back = Geometry.from_dict(json.loads(text))
    assert back == geometry
    assert json.dumps(back.to_dict()) == text


def test_box_with_integer_bounds_equals_its_float_twin():
    g = Geometry("mni_box", 2, (-64, -55, -55), (64, 41, 9))
    assert g == ad_box(2.0)
    assert isinstance(g.voxel_size_mm, float) and all(isinstance(v, float) for v in g.box_min_mm)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"mode": "talairach"}, "unknown mode"),
        ({"voxel_size_mm": 0.0}, "outside"),
        ({"voxel_size_mm": "2"}, "must be a number"),
        ({"voxel_size_mm": True}, "must be a number"),
        ({"voxel_size_mm": float("nan")}, "finite"),
        ({"voxel_size_mm": 3.0}, "not a whole number"),  # 96 mm / 3 = 32 but 128 / 3 is not whole
        ({"box_min_mm": [-64, -55]}, "three numbers"),
        ({"box_max_mm": [64, -60, 9]}, "empty"),
        ({"box_min_mm": [-60, -55, -55]}, "symmetric"),
        ({"crop_start": [0, 0, 0]}, "belongs to mode 'voxel_crop'"),
        ({"hemispheres": "yes"}, "true or false"),
        ({"colour": "red"}, "unknown field"),
    ],
)
def test_from_dict_refuses_nonsense(change, needle):
    with pytest.raises(DataError, match=needle):
        Geometry.from_dict({**ad_box(2.0).to_dict(), **change})


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"crop_stop": [89, 151, 20]}, "empty or negative"),
        ({"crop_start": [25.0, 55, 21]}, "three integers"),
        ({"crop_stop": [89, 151, 200]}, "outside source_shape"),
        ({"crop_stop": [89, 151, 148]}, "even number of voxels"),
        ({"box_min_mm": [0, 0, 0]}, "belongs to mode 'mni_box'"),
    ],
)
def test_from_dict_refuses_nonsense_crops(change, needle):
    with pytest.raises(DataError, match=needle):
        Geometry.from_dict({**authors_crop().to_dict(), **change})


def test_from_dict_needs_a_mapping_with_a_mode():
    with pytest.raises(DataError, match="JSON object"):
        Geometry.from_dict([1, 2])
    with pytest.raises(DataError, match="'mode' is missing"):
        Geometry.from_dict({"voxel_size_mm": 2.0})


def test_box_affine_puts_voxel_centres_half_a_voxel_inside_the_box():
    g = ad_box(2.0)
    a = box_affine(g)
    d, h, w = g.box_shape
    # (d, h, w) = (0, 0, 0) is the corner voxel, centred 1 mm inside (x, y, z) = (-64, -55, -55).
    np.testing.assert_allclose(a @ [0, 0, 0, 1], [-63, -54, -54, 1])
    np.testing.assert_allclose(a @ [d - 1, h - 1, w - 1, 1], [63, 40, 8, 1])
    # D runs along z, H along y, W along x.
    np.testing.assert_allclose(a[:3, :3] @ [1, 0, 0], [0, 0, 2])
    np.testing.assert_allclose(a[:3, :3] @ [0, 1, 0], [0, 2, 0])
    np.testing.assert_allclose(a[:3, :3] @ [0, 0, 1], [2, 0, 0])
    with pytest.raises(DataError, match="no fixed world position"):
        box_affine(authors_crop())
    ref = nib.Nifti1Image(np.zeros((170, 186, 170), np.float32), np.diag([-1.0, 1.0, 1.2, 1.0]))
    np.testing.assert_allclose(box_affine(authors_crop(), ref) @ [0, 0, 0, 1], ref.affine @ [25, 55, 21, 1])


# --- resampling through the affine ----------------------------------------------------------------------
def test_resample_box_follows_an_oblique_flipped_affine(oblique_scan):
    """The box sampled from an LPS, rotated, anisotropic scan holds the field at the box's own mm."""
    g = ad_box(2.0)
    box = resample_box(oblique_scan, g)
    assert box.shape == g.box_shape and box.dtype == np.float32
    expected = smooth_field(world_coords(g.box_shape, box_affine(g)))
    # Trilinear interpolation error of this field on 1.1–1.6 mm voxels stays well under 0.1.
    np.testing.assert_allclose(box, expected, atol=0.1)


def test_resample_box_does_not_depend_on_storage_order(oblique_scan):
    """The same world content stored with every axis reversed gives the same box."""
    data = oblique_scan.get_fdata(dtype=np.float32)
    flip = np.diag([-1.0, -1.0, -1.0, 1.0])
    flip[:3, 3] = np.array(data.shape) - 1
    reversed_scan = nib.Nifti1Image(np.ascontiguousarray(data[::-1, ::-1, ::-1]), oblique_scan.affine @ flip)
    g = ad_box(2.0)
    np.testing.assert_allclose(resample_box(reversed_scan, g), resample_box(oblique_scan, g), atol=1e-4)


def test_box_outside_the_scan_is_zero():
    """A scan covering only x > 10 mm: the box's voxels left of it are exactly 0, the rest are not."""
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [10.0, -60.0, -60.0]
    scan = nib.Nifti1Image(np.full((60, 110, 75), 5.0, np.float32), affine)
    box = resample_box(scan, ad_box(2.0))
    x_centres = box_affine(ad_box(2.0))[0, 2] * np.arange(64) + box_affine(ad_box(2.0))[0, 3]
    assert np.all(box[..., x_centres < 10] == 0)
    np.testing.assert_allclose(box[..., x_centres > 11], 5.0)


def test_voxel_crop_is_a_plain_index_crop_of_the_stored_array():
    shape = (170, 186, 170)
    i, j, k = np.indices(shape, dtype=np.float32)
    data = i * 40000 + j * 200 + k  # every voxel holds its own index
    oblique = np.array([[0.0, 0.0, 1.2, 5.0], [0.9, 0.3, 0.0, -3.0], [0.0, 1.1, 0.0, 7.0], [0, 0, 0, 1]])
    g = authors_crop()
    box = resample_box(nib.Nifti1Image(data, oblique), g)  # the affine is ignored
    np.testing.assert_array_equal(box, data[25:89, 55:151, 21:149])

    with pytest.raises(DataError, match="not the \\(170, 186, 170\\)"):
        resample_box(nib.Nifti1Image(data[:169], np.eye(4)), g)


def test_voxel_crop_views_are_the_authors_halves():
    """Their evaluation: mid = W // 2; model(x[..., mid:]) and model(x[..., :mid].flip(-1))."""
    import torch

    box = np.random.default_rng(1).normal(size=(64, 96, 128)).astype(np.float32)
    views = split_views(box, authors_crop())
    x = torch.from_numpy(box)
    mid = x.shape[-1] // 2
    np.testing.assert_array_equal(views[0], x[..., mid:].numpy())
    np.testing.assert_array_equal(views[1], x[..., :mid].flip(dims=(-1,)).numpy())


# --- hemispheres ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("geometry", [ad_box(2.0), authors_crop()])
def test_split_and_merge_are_exact_inverses(geometry):
    box = np.random.default_rng(2).normal(size=geometry.box_shape).astype(np.float32)
    views = split_views(box, geometry)
    assert views.shape == (2, *geometry.input_shape)
    assert views.flags.c_contiguous  # torch.from_numpy refuses negative strides
    w = geometry.box_shape[2]
    np.testing.assert_array_equal(views[0], box[..., w // 2 :])
    np.testing.assert_array_equal(views[1][..., 0], box[..., w // 2 - 1])  # medial columns first
    np.testing.assert_array_equal(views[1][..., -1], box[..., 0])
    np.testing.assert_array_equal(merge_views(views, geometry), box)
    batch = np.stack([box, box + 1])
    np.testing.assert_array_equal(merge_views(split_views(batch, geometry), geometry), batch)


def test_split_without_hemispheres_is_one_view():
    g = Geometry.from_dict({**ad_box(2.0).to_dict(), "hemispheres": False})
    box = np.arange(np.prod(g.box_shape), dtype=np.float32).reshape(g.box_shape)
    views = split_views(box, g)
    assert views.shape == (1, *g.box_shape)
    np.testing.assert_array_equal(merge_views(views, g), box)
    with pytest.raises(DataError, match="expected a box"):
        split_views(box[:-1], g)


def _blob_scan(centres_mm, sigma_mm=3.0):
    """Gaussian blobs on a 1 mm RAS grid covering the box."""
    affine = np.eye(4)
    affine[:3, 3] = [-70.0, -62.0, -62.0]
    shape = (141, 111, 78)
    xyz = world_coords(shape, affine)
    data = sum(
        np.exp(-((xyz - np.reshape(c, (3, 1, 1, 1))) ** 2).sum(0) / (2 * sigma_mm**2)) for c in centres_mm
    )
    return nib.Nifti1Image(data.astype(np.float32), affine)


def _centre_of_mass(arr):
    idx = np.indices(arr.shape, dtype=np.float64)
    return (idx * arr).reshape(arr.ndim, -1).sum(1) / arr.sum()


def test_right_hippocampus_lands_in_view_0_and_left_at_the_mirrored_index_of_view_1():
    g = ad_box(2.0)
    # Box index of MNI (27, -21, -14) at 2 mm: d = (-14 + 55)/2 - 0.5, h = (-21 + 55)/2 - 0.5,
    # w = (27 + 64)/2 - 0.5 = 45 in the full box, 45 - 32 = 13 in view 0.
    expected = np.array([20.0, 16.5, 13.0])
    views = split_views(resample_box(_blob_scan([RIGHT_HIPPOCAMPUS_MM]), g), g)
    np.testing.assert_allclose(_centre_of_mass(views[0]), expected, atol=0.15)
    assert views[1].max() < 1e-3 * views[0].max()

    views = split_views(resample_box(_blob_scan([LEFT_HIPPOCAMPUS_MM]), g), g)
    np.testing.assert_allclose(_centre_of_mass(views[1]), expected, atol=0.15)
    assert views[0].max() < 1e-3 * views[1].max()


def test_symmetric_scan_gives_identical_views():
    """Mirroring is about x = 0 exactly: a left-right symmetric brain yields the same two views."""
    g = ad_box(2.0)
    views = split_views(resample_box(_blob_scan([RIGHT_HIPPOCAMPUS_MM, LEFT_HIPPOCAMPUS_MM]), g), g)
    np.testing.assert_allclose(views[0], views[1], atol=1e-6)


# --- intensity ------------------------------------------------------------------------------------------
def test_zscore_nonzero_matches_monai():
    from monai.transforms import NormalizeIntensity

    rng = np.random.default_rng(3)
    arr = rng.gamma(2.0, 50.0, size=(20, 24, 16)).astype(np.float32)
    arr[rng.random(arr.shape) < 0.4] = 0.0
    ours = zscore_nonzero(arr)
    theirs = np.asarray(NormalizeIntensity(nonzero=True)(arr.copy()))
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert ours.dtype == np.float32
    assert np.all(ours[arr == 0] == 0)
    nz = ours[arr != 0]
    assert abs(nz.mean()) < 1e-5 and abs(nz.std() - 1) < 1e-5
    np.testing.assert_array_equal(zscore_nonzero(np.zeros((3, 3, 3))), 0)  # nothing to normalise
    constant = np.where(arr != 0, 7.0, 0.0)
    np.testing.assert_array_equal(
        zscore_nonzero(constant), np.asarray(NormalizeIntensity(nonzero=True)(constant))
    )


def test_model_input_normalises_the_whole_box_before_splitting(small_scan):
    g = ad_box(2.0)
    x = model_input(small_scan, g)
    assert x.shape == (2, 1, 32, 48, 32) and x.dtype == np.float32 and x.flags.c_contiguous
    both = x[x != 0]
    assert abs(both.mean()) < 1e-4 and abs(both.std() - 1) < 1e-4  # one scale for both hemispheres...
    per_view_means = [x[i][x[i] != 0].mean() for i in range(2)]
    assert abs(per_view_means[0] - per_view_means[1]) > 0.05  # ...not one per view
    box = zscore_nonzero(resample_box(small_scan, g))
    np.testing.assert_array_equal(merge_views(x[:, 0], g), box)


# --- back to the subject --------------------------------------------------------------------------------
def test_round_trip_onto_an_oblique_flipped_scan(oblique_scan, tmp_path):
    """Field sampled on the scan -> model grid -> back: same values inside the box, 0 outside."""
    g = ad_box(2.0)
    views = split_views(resample_box(oblique_scan, g), g)
    back = to_subject_space(views, g, oblique_scan)
    assert back.shape == oblique_scan.shape
    np.testing.assert_array_equal(back.affine, oblique_scan.affine)
    values = back.get_fdata()

    xyz = world_coords(oblique_scan.shape, oblique_scan.affine)
    lo = np.reshape([-64.0, -55.0, -55.0], (3, 1, 1, 1))
    hi = np.reshape([64.0, 41.0, 9.0], (3, 1, 1, 1))
    outside = np.any((xyz < lo) | (xyz >= hi), axis=0)
    deep_inside = np.all((xyz >= lo + 2.0) & (xyz < hi - 2.0), axis=0)  # a model voxel away from the faces
    assert np.all(values[outside] == 0)
    np.testing.assert_allclose(values[deep_inside], oblique_scan.get_fdata()[deep_inside], atol=0.15)
    assert np.all(values[~outside] != 0)  # the whole box, faces included, is filled

    # Saved, it carries the reference's grid in both sform and qform (the affine is rigid + scaling), so
    # viewers that prefer either place it over the scan.
    path = tmp_path / "map.nii.gz"
    nib.save(back, path)
    saved = nib.load(path)
    np.testing.assert_allclose(saved.header.get_sform(), oblique_scan.affine, atol=1e-4)
    np.testing.assert_allclose(saved.header.get_qform(), oblique_scan.affine, atol=1e-4)


def test_exported_maps_keep_the_references_space_codes(oblique_scan):
    ref = nib.Nifti1Image(np.ones(oblique_scan.shape, np.float32), oblique_scan.affine)
    ref.header.set_sform(oblique_scan.affine, code="mni")
    ref.header.set_qform(oblique_scan.affine, code="scanner")
    g = ad_box(2.0)
    back = to_subject_space(np.zeros(g.box_shape), g, ref)
    assert (int(back.header["sform_code"]), int(back.header["qform_code"])) == (4, 1)

    sheared = oblique_scan.affine.copy()
    sheared[0, 1] += 0.4
    back = to_subject_space(
        np.zeros(g.box_shape), g, nib.Nifti1Image(np.ones((4, 4, 4), np.float32), sheared)
    )
    assert int(back.header["qform_code"]) == 0  # a qform cannot hold shear: only the sform speaks
    np.testing.assert_allclose(back.header.get_sform(), sheared, atol=1e-5)


def test_attribution_blobs_land_at_their_mm_coordinates(oblique_scan):
    """A blob put in each view at the hippocampus index comes back at (±27, -20, -14) mm on the scan."""
    g = ad_box(2.0)
    idx = np.indices(g.input_shape, dtype=np.float64)
    blob = np.exp(-((idx - np.reshape([20.0, 17.0, 13.0], (3, 1, 1, 1))) ** 2).sum(0) / 2.0)
    for view, x_mm in ((0, 27.0), (1, -27.0)):
        views = np.zeros((2, 1, *g.input_shape), np.float32)
        views[view, 0] = blob
        back = to_subject_space(views, g, oblique_scan)
        centre_ijk = _centre_of_mass(back.get_fdata())
        centre_mm = back.affine[:3, :3] @ centre_ijk + back.affine[:3, 3]
        np.testing.assert_allclose(centre_mm, [x_mm, -20.0, -14.0], atol=0.3)


def test_to_subject_space_for_the_authors_crop():
    g = authors_crop()
    views = np.random.default_rng(4).normal(size=(2, 1, *g.input_shape)).astype(np.float32)
    ref = nib.Nifti1Image(np.zeros((170, 186, 170), np.float32), np.diag([-1.0, 1.0, 1.0, 1.0]))
    back = to_subject_space(views, g, ref).get_fdata(dtype=np.float32)
    np.testing.assert_array_equal(back[25:89, 55:151, 85:149], views[0, 0])
    np.testing.assert_array_equal(back[25:89, 55:151, 84:20:-1], views[1, 0])
    back[25:89, 55:151, 21:149] = 0
    assert not back.any()


def test_to_subject_space_refuses_arrays_of_the_wrong_shape(oblique_scan):
    with pytest.raises(DataError, match="does not fit the geometry"):
        to_subject_space(np.zeros((2, 32, 48, 31)), ad_box(2.0), oblique_scan)


def test_new_image_like_keeps_the_scans_affine_and_space_codes():
    import nibabel as nib

    from hyperfusion.data.geometry import new_image_like

    affine = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
    scan = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), affine)
    scan.header.set_sform(affine, code=4)  # MNI
    data = np.random.default_rng(0).standard_normal((4, 5, 6)).astype(np.float32)
    out = nib.Nifti1Image.from_bytes(new_image_like(data, affine, scan.header, "x" * 100).to_bytes())
    np.testing.assert_array_equal(out.get_fdata(dtype=np.float32), data)
    np.testing.assert_allclose(out.affine, affine)
    assert int(out.header["sform_code"]) == 4 and out.header.get_data_dtype() == np.float32
    assert len(out.header["descrip"].item()) <= 80
