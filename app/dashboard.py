"""Shared state, settings and caching of the dashboard's pages (no science here: it calls hyperfusion).

Settings come from environment variables at the start of a session and can be changed in the sidebar:

    HYPERFUSION_COHORT        a cohort directory or an ADNIMERGE-format table (default: the demo AD cohort)
    HYPERFUSION_MODELS        model roots, separated by ``os.pathsep``: model directories, ensembles (directories
                              of model directories) or folders holding them (default: assets/demo/models)
    HYPERFUSION_DEMO_ASSETS   where the demo's cohorts and models live (default: the repository's assets/demo)

Heavy objects (cohort tables, the Predictor, demo scans, saliency maps) are cached at this boundary with
``st.cache_data`` / ``st.cache_resource``; the page state (settings, subject, record edits) lives in
``st.session_state``. torch is imported only when a page needs a prediction, so the first page is quick.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from hyperfusion.data.cohort import Cohort, load_cohort
from hyperfusion.data.schema import FEATURES
from hyperfusion.errors import HyperFusionError

RESEARCH_NOTICE = "Research use only — not for clinical decisions."
SYNTHETIC_NOTICE = "SYNTHETIC data / models: generated from a brain template, not real patients."


def default_assets() -> Path:
    from hyperfusion.demo import ASSETS

    return Path(os.environ.get("HYPERFUSION_DEMO_ASSETS") or ASSETS)


def default_settings() -> dict:
    assets = default_assets()
    models = os.environ.get("HYPERFUSION_MODELS") or str(assets / "models")
    cohort = os.environ.get("HYPERFUSION_COHORT") or str(assets / "cohorts" / "ad")
    return {"cohort": cohort, "models": models, "assets": str(assets)}


def settings() -> dict:
    if "settings" not in st.session_state:
        st.session_state["settings"] = default_settings()
    return st.session_state["settings"]


# --- models --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    """A model or ensemble found on disk, described from its card(s) without loading any weights."""

    name: str
    path: str
    task: str
    architecture: str
    members: int
    synthetic: bool
    cards: tuple[str, ...]  # card.json paths


def _card(path: Path) -> dict:
    return json.loads((path / "card.json").read_text())


def _info(name: str, path: Path, members: list[Path]) -> ModelInfo:
    cards = [_card(m) for m in members]
    arch = cards[0]["architecture"]
    return ModelInfo(
        name=name,
        path=str(path),
        task=arch["task"],
        architecture=arch["name"],
        members=len(members),
        synthetic=any(c.get("data", {}).get("synthetic", False) for c in cards),
        cards=tuple(str(m / "card.json") for m in members),
    )


def _one_architecture(dirs: list[Path]) -> bool:
    """Whether model directories can be one ensemble (folds of one architecture and task), rather than a
    folder of different models (assets/demo/models/brain_age holds hyperfusion, image_only and concat)."""
    kinds = {(c["architecture"]["task"], c["architecture"]["name"]) for c in map(_card, dirs)}
    return len(kinds) == 1


def discover_models(roots: str) -> tuple[list[ModelInfo], list[str]]:
    """Models and ensembles under the roots (``os.pathsep``-separated); returns (models, problems).

    A directory with ``card.json`` is a model; one whose sub-directories all hold cards of one architecture is
    an ensemble of them; any other directory is searched (three levels deep). Models are named by their path under the root.
    """
    found: list[ModelInfo] = []
    problems: list[str] = []

    def visit(path: Path, name: str, depth: int) -> None:
        try:
            if (path / "card.json").is_file():
                found.append(_info(name or path.name, path, [path]))
                return
            children = sorted(d for d in path.iterdir() if d.is_dir())
            members = [d for d in children if (d / "card.json").is_file()]
            if members and len(members) == len(children) and _one_architecture(members):
                found.append(_info(name or path.name, path, members))
            elif depth < 3:
                for d in children:
                    visit(d, f"{name}/{d.name}" if name else d.name, depth + 1)
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{path}: unreadable model card ({exc})")

    for root in filter(None, (r.strip() for r in roots.split(os.pathsep))):
        path = Path(root).expanduser()
        if not path.is_dir():
            problems.append(f"{path}: no such model directory")
            continue
        visit(path, "", 0)
    return found, problems


def missing_demo_models(models: list[ModelInfo], assets: Path) -> list[str]:
    """The demo models (hyperfusion.demo.DEMO) not present yet, or present with fewer folds than planned."""
    from hyperfusion.demo import DEMO

    have = {Path(m.path).resolve(): m.members for m in models}
    root = assets / "models"
    expected = [(root / "ad" / m, 4) for m in DEMO["four_fold_models"]]
    expected += [(root / "ad" / m, 1) for m in DEMO["one_fold_models"]]
    expected += [(root / "brain_age" / m, 1) for m in DEMO["brain_age_models"]]
    missing = []
    for path, folds in expected:
        n = have.get(path.resolve(), 0)
        if n < folds:
            label = str(path.relative_to(root))
            missing.append(label if n == 0 else f"{label} ({n} of {folds} folds so far)")
    return missing


@st.cache_resource(show_spinner="Loading models …")
def predictor_for(paths: tuple[tuple[str, str], ...]):
    """One Predictor per set of models (networks are shared by weights hash inside hyperfusion)."""
    import torch

    from hyperfusion.inference.predictor import Predictor

    # One intra-op thread: the server answers several sessions at once, and the many small decode calls of a
    # what-if stall when two threads contend with other work (measured: an edit 18 ms at 1 thread vs 46 ms at 2
    # on the busy 2-core machine; the cold prediction 140 vs 568 ms)
    torch.set_num_threads(1)
    predictor = Predictor(dict(paths))
    _PREDICTORS.add(predictor)
    return predictor


_PREDICTORS: weakref.WeakSet = weakref.WeakSet()  # every Predictor this server process made


def forget_scan(scan: bytes) -> None:
    """Drop an upload's image features from every predictor of the process (they are keyed by content)."""
    for predictor in list(_PREDICTORS):
        predictor.forget(scan)


