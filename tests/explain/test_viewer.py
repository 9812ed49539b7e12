"""The interactive viewer's data (hyperfusion.explain.viewer): the view as text, the display grid, what the
browser is sent, and the readout at the cursor."""

import base64
import gzip

import numpy as np
import pytest

from hyperfusion.explain import regions, viewer
from hyperfusion.explain.views import Volume, ras_volume


def _decode(entry: dict, dtype) -> np.ndarray:
    return np.frombuffer(gzip.decompress(base64.b64decode(entry["data"])), dtype=dtype)


@pytest.fixture
def scan_and_map():
    """A 1 mm RAS scan (zero outside a brain box) around the left hippocampus, and a map with one peak."""
    affine = np.eye(4)
    affine[:3, 3] = (-40.0, -40.0, -30.0)
    data = np.zeros((40, 36, 30), np.float32)
    data[4:36, 3:33, 2:28] = np.random.default_rng(0).uniform(50, 150, (32, 30, 26))
    scan = Volume(data, affine)
    values = np.zeros_like(data)
    values[10:20, 10:20, 10:20] = 0.001
    values[15, 17, 16] = 0.02  # mm (-25, -23, -14): the left hippocampus
    values[30, 25, 20] = -0.01
    return scan, values


def test_a_view_round_trips_as_text_and_bad_values_are_named_and_left_out():
    view = viewer.View(
        cursor=(-25.0, -23.0, -14.0),
        zoom=2.5,
        centre=(0.0, -10.0, 5.0),
        threshold="0.004",
        sign="both",
        cmap="cold_hot",
        layers=("map", "atlas"),
        radiological=False,
        opacity=0.4,
    )
    text = view.to_text()
    assert text["cursor"] == "-25,-23,-14" and text["orientation"] == "neurological"
    again, problems = viewer.View.from_text(text)
    assert again == view and problems == []
    assert again.percentile() is None and viewer.View().percentile() == 90.0

    bad = {
        "zoom": "40",
        "threshold": "abc",
        "cmap": "nope",
        "layers": "map,ghosts",
        "cursor": "1,2",
        "sign": "both",
    }
    kept, problems = viewer.View.from_text(bad, base=view)
    assert kept == view  # every bad value left out, the good one ("both") applied
    assert len(problems) == 5
    assert all(any(key in p for p in problems) for key in ("zoom", "threshold", "cmap", "layers", "cursor"))
    assert viewer.View.from_text({"threshold": "99.5%"})[0].percentile() == 99.5
    assert viewer.View.from_text({"threshold": "100%"})[1]  # not a percentile


def test_downsampling_averages_blocks_including_the_last_partial_one():
    data = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    small = viewer.downsample(data, (2, 2, 1))
    assert small.shape == (3, 2, 3)
    np.testing.assert_allclose(small[0, 0, 0], data[0:2, 0:2, 0].mean())
    np.testing.assert_allclose(small[2, 1, 2], data[4:5, 2:4, 2].mean())  # the partial block: its own mean
    one_mm = Volume(data, np.diag([1.0, 1.0, 1.0, 1.0]))
    assert viewer.display_step(one_mm) == (2, 2, 2)
    assert viewer.display_step(Volume(data, np.diag([4.0, 4.0, 4.0, 1.0]))) == (1, 1, 1)


def test_the_scene_sends_a_small_cropped_grid_and_each_map_as_int16_over_its_box(scan_and_map):
    scan, values = scan_and_map
    rows = [viewer.MapLayer(values, "model", "|Saliency| of P(AD)")]
    prepared = viewer.prepare(scan, rows)
    scene = viewer.scene(prepared, viewer.View(threshold="50%"))
    shape = scene["shape"]
    assert scene["spacing"] == [2.0, 2.0, 2.0]
    assert shape == [18, 18, 15]  # 2 mm blocks over the brain and one of margin: x is cropped from 20
    assert _decode(scene["scan"], np.uint8).size == np.prod(shape)
    assert _decode(scene["atlas"], np.uint8).size == np.prod(shape)
    row = scene["rows"][0]
    i0, j0, k0, ni, nj, nk = row["box"]
    q = _decode(row, np.int16).reshape(nk, nj, ni).transpose(2, 1, 0)  # x fastest
    small = viewer.downsample(values, (2, 2, 2))
    origin = np.array(scene["origin"])
    first = np.rint((origin - scan.affine[:3, 3] - 0.5) / 2).astype(int)  # the crop's first block
    expected = small[first[0] + i0 :, first[1] + j0 :, first[2] + k0 :][:ni, :nj, :nk]
    np.testing.assert_allclose(q * row["scale"], expected, atol=row["scale"])
    assert row["sign"] == "absolute" and row["range"] == [pytest.approx(-0.01), pytest.approx(0.02)]
    assert 0 < row["threshold"] < row["vmax"]
    assert len(base64.b64decode(row["lut"])) == 768
    # an absolute threshold is the number given; the view travels with its revision
    absolute = viewer.scene(prepared, viewer.View(threshold="0.003", cursor=(1.0, 2.0, 3.0)), revision=4)
    assert absolute["rows"][0]["threshold"] == 0.003
    assert absolute["view"]["revision"] == 4 and absolute["view"]["cursor"] == [1.0, 2.0, 3.0]
    assert absolute["scan"]["id"] == scene["scan"]["id"]  # a view change re-encodes nothing


