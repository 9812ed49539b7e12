"""The Subject and Upload pages' sections, each one call returning :class:`~hyperfusion.pages.Block` s: the
predictions for the recorded and the edited record, ICE curves, record attributions, the counterfactual found
and the nearest real subject of the other class, the entry check of an upload and its record."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import pandas as pd

from hyperfusion.data.cohort import Cohort, parse_record, record_from_csv, require_some_value
from hyperfusion.data.schema import FEATURES
from hyperfusion.errors import HyperFusionError
from hyperfusion.explain import figures, ice_curves, nearest_subject, robustness
from hyperfusion.explain.counterfactual import MIN_SHARED
from hyperfusion.inference.tables import prediction_rows, shown_value
from hyperfusion.pages import Block, plain

UNITS = {f.name: f.unit for f in FEATURES}


def fusion_first(predictor, names: list[str]) -> int:
    """The index among ``names`` of the first model whose weights the record generates (what the tool is
    about), else 0: the default of a page's model choice."""
    fusion = [n for n in names if predictor.models[n].members[0].network.generated_layers]
    return names.index(fusion[0]) if fusion else 0


def predictions(preds: dict) -> tuple[list[Block], list[dict], list[dict]]:
    """Every model's prediction for the edited record (record 1) against the recorded one (record 0), with its
    rows for AD and brain-age models (the HTML report's tables)."""
    ad, age = prediction_rows(preds, "ad", 1, 0), prediction_rows(preds, "brain_age", 1, 0)
    out = [Block("figures", [("probabilities", figures.probability_bars(preds, row=1))])] if ad else []
    out += [Block("table", pd.DataFrame(ad), "ad_predictions")] if ad else []
    out += [Block("table", pd.DataFrame(age), "age_predictions")] if age else []
    text = "Δ: change from the prediction for the recorded values. Spread: standard deviation across the"
    return out + [Block("caption", f"{text} ensemble's members (0 for a single model).")], ad, age


def ice(predictor, scan, record: dict, attribute: str, names: list[str]) -> list[Block]:
    """ICE curves of ``attribute`` for every model: over the training rows' support (mean ± 3 SD) where a model
    has fitted preprocessing, else over the plausible range."""
    try:
        curves = ice_curves(predictor, scan, record, attribute, n_points=32, support="training", models=names)
    except HyperFusionError:
        curves = ice_curves(
            predictor, scan, record, attribute, n_points=32, support="plausible", models=names
        )
    return [
        Block("figures", [("ice", figures.ice_figure(curves, UNITS[attribute]))]),
        Block(
            "caption",
            "Each line: one model's prediction as this attribute sweeps the training rows' range, every other "
            "value as in the form; the dotted line marks the current value.",
        ),
    ]


def record_attribution(predictor, model: str, scan, record: dict, prediction) -> list[Block]:
    """A waterfall of each attribute's contribution to ``model``'s output for ``record``."""
    from hyperfusion.explain import explain_record

    ad = predictor.models[model].task == "ad"
    ra = explain_record(predictor, model, scan, record, target="AD" if ad else None)
    note = (
        f" {model} is an ensemble: the bars add up to its members' mean, {ra.output:.3f}; its prediction "
        f"(inverse-entropy weighting, as on every page) is {shown_value(prediction, 1):.3f}."
        if ad and len(prediction.member_values) > 1
        else ""
    )
    text = (
        f"Integrated gradients ({ra.settings['n_steps']} steps) from the baseline record (every value at its "
        "training mean, sex half and half, missing values at their training rates) to the record in the form; "
        f"the bars add up to the difference (convergence delta {ra.delta:.1e}).{note} Scan versus record: the "
        f"record's share is {ra.record_share:.0%} (two-player Shapley values against the zero baseline scan and "
        "the baseline record)."
    )
    return [Block("figures", [("record_waterfall", figures.record_waterfall(ra))]), Block("caption", text)]


