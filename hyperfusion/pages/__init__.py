"""What the dashboard's pages show, as data: each section of a page is one call returning :class:`Block` s (a
text, a table, a figure, a message), so that the pages only lay them out (``app/render.py``) and a notebook can
print the same tables and texts. :mod:`hyperfusion.pages.reports`: the Model comparison and Brain age pages;
:mod:`hyperfusion.pages.subject`: the Subject and Upload pages; :mod:`hyperfusion.pages.attribution`: the
Attribution page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# st.error / st.info render Markdown, where a quoted value such as "$5 or $6", "*draft*", "<200", "[x](y)" or
# ":red[x]" would turn into maths, emphasis, HTML, a link or a coloured directive. These characters act
# anywhere in a line; "." "-" "(" ")" and the like only at the start of one (lists, headings), handled below,
# so that common file names ("sub-01.nii.gz") read unchanged in the page's source too
_INLINE = re.compile(r"([\\`*_{}\[\]<>#+!|~$:&])")
_LINE_START = re.compile(r"^(\s*)([-=]|\d+[.)])", re.MULTILINE)

#: The dashboard's id of a subject uploaded in the session: "uploaded: <file name>".
UPLOAD_PREFIX = "uploaded: "


@dataclass
class Block:
    """One thing a page shows: ``kind`` is "markdown", "subheader", "caption", "info", "success", "warning",
    "error", "code", "static_table" (a DataFrame shown whole), "table" (``value`` a DataFrame; ``cells``: what
    a cell holds, added to each column's explanation) or "figures" (``value`` a list of (key, Plotly figure),
    shown side by side in ``columns`` columns, default one each); ``key`` names a table for the page's
    widgets."""

    kind: str
    value: Any
    key: str | None = None
    cells: str = ""
    columns: int = 0


@dataclass
class Upload:
    """The scan and record uploaded in a dashboard session (kept in its memory only)."""

    name: str
    scan: bytes
    record: dict
    warnings: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return UPLOAD_PREFIX + self.name

    def subject(self, scan, truth: str | None = None) -> Subject:
        """The upload as the subject the pages show (``scan``: its decoded ScanBytes)."""
        from hyperfusion.data.cohort import cohort_record, parse_record

        recorded = cohort_record(parse_record(self.record, source="the uploaded record"))
        return Subject(self.id, scan, recorded, truth, uploaded=True)


@dataclass
class Subject:
    """The subject every dashboard page shows: a cohort subject (``scan`` its path) or this session's upload
    (``scan`` its bytes), as read by hyperfusion.data.nifti.read_scan; ``recorded``: the raw record (ADNIMERGE
    names), ``truth``: the diagnosis when known."""

    id: str
    scan: str | bytes | None
    recorded: dict
    truth: str | None
    uploaded: bool = False

    @classmethod
    def of_cohort(cls, cohort, ptid: str, scan=None) -> Subject:
        """Subject ``ptid`` of ``cohort``, its diagnosis when recorded (``scan``: its scan, when read)."""
        from hyperfusion.data.cohort import cohort_record, cohort_row

        row = cohort_row(cohort, ptid)
        truth = row.get("DX")
        return cls(ptid, scan, cohort_record(row), truth if isinstance(truth, str) else None)


def column_help(columns, cells: str = "") -> dict[str, tuple[str, str]]:
    """Readable headers and explanations of results.json's keys among ``columns``: {column: (label, help)}
    (``cells``: what a cell holds, added to each explanation)."""
    from hyperfusion.training import reports as R  # here: the Home page does not need scipy at start

    out = {}
    for c in columns:
        base = c.removesuffix("_bias_corrected")
        if c in R.METRIC_LABELS:
            label, text = R.METRIC_LABELS[c]
        elif c.startswith("mae_") and c[4:] in ("female", "male"):
            label, text = f"MAE {'women' if c[4:] == 'female' else 'men'}", f"MAE among the {c[4:]} subjects"
        elif base in R.METRIC_LABELS and c != base:
            label = f"{R.METRIC_LABELS[base][0]} bias-corrected"
            text = "after the linear age-bias correction fitted on the validation subjects (no interval)"
        elif c in R.FAITHFULNESS_HELP:
            label, text = c.replace("_", " "), R.FAITHFULNESS_HELP[c]
        else:
            continue
        out[c] = (label, f"{text}{' · ' + cells if cells else ''}")
    return out


def plain(text: object) -> str:
    """``text`` with its Markdown syntax backslash-escaped, so that a page shows it verbatim (a message quoting
    user input: a file name, a cell value)."""
    escaped = _INLINE.sub(r"\\\1", str(text))
    return _LINE_START.sub(lambda m: f"{m.group(1)}{m.group(2)[:-1]}\\{m.group(2)[-1]}", escaped)


def keep_uploads_in_memory(max_upload_mb: int) -> int:
    """Make the dashboard's web server hold an upload in memory up to the upload limit (Streamlit's
    ``server.maxUploadSize``, in MB) instead of spooling it to disk; returns the spool threshold in bytes.

    Streamlit's server (Starlette) writes every uploaded file part above 1 MB to an unnamed temporary file in
    $TMPDIR while it is received, then reads it back into memory anyway. A scan must never reach the disk, so
    the spool threshold is raised to the upload limit plus the multipart framing Streamlit allows (1 MB): the
    memory held is the same, the disk is not touched. Process-wide: call it before any file uploader is shown.
    A Tornado-based Streamlit keeps request bodies in memory, and nothing is changed (returns 0).
    """
    try:
        from starlette.formparsers import MultiPartParser
    except ImportError:
        return 0
    limit = (int(max_upload_mb) + 1) * 2**20
    if MultiPartParser.spool_max_size < limit:
        MultiPartParser.spool_max_size = limit
    return MultiPartParser.spool_max_size