def test_shared_scale_pools_the_maps_and_a_difference_keeps_its_own_signed_scale(scan_and_map):
    scan, values = scan_and_map
    rows = [
        viewer.MapLayer(values, "a", "a"),
        viewer.MapLayer(3 * values, "b", "b"),
        viewer.MapLayer(2 * values, "difference", "Δ", difference=True),
    ]
    prepared = viewer.prepare(scan, rows)
    own = viewer.scene(prepared, viewer.View())["rows"]
    shared = viewer.scene(prepared, viewer.View(), shared=True)["rows"]
    assert own[1]["vmax"] == pytest.approx(3 * own[0]["vmax"], rel=1e-5)
    assert shared[0]["vmax"] == shared[1]["vmax"]  # one scale, pooled over both maps' voxels
    assert own[0]["vmax"] < shared[0]["vmax"] <= own[1]["vmax"]
    assert shared[0]["threshold"] == shared[1]["threshold"]
    assert shared[2]["sign"] == "both" and shared[2]["vmax"] == own[2]["vmax"]
    assert shared[2]["lut"] == viewer._lut("cold_hot") != shared[0]["lut"]


def test_the_readout_gives_the_scan_each_map_the_mm_and_the_atlas_label_at_the_cursor(scan_and_map):
    scan, values = scan_and_map
    rows = [viewer.MapLayer(values, "model", "m"), viewer.MapLayer(-values, "other", "o")]
    peak = viewer.peak_mm(scan, values)
    assert peak == (-25.0, -23.0, -14.0)
    r = viewer.readout(scan, rows, (-25.2, -22.8, -14.3))  # the nearest voxel
    assert r["inside"] and r["mm"] == [-25.0, -23.0, -14.0] and r["voxel"] == [15, 17, 16]
    assert r["maps"] == {"model": pytest.approx(0.02), "other": pytest.approx(-0.02)}
    assert r["scan"] == pytest.approx(float(scan.data[15, 17, 16]))
    expected = "Left-Hippocampus" if regions.atlas_path() is not None else "hippocampus_L"
    assert r["label"] == expected
    text = viewer.readout_text(r)
    assert "x = −25, y = −23, z = −14 mm" in text and expected in text and "model 0.02" in text
    outside = viewer.readout(scan, rows, (500.0, 0.0, 0.0))
    assert not outside["inside"] and "outside the scan" in viewer.readout_text(outside)
    assert viewer.atlas_label((0.0, 0.0, 200.0)) == ""  # above the head: no label


def test_grad_cams_coarse_grid_is_described_in_words():
    caption = viewer.coarse_caption(
        {"layer": "stage3.add", "shape": [2, 3, 2], "voxel_mm": [32.0, 32.0, 32.0]}
    )
    assert "stage3.add" in caption and "2 × 3 × 2" in caption and "32 × 32 × 32 mm" in caption
    assert "{" not in caption and "trilinear" in caption
    assert viewer.coarse_caption(None) == ""


def test_the_truth_map_is_resampled_onto_the_display_grid(scan_and_map):
    scan, values = scan_and_map
    truth = ras_volume(np.where(np.abs(values) > 0, 1.0, 0.0), scan.affine)
    scene = viewer.scene(viewer.prepare(scan, [], truth), viewer.View())
    assert scene["truth"]["vmax"] == pytest.approx(1.0) and scene["truth"]["box"][3] > 0
    assert scene["rows"] == []


def test_a_snapshot_draws_the_view_as_png(scan_and_map):
    scan, values = scan_and_map
    prepared = viewer.prepare(scan, [viewer.MapLayer(values, "model", "m")])
    png = viewer.snapshot_png(prepared, viewer.View(cursor=(-25.0, -23.0, -14.0), sign="positive"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
