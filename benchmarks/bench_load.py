"""Many users at once (issue #8): 8 concurrent dashboard sessions against the real server on 127.0.0.1.

A synthetic AD cohort of 8 subjects is generated in a temporary folder and ``hyperfusion app`` serves it with the
demo HyperFusion ensemble (assets/demo/models/ad/hyperfusion). Headless Chromium (Playwright) opens 8 separate
browser contexts, i.e. 8 Streamlit sessions; each picks its own subject on the Subject page, reads the
predicted probabilities out of the page's Plotly chart, then opens the attribution page and waits for the
saliency map. Every session's probabilities must equal the library's own prediction for that subject (so the
sessions' results are correct and not mixed up), and no page may show an error. The server's resident memory
(with its child processes) is sampled every 0.1 s; its peak is reported against its memory after start-up.

Bounded: 8 sessions, one pass each, 300 s at most. Results: the wall time of the 8 concurrent sessions against
8 times one warm session alone (reported; the budget is correctness: right, unmixed results and no errors), and
the server's peak RSS against its RSS at rest (budget ≤ 2 GB). The browser runs on the same cores as the server,
so the timing is pessimistic. Needs Debian's chromium and playwright.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from hyperfusion.bench import (
    CHROMIUM,
    CHROMIUM_ARGS,
    BenchResult,
    app_command,
    free_port,
    stop,
    wait_for_port,
)

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "assets" / "demo" / "models" / "ad" / "hyperfusion"
SESSIONS = 8
TIME_LIMIT_S = 300
MB = 2**20

_READ_CHART = """() => {
  const g = document.querySelector('.js-plotly-plot');
  return g && g.data ? g.data.map(t => ({name: t.name, y: Array.from(t.y), x: Array.from(t.x)})) : null;
}"""
_SUBJECT_IS = """p => [...document.querySelectorAll('[data-testid=stSelectbox] input')]
  .some(i => i.getAttribute('aria-label') === 'Subject' && i.value === p)"""


def _rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants, bytes."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo += [int(c) for c in children]
        except (OSError, AttributeError):
            continue
    return total


class _PeakRss(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _rss_bytes(self.pid))
            time.sleep(0.1)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def _expected(cohort_dir: Path) -> dict[str, dict[str, float]]:
    """The library's probabilities for every subject: what each session must show."""
    from hyperfusion.data import load_cohort
    from hyperfusion.data.cohort import cohort_subject
    from hyperfusion.inference.predictor import Predictor

    cohort = load_cohort(cohort_dir)
    predictor = Predictor({"m": str(MODEL)})
    out = {}
    for ptid in cohort.table["PTID"]:
        scan, record = cohort_subject(cohort, ptid)
        pred = predictor.predict(scan, record)["m"]
        out[ptid] = dict(zip(pred.class_names, map(float, pred.value[0])))
    return out


async def _session(browser, url: str, ptid: str) -> dict:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    t0 = time.perf_counter()
    await page.goto(f"{url}/Subject", wait_until="domcontentloaded")
    caption = page.get_by_text(re.compile(r"Δ: change from the prediction")).first
    await caption.wait_for(timeout=120_000)
    subject = page.get_by_test_id("stSelectbox").filter(has_text="Subject").first.locator("input")
    await subject.click()
    await subject.fill(ptid)
    await page.keyboard.press("Enter")
    await page.wait_for_function(_SUBJECT_IS, arg=ptid, timeout=60_000)
    await page.wait_for_timeout(500)
    await page.wait_for_function(
        "() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=120_000
    )
    await caption.wait_for(timeout=120_000)
    await page.wait_for_timeout(300)
    await page.wait_for_function(
        "() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=120_000
    )
    chart = await page.evaluate(_READ_CHART)
    errors = (
        await page.get_by_test_id("stException").count()
        + await page.get_by_test_id("stAlertContentError").count()
    )
    await page.get_by_test_id("stSidebarNav").get_by_role("link", name="Attribution").click()
    await page.get_by_text(re.compile(r"Crosshair at x =")).wait_for(timeout=120_000)
    await page.get_by_test_id("stImage").first.wait_for(timeout=60_000)
    shown = await page.evaluate(_SUBJECT_IS, ptid)
    errors += await page.get_by_test_id("stException").count()
    seconds = time.perf_counter() - t0
    await context.close()
    probs = {t["name"]: float(t["x"][0]) for t in chart} if chart else {}
    return {
        "ptid": ptid,
        "probs": probs,
        "errors": errors,
        "seconds": seconds,
        "attribution_subject": shown,
    }


async def _sessions(url: str, ptids: list[str]) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        try:
            return await asyncio.wait_for(
                asyncio.gather(*[_session(browser, url, p) for p in ptids]), timeout=TIME_LIMIT_S
            )
        finally:
            await browser.close()


def _check(results: list[dict], expected: dict[str, dict[str, float]]) -> list[str]:
    problems = []
    for r in results:
        want = expected[r["ptid"]]
        if r["errors"]:
            problems.append(f"{r['ptid']}: {r['errors']} error(s) on the page")
        if not r["attribution_subject"]:
            problems.append(f"{r['ptid']}: the attribution page showed another subject")
        if set(r["probs"]) != set(want) or any(abs(r["probs"][c] - want[c]) > 1e-4 for c in want):
            problems.append(f"{r['ptid']}: shown {r['probs']} != library {want}")
    return problems


def run(repeats: int = 1) -> list[BenchResult]:
    from hyperfusion.data.synthetic import SynthConfig, generate_cohort

    with tempfile.TemporaryDirectory() as tmp:
        cohort_dir = generate_cohort(Path(tmp) / "cohort", SynthConfig(n=SESSIONS, seed=3, task="ad"))
        expected = _expected(cohort_dir)
        port = free_port()
        env = {
            **os.environ,
            "HYPERFUSION_COHORT": str(cohort_dir),
            "HYPERFUSION_MODELS": str(MODEL),
            "HOME": tmp,
        }
        server = subprocess.Popen(
            app_command(port),
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            if not wait_for_port(port, 60, server):
                raise RuntimeError("the dashboard did not start within 60 s")
            ptids = sorted(expected)
            # a warm-up session (models loaded, torch initialised), then one session alone, timed
            single = asyncio.run(_sessions(url, ptids[:1])) + asyncio.run(_sessions(url, ptids[1:2]))
            rest_rss = _rss_bytes(server.pid)
            t_single = single[1]["seconds"]
            monitor = _PeakRss(server.pid)
            monitor.start()
            t0 = time.perf_counter()
            results = asyncio.run(_sessions(url, ptids))
            wall = time.perf_counter() - t0
            peak = max(monitor.stop(), rest_rss)
        finally:
            stop(server)
    problems = _check(single + results, expected)
    note = "; ".join(problems) if problems else f"{SESSIONS} sessions correct and unmixed, no errors"
    slowest = max(r["seconds"] for r in results)
    return [
        BenchResult(
            f"load: {SESSIONS} concurrent sessions (predict + saliency) vs the same one after another",
            measured=wall,
            reference=SESSIONS * t_single,
            budget="correct, unmixed, no errors",
            unit="s",
            passed=not problems,
            note=f"{note}; slowest session {slowest:.1f} s (timing reported, not budgeted)",
        ),
        BenchResult(
            "load: server peak RSS under 8 sessions vs at rest",
            measured=peak / MB,
            reference=rest_rss / MB,
            budget="<= 2048 MB",
            unit="MB",
            passed=not problems and peak <= 2048 * MB,
            note=note,
        ),
    ]


if __name__ == "__main__":
    from hyperfusion.bench import format_table

    print(format_table(run()))
