"""hyperfusion.pages.attribution: the Attribution page's maps, captions, downloads and viewer state, without
Streamlit (maps stand in for the engine's: what is checked is how the page's sections are built from them)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np

from hyperfusion.errors import HyperFusionError
from hyperfusion.explain import viewer as vw
from hyperfusion.pages import attribution as A

LABELS = {"saliency": "Saliency"}
RECORDED = {"AGE": 70.0, "PTGENDER": "Female", "APOE4": 0}


def _summary(prediction: float, output: str = "probability") -> dict:
    regions = [{"region": "hippocampus", "sum": 1.0}]
    attribution = {"prediction": prediction, "settings": {"output": output}, "relative_delta": 0.01}
    return {"attribution": attribution, "regions": regions}


def _compute(name: str, record: dict, which: str = ""):
    """A map that grows with APOE4, so an edit of APOE4 moves it and an edit of nothing does not."""
    data = np.full((2, 2, 2), 1.0 + float(record.get("APOE4", 0)), dtype=np.float32)
    return data, _summary(0.5 + 0.1 * float(record.get("APOE4", 0)))


def _choices(mode: str = "one", model_b: str | None = None, shared: bool = False) -> A.Choices:
    return A.Choices(mode, "fusion", model_b, "AD", "saliency", "zero", model_b is not None, shared)


def test_recorded_vs_edited_gives_the_edited_map_and_the_signed_difference():
    shown = A.compute_maps(
        _choices("records"), _compute, "S1", RECORDED, {**RECORDED, "APOE4": 2}, LABELS, True
    )
    edited, difference = shown.maps
    assert shown.difference is difference and difference.difference and not edited.difference
    assert np.array_equal(difference.data, np.full((2, 2, 2), 2.0)) and shown.notes == []
    assert shown.recorded_summary["attribution"]["prediction"] == 0.5
    assert difference.stem == "S1_fusion_saliency_edited-minus-recorded"
    assert [c[0] for c in shown.edits] == ["APOE4"]
    caption = A.difference_caption(_choices("records"), shown, {"fusion": "ad"})
    assert "APOE4" in caption and "P(AD) = 0.500 recorded, P(AD) = 0.700 edited" in caption
    assert "its largest |value| is 2, 67% of the edited map's" in caption  # 2 of the edited map's 3


def test_an_edit_the_map_ignores_and_no_edit_are_said():
    same = {**RECORDED, "AGE": 71.0}  # _compute's map does not move with AGE
    shown = A.compute_maps(_choices("records"), _compute, "S1", RECORDED, same, LABELS, True)
    assert [b.value for b in shown.notes] == ["The two maps are identical: this edit does not move the map."]
    unread = A.compute_maps(_choices("records"), _compute, "S1", RECORDED, same, LABELS, False)
    assert len(unread.maps) == 1 and "does not read the record" in unread.notes[0].value
    unedited = A.compute_maps(_choices("records"), _compute, "S1", RECORDED, RECORDED, LABELS, True)
    assert len(unedited.maps) == 1 and "was not edited" in unedited.notes[0].value


def test_a_refused_map_is_an_error_and_no_map():
    def refuse(name, record, which=""):
        raise HyperFusionError(f"{name} does not read the image")

    shown = A.compute_maps(_choices(), refuse, "S1", RECORDED, RECORDED, LABELS, True)
    assert shown.maps == [] and [(b.kind, b.value) for b in shown.notes] == [
        ("error", "fusion does not read the image")
    ]


def test_two_models_name_their_files_and_captions_say_how_the_colours_compare():
    ch = _choices("models", "image_only", shared=True)
    shown = A.compute_maps(ch, _compute, "uploaded: my scan.nii.gz", RECORDED, RECORDED, LABELS, True)
    tasks = {"fusion": "ad", "image_only": "ad"}
    png, exports = A.downloads(ch, shown, "uploaded: my scan.nii.gz", tasks)
    assert png == "my-scan_fusion-vs-image_only_saliency"
    assert [e.file_name for e in exports] == [
        "my-scan_fusion_saliency.nii.gz",
        "my-scan_image_only_saliency.nii.gz",
    ]
    assert [e.label for e in exports] == ["Download fusion (NIfTI)", "Download image_only (NIfTI)"]
    assert exports[0].description == "hyperfusion saliency AD fusion"
    assert "share one colour scale" in A.caption(ch, shown, tasks)
    assert "own colour scale" in A.caption(_choices("models", "image_only"), shown, tasks)
    rows = A.map_layers(ch, shown, np.eye(4), LABELS, tasks, "absolute")
    assert [r.label for r in rows] == ["|Saliency| of P(AD)", "|Saliency| of P(AD)"]
    details = A.map_details(shown, "gradients")
    assert [b.kind for b in details] == [
        "caption",
        "caption",
        "subheader",
        "markdown",
        "table",
        "markdown",
        "table",
    ]


def test_file_stem_and_nifti_keep_the_grid():
    assert A.file_stem("002_S_0295", "ad/hyperfusion", "integrated gradients") == (
        "002_S_0295_ad-hyperfusion_integrated-gradients"
    )
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    data = np.arange(8, dtype=np.float32).reshape(2, 2, 2) - 3
    img = nib.Nifti1Image.from_bytes(gzip.decompress(A.nifti_gz(data, affine, nib.Nifti1Header(), "d")))
    assert np.array_equal(img.get_fdata(dtype=np.float32), data) and np.allclose(img.affine, affine)


def test_percent_progress_reports_once_per_percent():
    seen = []
    report = A.percent_progress(lambda f, text: seen.append((f, text)), "the map")
    for fraction in (0.0, 0.001, 0.004, 0.5, 0.5, 1.2):
        report(fraction)
    assert seen == [
        (0.0, "Computing the map … 0%"),
        (0.5, "Computing the map … 50%"),
        (1.0, "Computing the map … 100%"),
    ]


def test_viewer_state_tells_a_links_view_from_the_pages_own():
    store = {"attr_cursor": "1,2,3", "attr_threshold": "0.5", "attr_sign": "both", "attr_cmap": "coolwarm"}
    state = A.ViewerState(store)
    view, problems, linked = state.current()
    assert problems == [] and linked and view.cursor == (1.0, 2.0, 3.0) and state.revision == 1
    assert store["vw_kind"] == "absolute" and store["vw_absolute"] == 0.5 and store["vw_sign"] == "both"
    state.keep(view)
    assert state.current()[2] is False and state.revision == 1  # the page's own view: nothing to follow
    moved = state.reported({"cursor": [4, 5, 6], "centre": [0, 0, 0], "zoom": 40}, view)
    assert moved.cursor == (4.0, 5.0, 6.0) and moved.zoom == 16.0
    assert state.reported({"cursor": [4, 5, 6], "centre": [0, 0, 0], "zoom": 40}, view) is view  # not new
    state.set_cursor((7.123456, 8, 9))
    assert store["attr_cursor"] == "7.123,8,9" and state.revision == 2
    bad, problems, _ = A.ViewerState({"attr_zoom": "lots"}).current()
    assert problems and bad.zoom == vw.View().zoom


def test_colour_maps_follow_the_sign():
    assert A.colour_maps("both") == A.DIVERGING and A.colour_maps("absolute") == A.SEQUENTIAL
