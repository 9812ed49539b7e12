"""End to end in a real browser: Playwright drives Debian's Chromium (/usr/bin/chromium, headless) against the
real `streamlit run app/Home.py` server on 127.0.0.1. Screenshots are kept under $HYPERFUSION_ARTEFACTS
(default: the test's tmp dir)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
APP = Path(__file__).resolve().parents[2] / "app"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Debian's chromium is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(app_env):
    port = _free_port()
    env = {
        **os.environ,
        "HYPERFUSION_COHORT": str(app_env["cohort"]),
        "HYPERFUSION_MODELS": str(app_env["models"]),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(APP / "Home.py"),
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the streamlit server did not start: " + proc.stdout.read().decode()[-2000:])
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


WATERFALL = """() => { for (const g of document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')) {
  const t = g.data && g.data[0]; if (t && t.type === 'waterfall') return {y: Array.from(t.y), x: Array.from(t.x)}; }
  return null; }"""


def test_open_a_subject_edit_apoe4_see_the_prediction_change_and_open_the_attribution(
    server, app_env, tmp_path
):
    shots = Path(os.environ.get("HYPERFUSION_ARTEFACTS") or tmp_path) / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(server, wait_until="networkidle")
        page.get_by_role("heading", name="HyperFusion").wait_for(timeout=20_000)
        assert page.get_by_text("Research use only").first.is_visible()
        page.screenshot(path=str(shots / "1_home.png"), full_page=True)

        page.get_by_role("link", name=re.compile("Subject and what-if")).first.click()
        page.get_by_text("Predictions").first.wait_for(timeout=30_000)
        caption = page.get_by_text(re.compile(r"Δ: change from the prediction"))
        caption.wait_for(timeout=30_000)
        before = page.get_by_test_id("stPlotlyChart").first.inner_html()
        page.wait_for_function(WATERFALL, timeout=60_000)  # the record attributions' waterfall is drawn
        waterfall_before = page.evaluate(WATERFALL)
        apoe = page.get_by_label(re.compile("^APOE4"))
        current = apoe.input_value()
        edited = "0" if current == "2" else "2"
        apoe.fill(edited)
        apoe.press("Enter")
        page.get_by_text(re.compile(r"edited · recorded")).first.wait_for(timeout=30_000)
        # An edit reruns only the form's fragment: the address bar and the sidebar's report still follow it
        page.wait_for_function(
            "v => new URLSearchParams(location.search).get('APOE4') === v", arg=edited, timeout=30_000
        )
        with page.expect_download(timeout=30_000) as download:
            page.get_by_test_id("stSidebar").get_by_role("button", name="Report (HTML)").click()
        report = Path(download.value.path()).read_text()
        assert re.search(rf"<th>APOE4</th><td>{edited}(\.0)?</td>", report), "the scenario lacks the edit"
        assert re.search(rf"<td>APOE4</td><td>[^<]*</td><td>{edited}(\.0)?</td>", report), "record table"
        page.wait_for_function(
            "before => document.querySelector('[data-testid=stPlotlyChart]').innerHTML !== before",
            arg=before,
            timeout=30_000,
        )
        # the waterfall follows the edit: APOE4's contribution and the record's output change
        page.wait_for_function(
            f"before => JSON.stringify(({WATERFALL})()) !== JSON.stringify(before)",
            arg=waterfall_before,
            timeout=60_000,
        )
        waterfall_after = page.evaluate(WATERFALL)
        apoe_before, apoe_after = (
            dict(zip(w["y"], w["x"]))["APOE4"] for w in (waterfall_before, waterfall_after)
        )
        assert apoe_after != pytest.approx(apoe_before, abs=1e-6)
        assert waterfall_after["x"][-1] != pytest.approx(waterfall_before["x"][-1], abs=1e-6)
        page.screenshot(path=str(shots / "2_subject_edited.png"), full_page=True)
        # An emptied field is a missing value (the link says so), and typing the value back undoes it
        education = page.get_by_label(re.compile("^PTEDUCAT"))
        years = education.input_value()
        assert years, "the test subject's education is recorded"
        for typed, in_link in (("", "missing"), (years, None)):
            education.fill(typed)
            education.press("Enter")
            page.wait_for_function(
                "v => new URLSearchParams(location.search).get('PTEDUCAT') === v", arg=in_link, timeout=30_000
            )
        subject_p_ad = page.evaluate(  # the probability bars' P(AD) of hyperfusion, edited record
            """() => { const g = document.querySelector('[data-testid=stPlotlyChart] .js-plotly-plot');
                       const t = g.data.find(d => d.name === 'AD'); return t.x[Array.from(t.y).indexOf('hyperfusion')]; }"""
        )

        page.get_by_role("link", name=re.compile("Attribution map")).first.click()
        page.get_by_text(re.compile(r"Crosshair at x =")).wait_for(timeout=60_000)
        stated = page.get_by_text(re.compile(r"hyperfusion predicts P\(AD\) = [0-9.]+ for this record"))
        stated.wait_for(timeout=60_000)
        attribution_p_ad = float(re.search(r"P\(AD\) = ([0-9.]+)", stated.inner_text()).group(1))
        assert attribution_p_ad == pytest.approx(subject_p_ad, abs=5e-4)  # the same answer on both pages
        page.locator(".hfv[data-ready]").wait_for(timeout=30_000)  # the viewer (test_viewer_browser.py)
        page.wait_for_timeout(500)
        page.screenshot(path=str(shots / "3_attribution.png"), full_page=True)

        # The saliency overlay changes with the edit: the recorded-vs-edited mode draws the difference map
        page.get_by_text("recorded vs edited record").click()
        difference = page.get_by_text(re.compile(r"Edited on the Subject page: APOE4"))
        difference.wait_for(timeout=60_000)
        largest = float(re.search(r"largest \|value\| is ([-+0-9.e]+)", difference.inner_text()).group(1))
        assert largest > 0
        assert not page.get_by_text("The two maps are identical").count()
        page.wait_for_timeout(500)
        page.screenshot(path=str(shots / "4_attribution_difference.png"), full_page=True)

        # Upload a scan and a one-row CSV record: every model predicts it, and it is the current subject
        page.get_by_role("link", name=re.compile("Upload")).first.click()
        page.get_by_text("Upload a subject").first.wait_for(timeout=30_000)
        scan = sorted((Path(app_env["cohort"]) / "images").glob("*.nii.gz"))[0]
        row = tmp_path / "row.csv"
        row.write_text("AGE,PTGENDER,PTEDUCAT,APOE4\n72,Female,16,1\n")
        inputs = page.locator("input[type=file]")
        inputs.nth(0).set_input_files(str(scan))
        inputs.nth(1).set_input_files(str(row))
        page.get_by_text(re.compile("now the current subject of every page")).wait_for(timeout=60_000)
        table = page.get_by_test_id("stDataFrame").first
        table.wait_for(timeout=30_000)
        page.wait_for_timeout(500)
        page.screenshot(path=str(shots / "5_upload.png"), full_page=True)
        browser.close()
    for name in ("3_attribution.png", "4_attribution_difference.png", "5_upload.png"):
        assert (shots / name).stat().st_size > 10_000


def test_the_cohort_page_shows_every_models_probabilities_and_the_global_importance(
    server, app_env, tmp_path
):
    shots = Path(os.environ.get("HYPERFUSION_ARTEFACTS") or tmp_path) / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(server + "/Cohort", wait_until="networkidle")
        page.get_by_role("heading", name="Cohort").wait_for(timeout=30_000)
        # the background job fills the table; the fragment redraws it until every subject is scored
        n = len(app_env["ptids"])
        page.get_by_text(f"{n} subjects scored so far").first.wait_for(timeout=120_000)
        page.get_by_text(re.compile(r"predictions: \d+ of \d+ \(done\)")).wait_for(timeout=120_000)
        grid = page.get_by_test_id("stDataFrame").first
        grid.locator("[role=columnheader]").first.wait_for(state="attached", timeout=30_000)
        # the grid draws on a canvas; its accessible table carries the cells' text
        headers = " ".join(grid.locator("[role=columnheader]").all_text_contents())
        cells = grid.locator("[role=gridcell]").all_text_contents()
        assert headers, grid.inner_html()[:2000]
        assert any(re.fullmatch(r"0\.\d+", c.strip()) for c in cells)  # probabilities are in the rows
        for model in ("hyperfusion", "tabular_only"):
            assert f"P(AD) · {model}" in headers
        assert "models disagree" in headers and "models wrong" in headers
        page.screenshot(path=str(shots / "6_cohort.png"), full_page=True)

        page.get_by_role("tab", name="Global importance").click()
        page.get_by_text(re.compile(r"Mean \|record attribution\| to P\(AD\)")).wait_for(timeout=60_000)
        page.get_by_text(re.compile(r"record attributions: \d+ of \d+ \(done\)")).wait_for(timeout=180_000)
        chart = page.get_by_test_id("stPlotlyChart").first
        chart.wait_for(timeout=30_000)
        names = page.evaluate(
            """() => Array.from(document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot'))
                       .flatMap(g => g.data.map(d => d.name))"""
        )
        assert {"hyperfusion", "tabular_only"} <= set(names)
        page.screenshot(path=str(shots / "7_cohort_importance.png"), full_page=True)
        browser.close()
    assert (shots / "6_cohort.png").stat().st_size > 10_000
