"""Laying out the library's page blocks (:class:`hyperfusion.pages.Block`): the one place that turns them into
Streamlit elements."""

from __future__ import annotations

import streamlit as st

from hyperfusion.pages import Block, column_help


def show(blocks: list[Block], where=st) -> None:
    """Each block as its Streamlit element, in ``where`` (the page, or a container or column of it)."""
    for b in blocks:
        if b.kind == "table":
            help_ = column_help(b.value.columns, b.cells)
            config = {c: st.column_config.Column(label, help=text) for c, (label, text) in help_.items()}
            where.dataframe(b.value, hide_index=True, key=b.key, column_config=config)
        elif b.kind == "figures":
            for col, (key, fig) in zip(where.columns(b.columns or len(b.value)), b.value):
                col.plotly_chart(fig, width="stretch", key=key)
        elif b.kind == "static_table":
            where.table(b.value)
        elif b.kind == "code":
            where.code(b.value, language="bash", wrap_lines=True)
        else:  # markdown, subheader, caption, info, success, warning, error
            getattr(where, b.kind)(b.value)