# --- cohort --------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner="Reading the cohort table and checking a sample of its scans …")
def cached_cohort(path: str, _mtime: float) -> Cohort:
    # scans that fail the entry check do not stop the dashboard: every page says so (require_cohort); the
    # checks are not remembered on disk (the dashboard writes nothing), st.cache_data keeps the cohort
    return load_cohort(path, allow_unregistered=True, remember_checks=False)


def cohort() -> Cohort:
    path = Path(settings()["cohort"]).expanduser()
    table = path / "cohort.csv" if path.is_dir() else path
    return cached_cohort(str(path), table.stat().st_mtime if table.exists() else 0.0)


def require_cohort() -> Cohort:
    """The cohort, or a message saying why it cannot be read and where to change it (the page stops there)."""
    from messages import plain

    try:
        c = cohort()
    except (HyperFusionError, OSError) as exc:
        st.error(plain(f"The cohort could not be read: {exc}"))
        st.info("Point the sidebar's settings at a cohort directory or an ADNIMERGE table.")
        st.stop()
    show_scan_warnings(c)
    return c


def show_scan_warnings(c: Cohort) -> None:
    """A warning on the page when the cohort's scans failed the entry check as it was loaded."""
    from messages import plain

    for line in c.scan_warnings():
        st.warning(plain(line.replace("(--allow-unregistered)", "(the dashboard shows it, marked)")) + " "
                   + plain(DASHBOARD_COHORT_FIX))  # fmt: skip


DASHBOARD_COHORT_FIX = (
    "Its predictions and maps are unreliable: preprocess the raw scans with `hyperfusion preprocess --input "
    "RAW_FOLDER_OR_TABLE --out NEW_COHORT_DIR` and point the sidebar at that cohort."
)


def cohort_task(c: Cohort) -> str | None:
    """The task a cohort was made for ("ad" / "brain_age"), when its provenance says so."""
    return c.provenance.get("task")


def models_for(c: Cohort, models: list[ModelInfo]) -> list[ModelInfo]:
    task = cohort_task(c)
    return [m for m in models if task is None or m.task == task]


def is_demo_cohort(c: Cohort) -> bool:
    """A shipped synthetic table (cohort.json with the generator's configuration, no images/): its scans are
    generated on demand, subject by subject (the demo's cohorts and sweep tables are such tables)."""
    from hyperfusion.data.synthetic import read_config

    path = Path(c.path)
    return (
        c.is_synthetic and path.is_dir() and not (path / "images").is_dir() and read_config(path) is not None
    )


def scan_path(c: Cohort, ptid: str) -> str | None:
    """The subject's scan; for a shipped synthetic table, that subject's generated scan (hyperfusion.demo
    .subject_scan: shipped for the first subjects, else made in the cache in about a second)."""
    row = c.table.loc[c.table["PTID"] == ptid].iloc[0]
    if isinstance(row["image_path"], str):
        return row["image_path"]
    if is_demo_cohort(c):
        from hyperfusion.demo import subject_scan

        with st.spinner(
            f"Generating the synthetic scan of {ptid} into the cache (a second; the first one on this machine "
            "also builds the generator's atrophy fields, about a minute) …"
        ):
            path = subject_scan(c.path, ptid)
        return str(path) if path is not None else None
    return None


