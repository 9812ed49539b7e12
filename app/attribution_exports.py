"""The Attribution page's last panels: what the viewer shows and how its colours compare, the downloads (the view as a picture, each map as NIfTI on the scan's
grid) and what each map is (Grad-CAM's coarse grid in words), with its per-region table."""

from __future__ import annotations

import attribution_views as av
import numpy as np
import pandas as pd
import streamlit as st

from hyperfusion.data.cohort import describe_changes
from hyperfusion.explain.regions import region_change
from hyperfusion.explain.viewer import coarse_caption

NIFTI_HELP = (
    "float32 .nii.gz on the scan's own voxel grid and affine (it opens over the scan in FSLeyes or "
    "ITK-SNAP): the signed map as computed, whatever the display shows"
)


def downloads(ch, maps, difference, png, img, ptid: str, predictor) -> None:
    """``png()`` draws the view as shown (slices through the crosshair). It and each NIfTI file is built only when asked for (a 1 mm map takes about a second
    to compress), from the signed map as computed; in the recorded-vs-edited mode it is the difference."""
    if not maps:
        return
    if len(maps) == 1:
        png_stem = maps[0].stem
    elif ch.model_b is not None:
        png_stem = av.file_stem(ptid, f"{ch.model}-vs-{ch.model_b}", ch.method)
    else:
        png_stem = av.file_stem(ptid, ch.model, ch.method, "edited-vs-recorded")
    exported = [difference] if difference is not None else maps
    buttons = st.container(horizontal=True)
    buttons.download_button(
        "Download the view (PNG)",  # drawn only when asked for
        png,
        file_name=f"{png_stem}.png",
        mime="image/png",
        key="attr_download_png",
        on_click="ignore",
    )
    for i, m in enumerate(exported):
        explained_class = ch.cls if predictor.models[m.model].task == "ad" else ""
        described = (
            f"hyperfusion {ch.method}{' difference' if m.difference else ''} {explained_class} {m.model}"
        )

        def build(m: av.SubjectMap = m, described: str = described) -> bytes:
            return av.nifti_gz(m.data, img.affine, img.header, described)

        what = "the difference" if m.difference else m.model if len(exported) > 1 else "the map"
        buttons.download_button(
            f"Download {what} (NIfTI)",
            build,
            file_name=f"{m.stem}.nii.gz",
            mime="application/gzip",
            key=f"attr_download_nifti_{i}",
            on_click="ignore",
            help=NIFTI_HELP,
        )


def descriptions_and_regions(maps, difference, recorded_summary, description: str) -> None:
    """What each map is (method, convergence, coarseness), and where it falls: per region, or for the
    difference per region edited − recorded."""
    for m in maps:
        if m.summary is None:
            continue
        attr = m.summary["attribution"]
        parts = [f"{m.title}: {description}."]
        if attr.get("relative_delta") is not None:
            parts.append(f"Convergence delta: {attr['relative_delta']:.2g} of the output gap.")
        if attr.get("coarse"):
            parts.append(coarse_caption(attr["coarse"]))
        st.caption(" ".join(parts))
    if difference is not None:
        table = region_change(recorded_summary, maps[0].summary)
        if not table.empty:
            st.subheader("Per region: edited − recorded")
            st.dataframe(table, hide_index=True)
        return
    tables = [(m, pd.DataFrame(m.summary.get("regions") or [])) for m in maps if m.summary is not None]
    tables = [(m, t) for m, t in tables if not t.empty]
    if tables:
        st.subheader("Per region")
    for m, t in tables:
        if len(tables) > 1:
            st.markdown(f"**{m.title}**")
        st.dataframe(t, hide_index=True)


def caption(ch, maps, predicted, explained) -> str:
    """What the maps are, how their colours compare, and each model's prediction (the Subject page's number)."""
    parts = [] if ch.mode == "records" else ["Maps computed for the record as edited on the subject page."]
    parts.append(
        "An attribution map shows where the model's output is sensitive, not a proof of what it relies on."
    )
    if ch.model_b is not None and maps:
        if ch.shared:
            parts.append(
                "Both maps share one colour scale and one threshold (computed over the voxels of both), so equal "
                "colours mean equal attribution: compare how much, not only where."
            )
        elif ch.comparable:
            parts.append(
                "Each map has its own colour scale and threshold: compare where the models look, not how much."
            )
        else:
            parts.append(
                "The two models explain different outputs (a class probability and years), so each map has its "
                "own colour scale."
            )
    parts += [
        f"{m.model} predicts {predicted(m)} for this record (as on the Subject page)."
        for m in maps
        if m.summary
    ]
    return " ".join(parts)


def difference_caption(ch, maps, difference, edits, recorded_summary, predicted, notices) -> None:
    largest = float(np.abs(difference.data).max())
    edited_largest = float(np.abs(maps[0].data).max()) or 1.0
    st.caption(
        f"Edited on the Subject page: {describe_changes(edits)}. Same model, method and class ({ch.cls}) under "
        f"both records; it predicts {predicted(maps[0], recorded_summary)} recorded, {predicted(maps[0])} edited. "
        "The difference (edited − recorded) is signed: red–yellow where the edited record raises the attribution, "
        "blue–cyan where it lowers it. It has its own colour scale: its largest |value| is "
        f"{largest:.3g}, {100 * largest / edited_largest:.0f}% of the edited map's."
    )
    if largest == 0:
        notices.info("The two maps are identical: this edit does not move the map.")
