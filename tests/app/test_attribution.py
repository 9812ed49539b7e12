"""The Attribution page through Streamlit's AppTest: comparison modes, the viewer's scene, downloads, restored
widget and view state, errors. (What happens in the browser is tests/app/test_viewer_browser.py.)"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from hyperfusion.data import load_cohort
from hyperfusion.data.cohort import cohort_record
from hyperfusion.errors import DataError
from hyperfusion.explain.regions import atlas_path

HOME = Path(__file__).resolve().parents[2] / "app" / "Home.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def media(monkeypatch) -> list:
    """The media file managers AppTest makes (one per run), so a test can read what the page offers for download
    (AppTest drops its mock runtime after each run)."""
    import streamlit.testing.v1.app_test as app_test
    from streamlit.runtime.media_file_manager import MediaFileManager

    managers: list = []

    class Recording(MediaFileManager):
        def __init__(self, storage) -> None:
            super().__init__(storage)
            self.storage = storage
            managers.append(self)

    monkeypatch.setattr(app_test, "MediaFileManager", Recording)
    return managers


SHARE_BUTTONS = ("share_json", "share_html")  # the sidebar's scenario downloads (share.py), on every page


def _page_downloads(at: AppTest) -> list:
    return [b for b in at.get("download_button") if b.key not in SHARE_BUTTONS]


def _downloads(at: AppTest, media: list) -> dict[str, bytes]:
    """File name -> bytes of every download button of the page's last run (deferred ones are generated here);
    the sidebar's scenario downloads (share.py) are left out."""
    manager = media[-1]
    out = {}
    for button in _page_downloads(at):
        proto = button.proto
        url = manager.execute_deferred(proto.deferred_file_id) if proto.deferred_file_id else proto.url
        file = manager.storage.get_file(url.rsplit("/", 1)[1])
        out[file.filename] = file.content
    return out


def _png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_SIGNATURE)
    return struct.unpack(">II", png[16:24])


def _scene(at: AppTest) -> dict:
    """What the page sends the browser viewer (hyperfusion.explain.viewer.scene)."""
    (component,) = at.get("bidi_component")
    return json.loads(component.proto.json)


def _attribution(at: AppTest) -> AppTest:
    at.switch_page("views/2_Attribution.py").run()
    assert not at.exception, at.exception
    return at


def _open() -> AppTest:
    return _attribution(AppTest.from_file(str(HOME), default_timeout=60).run())


def _expected_map(
    env: dict, model: str, ptid: str, record: dict | None = None, target: int = 2
) -> np.ndarray:
    """The engine's map of one subject, computed here without the dashboard's caches."""
    from hyperfusion.inference.predictor import Predictor
    from hyperfusion.pages.attribution import attribution_map

    cohort = load_cohort(env["cohort"])
    row = cohort.table.loc[cohort.table["PTID"] == ptid].iloc[0]
    predictor = Predictor({model: str(Path(env["models"]) / model)})
    record = record if record is not None else cohort_record(row)
    data, _ = attribution_map(predictor, model, row["image_path"], record, "saliency", target, "zero", False)
    return data


def _scan(env: dict, ptid: str) -> nib.Nifti1Image:
    cohort = load_cohort(env["cohort"])
    return nib.load(cohort.table.loc[cohort.table["PTID"] == ptid, "image_path"].iloc[0])


def test_one_model_downloads_the_map_as_nifti_on_the_scan_grid_and_the_view_as_png(app_env, media):
    at = _open()
    ptid = app_env["ptids"][0]
    assert at.session_state["attr_mode"] == "one"
    assert [r["title"] for r in _scene(at)["rows"]] == ["hyperfusion"]
    files = _downloads(at, media)
    assert set(files) == {f"{ptid}_hyperfusion_saliency.png", f"{ptid}_hyperfusion_saliency.nii.gz"}
    assert files[f"{ptid}_hyperfusion_saliency.png"].startswith(PNG_SIGNATURE)

    nifti = nib.Nifti1Image.from_bytes(gzip.decompress(files[f"{ptid}_hyperfusion_saliency.nii.gz"]))
    scan = _scan(app_env, ptid)
    assert nifti.shape == scan.shape
    np.testing.assert_allclose(nifti.affine, scan.affine, atol=1e-5)
    assert int(nifti.header["sform_code"]) > 0
    data = nifti.get_fdata(dtype=np.float32)
    np.testing.assert_allclose(data, _expected_map(app_env, "hyperfusion", ptid), rtol=1e-5, atol=1e-9)
    assert np.abs(data).max() > 0


