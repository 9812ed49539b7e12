"""The Attribution page's viewer in a real browser (Playwright drives Debian's headless Chromium against the real
server, offline): a click moves the crosshair in every view, zoom, the values and atlas label at the cursor, a
threshold change, and a share link that restores the view. The crosshair-move and zoom latencies are measured
and written to $HYPERFUSION_ARTEFACTS/viewer_latency.json (a measurement, not a pass / fail criterion)."""

from __future__ import annotations

import json
import os
import re
import statistics
from pathlib import Path

import pytest

from hyperfusion.bench import VIEWER_TIME_CLICK, VIEWER_TIME_ZOOM
from tests.app.test_browser import CHROMIUM, playwright, server  # noqa: F401  (the server fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Debian's chromium is not installed"),
]

ROOT = ".hfv"
COLOURED = """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] > d[i + 1] + 40 && d[i] > d[i + 2] + 40) n++; return n; }"""


def _cursor(page) -> list[float]:
    return [float(v) for v in page.locator(ROOT).get_attribute("data-cursor").split(",")]


def _view(page, row: int, name: str):
    return page.locator(f"canvas.hfv-view[data-row='{row}'][data-view='{name}']")


def _open(p, url: str):
    browser = p.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
    )
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(url, wait_until="networkidle")
    page.locator(f"{ROOT}[data-ready]").wait_for(timeout=90_000)
    page.wait_for_timeout(300)
    return browser, page


def _python_caption(page, mm: list[float]) -> str:
    """The page's own readout (computed in Python after the browser reported the view) once it reaches ``mm``."""
    x = f"x = {mm[0]:.0f}".replace("-", "−")
    caption = page.get_by_text(re.compile(rf"^Crosshair at {x}, "))
    caption.wait_for(timeout=60_000)
    return caption.inner_text()


def test_the_viewer_moves_zooms_reads_thresholds_and_restores_a_shared_view(server, tmp_path):  # noqa: F811
    artefacts = Path(os.environ.get("HYPERFUSION_ARTEFACTS") or tmp_path)
    artefacts.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser, page = _open(p, f"{server}/Attribution")
        axial, coronal, sagittal = (_view(page, 0, n) for n in ("axial", "coronal", "sagittal"))
        assert page.evaluate(COLOURED, axial.element_handle()) > 0  # the map is drawn over the scan

        # a click in each view moves the two coordinates of its plane, and every view follows
        for view, fixed, (fx, fy) in (
            (axial, 2, (0.3, 0.4)),
            (coronal, 1, (0.6, 0.5)),
            (sagittal, 0, (0.4, 0.6)),
        ):
            before = _cursor(page)
            others = [v for v in (axial, coronal, sagittal) if v != view]
            pictures = [page.evaluate("c => c.toDataURL()", o.element_handle()) for o in others]
            box = view.bounding_box()
            view.click(position={"x": fx * box["width"], "y": fy * box["height"]})
            after = _cursor(page)
            assert after[fixed] == before[fixed]
            assert [a != b for i, (a, b) in enumerate(zip(after, before)) if i != fixed] == [True, True]
            redrawn = [page.evaluate("c => c.toDataURL()", o.element_handle()) for o in others]
            assert any(a != b for a, b in zip(pictures, redrawn))  # a new slice or a moved crosshair
        # radiological: the left half of the axial view is the subject's right (x > the scan's middle)
        box = axial.bounding_box()
        axial.click(position={"x": 0.2 * box["width"], "y": 0.5 * box["height"]})
        right = _cursor(page)[0]
        axial.click(position={"x": 0.8 * box["width"], "y": 0.5 * box["height"]})
        assert right > _cursor(page)[0]

        # the value and the atlas label at the cursor: the browser's readout and Python's agree
        mm = _cursor(page)
        readout = page.locator(".hfv-readout").inner_text()
        assert re.search(r"hyperfusion [−0-9.e]+", readout)
        caption = _python_caption(page, mm)
        label = readout.rsplit(" · ", 1)[1]
        assert label in caption  # the same Desikan-Killiany label (or "no atlas label")
        shown = float(re.search(r"hyperfusion ([−0-9.e]+)", readout).group(1).replace("−", "-"))
        stated = float(re.search(r"hyperfusion ([-0-9.e]+)", caption).group(1))
        assert shown == pytest.approx(stated, rel=0.02, abs=1e-9)

        # zoom: the views change, the cursor does not
        picture = page.evaluate("c => c.toDataURL()", coronal.element_handle())
        page.locator(".hfv-bar button[data-z=in]").click()
        assert page.locator(ROOT).get_attribute("data-zoom") == "1.5" and _cursor(page) == mm
        assert page.evaluate("c => c.toDataURL()", coronal.element_handle()) != picture

        # the link carries the view: wait until the address bar has this cursor and zoom
        page.wait_for_function(
            "mm => decodeURIComponent(location.search).includes('cursor=' + mm) && location.search.includes('zoom=1.5')",
            arg=",".join(f"{v:.4g}" for v in mm),
            timeout=30_000,
        )

        # an absolute threshold above every value hides the map; the colour bar says so
        page.get_by_text("absolute", exact=True).click()
        field = page.get_by_label("Hide |value| below", exact=True)
        field.wait_for(timeout=30_000)
        field.fill("1")
        field.press("Enter")
        page.wait_for_function(
            "() => document.querySelector('.hfv-clabel').textContent.includes('hidden: |value| < 1.00')",
            timeout=30_000,
        )
        assert page.evaluate(COLOURED, axial.element_handle()) == 0
        page.wait_for_function("() => location.search.includes('threshold=1')", timeout=30_000)
        link = page.url
        page.screenshot(path=str(artefacts / "viewer.png"), full_page=True)

        # latency of a crosshair move and of a zoom step, in this browser (median of 10)
        clicks = [
            page.evaluate(
                VIEWER_TIME_CLICK, ["canvas.hfv-view[data-row='0'][data-view='axial']", 0.3 + 0.04 * i, 0.5]
            )
            for i in range(10)
        ]
        zooms = [page.evaluate(VIEWER_TIME_ZOOM, "in" if i % 2 == 0 else "out") for i in range(10)]
        (artefacts / "viewer_latency.json").write_text(
            json.dumps({"crosshair_move_ms": statistics.median(clicks), "zoom_ms": statistics.median(zooms)})
        )
        browser.close()

        # the share link round trip: a new session opens at the same cursor, zoom and threshold
        browser, page = _open(p, link)
        assert _cursor(page) == mm
        assert page.locator(ROOT).get_attribute("data-zoom") == "1.5"
        assert "hidden: |value| < 1.00" in page.locator(".hfv-clabel").first.inner_text()
        assert page.evaluate(COLOURED, _view(page, 0, "axial").element_handle()) == 0
        browser.close()
