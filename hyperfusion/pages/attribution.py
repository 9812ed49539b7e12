"""The Attribution page's sections: which maps a choice of mode, models and method asks for, what the viewer's
rows are, the captions that say what the maps show, the downloads' names and descriptions, and the per-region
tables. The maps themselves come from :func:`hyperfusion.explain.explain_image` (imported on first use, so the
page loads without torch)."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hyperfusion.data.cohort import describe_changes, record_changes
from hyperfusion.data.geometry import new_image_like
from hyperfusion.data.scenario import VIEW_KEYS
from hyperfusion.data.schema import CLASS_NAMES
from hyperfusion.errors import HyperFusionError
from hyperfusion.explain import viewer as vw
from hyperfusion.explain.regions import region_change
from hyperfusion.explain.views import ras_volume
from hyperfusion.pages import UPLOAD_PREFIX, Block

#: Comparison modes: the value a page keeps for its mode (stable, for shared links) -> label.
MODES: dict[str, str] = {
    "one": "one model",
    "models": "two models side by side",
    "records": "recorded vs edited record",
}
SEQUENTIAL = ("hot", "inferno", "viridis", "jet")  # colour maps of |values| or one sign
DIVERGING = ("cold_hot", "coolwarm", "RdBu_r", "bwr")  # of signed values
NIFTI_HELP = (
    "float32 .nii.gz on the scan's own voxel grid and affine (it opens over the scan in FSLeyes or "
    "ITK-SNAP): the signed map as computed, whatever the display shows"
)


@dataclass
class Choices:
    """What the page's controls chose: the mode, one or two models, the class explained, method and baseline."""

    mode: str
    model: str | None
    model_b: str | None
    cls: str
    method: str
    baseline: str
    comparable: bool  # two maps of the same kind of output (not a probability and years)
    shared: bool  # one colour scale for both


@dataclass(eq=False)  # arrays do not compare as one truth value
class SubjectMap:
    """One map the page draws: on the scan's own voxel grid, signed as computed, with how it is named."""

    data: np.ndarray
    model: str
    title: str  # the row's title in the figure
    stem: str  # the download's file name without its suffix
    summary: dict | None = None  # description and per-region summary (None for a difference)
    difference: bool = False


@dataclass
class Maps:
    """The maps of one choice: ``edits`` of the record (recorded-vs-edited mode), the recorded record's map
    summary when a difference was computed, and ``notes`` (messages to show above the viewer)."""

    maps: list[SubjectMap] = field(default_factory=list)
    edits: list = field(default_factory=list)
    recorded_summary: dict | None = None
    notes: list[Block] = field(default_factory=list)

    @property
    def difference(self) -> SubjectMap | None:
        return self.maps[1] if len(self.maps) == 2 and self.maps[1].difference else None


def reads_record(entry) -> bool:
    """Whether a loaded model (every member of an ensemble shares the architecture) reads the tabular record."""
    return bool(entry.members[0].network.reads_record)


def image_only_first(predictor, names: list[str]) -> str:
    """The first of ``names`` that reads no record (the image-only baseline to compare with), else the first."""
    return next((n for n in names if not reads_record(predictor.models[n])), names[0])


def interactive_methods() -> list[dict]:
    """The explain engine's methods that run interactively (occlusion is offline: use `hyperfusion explain`)."""
    from hyperfusion.explain import available_methods

    return [m for m in available_methods() if not m.get("offline")]


def target_index(predictor, name: str, cls: str) -> int | None:
    """The class index explained for model ``name``: ``cls`` for an AD model; brain-age models have none."""
    return CLASS_NAMES.index(cls) if predictor.models[name].task == "ad" else None


def attribution_map(
    predictor, name, scan, record, method, target, baseline, cache=True, progress=None
) -> tuple[np.ndarray, dict]:
    """One model's attribution map on the scan's own voxel grid, float32 (I, J, K), signed, with its
    description and per-region summary (hyperfusion.explain's single entry point)."""
    from hyperfusion.explain import explain_image

    if not predictor.models[name].members[0].reads_scan:
        raise HyperFusionError(f"{name} does not read the image: it has no image attribution map")
    attribution = explain_image(
        predictor,
        name,
        scan,
        record,
        method,
        target=target,
        baseline=baseline,
        cache=cache,
        progress=progress,
    )
    return attribution.to_subject(scan).get_fdata(dtype=np.float32), attribution.summary(scan)


