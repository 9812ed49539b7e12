"""Showing messages that quote user input (file names, cell values) as the plain text they are."""

from __future__ import annotations

import re

# st.error / st.info render Markdown, where a quoted value such as "$5 or $6", "*draft*", "<200", "[x](y)" or
# ":red[x]" would turn into maths, emphasis, HTML, a link or a coloured directive. These characters act
# anywhere in a line; "." "-" "(" ")" and the like only at the start of one (lists, headings), handled below,
# so that common file names ("sub-01.nii.gz") read unchanged in the page's source too
_INLINE = re.compile(r"([\\`*_{}\[\]<>#+!|~$:&])")
_LINE_START = re.compile(r"^(\s*)([-=]|\d+[.)])", re.MULTILINE)


def plain(text: object) -> str:
    """``text`` with its Markdown syntax backslash-escaped, so that Streamlit shows it verbatim."""
    escaped = _INLINE.sub(r"\\\1", str(text))
    return _LINE_START.sub(lambda m: f"{m.group(1)}{m.group(2)[:-1]}\\{m.group(2)[-1]}", escaped)
