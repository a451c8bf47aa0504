"""The web inspector in a headless Chromium (Debian's, driven by playwright), against a real daemon:
how soon a session of N events shows, how smoothly it scrolls, and the frame rate while a turn streams.

- open: a session of N events (4 turns of thinking, N/4 chunks, a tool call and a plan) opened by
  URL; first render is when its first rows are painted, loaded when its whole history is in the
  page (the live stream follows from there), both from the start of navigation; the JS heap then.
- scroll: the conversation scrolled top to bottom in 200 steps, a frame each; the time per step.
- stream: a turn of 10,000 chunks in 20 bursts (and one of 100,000 chunks in one burst) while the
  page follows it live: frames per second during the turn and the longest frame.

    .venv/bin/python benchmarks/inspector.py --events 100000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx

from acpd.testing.browser import headless_chromium
from acpd.testing.daemon import running_daemon

SCROLL = """async () => {
  const list = window.acpdUi.view.list, scroller = list.scroller, steps = 200, times = [];
  const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
  list.scrollToIndex(0); await frame();
  const height = scroller.scrollHeight;
  for (let i = 1; i <= steps; i++) {
    const t0 = performance.now();
    scroller.scrollTop = (height * i) / steps;
    await frame();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { median: times[steps >> 1], p95: times[Math.floor(steps * 0.95)], max: times[steps - 1] };
}"""
FRAMES = """() => {
  const f = (window.__frames = { count: 0, last: performance.now(), longest: 0, start: performance.now() });
  const tick = (now) => { f.count++; f.longest = Math.max(f.longest, now - f.last); f.last = now;
    if (!f.stop) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""
STOP = """() => {
  const f = window.__frames;
  f.stop = true;
  return { ...f, seconds: (performance.now() - f.start) / 1000 };
}"""
TURN_ENDED = "(n) => window.acpdUi && window.acpdUi.model.turnsEnded === n"


async def open_session(browser: Any, url: str, session_id: str, events: int) -> dict[str, Any]:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(f"{url}/ui#/s/{session_id}")
    await page.wait_for_function(
        f"() => window.acpdUi && window.acpdUi.view.loaded && window.acpdUi.model.lastSeq >= {events}", timeout=120_000
    )
    await page.wait_for_function("() => window.acpdUi.model.timing.firstRender", timeout=10_000)
    timing = await page.evaluate("window.acpdUi.model.timing")
    heap = await page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
    scroll = await page.evaluate(SCROLL)
    await page.close()
    return {"first": timing["firstRender"], "loaded": timing["loaded"], "heap": heap / 2**20, "scroll": scroll}


async def stream_turn(browser: Any, http: httpx.AsyncClient, url: str, script: str) -> dict[str, Any]:
    session_id = (await http.post("/v1/sessions", json={"agent": "mock"})).json()["id"]
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(f"{url}/ui#/s/{session_id}")
    await page.wait_for_function("() => window.acpdUi && window.acpdUi.view.loaded", timeout=30_000)
    await page.evaluate(FRAMES)
    await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": script})
    await page.wait_for_function(TURN_ENDED, arg=1, timeout=120_000)
    frames = await page.evaluate(STOP)
    await page.close()
    return {"fps": frames["count"] / frames["seconds"], "longest": frames["longest"], "seconds": frames["seconds"]}


def spread(values: list[float], unit: str = "", digits: int = 0) -> str:
    def fmt(v: float) -> str:
        return f"{v:,.{digits}f}"

    return f"{fmt(min(values))} / {fmt(statistics.median(values))} / {fmt(max(values))}{unit}"


async def main(events: int, runs: int) -> None:
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="acpd-bench-") as home:
        async with (
            running_daemon(Path(home), "--no-auth") as daemon,
            headless_chromium() as browser,
            httpx.AsyncClient(base_url=daemon.url, timeout=600) as http,
        ):
            session_id = (await http.post("/v1/sessions", json={"agent": "mock"})).json()["id"]
            turn = f"think planning\nchunks {events // 4 - 4} 8\ntool edit Edit\nplan 3"
            for _ in range(4):
                await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": turn})
            total = (await http.get(f"/v1/sessions/{session_id}")).json()["lastSeq"]
            opened = [await open_session(browser, daemon.url, session_id, total) for _ in range(runs)]
            bursts = "\n".join(["chunks 500", "sleep 0.1"] * 20)
            paced = [await stream_turn(browser, http, daemon.url, bursts) for _ in range(runs)]
            burst = [await stream_turn(browser, http, daemon.url, "chunks 100000") for _ in range(runs)]
    print(f"session of {total:,} events; {runs} runs; min / median / max")
    print(f"first render                  {spread([o['first'] for o in opened], ' ms')}")
    print(f"whole history loaded          {spread([o['loaded'] for o in opened], ' ms')}")
    print(f"JS heap after loading         {spread([o['heap'] for o in opened], ' MiB')}")
    print(f"scroll step, median           {spread([o['scroll']['median'] for o in opened], ' ms', 1)}")
    print(f"scroll step, p95              {spread([o['scroll']['p95'] for o in opened], ' ms', 1)}")
    print(f"scroll step, longest          {spread([o['scroll']['max'] for o in opened], ' ms', 1)}")
    for name, runs_of in (("10,000 chunks in 20 bursts", paced), ("100,000 chunks at once", burst)):
        print(
            f"{name}: fps {spread([r['fps'] for r in runs_of])}, longest frame "
            f"{spread([r['longest'] for r in runs_of], ' ms')}, turn {spread([r['seconds'] for r in runs_of], ' s', 2)}"
        )
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    import anyio

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    anyio.run(main, options.events, options.runs)
