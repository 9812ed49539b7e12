"""The session's state: :class:`hyperfusion.pages.session.Session` kept in ``st.session_state`` (so it lasts
for the browser session and never outlives it). Pages read and write ``session`` attributes, never raw keys."""

from __future__ import annotations

import streamlit as st

from hyperfusion.pages import Subject, Upload
from hyperfusion.pages.session import Session

__all__ = ["Subject", "Upload", "session"]

session = Session(st.session_state)