def test_two_models_side_by_side_on_one_scale_and_the_second_choice_is_every_other_image_model(
    app_env_two_image_models, media
):
    at = _open()
    single_height = _png_size(
        _downloads(at, media)[f"{app_env_two_image_models['ptids'][0]}_hyperfusion_saliency.png"]
    )[1]
    at.radio(key="attr_mode").set_value("models").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="attr_model").options == ["hyperfusion", "image_only"]  # not the tabular model
    assert at.selectbox(key="attr_model_b").options == ["image_only"]
    rows = _scene(at)["rows"]
    assert [r["title"] for r in rows] == ["hyperfusion", "image_only"]  # two rows of three views
    assert rows[0]["vmax"] == rows[1]["vmax"] and rows[0]["threshold"] == rows[1]["threshold"]
    assert any("share one colour scale" in c.value for c in at.caption)
    ptid = app_env_two_image_models["ptids"][0]
    files = _downloads(at, media)
    assert _png_size(files[f"{ptid}_hyperfusion-vs-image_only_saliency.png"])[1] > 1.7 * single_height
    assert set(files) == {
        f"{ptid}_hyperfusion-vs-image_only_saliency.png",
        f"{ptid}_hyperfusion_saliency.nii.gz",
        f"{ptid}_image_only_saliency.nii.gz",
    }
    assert [t.value for t in at.markdown if t.value.startswith("**")] == [
        "**hyperfusion · Saliency**",
        "**image_only · Saliency**",
    ]  # a region table per map

    at.selectbox(key="attr_model").set_value("image_only").run()
    assert at.selectbox(key="attr_model_b").options == ["hyperfusion"]
    at.toggle(key="attr_shared_scale").set_value(False).run()
    assert any("its own colour scale" in c.value for c in at.caption)
    assert not at.exception and not at.error
    rows = _scene(at)["rows"]
    assert rows[0]["vmax"] != rows[1]["vmax"]


def test_two_model_mode_with_a_single_image_model_says_there_is_none_to_compare(app_env):
    at = _open()
    at.radio(key="attr_mode").set_value("models").run()
    assert not at.exception and not at.error
    assert any("no second model" in i.value for i in at.info)
    assert len(_scene(at)["rows"]) == 1


def test_recorded_vs_edited_says_when_nothing_was_edited_and_shows_the_signed_difference_after_an_edit(
    app_env_two_image_models, media
):
    env = app_env_two_image_models
    ptid = env["ptids"][2]
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    at.switch_page("views/1_Subject.py").run()
    at.selectbox(key="_subject_widget").select(ptid).run()
    _attribution(at).radio(key="attr_mode").set_value("records").run()
    assert not at.exception and not at.error
    assert any("not edited" in i.value for i in at.info)
    assert set(_downloads(at, media)) == {
        f"{ptid}_hyperfusion_saliency.png",
        f"{ptid}_hyperfusion_saliency.nii.gz",
    }

    # Edit APOE4 on the Subject page, then come back
    at.switch_page("views/1_Subject.py").run()
    apoe = 0 if at.number_input(key="value_APOE4").value == 2 else 2
    at.number_input(key="value_APOE4").set_value(apoe).run()
    edited = at.session_state["edited_record"]["record"]
    _attribution(at).radio(key="attr_mode").set_value("records").run()
    assert not at.exception and not at.error
    assert not any("not edited" in i.value for i in at.info)
    assert any("APOE4" in c.value and f"→ {apoe}" in c.value for c in at.caption)
    assert any(d.value.columns[:5].tolist()[-1] == "Δ sum" for d in at.dataframe)
    rows = _scene(at)["rows"]
    assert [r["difference"] for r in rows] == [False, True] and rows[1]["sign"] == "both"
    files = _downloads(at, media)
    name = f"{ptid}_hyperfusion_saliency_edited-minus-recorded.nii.gz"
    assert set(files) == {f"{ptid}_hyperfusion_saliency_edited-vs-recorded.png", name}
    difference = nib.Nifti1Image.from_bytes(gzip.decompress(files[name])).get_fdata(dtype=np.float32)
    assert np.abs(difference).max() > 0
    assert difference.min() < 0 < difference.max()  # signed, not |edited| − |recorded| of one sign
    recorded = _expected_map(env, "hyperfusion", ptid)
    np.testing.assert_allclose(
        difference, _expected_map(env, "hyperfusion", ptid, edited) - recorded, rtol=1e-4, atol=1e-8
    )

    # A model that ignores the record: the page says the difference is zero instead of drawing it
    at.selectbox(key="attr_model").set_value("image_only").run()
    assert not at.exception and not at.error
    assert any("does not read the record" in i.value and "zero" in i.value for i in at.info)
    assert len(_page_downloads(at)) == 2