def percent_progress(update: Callable[[float, str], None], label: str) -> Callable[[float], None]:
    """A progress callback for ``explain_image`` that calls ``update(fraction, text)`` once per percent (not
    once per forward pass)."""
    shown = [-1]

    def report(fraction: float) -> None:
        percent = int(100 * min(max(fraction, 0.0), 1.0))
        if percent != shown[0]:
            shown[0] = percent
            update(percent / 100, f"Computing {label} … {percent}%")

    return report


def file_stem(*parts: str) -> str:
    """A file name from its parts, joined by "_" (ADNI's 002_S_0295 keeps its own): characters a file system or
    a shell dislikes ("/" of a nested model's name, spaces) become "-"; an uploaded subject's name loses its
    "uploaded: " prefix and .nii(.gz) suffix."""
    cleaned = []
    for part in parts:
        text = re.sub(r"\.nii(\.gz)?$", "", part.removeprefix(UPLOAD_PREFIX))
        cleaned.append(re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-._") or "x")
    return "_".join(cleaned)


def nifti_gz(data: np.ndarray, affine: np.ndarray, header, description: str = "") -> bytes:
    """The map as a gzipped NIfTI-1 on the scan's own grid and affine, built in memory (nothing is written)."""
    return gzip.compress(
        new_image_like(data, affine, header, description).to_bytes(), compresslevel=6, mtime=0
    )


def compute_maps(
    ch: Choices, compute: Callable, ptid: str, recorded: dict, record: dict, labels: dict, reads: bool
) -> Maps:
    """The maps of the chosen mode. ``compute(name, record, which)`` -> (map, summary), ``which`` saying which
    record it is for (for a progress bar); ``reads``: whether the first model reads the record."""
    out, method, model = Maps(), ch.method, ch.model
    if model is None:
        return out
    title = f"{model} · {labels[method]}"
    try:
        out.edits = edits = record_changes(recorded, record) if ch.mode == "records" else []
        if ch.model_b is not None:
            for name in (model, ch.model_b):
                data, summary = compute(name, record)
                stem = file_stem(ptid, name, method)
                out.maps.append(SubjectMap(data, name, f"{name} · {labels[method]}", stem, summary))
        elif ch.mode == "records" and edits and reads:
            before, out.recorded_summary = compute(model, recorded, " (recorded record)")
            after, summary = compute(model, record, " (edited record)")
            stem = file_stem(ptid, model, method)
            out.maps.append(SubjectMap(after, model, f"{title} · edited record", stem, summary))
            stem = file_stem(ptid, model, method, "edited-minus-recorded")
            out.maps.append(
                SubjectMap(after - before, model, "difference: edited − recorded", stem, difference=True)
            )
            if not np.any(after - before):
                out.notes.append(
                    Block("info", "The two maps are identical: this edit does not move the map.")
                )
        else:
            data, summary = compute(model, record)
            out.maps.append(SubjectMap(data, model, title, file_stem(ptid, model, method), summary))
            if ch.mode == "records" and not edits:
                text = (
                    "The record was not edited on the Subject page, so there is no difference to show; the map "
                    "below is for the recorded values. Change a value there (e.g. APOE4) and come back."
                )
                out.notes.append(Block("info", text))
            elif ch.mode == "records":
                text = (
                    f"{model} does not read the record, so its map is the same under the recorded and the edited "
                    f"values ({describe_changes(edits)}): the difference is zero everywhere. Its map is shown."
                )
                out.notes.append(Block("info", text))
    except HyperFusionError as exc:
        out.maps, out.notes = [], [*out.notes, Block("error", str(exc))]
    return out


def explained(task: str, cls: str, summary: dict | None) -> str:
    """What a map explains: "P(AD)", "the logit of AD" or "the predicted age" (``summary``: the map's)."""
    if task != "ad":
        return "the predicted age"
    output = (((summary or {}).get("attribution") or {}).get("settings") or {}).get("output", "probability")
    return f"P({cls})" if output == "probability" else f"the logit of {cls}"


def predicted(task: str, cls: str, summary: dict) -> str:
    """The model's prediction for the map's record, as the Subject page shows it (carried in the summary)."""
    value = summary["attribution"]["prediction"]
    return f"P({cls}) = {value:.3f}" if task == "ad" else f"an age of {value:.1f} years"


def map_layers(ch: Choices, shown: Maps, affine, labels: dict, tasks: dict, sign: str) -> list[vw.MapLayer]:
    """The viewer's rows: each map on the scan's RAS grid, with what its colour bar measures (``tasks``:
    model -> task)."""
    out = []
    for m in shown.maps:
        as_ = labels[ch.method] if sign != "absolute" or m.difference else f"|{labels[ch.method]}|"
        of = explained(tasks[m.model], ch.cls, m.summary or shown.recorded_summary)
        data = ras_volume(m.data, affine).data  # the scan's RAS grid, as the viewer's scan
        title = "difference" if m.difference else m.model
        out.append(vw.MapLayer(data, title, f"{'Δ ' if m.difference else ''}{as_} of {of}", m.difference))
    return out


def caption(ch: Choices, shown: Maps, tasks: dict) -> str:
    """What the maps are, how their colours compare, and each model's prediction (the Subject page's number)."""
    parts = [] if ch.mode == "records" else ["Maps computed for the record as edited on the subject page."]
    parts.append(
        "An attribution map shows where the model's output is sensitive, not a proof of what it relies on."
    )
    if ch.model_b is not None and shown.maps:
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
        f"{m.model} predicts {predicted(tasks[m.model], ch.cls, m.summary)} for this record (as on the Subject "
        "page)."
        for m in shown.maps
        if m.summary
    ]
    return " ".join(parts)