# --- records -------------------------------------------------------------------------------------------------
def recorded_values(row: pd.Series) -> dict:
    """A cohort row as raw ADNIMERGE values (censored CSF values keep their "<" / ">"; sex as text)."""
    out: dict = {}
    for f in FEATURES:
        v = row.get(f.name)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out[f.name] = None
        elif f.categories:
            out[f.name] = f.categories[int(v)]
        elif f.censorable and int(row.get(f"{f.name}_censored", 0)) != 0:
            out[f.name] = f"{'<' if row[f'{f.name}_censored'] < 0 else '>'}{v:g}"
        else:
            out[f.name] = float(v)
    return out


# --- page furniture ------------------------------------------------------------------------------------------
def page_setup(title: str) -> None:
    """Page config, the notices and the settings sidebar; call first on every page."""
    from in_memory import keep_uploads_in_memory

    st.set_page_config(page_title=f"HyperFusion · {title}", layout="wide")
    keep_uploads_in_memory()  # process-wide, whichever page a session opens first
    s = settings()
    synthetic = False
    try:
        c = cohort()
        synthetic = c.is_synthetic
        import share  # (a sibling module that imports this one)

        share.apply_link_once(c)
        share.restore_choices()
    except (HyperFusionError, OSError):
        pass
    models, _ = discover_models(s["models"])
    synthetic = synthetic or any(m.synthetic for m in models)
    uploaded = st.session_state.get("uploaded")
    if synthetic:
        st.warning(f"**{RESEARCH_NOTICE}** · **{SYNTHETIC_NOTICE}**", icon="⚠️")
    else:
        st.warning(f"**{RESEARCH_NOTICE}**", icon="⚠️")
    if uploaded:
        st.caption(f"Uploaded subject in this session: {uploaded['name']} (kept in memory only).")
    for problem in st.session_state.pop("link_problems", []):
        st.warning(f"Shared link: {problem}")
    with st.sidebar:
        st.markdown("### Settings")
        with st.form("settings_form"):
            cohort_in = st.text_input("Cohort directory or ADNIMERGE table", s["cohort"])
            models_in = st.text_area(
                "Model directories (one per line)", "\n".join(s["models"].split(os.pathsep))
            )
            if st.form_submit_button("Apply"):
                st.session_state["settings"] = {
                    **s,
                    "cohort": cohort_in.strip(),
                    "models": os.pathsep.join(
                        line.strip() for line in models_in.splitlines() if line.strip()
                    ),
                }
                st.session_state.pop("subject", None)
                st.rerun()
        st.caption(RESEARCH_NOTICE)


UPLOAD_PREFIX = "uploaded: "


@dataclass
class Subject:
    """The subject every page shows: a cohort subject, or the scan and record uploaded in this session.

    ``scan`` is a file path for cohort subjects and the file's bytes for an upload (kept in this session's
    memory only); ``recorded`` holds the raw record values (ADNIMERGE names), ``truth`` the diagnosis when known.
    """

    id: str
    scan: str | bytes | None
    recorded: dict
    truth: str | None
    uploaded: bool = False
    row: pd.Series | None = None

    @property
    def label(self) -> str:
        return self.id


def uploaded_subject() -> Subject | None:
    """The subject uploaded in this session (Upload page), if any."""
    up = st.session_state.get("uploaded")
    if not up or "scan" not in up:
        return None
    from hyperfusion.data.cohort import parse_record

    recorded = recorded_values(pd.Series(parse_record(up["record"], source="the uploaded record")))
    return Subject(UPLOAD_PREFIX + up["name"], up["scan"], recorded, up.get("truth"), uploaded=True)


def cohort_subject(c: Cohort, ptid: str, with_scan: bool = True) -> Subject:
    row = c.table.loc[c.table["PTID"] == ptid].iloc[0]
    truth = row.get("DX")
    return Subject(
        ptid,
        scan_path(c, ptid) if with_scan else None,
        recorded_values(row),
        truth if isinstance(truth, str) else None,
        row=row,
    )


