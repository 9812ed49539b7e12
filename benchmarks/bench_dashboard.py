"""The dashboard's interactions in a real browser (issue #16's budgets): the real server started once
(``hyperfusion app``: the demo cohort and its 7 AD models, loopback), headless Chromium (Playwright), each
interaction timed in the browser (``performance.now()``: from the key press or click that starts it to the
animation frame in which its result is on the page), medians of at least 10.

- edit → every model's chart updated (≤ 200 ms): AGE changed on the Subject page (a new value each time,
  typed, then Enter); the clock stops in the frame where the probability chart (one bar group per model,
  every model in it) holds new data; after the last edit every model's bars must equal the library's
  prediction. Reference, in alternation: the same edit in a two-line Streamlit app (a number input and its
  value written back) on its own server: the floor of any Streamlit rerun round trip here.
- crosshair move and zoom in the Attribution viewer (≤ 150 ms, no new map): a click in the axial view and a
  zoom button, each until the next frame is drawn (the approach of tests/app/test_viewer_browser.py).
  Reference: an empty animation frame (the floor of this way of timing).
- saliency shown (≤ 1 s): another subject chosen on the Attribution page (its scan already generated into the
  cache, its map never computed in this server) until the viewer draws its new saliency map.
- integrated gradients shown (32 steps, ≤ 4 s, with progress): that subject's method switched to integrated
  gradients until the viewer draws the map; a progress bar must appear meanwhile.
  Reference for both maps: the switch back to saliency, whose map is cached (the page's round trip with no map
  to compute: a rerun, the scene sent and drawn).

The first page after start and the Cohort page's first rows are bench_startup.py and bench_cohort_page.py.
Bounded: about 1.5 minutes on a quiet 2-core CPU; the maps stop after MAPS_SECONDS on a loaded one (the note
says of how many runs their medians are). Needs Debian's chromium and playwright.

Run: ``hyperfusion bench dashboard`` or ``python benchmarks/bench_dashboard.py [repeats]``.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hyperfusion.bench import (
    VIEWER_TIME_CLICK,
    VIEWER_TIME_ZOOM,
    BenchResult,
    app_command,
    demo_env,
    launch_chromium,
    serving,
    streamlit_command,
)

EDIT_BUDGET_MS = 200.0
VIEWER_BUDGET_MS = 150.0
SALIENCY_BUDGET_S = 1.0
IG_BUDGET_S = 4.0
#: The issue's medians are of 10 interactions each: fewer are never timed, whatever ``repeats`` says.
AT_LEAST = 10
TIMEOUT_MS = 120_000
#: The maps' time bound: on a loaded machine integrated gradients alone can take a minute, so no subject is
#: begun after this many seconds once three are done (the note says how many runs a median is of).
MAPS_SECONDS = 120.0
AT_LEAST_MAPS = 3

# Every Enter and click is stamped in the capture phase, before the page's own handlers see it
_STAMP = """() => { if (window.__hfStamp) return; window.__hfStamp = true;
  for (const kind of ['keydown', 'pointerdown'])
    document.addEventListener(kind, e => { if (kind !== 'keydown' || e.key === 'Enter')
      window.__hfT0 = performance.now(); }, true); }"""
# The probability chart's data (the Subject page's first Plotly chart), as text; null before it is drawn
_CHART = """() => { const g = document.querySelector('[data-testid=stPlotlyChart] .js-plotly-plot');
  return g && g.data ? JSON.stringify(g.data.map(t => [t.name, Array.from(t.y), Array.from(t.x)])) : null; }"""
_CHART_CHANGED = """before => { const g = document.querySelector('[data-testid=stPlotlyChart] .js-plotly-plot');
  const now = g && g.data ? JSON.stringify(g.data.map(t => [t.name, Array.from(t.y), Array.from(t.x)])) : null;
  return now !== null && now !== before && performance.now(); }"""
_TEXT_CHANGED = """before => { const e = [...document.querySelectorAll('[data-testid=stMarkdownContainer]')]
  .find(e => e.innerText.startsWith('value ')); return !!e && e.innerText !== before && performance.now(); }"""
_TEXT = """() => { const e = [...document.querySelectorAll('[data-testid=stMarkdownContainer]')]
  .find(e => e.innerText.startsWith('value ')); return e ? e.innerText : null; }"""
_IDLE = "() => !document.querySelector('[data-testid=stStatusWidget]')"
# The viewer's first map row (app/viewer.js keeps its scene on the root element): its data's id (a hash)
_MAP = """() => { const r = document.querySelector('.hfv'); const s = r && r.viewer && r.viewer.st.scene;
  return s && s.rows.length ? s.rows[0].id : null; }"""
_MAP_CHANGED = """before => { const r = document.querySelector('.hfv');
  const s = r && r.viewer && r.viewer.st.scene; const now = s && s.rows.length ? s.rows[0].id : null;
  return now !== null && now !== before && r.dataset.ready !== undefined && performance.now(); }"""
# Whether a progress bar has been on the page since the watch began
_WATCH_PROGRESS = """() => { window.__hfProgress = false;
  const seen = () => { if (document.querySelector('[data-testid=stProgress]')) window.__hfProgress = true; };
  if (window.__hfObserver) window.__hfObserver.disconnect();
  window.__hfObserver = new MutationObserver(seen);
  window.__hfObserver.observe(document.body, {childList: true, subtree: true}); seen(); }"""
_TIME_FRAME = """async () => { const t0 = performance.now(); await new Promise(requestAnimationFrame);
  return performance.now() - t0; }"""
_AXIAL = "canvas.hfv-view[data-row='0'][data-view='axial']"

REFERENCE_APP = """import streamlit as st
x = st.number_input("AGE (years)", 5.0, 110.0, 70.0, step=0.5)
st.write(f"value {x}")
"""


def _say(text: str) -> None:
    print(f"  dashboard: {text}", file=sys.stderr, flush=True)


def _idle(page) -> None:
    """Wait until the page's script run has finished (Streamlit's running indicator gone)."""
    page.wait_for_timeout(150)
    page.wait_for_function(_IDLE, timeout=TIMEOUT_MS, polling=50)


def _timed(page, changed: str, arg, act) -> float:
    """Milliseconds from the stamped Enter / click of ``act()`` to the frame where ``changed(arg)`` holds."""
    page.evaluate("() => { window.__hfT0 = null; }")
    act()
    t1 = page.wait_for_function(changed, arg=arg, timeout=TIMEOUT_MS, polling="raf").json_value()
    t0 = page.evaluate("() => window.__hfT0")
    if t0 is None:
        raise RuntimeError("the interaction's key press / click was not seen by the page")
    return t1 - t0


def _type(field, value: str) -> None:
    field.fill(value)
    field.press("Enter")


def _choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box ``label`` (typed, then Enter)."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).first.locator("input")
    box.click()
    box.fill(option)
    page.get_by_role("option", name=re.compile(re.escape(option))).first.wait_for(timeout=TIMEOUT_MS)
    box.press("Enter")


def _edits(page, reference, n: int) -> tuple[list[float], list[float], float]:
    """Edit AGE ``n`` times on the Subject page and in the reference app, in alternation: (ms, reference ms,
    the last AGE typed)."""
    age = page.get_by_label(re.compile(r"^AGE"))
    start = float(age.input_value() or 70.0)  # an empty field: AGE missing in the record
    ref_age = reference.get_by_label(re.compile(r"^AGE"))
    ours, floor = [], []
    for i in range(n):
        value = f"{start + 0.5 * (i + 1) * (-1) ** i:.1f}"  # a value never shown before
        before = page.evaluate(_CHART)
        ours.append(_timed(page, _CHART_CHANGED, before, lambda v=value: _type(age, v)))
        _idle(page)  # the rest of the page (ICE curves, record attributions) before the next edit
        before = reference.evaluate(_TEXT)
        floor.append(_timed(reference, _TEXT_CHANGED, before, lambda v=value: _type(ref_age, v)))
        _idle(reference)
    return ours, floor, float(value)


def _shown(page) -> dict[str, dict[str, float]]:
    """The probability chart's values: model -> class -> probability."""
    out: dict[str, dict[str, float]] = {}
    for cls, models, values in json.loads(page.evaluate(_CHART)):
        for model, value in zip(models, values):
            out.setdefault(model.rsplit("/", 1)[-1], {})[cls] = float(value)
    return out


