"""Keeping uploads in memory while the server receives them."""

from __future__ import annotations

import streamlit as st


def keep_uploads_in_memory() -> None:
    """Make the web server hold an upload in memory up to the upload limit instead of spooling it to disk.

    Streamlit's server (Starlette) writes every uploaded file part above 1 MB to an unnamed temporary file in
    $TMPDIR while it is received, then reads it back into memory anyway. A scan must never reach the disk, so
    the spool threshold is raised to the upload limit plus the multipart framing Streamlit allows (1 MB): the
    memory held is the same, the disk is not touched. Call it before any file uploader is shown.
    """
    try:
        from starlette.formparsers import MultiPartParser
    except ImportError:  # a Tornado-based Streamlit keeps request bodies in memory
        return
    limit = (int(st.get_option("server.maxUploadSize")) + 1) * 2**20
    if MultiPartParser.spool_max_size < limit:
        MultiPartParser.spool_max_size = limit