def counterfactual_targets(prediction) -> tuple[list[str], int]:
    """The classes a counterfactual may aim for (all but the one predicted for the edited record, record 1)
    and the default's index: AD when it is one of them."""
    classes = prediction.class_names
    others = [c for c in classes if c != classes[int(prediction.value[1].argmax())]]
    return others, others.index("AD") if "AD" in others else 0


def counterfactual_found(predictor, cf, scan) -> list[Block]:
    """What a counterfactual search found: its message, how robust the change is, and the changes."""
    out = [Block("success" if cf.found else "warning", cf.message)]
    trust = robustness(predictor, cf, scan) if cf.found and cf.changes else None
    if trust is not None:
        out.append(Block("warning" if trust.fragile else "caption", trust.message))
    if cf.changes:
        rows = [
            {"attribute": n, "now": a, "counterfactual": b, "unit": UNITS[n]}
            for n, (a, b) in cf.changes.items()
        ]
        out.append(Block("table", pd.DataFrame(rows), "cf_changes"))
    return out + [
        Block(
            "caption",
            f"P({cf.target_name}): {cf.original_probabilities[cf.target]:.3f} now → {cf.probabilities[cf.target]:.3f} "
            f"with the change · {cf.evaluated} records tried, within the training rows' range of each attribute. "
            "A counterfactual describes the model, not the patient.",
        ),
    ]


def nearest(cohort: Cohort, record: dict, target: str, exclude: list[str]) -> tuple[list[Block], str | None]:
    """The nearest real subject of diagnosis ``target`` (same sex, similar age): a real record to compare with,
    and its PTID (None when there is none)."""
    found = nearest_subject(cohort, record, target, exclude=exclude, min_shared=MIN_SHARED)
    if found is None:
        text = (
            f"No {target} subject of this sex in the cohort shares at least {MIN_SHARED} measured values with"
        )
        return [Block("caption", f"{text} this record: there is no real subject to compare with.")], None
    ptid, gap, shared = found["PTID"], found["age_difference"], found["shared"]
    years = f", {gap:+.1f} years" if gap is not None else ""
    diff = [
        {"attribute": f.name, "this subject": record.get(f.name), ptid: found["record"].get(f.name)}
        for f in FEATURES
    ]
    return [
        Block(
            "markdown",
            f"Nearest real **{target}** subject: **{ptid}** (record distance {found['distance']:.2f} SD{years})",
        ),
        Block(
            "caption",
            f"Compared on the {len(shared)} values both have measured ({', '.join(shared)}); a subject must share "
            f"at least {MIN_SHARED} to be compared.",
        ),
        Block("table", pd.DataFrame(diff).astype(str), "nearest_record"),
    ], ptid


def field_label(f) -> str:
    """A form field's label: the attribute's name with its unit."""
    return f"{f.name} ({f.unit})" if f.unit else f.name


def text_field_help(f) -> str:
    """The Upload form's help of an attribute: its meaning and plausible range."""
    return f"{f.meaning}; {f.plausible_range[0]:g}–{f.plausible_range[1]:g} {f.unit}"


def number_field(f) -> dict:
    """The Subject page's number input of a numeric attribute: its plausible range, step and help."""
    lo, hi = f.plausible_range
    kind, step = (int, 1) if f.type == "count" else (float, float(f.step))
    text = f"{f.meaning}; plausible range {lo:g}–{hi:g} {f.unit}".strip() + ". Empty: missing."
    # value None: a field the user empties is None (missing), not the minimum
    return {"value": None, "min_value": kind(lo), "max_value": kind(hi), "step": step, "help": text}


def subject_caption(subject, cohort: Cohort) -> str:
    """Where the subject comes from and its diagnosis (``subject``: a :class:`~hyperfusion.pages.Subject`)."""
    if subject.uploaded:
        return (
            f"Uploaded in this session (kept in memory only) · diagnosis: **{subject.truth or 'not given'}**"
        )
    return f"Diagnosis ({cohort.label_column}): **{subject.truth}** · source: {cohort.source}"