def _library(ptid: str, age: float) -> dict[str, dict[str, float]]:
    """What the chart must show: the library's probabilities of every demo AD model for the subject's record
    with AGE edited (model -> class -> probability)."""
    from hyperfusion.data import cohort as hc
    from hyperfusion.demo import dashboard_settings
    from hyperfusion.inference import Predictor

    settings = dashboard_settings(demo_env())
    scan, recorded = hc.cohort_subject(hc.load_cohort(settings["cohort"]), ptid, generate=True)
    root = Path(settings["models"]) / "ad"
    predictor = Predictor({d.name: str(d) for d in sorted(root.iterdir()) if d.is_dir()})
    preds = predictor.predict(scan, [recorded, {**recorded, "AGE": age}])
    return {n: dict(zip(p.class_names, map(float, p.value[1]))) for n, p in preds.items()}


def _mismatches(shown: dict, expected: dict) -> list[str]:
    wrong = [f"{m} missing" for m in expected if m not in shown]
    for m, probs in expected.items():
        if m in shown and any(abs(shown[m].get(c, -1) - v) > 1e-4 for c, v in probs.items()):
            wrong.append(f"{m}: shown {shown[m]} != library {probs}")
    return wrong


def _viewer(page, n: int) -> tuple[list[float], list[float], list[float]]:
    """Crosshair moves and zoom steps in the viewer, with empty frames between: ms each."""
    clicks, zooms, frames = [], [], []
    for i in range(n):
        clicks.append(page.evaluate(VIEWER_TIME_CLICK, [_AXIAL, 0.3 + 0.04 * i, 0.5]))
        zooms.append(page.evaluate(VIEWER_TIME_ZOOM, "in" if i % 2 == 0 else "out"))
        frames.append(page.evaluate(_TIME_FRAME))
    return clicks, zooms, frames