def difference_caption(ch: Choices, shown: Maps, tasks: dict) -> str:
    """What was edited, the prediction under both records, and how large the difference is."""
    edited = shown.maps[0]
    largest = float(np.abs(shown.difference.data).max())
    edited_largest = float(np.abs(edited.data).max()) or 1.0
    before = predicted(tasks[edited.model], ch.cls, shown.recorded_summary)
    after = predicted(tasks[edited.model], ch.cls, edited.summary)
    return (
        f"Edited on the Subject page: {describe_changes(shown.edits)}. Same model, method and class ({ch.cls}) "
        f"under both records; it predicts {before} recorded, {after} edited. The difference (edited − recorded) is "
        "signed: red–yellow where the edited record raises the attribution, blue–cyan where it lowers it. It has "
        f"its own colour scale: its largest |value| is {largest:.3g}, {100 * largest / edited_largest:.0f}% of "
        "the edited map's."
    )


@dataclass
class Export:
    """One NIfTI download: the button's words, the map, its file name and the description written in it."""

    label: str
    map: SubjectMap
    file_name: str
    description: str


def downloads(ch: Choices, shown: Maps, ptid: str, tasks: dict) -> tuple[str, list[Export]]:
    """The view's PNG file stem and the NIfTI files offered: each map, or in the recorded-vs-edited mode the
    difference, signed as computed."""
    maps = shown.maps
    if len(maps) == 1:
        png_stem = maps[0].stem
    elif ch.model_b is not None:
        png_stem = file_stem(ptid, f"{ch.model}-vs-{ch.model_b}", ch.method)
    else:
        png_stem = file_stem(ptid, ch.model, ch.method, "edited-vs-recorded")
    exported = [shown.difference] if shown.difference is not None else maps
    out = []
    for m in exported:
        explained_class = ch.cls if tasks[m.model] == "ad" else ""
        described = (
            f"hyperfusion {ch.method}{' difference' if m.difference else ''} {explained_class} {m.model}"
        )
        what = "the difference" if m.difference else m.model if len(exported) > 1 else "the map"
        out.append(Export(f"Download {what} (NIfTI)", m, f"{m.stem}.nii.gz", described))
    return png_stem, out


def map_details(shown: Maps, description: str) -> list[Block]:
    """What each map is (method, convergence, coarseness), and where it falls: per region, or for the
    difference per region edited − recorded."""
    out = []
    for m in shown.maps:
        if m.summary is None:
            continue
        attr = m.summary["attribution"]
        parts = [f"{m.title}: {description}."]
        if attr.get("relative_delta") is not None:
            parts.append(f"Convergence delta: {attr['relative_delta']:.2g} of the output gap.")
        if attr.get("coarse"):
            parts.append(vw.coarse_caption(attr["coarse"]))
        out.append(Block("caption", " ".join(parts)))
    if shown.difference is not None:
        table = region_change(shown.recorded_summary, shown.maps[0].summary)
        return out + (
            [Block("subheader", "Per region: edited − recorded"), Block("table", table)] if len(table) else []
        )
    tables = [(m, pd.DataFrame(m.summary.get("regions") or [])) for m in shown.maps if m.summary is not None]
    tables = [(m, t) for m, t in tables if not t.empty]
    out += [Block("subheader", "Per region")] if tables else []
    for m, t in tables:
        out += [Block("markdown", f"**{m.title}**")] if len(tables) > 1 else []
        out.append(Block("table", t))
    return out