def record_rows(recorded: dict, edited: dict) -> list[dict]:
    """The record as recorded and as edited, one row per attribute (the HTML report's table)."""
    return [{"attribute": n, "recorded": recorded[n], "edited": edited[n]} for n in recorded]


def models_to_predict(
    predictor, names: list[str], ptid: str, has_scan: bool
) -> tuple[list[str], list[Block]]:
    """The models that can predict subject ``ptid`` (those reading the scan only when it has one), and a note
    when some cannot."""
    readers = [n for n in names if predictor.models[n].members[0].reads_scan]
    if has_scan or not readers:
        return names, []
    note = Block("info", f"No scan for {ptid}: only the tabular models are shown.")
    return [n for n in names if n not in readers], [note]


def prediction_view(
    predictor, names: list[str], ptid: str, scan, records: list[dict], warnings: list[str] = ()
) -> tuple[list[Block], dict | None, dict[str, list[dict]]]:
    """The Subject page's predictions of the recorded and the edited record (``records``): the blocks to show
    (the models left out and why, an upload's warnings, the chart and tables), the predictions (None when
    they failed: a block says why), and the HTML report's parts (``predictions`` / ``brain_age`` rows)."""
    names, said = models_to_predict(predictor, names, ptid, scan is not None)
    try:
        preds = predictor.predict(scan, records, models=names)
    except HyperFusionError as exc:
        return [*said, Block("error", plain(exc))], None, {}
    warned = [Block("warning", plain(w)) for w in warnings]  # an upload that failed its entry check
    shown, ad_rows, age_rows = predictions(preds)
    parts = {k: rows for k, rows in (("predictions", ad_rows), ("brain_age", age_rows)) if rows}
    return said + warned + shown, preds, parts


#: What an empty field of the Subject page's form shows: an empty field is a missing value
MISSING_PLACEHOLDER = "missing"