def _maps(page, subjects: list[str], labels: dict[str, str], seconds: float) -> dict[str, list]:
    """For each subject: chosen (its saliency map computed), then integrated gradients, then saliency again
    (cached): seconds each, and whether a progress bar showed while integrated gradients ran. No subject is
    begun after ``seconds`` once ``AT_LEAST_MAPS`` are done."""
    out = {"saliency": [], "ig": [], "cached": [], "progress": []}
    deadline = time.monotonic() + seconds
    for ptid in subjects:
        if len(out["ig"]) >= AT_LEAST_MAPS and time.monotonic() > deadline:
            break
        ms = _timed(
            page,
            _MAP_CHANGED,
            page.evaluate(_MAP),
            lambda p=ptid: _choose(page, "Subject", p),
        )
        out["saliency"].append(ms / 1000)
        _idle(page)
        page.evaluate(_WATCH_PROGRESS)
        ms = _timed(
            page,
            _MAP_CHANGED,
            page.evaluate(_MAP),
            lambda: _choose(page, "Method", labels["integrated_gradients"]),
        )
        out["ig"].append(ms / 1000)
        out["progress"].append(page.evaluate("() => window.__hfProgress"))
        _idle(page)
        ms = _timed(
            page,
            _MAP_CHANGED,
            page.evaluate(_MAP),
            lambda: _choose(page, "Method", labels["saliency"]),
        )
        out["cached"].append(ms / 1000)
        _idle(page)
    return out


def _errors(page) -> int:
    return page.get_by_test_id("stException").count() + page.get_by_test_id("stAlertContentError").count()


def _prepare_subjects(n: int) -> list[str]:
    """``n`` demo subjects with a scan, generated into the cache now (as after a first visit), so that a map's
    time is not a scan's generation."""
    from hyperfusion.data import cohort as hc
    from hyperfusion.demo import dashboard_settings

    cohort = hc.load_cohort(dashboard_settings(demo_env())["cohort"])
    out = []
    for ptid in cohort.table["PTID"]:
        if hc.cohort_subject(cohort, ptid, generate=True)[0] is not None:
            out.append(str(ptid))
        if len(out) == n:
            return out
    raise RuntimeError(f"the demo cohort has fewer than {n} subjects with a scan")