def page_footer() -> None:
    """Call last on every page: keeps the address bar equal to the scenario and offers its downloads."""
    import share

    try:
        c = cohort()
    except (HyperFusionError, OSError):
        return
    models, _ = discover_models(settings()["models"])
    share.share_panel(c, c.is_synthetic or any(m.synthetic for m in models))


def _subject_chosen() -> None:
    st.session_state["subject"] = st.session_state["_subject_widget"]


def subject_picker(c: Cohort, with_scan: bool = True) -> Subject:
    """The current subject, shared by every page through st.session_state["subject"] (a widget's own state
    is dropped on pages that do not show it, so the choice is copied out of it). The subject uploaded in this
    session, if any, is the first choice."""
    ptids = c.table["PTID"].tolist()
    up = uploaded_subject()
    options = ([up.id] if up else []) + ptids
    if st.session_state.get("subject") not in options:
        st.session_state["subject"] = options[0]
    st.session_state["_subject_widget"] = st.session_state["subject"]
    st.selectbox("Subject", options, key="_subject_widget", on_change=_subject_chosen)
    chosen = st.session_state["subject"]
    if up is not None and chosen == up.id:
        return up
    return cohort_subject(c, chosen, with_scan=with_scan)


def load_scan(scan: str | bytes):
    """The scan as a nibabel image (validated; bytes stay in memory)."""
    from hyperfusion.data.nifti import load_nifti

    if isinstance(scan, bytes):
        up = st.session_state.get("uploaded") or {}
        return load_nifti(scan, name=up.get("name", "the uploaded scan"))
    return load_nifti(scan)


def as_float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[np.isfinite(a)]


# --- attribution -------------------------------------------------------------------------------------------
def attribution_methods() -> list[dict]:
    """The explain engine's methods that run interactively (occlusion is offline: use `hyperfusion explain`)."""
    from hyperfusion.explain import available_methods

    return [m for m in available_methods() if not m.get("offline")]


def attribution_map(
    predictor,
    name: str,
    scan: str | bytes,
    record: dict,
    method: str,
    target: int | None,
    baseline: str,
    cache: bool = True,
) -> tuple[np.ndarray, dict]:
    """One model's (or ensemble's) attribution map on the scan's own voxel grid, float32 (I, J, K), signed,
    and its description and per-region summary (through hyperfusion.explain's single entry point)."""
    from hyperfusion.explain import explain_image

    attribution = explain_image(
        predictor, name, scan, record, method, target=target, baseline=baseline, cache=cache
    )
    image = attribution.to_subject(scan)
    return image.get_fdata(dtype=np.float32), attribution.summary(scan)


@st.cache_data(show_spinner="Computing the attribution map …", max_entries=32)
def cached_attribution(
    models: tuple[tuple[str, str], ...],
    name: str,
    scan: str,
    record_json: str,
    method: str,
    target: int | None,
    baseline: str,
) -> tuple[np.ndarray, dict]:
    predictor = predictor_for(models)
    if not predictor.models[name].members[0].uses_image:
        raise HyperFusionError(f"{name} does not read the image: it has no image attribution map")
    return attribution_map(predictor, name, scan, json.loads(record_json), method, target, baseline)


def subject_attribution(
    models: tuple[tuple[str, str], ...],
    name: str,
    subject: Subject,
    record: dict,
    method: str,
    target: int | None,
    baseline: str,
) -> tuple[np.ndarray, dict]:
    """``cached_attribution`` for a cohort subject; an uploaded subject's maps are kept in this session only
    (never in the process-wide caches, so nothing derived from an upload outlives the session)."""
    record_json = json.dumps(record, sort_keys=True, default=str)
    if not subject.uploaded:
        return cached_attribution(models, name, subject.scan, record_json, method, target, baseline)
    store = st.session_state.setdefault("_upload_maps", OrderedDict())
    key = (models, name, hashlib.sha256(subject.scan).hexdigest(), record_json, method, target, baseline)
    if key not in store:
        with st.spinner("Computing the attribution map …"):
            predictor = predictor_for(models)
            if not predictor.models[name].members[0].uses_image:
                raise HyperFusionError(f"{name} does not read the image: it has no image attribution map")
            store[key] = attribution_map(
                predictor, name, subject.scan, record, method, target, baseline, False
            )
        while len(store) > 6:
            store.popitem(last=False)
    return store[key]


def current_record(ptid: str, recorded: dict) -> dict:
    """The record as edited on the subject page (kept in session state), else the recorded values."""
    edits = st.session_state.get("edited_record")
    if edits and edits.get("PTID") == ptid:
        return edits["record"]
    return recorded