def form_state(record: dict) -> dict:
    """The Subject page's form widgets' state (``value_X``) for a raw record: a missing value leaves its field
    empty (None), a censored one ("<200") shows its bound, a number outside the plausible range its nearest
    end, and a value that is no number the middle of the range."""
    state = {}
    for f in FEATURES:
        value = record.get(f.name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            state[f"value_{f.name}"] = None
            continue
        if f.categories:
            state[f"value_{f.name}"] = value if value in f.categories else f.categories[0]
            continue
        try:
            number = float(str(value).lstrip("<>"))
        except ValueError:
            number = math.nan
        lo, hi = f.plausible_range
        default = min(max(number, lo), hi) if math.isfinite(number) else (lo + hi) / 2
        state[f"value_{f.name}"] = int(default) if f.type == "count" else float(default)
    return state


def changes_state(changes: dict) -> dict:
    """The form widgets' state that puts a counterfactual's ``changes`` ({attribute: (now, then)}) in the form."""
    state = {}
    for name, (_, value) in changes.items():
        f = next(f for f in FEATURES if f.name == name)
        number = int(value) if f.categories or f.type == "count" else float(value)
        state[f"value_{name}"] = f.categories[number] if f.categories else number
    return state


def form_complete(state: Mapping) -> bool:
    """Whether ``state`` holds every field of the Subject page's form (:func:`edited_record` can read it)."""
    return all(f"value_{f.name}" in state for f in FEATURES)


def edited_record(recorded: Mapping, state: Mapping) -> dict:
    """The record the Subject page's form holds, from its widgets' state (``value_X``, as :func:`form_state`
    writes it): what :func:`form_value` makes of each field, read before the form is drawn."""
    return {f.name: form_value(recorded[f.name], state[f"value_{f.name}"])[0] for f in FEATURES}


def form_value(raw, value) -> tuple[object, list[str]]:
    """A form field's value for the model (None when the field is empty: missing; a censored recorded value
    such as "<200" kept while the field still shows its bound) and the notes shown under it."""
    if value is None:
        out, notes = None, ["missing → imputed by each model (training median)"]
    elif isinstance(raw, str) and raw[:1] in "<>" and float(raw[1:]) == value:
        out, notes = raw, [f"recorded as {raw} (beyond the assay range)"]
    else:
        out, notes = value, []
    if out != raw and not (raw is None and out is None):
        notes.append(f"edited · recorded: {raw if raw is not None else 'missing'}")
    return out, notes


# --- Upload -------------------------------------------------------------------------------------------------
def qc_table(qc: dict) -> pd.DataFrame:
    """The quality figures of ``hyperfusion preprocess`` on one scan, as a one-row table."""
    row = {
        "brain share of the model box": qc["box_brain_share"],
        "correlation with the template": qc["template_ncc"],
        "brain-mask Dice with the template": qc["mask_dice"],
        "skull present": qc["skull_present"],
        "seconds": qc["seconds"]["total"],
    }
    return pd.DataFrame([row])


def csv_record(data: bytes, name: str) -> tuple[dict, str | None]:
    """The record of a one-row CSV upload, and a note naming the columns the models do not read (an ADNIMERGE
    export carries many)."""
    record, ignored = record_from_csv(data, name=name)
    if not ignored:
        return record, None
    shown = ", ".join(ignored[:12]) + (f" and {len(ignored) - 12} more" if len(ignored) > 12 else "")
    return record, f"{name}: ignored {len(ignored)} column(s) the models do not read: {shown}"


def form_record(raw: dict) -> dict:
    """The Upload page's form as a record, refused (HyperFusionError) when it holds no value or no sex: the sex
    has no default, since a guess would change every prediction that reads it."""
    require_some_value(parse_record(raw, source="the form"), "the form")
    if raw.get("PTGENDER") is None:
        raise HyperFusionError(
            "the form: choose the sex (PTGENDER); it has no default, since a guess would change every prediction "
            "that reads it"
        )
    return raw


def scan_to_read(data: bytes, name: str, preprocessed: dict | None) -> tuple[bytes, str, dict | None]:
    """The uploaded scan the models read, its name, and the preprocessing result it came from: ``preprocessed``
    (what ``preprocess_bytes`` made in this session) when it was made from these very bytes, else the upload."""
    if preprocessed and preprocessed["source_sha256"] == hashlib.sha256(data).hexdigest():
        return preprocessed["scan"], preprocessed["name"], preprocessed
    return data, name, None


def upload_form_state(saved: dict) -> dict:
    """The Upload page's form widgets' state (``upload_value_X``) for the form's last values ``saved``."""
    return {
        f"upload_value_{f.name}": value if f.categories or value is None else str(value)
        for f in FEATURES
        for value in [saved.get(f.name)]
    }


def kept_upload_note(name: str) -> str:
    """What the Upload page says of the upload kept in the session while no new scan is given."""
    return f"{name} is this session's uploaded subject (in memory only). Upload another scan to replace it."


def upload_predictions(preds: dict, warnings: list[str]) -> list[Block]:
    """Every model's prediction for an upload, each row marked unreliable when the scan failed the entry check
    (and was predicted anyway), with the check's ``warnings`` above."""
    rows = prediction_rows(preds, "ad") + prediction_rows(preds, "brain_age")
    for row in rows if warnings else []:
        row["warning"] = "UNRELIABLE: the scan failed the entry check"
    return [
        Block("subheader", "Predictions"),
        *[Block("warning", plain(w)) for w in warnings],
        Block("table", pd.DataFrame(rows), "upload_predictions"),
        Block(
            "markdown",
            "This subject is now the current subject of every page (listed first in each subject picker).",
        ),
    ]


def upload_record(
    csv: tuple[bytes, str] | None, form: dict | None
) -> tuple[dict | None, list[str], list[str]]:
    """The Upload page's record: the one-row CSV ``(data, name)`` when given, else the form's values (None: not
    submitted yet); with the problems (the record refused) and the notes (the CSV columns not read)."""
    try:
        if csv is not None:
            record, note = csv_record(*csv)
            return record, [], [note] if note else []
        return (None if form is None else form_record(form)), [], []
    except HyperFusionError as exc:
        return None, [str(exc)], []
