"""The HTML report as a reader sees it: structure tests of the charts, and the page
rendered by a real browser (headless Chromium) and judged as a picture."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eskernel.analytics import Projection
from eskernel.analytics.html import hbar_chart, nice_ticks, time_ticks
from eskernel.analytics.report import build_report
from eskernel.eventlog import EventLog
from eskernel.cli._demo import run_demo
from tests.browser import headless_chromium


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("htmldemo")
    run_demo(d, jobs=60, seed=5, snapshot=False)
    with Projection(d) as p:
        p.refresh()
        rep = build_report(p, bucket_s=30)
    out = d / "report.html"
    out.write_text(rep.to_html(), encoding="utf-8")
    return out


def _alternating_log(d: Path) -> None:
    # One queue completing a task every other minute: 0, 2, 4, ... minutes.
    lines = [b'{"v":1,"t":"queue_declared","ts":1700000000000000000,"queue":"q",'
             b'"max_concurrent":0,"paused":false}',
             b'{"v":1,"t":"agent_registered","ts":1700000000000000000,"agent":"a",'
             b'"capabilities":["q"],"capacity":1}']
    lease = 0
    for i in range(6):
        ts = 1_700_000_000_000_000_000 + i * 120_000_000_000
        task = f"t{i}".encode()
        lease += 1
        lines += [
            b'{"v":1,"t":"submitted","ts":%d,"task":"%s","queue":"q","priority":2,"payload":'
            b'null,"depends_on":[],"max_attempts":3,"timeout":30000000000,"not_before":0}'
            % (ts, task),
            b'{"v":1,"t":"claimed","ts":%d,"task":"%s","agent":"a","lease":%d,"attempt":1,'
            b'"expires":%d}' % (ts, task, lease, ts + 30_000_000_000),
            b'{"v":1,"t":"completed","ts":%d,"task":"%s","lease":%d,"result":null}'
            % (ts + 1_000_000_000, task, lease)]
    with EventLog.open(d) as log:
        for rec in lines:
            log.append(rec)


def test_empty_intervals_are_drawn_as_zero(tmp_path: Path) -> None:
    _alternating_log(tmp_path)
    with Projection(tmp_path) as p:
        p.refresh()
        rep = build_report(p, bucket_s=60)
    html = rep.to_html()
    chart = html[html.index("q — 6 completed"):]
    chart = chart[:chart.index("</svg>")]
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)"', chart)]
    # 10 minutes and 1 s of window: 11 intervals, every other one empty.
    assert len(heights) == 11 and heights.count(0.0) == 5, heights


def test_ticks_are_round() -> None:
    for vmax in (0.179, 0.7, 3.2, 37, 912, 1e6 + 1):
        ticks = nice_ticks(vmax)
        step = ticks[1] - ticks[0]
        mantissa = step / 10 ** (len(str(int(step))) - 1) if step >= 1 else round(
            step / 10 ** int(f"{step:e}".split("e")[1]), 9)
        assert ticks[-1] >= vmax and mantissa in (1, 2, 5), (vmax, ticks)
    ticks, fmt = time_ticks(1_700_000_013.3, 1_700_000_641.0)
    assert all(t % 60 == 0 for t in ticks) and fmt == "%H:%M"


def test_utilization_is_on_a_zero_to_one_scale() -> None:
    svg = hbar_chart(["a", "b"], [0.25, 0.5], vmax=1.0, percent=True)
    assert ">100%<" in svg and ">0%<" in svg
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([0-9.]+)"', svg)]
    assert widths[1] == pytest.approx(2 * widths[0], abs=0.2)   # 50 % is twice 25 %, not full
    full = hbar_chart(["a"], [1.0], vmax=1.0, percent=True)
    assert float(re.findall(r'<rect [^>]*width="([0-9.]+)"', full)[0]) > widths[1]
    assert "no limit" in hbar_chart(["q"], [None], vmax=1.0, percent=True)


def test_charts_of_the_report(page: Path) -> None:
    html = page.read_text()
    assert "<script" not in html
    queues = ["encode", "ingest", "notify", "render", "report"]
    assert all(f"{q} — " in html for q in queues)              # one chart per queue
    assert re.search(r">\d\d:\d\d<", html)                     # time axis labels
    for title in ("Utilization", "By queue", "Failures", "By agent"):
        assert title in html
    assert 'class="scroll"' in html


@pytest.mark.parametrize("width", [1000, 700])
def test_the_page_in_a_browser(page: Path, tmp_path: Path, width: int) -> None:
    driver = headless_chromium("the HTML report")
    try:
        driver.set_window_size(width, 1200)
        driver.get(page.as_uri())
        view = driver.execute_script("return document.documentElement.clientWidth")
        # Nothing sticks out of the page: wide tables scroll inside their own box.
        assert driver.execute_script("return document.documentElement.scrollWidth") <= view
        boxes = driver.execute_script(
            "return [...document.querySelectorAll('svg[role=img]')].map(s => {"
            "const r = s.getBoundingClientRect(); return [r.left, r.right, r.width, r.height]})")
        assert len(boxes) >= 9
        assert all(left >= 0 and right <= view and w > 100 and h > 40
                   for left, right, w, h in boxes), boxes
        # Labels of the time axes do not run into each other.
        overlaps = driver.execute_script("""
            let bad = 0;
            for (const svg of document.querySelectorAll('svg[role=img]')) {
              const labels = [...svg.querySelectorAll('text[text-anchor=middle]')]
                .filter(t => /^\\d\\d:\\d\\d/.test(t.textContent))
                .map(t => t.getBoundingClientRect()).sort((a, b) => a.left - b.left);
              for (let i = 1; i < labels.length; i++)
                if (labels[i].left < labels[i - 1].right) bad++;
            }
            return bad;""")
        assert overlaps == 0
        shot = tmp_path / f"report-{width}.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
