"""Data flows one way: a subject's scan is decoded and validated once per session, however many pages and
library calls use it (hyperfusion.data.nifti.read_scan, cached by the dashboard)."""

from __future__ import annotations

import streamlit as st
from streamlit.testing.v1 import AppTest

from hyperfusion.data import nifti
from tests.app.helpers import HOME


def test_a_scan_is_decoded_once_across_the_subject_page_and_an_attribution(app_env, monkeypatch):
    ptid = app_env["ptids"][4]
    st.cache_resource.clear()  # no scan decoded by an earlier test of this process
    at = AppTest.from_file(str(HOME), default_timeout=120).run()  # the cohort is read (and checked) first
    decoded: list[str] = []
    decode = nifti._image_from_stream

    def counting(stream, label, max_voxels):
        decoded.append(label)
        return decode(stream, label, max_voxels)

    monkeypatch.setattr(nifti, "_image_from_stream", counting)
    at.switch_page("views/1_Subject.py").run()
    at.selectbox(key="_subject_widget").select(ptid).run()
    assert not at.exception, at.exception
    assert any("P(AD)" in d.value.columns for d in at.dataframe)  # predictions, ICE, record attributions
    at.switch_page("views/2_Attribution.py").run()
    assert not at.exception, at.exception
    assert any("Crosshair at x =" in c.value for c in at.caption)  # the map drawn over the scan
    mine = [label for label in decoded if ptid in label]
    assert len(mine) == 1, mine
