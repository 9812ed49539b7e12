"""A scenario: what someone is looking at (a subject, the edits of its record, the attribution choices), as a
flat mapping of short text keys, the same in a link's query parameters and in a JSON file:

    subject        the cohort subject's PTID (an uploaded subject is never put in a scenario)
    <ATTRIBUTE>    an edited record value under its ADNIMERGE name (AGE=71, APOE4=2, ABETA=<200,
                   FDG=missing); attributes left as recorded are not listed
    model, model_b, mode, method, target, baseline
                   the attribution choices
    cursor, centre, zoom, threshold, sign, cmap, layers, orientation, opacity
                   the attribution viewer's view (crosshair and pan centre in mm "x,y,z", zoom, threshold
                   "90%" or an absolute value, ...): checked by hyperfusion.explain.viewer.View.from_text
    cohort         the cohort path, so a scenario opened on another cohort says so

:func:`encode` and :func:`decode` are pure (no Streamlit): decoding checks every value through the same record
parser as the rest of the tool, and a bad value is reported and left out, never applied half way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hyperfusion.data.cohort import Cohort, cohort_record, cohort_row, parse_record
from hyperfusion.data.schema import FEATURE_NAMES
from hyperfusion.errors import DataError, HyperFusionError

__all__ = [
    "ATTRIBUTION_KEYS",
    "MISSING",
    "VIEW_KEYS",
    "Scenario",
    "as_text",
    "decode",
    "edits_as_text",
    "encode",
    "from_json",
    "link_of",
    "to_json",
]

VIEW_KEYS = ("cursor", "centre", "zoom", "threshold", "sign", "cmap", "layers", "orientation", "opacity")
ATTRIBUTION_KEYS = ("model", "model_b", "mode", "method", "target", "baseline", *VIEW_KEYS)
MISSING = "missing"


def as_text(value: object) -> str:
    """A record value as scenario text: "missing", "71", "<200", "Female"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def edits_as_text(recorded: Mapping[str, object], record: Mapping[str, object]) -> dict[str, str]:
    """The attributes whose value in ``record`` differs from the recorded one, as scenario text."""
    return {
        n: as_text(record.get(n)) for n in FEATURE_NAMES if as_text(record.get(n)) != as_text(recorded.get(n))
    }


def encode(
    cohort: Cohort,
    subject: str | None = None,
    record: Mapping[str, object] | None = None,
    choices: Mapping[str, object] | None = None,
) -> dict[str, str]:
    """The scenario of a cohort subject (``None``: none), its record as edited (only the edits are kept) and the
    attribution choices (keys of :data:`ATTRIBUTION_KEYS`)."""
    out: dict[str, str] = {"cohort": str(cohort.path)}
    if subject is not None and subject in set(cohort.table["PTID"]):
        out["subject"] = subject
        if record is not None:
            out.update(edits_as_text(cohort_record(cohort_row(cohort, subject)), record))
    for key in ATTRIBUTION_KEYS:
        value = (choices or {}).get(key)
        if value is not None:
            out[key] = str(value)
    return out


@dataclass
class Scenario:
    """A decoded scenario: the subject (None: not given or not in the cohort), its record with the scenario's
    edits applied, the attribution choices, and each problem found (a value left out)."""

    subject: str | None = None
    record: dict[str, object] | None = None
    choices: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def decode(scenario: Mapping[str, str], cohort: Cohort) -> Scenario:
    """Check a scenario against ``cohort``; every bad value is a problem and is left out."""
    out = Scenario()
    unknown = sorted(set(scenario) - {"subject", "cohort", *FEATURE_NAMES, *ATTRIBUTION_KEYS})
    if unknown:
        out.problems.append(f"unknown scenario keys ignored: {', '.join(unknown)}")
    if scenario.get("cohort") and Path(scenario["cohort"]).resolve() != Path(cohort.path).resolve():
        out.problems.append(
            f"the scenario was made on the cohort {scenario['cohort']}; this dashboard shows {cohort.path} "
            "(change it in the sidebar's settings)"
        )
    ptid = scenario.get("subject")
    if ptid is not None:
        if ptid not in set(cohort.table["PTID"]):
            out.problems.append(f"subject {ptid!r} is not in this cohort; the subject was left as it was")
        else:
            record = cohort_record(cohort_row(cohort, ptid))
            for name in FEATURE_NAMES:
                if name not in scenario:
                    continue
                value = None if scenario[name] == MISSING else scenario[name]
                try:
                    parse_record({**record, name: value}, source="the shared scenario")
                except HyperFusionError as exc:
                    out.problems.append(f"{exc}; {name} was left as recorded")
                    continue
                record[name] = value
            out.subject, out.record = ptid, record
    out.choices = {key: scenario[key] for key in ATTRIBUTION_KEYS if key in scenario}
    return out


def link_of(scenario: Mapping[str, str]) -> dict[str, str]:
    """A scenario's link query parameters: all but the cohort path (a link opens on the dashboard's cohort)."""
    return {k: v for k, v in scenario.items() if k != "cohort"}


def to_json(scenario: Mapping[str, str]) -> tuple[str, str]:
    """A scenario as a file: (its file name, named after the subject, and its JSON text)."""
    name = (scenario.get("subject") or "scenario").replace("/", "_")
    return f"{name}.json", json.dumps(dict(scenario), indent=1)


def from_json(raw: bytes | str, name: str = "the scenario file") -> dict[str, str]:
    """A scenario file's content: one JSON object of text values, or :class:`DataError` naming the file."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        scenario = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{name}: not a scenario file ({exc}). Download one with “Scenario (JSON)”."
        ) from None
    if not isinstance(scenario, dict) or not all(isinstance(v, str) for v in scenario.values()):
        raise DataError(
            f"{name}: not a scenario file (expected one JSON object of text values, as the dashboard writes "
            "it). Download one with “Scenario (JSON)”."
        )
    return scenario