def truth_volume(cohort_path: str | Path, ptid: str, uploaded: bool, load: Callable):
    """A synthetic cohort's truth map of a cohort subject (where its effects were planted) on its RAS grid, or
    None (real data, an upload, no file); ``load(path)`` reads the NIfTI file."""
    path = Path(cohort_path) / "truth" / f"{ptid}.nii.gz"
    if uploaded or not path.is_file():
        return None
    img = load(str(path))
    return ras_volume(np.asarray(img.dataobj), img.affine)


class ViewerState:
    """The Attribution viewer's view kept in a session's ``store`` (``st.session_state`` in the dashboard, a dict
    in a test) as the text a link carries (``attr_cursor``, ``attr_zoom``, ``attr_threshold`` …:
    :class:`hyperfusion.explain.viewer.View`), with what the page needs beside: the display widgets' state
    (``vw_*``), the revision the browser follows (a new one makes it take the view from Python) and the view
    the page itself last kept (``vw_seen``), to tell a link's view from the page's own."""

    def __init__(self, store) -> None:
        self.store = store

    def current(self) -> tuple[vw.View, list[str], bool]:
        """The view kept (as a link or the last run left it), each bad value found, and whether a cursor was
        set from outside the page (a link, a scenario file) since its last run. A view set from outside sets
        the display widgets and a new revision: the widgets and the browser follow it."""
        text = {k: self.store[f"attr_{k}"] for k in VIEW_KEYS if self.store.get(f"attr_{k}")}
        view, problems = vw.View.from_text(text)
        external = text != self.store.get("vw_seen")
        if external:
            self.store.update(widget_state(view))
            self._new_revision()
        return view, problems, external and "cursor" in text

    @property
    def revision(self) -> int:
        return self.store.get("vw_revision", 0)

    def _new_revision(self) -> None:
        self.store["vw_revision"] = self.revision + 1

    def set_cursor(self, mm) -> None:
        """Move the crosshair from Python (a new subject, a peak button): the browser takes it on its next draw."""
        self.store["attr_cursor"] = ",".join(f"{float(v):.4g}" for v in mm)
        self._new_revision()

    def place_cursor(
        self, view: vw.View, volume, rows: list[vw.MapLayer], ptid: str, linked: bool
    ) -> vw.View:
        """``view`` with its crosshair on the first map's peak when it has none or the subject changed (unless
        a link set it)."""
        if view.cursor is None or (self.store.get("cursor_subject") != ptid and not linked):
            self.set_cursor(vw.peak_mm(volume, rows[0].data if rows else volume.data * 0))
            self.store["cursor_subject"] = ptid
        return vw.View.from_text({"cursor": self.store["attr_cursor"]}, view)[0]

    def reported(self, reported: dict | None, view: vw.View) -> vw.View:
        """``view`` with the cursor, centre and zoom the browser reported, when it reported a new one (zoom kept
        within 1-16)."""
        if not reported or reported == self.store.get("vw_reported"):
            return view
        self.store["vw_reported"] = reported
        text = {
            "cursor": ",".join(map(str, reported["cursor"])),
            "centre": ",".join(map(str, reported["centre"])),
            "zoom": str(min(max(float(reported["zoom"]), 1.0), 16.0)),
        }
        return vw.View.from_text(text, view)[0]

    def keep(self, view: vw.View) -> None:
        """Keep the view as text (what a link carries) and remember it as the page's own."""
        text = view.to_text()
        self.store.update({f"attr_{k}": text[k] for k in VIEW_KEYS if k in text})
        self.store["vw_seen"] = {k: text[k] for k in VIEW_KEYS if k in text}


def widget_state(view: vw.View) -> dict:
    """The viewer's display widgets' state (``vw_*`` keys) for ``view``: how a link's view reaches them."""
    percentile = view.percentile()
    state = {
        "vw_sign": view.sign,
        "vw_kind": "percentile" if percentile is not None else "absolute",
        "vw_cmap": view.cmap,
        "vw_opacity": view.opacity,
        "vw_layers": list(view.layers),
        "vw_radiological": view.radiological,
    }
    if percentile is not None:
        return {**state, "vw_percentile": int(percentile)}
    return {**state, "vw_absolute": float(view.threshold)}


def colour_maps(sign: str) -> tuple[str, ...]:
    """The colour maps offered for a view of ``sign`` ("both": diverging, else sequential)."""
    return DIVERGING if sign == "both" else SEQUENTIAL


def prepared_key(volume, rows: list[vw.MapLayer], truth) -> tuple:
    """What :func:`hyperfusion.explain.viewer.prepare` depends on: the scan, each row's title, label and data,
    and whether a truth map is shown."""
    rows_key = tuple((m.title, m.label, vw.fingerprint(m.data)) for m in rows)
    return vw.fingerprint(volume.data), rows_key, truth is not None