def test_restored_widget_state_is_honoured(app_env_two_image_models):
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    # what a shared link would restore into session state before the page runs
    at.session_state["attr_mode"] = "models"
    at.session_state["attr_model"] = "image_only"
    at.session_state["attr_model_b"] = "hyperfusion"
    at.session_state["attr_method"] = "integrated_gradients"
    at.session_state["attr_target"] = "MCI"
    at.session_state["attr_baseline"] = "blur"
    _attribution(at)
    assert not at.error
    assert at.radio(key="attr_mode").value == "models"
    assert at.selectbox(key="attr_model").value == "image_only"
    assert at.selectbox(key="attr_model_b").value == "hyperfusion"
    assert at.selectbox(key="attr_method").value == "integrated_gradients"
    assert at.radio(key="attr_target").value == "MCI"
    assert at.selectbox(key="attr_baseline").value == "blur"
    assert any("Convergence delta" in c.value for c in at.caption)


def test_an_engine_error_is_a_message_not_a_traceback(app_env, monkeypatch):
    import hyperfusion.explain

    def fail(*args, **kwargs):
        raise DataError("the scan is not where the model looks; register it to MNI first")

    monkeypatch.setattr(hyperfusion.explain, "explain_image", fail)
    at = _open()
    assert not at.exception
    assert any("register it to MNI" in e.value for e in at.error)
    assert _scene(at)["rows"] == []  # the scan alone, still browsable
    assert not _page_downloads(at)


def test_a_new_map_reports_progress_and_is_computed_once(app_env, monkeypatch):
    """The progress bar's pass computes the map through the engine's cache; the dashboard's cached call then
    finds it there instead of computing it again."""
    import streamlit as st

    import hyperfusion.explain
    import hyperfusion.explain.image as image

    st.cache_data.clear()
    hyperfusion.explain.default_cache().clear()
    forwards, fractions = [], []
    attribute_views, explain_image = image.attribute_views, hyperfusion.explain.explain_image

    def counting(*args, **kwargs):
        forwards.append(args[3])
        return attribute_views(*args, **kwargs)

    def reporting(*args, progress=None, **kwargs):
        def report(f: float) -> None:
            fractions.append(f)
            progress(f)

        return explain_image(*args, progress=report if progress else None, **kwargs)

    monkeypatch.setattr(image, "attribute_views", counting)
    monkeypatch.setattr(hyperfusion.explain, "explain_image", reporting)
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    at.session_state["attr_method"] = "smoothgrad"
    _attribution(at)
    assert not at.error
    assert forwards == ["smoothgrad", "smoothgrad"]  # the ensemble's two members, once each
    assert fractions[-1] == 1.0 and fractions == sorted(fractions) and len(fractions) > 2
    at.slider(key="vw_opacity").set_value(0.3).run()  # a display change computes nothing
    assert len(forwards) == 2


def test_an_uploaded_subject_in_two_model_mode_stays_in_the_session_and_downloads_on_its_grid(
    app_env_two_image_models, media
):
    import hashlib

    import hyperfusion.explain

    good = sorted((Path(app_env_two_image_models["cohort"]) / "images").glob("*.nii.gz"))[1]
    # the cohort scan, compressed anew: other bytes (a hash of its own), the same image
    upload = gzip.compress(gzip.decompress(good.read_bytes()), compresslevel=1)
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    at.switch_page("views/5_Upload.py").run()
    at.file_uploader(key="upload_scan").set_value(("mine.nii.gz", upload, "application/gzip"))
    at.file_uploader(key="upload_csv").set_value(
        ("row.csv", b"AGE,PTGENDER,PTEDUCAT,APOE4\n71,Male,12,2\n", "text/csv")
    ).run()
    assert not at.exception and not at.error
    _attribution(at).radio(key="attr_mode").set_value("models").run()
    assert not at.exception and not at.error
    assert len(at.session_state["upload_maps"]) == 2  # both maps kept in this session
    sha = hashlib.sha256(upload).hexdigest()
    cached = hyperfusion.explain.default_cache()._entries.values()
    assert all(a.scan_sha256 != sha for a in cached)  # and nowhere process-wide
    files = _downloads(at, media)
    assert set(files) == {
        "mine_hyperfusion-vs-image_only_saliency.png",
        "mine_hyperfusion_saliency.nii.gz",
        "mine_image_only_saliency.nii.gz",
    }
    scan = nib.load(good)
    for name in ("mine_hyperfusion_saliency.nii.gz", "mine_image_only_saliency.nii.gz"):
        nifti = nib.Nifti1Image.from_bytes(gzip.decompress(files[name]))
        assert nifti.shape == scan.shape
        np.testing.assert_allclose(nifti.affine, scan.affine, atol=1e-5)
        assert np.abs(nifti.get_fdata()).max() > 0