def run(repeats: int = 10) -> list[BenchResult]:
    from playwright.sync_api import sync_playwright

    from hyperfusion.explain import available_methods

    n = max(repeats, AT_LEAST)
    labels = {m["name"]: m["label"] for m in available_methods()}
    subjects = _prepare_subjects(n + 1)  # the first is the page's own subject (and the warm-up)
    env = demo_env()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "reference.py"
        script.write_text(REFERENCE_APP)
        with (
            serving(app_command, env) as url,
            serving(lambda port: streamlit_command(script, port), env) as ref_url,
            sync_playwright() as p,
        ):
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            reference = browser.new_page(viewport={"width": 800, "height": 600})
            reference.set_default_timeout(TIMEOUT_MS)
            for pg in (page, reference):
                pg.add_init_script(f"({_STAMP})()")

            reference.goto(ref_url, wait_until="domcontentloaded")
            reference.get_by_text(re.compile(r"^value ")).first.wait_for()
            page.goto(f"{url}/Subject", wait_until="domcontentloaded")
            _choose(page, "Subject", subjects[0])
            page.wait_for_function(
                "p => [...document.querySelectorAll('[data-testid=stSelectbox] input')]"
                ".some(i => i.getAttribute('aria-label') === 'Subject' && i.value.startsWith(p))",
                arg=subjects[0],
            )
            page.get_by_text(re.compile(r"Δ: change from the prediction")).first.wait_for()
            _idle(page)
            _say(f"{n} edits on the Subject page and in the reference app")
            _edits(page, reference, 1)  # warm-up: first runs of the page's code
            edit_ms, floor_ms, age = _edits(page, reference, n)
            edit_errors = _errors(page)
            shown = _shown(page)

            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Attribution").click()
            page.locator(".hfv[data-ready]").wait_for()
            _idle(page)
            _say(f"{n} crosshair moves and zoom steps")
            clicks, zooms, frames = _viewer(page, n)
            _idle(page)  # the crosshair's new place goes back to Python (a rerun, no new map)
            _say(f"saliency and integrated gradients of up to {n} subjects (bounded to {MAPS_SECONDS:g} s)")
            maps = _maps(page, subjects[1:], labels, MAPS_SECONDS)
            map_errors = _errors(page)
            browser.close()
    wall = time.perf_counter() - t_start
    wrong = _mismatches(shown, _library(subjects[0], age))

    med = statistics.median
    runs = lambda ts, f="{:.0f}": ", ".join(f.format(t) for t in ts)  # noqa: E731
    k = len(maps["ig"])
    bound = f"{k} runs each ({n} asked; bounded to {MAPS_SECONDS:g} s); servers and browser took {wall:.0f} s"
    no_progress = maps["progress"].count(False)
    return [
        BenchResult(
            "dashboard: edit (AGE on the Subject page) -> every model's chart updated (vs a bare Streamlit rerun)",
            med(edit_ms),
            med(floor_ms),
            f"<= {EDIT_BUDGET_MS:g} ms",
            med(edit_ms) <= EDIT_BUDGET_MS and not wrong and not edit_errors,
            unit="ms",
            note=f"the last edit's chart: {'; '.join(wrong) or f'{len(shown)} models, equal to the library'}; "
            f"{edit_errors} errors; runs {runs(edit_ms)} ms; "
            f"bare rerun runs {runs(floor_ms)} ms",
        ),
        BenchResult(
            "dashboard: crosshair move in the Attribution viewer (vs an empty frame)",
            med(clicks),
            med(frames),
            f"<= {VIEWER_BUDGET_MS:g} ms",
            med(clicks) <= VIEWER_BUDGET_MS,
            unit="ms",
            note=f"runs {runs(clicks, '{:.1f}')} ms",
        ),
        BenchResult(
            "dashboard: zoom step in the Attribution viewer (vs an empty frame)",
            med(zooms),
            med(frames),
            f"<= {VIEWER_BUDGET_MS:g} ms",
            med(zooms) <= VIEWER_BUDGET_MS,
            unit="ms",
            note=f"runs {runs(zooms, '{:.1f}')} ms",
        ),
        BenchResult(
            "dashboard: saliency map shown for a newly chosen subject (vs switching back to a cached map)",
            med(maps["saliency"]),
            med(maps["cached"]),
            f"<= {SALIENCY_BUDGET_S:g} s",
            med(maps["saliency"]) <= SALIENCY_BUDGET_S and not map_errors,
            note=f"runs {runs(maps['saliency'], '{:.2f}')} s; cached-map switch runs "
            f"{runs(maps['cached'], '{:.2f}')} s; {map_errors} errors; {bound}",
        ),
        BenchResult(
            "dashboard: integrated gradients (32 steps) shown, with progress (vs switching back to a cached map)",
            med(maps["ig"]),
            med(maps["cached"]),
            f"<= {IG_BUDGET_S:g} s, progress shown",
            med(maps["ig"]) <= IG_BUDGET_S and not no_progress and not map_errors,
            note=f"runs {runs(maps['ig'], '{:.2f}')} s; no progress bar seen in {no_progress} of {k}",
        ),
    ]


if __name__ == "__main__":
    from hyperfusion.bench import format_table

    print(format_table(run(int(sys.argv[1]) if len(sys.argv) > 1 else AT_LEAST)))