def test_a_shared_view_is_restored_into_the_viewer_and_its_controls(app_env):
    """What a link puts into session state (share.apply_scenario): the viewer opens at its cursor and zoom, with
    its threshold, sign, colour map and overlays; the caption reads the values at that cursor."""
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    view = {
        "cursor": "-26,-25,-13",  # a voxel centre of the 4 mm test scans
        "zoom": "2.5",
        "centre": "-20,-20,-10",
        "threshold": "0.0001",
        "sign": "both",
        "cmap": "coolwarm",
        "layers": "map,atlas",
        "orientation": "neurological",
        "opacity": "0.4",
    }
    for key, value in view.items():
        at.session_state[f"attr_{key}"] = value
    _attribution(at)
    assert not at.error and not any("view" in w.value for w in at.warning)
    scene = _scene(at)
    assert scene["view"]["zoom"] == 2.5 and scene["view"]["radiological"] is False
    assert scene["view"]["layers"] == ["map", "atlas"] and scene["view"]["opacity"] == 0.4
    assert scene["view"]["cursor"] == [-26, -25, -13] and scene["view"]["centre"] == [-20, -20, -10]
    row = scene["rows"][0]
    assert row["sign"] == "both" and row["threshold"] == 0.0001
    assert at.radio(key="vw_sign").value == "both" and at.radio(key="vw_kind").value == "absolute"
    assert at.selectbox(key="vw_cmap").value == "coolwarm" and at.toggle(key="vw_radiological").value is False
    crosshair = next(c.value for c in at.caption if c.value.startswith("Crosshair at"))
    assert "x = −26, y = −25, z = −13 mm" in crosshair and "hyperfusion" in crosshair
    assert ("Left-Hippocampus" if atlas_path() else "hippocampus_L") in crosshair
    assert {k: at.session_state[f"attr_{k}"] for k in view} == view  # what the next link carries

    at.session_state["attr_zoom"] = "99"  # a bad value: said, and the default used instead
    at.run()
    assert any("zoom" in w.value for w in at.warning) and _scene(at)["view"]["zoom"] == 1.0
    assert _scene(at)["view"]["cursor"] == [-26, -25, -13]


def test_thresholds_and_peaks_change_the_view_not_the_volumes(app_env):
    at = _open()
    first = _scene(at)
    assert first["view"]["cursor"] is not None  # a new subject opens at its map's peak
    at.slider(key="vw_percentile").set_value(50).run()
    lower = _scene(at)
    assert lower["rows"][0]["threshold"] < first["rows"][0]["threshold"]
    assert lower["rows"][0]["id"] == first["rows"][0]["id"] and lower["scan"]["id"] == first["scan"]["id"]
    at.radio(key="vw_kind").set_value("absolute").run()
    at.number_input(key="vw_absolute").set_value(0.5).run()
    assert _scene(at)["rows"][0]["threshold"] == 0.5
    assert at.session_state["attr_threshold"] == "0.5"
    at.radio(key="vw_sign").set_value("both").run()
    assert at.selectbox(key="vw_cmap").value == "cold_hot"  # a diverging colour map for both signs
    revision = _scene(at)["view"]["revision"]
    at.session_state["attr_cursor"] = "0,0,0"
    at.run()
    at.button(key="attr_peak_0").click().run()
    scene = _scene(at)
    assert scene["view"]["revision"] > revision and scene["view"]["cursor"] == first["view"]["cursor"]


def test_grad_cam_says_what_its_coarse_grid_is_in_words(app_env):
    at = AppTest.from_file(str(HOME), default_timeout=60).run()
    at.session_state["attr_method"] = "grad_cam"
    _attribution(at)
    assert not at.error
    described = " ".join(c.value for c in at.caption)
    assert "Grad-CAM reads layer" in described and "upsampled trilinearly" in described
    assert "{'layer'" not in described
