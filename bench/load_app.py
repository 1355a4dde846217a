"""Load test: N concurrent browser sessions against one real `streamlit run` server (loopback).

Each session is its own Chromium context (its own Streamlit session): it opens the Anchors page,
opens Detection, uploads an image of its own (so the network runs once per session), moves the
confidence slider, and every ``train_every``-th session also starts a tiny training run. The
server writes its own timings (``SSD_TIMING_LOG``, see app/timing.py), so the slider figures are
server-side script times under load, not browser round trips.

Reported: errors (exceptions on a page, JavaScript errors, timeouts; goal 0), p50/p95 of the
server-side rerun of a slider move, the browser round trip of a slider move, peak RSS of the
server, model loads into the process cache (goal: one per model, not one per session), how the
training queue behaved, and the server's RSS after every session has closed.

    python bench/load_app.py                 # N = 10 and N = 30
    python bench/load_app.py --sessions 30 --train-every 5

Bounded: every wait has a timeout and the whole run has a deadline (--deadline, seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.serve import CHROMIUM_ARGS, chromium, serve
from ssd_core import runfolder as rf

TRAIN_SETTINGS = [("Training images", "8"), ("Validation images", "4"), ("Epochs", "2"),
                  ("Batch size", "4")]


@dataclass
class Report:
    sessions: int
    waves: int = 1
    errors: list[str] = field(default_factory=list)
    slider_server_ms: list[float] = field(default_factory=list)
    slider_roundtrip_ms: list[float] = field(default_factory=list)
    page_ms: list[float] = field(default_factory=list)
    model_loads: dict = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    rss_start_mb: float = 0.0
    rss_after_mb: float = 0.0
    peak_rss_per_wave_mb: list[float] = field(default_factory=list)
    max_running: int = 0
    max_queued: int = 0
    run_states: dict = field(default_factory=dict)
    trainings_started: int = 0
    queue_wait_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    completed: int = 0

    def percentile(self, values, q):
        if not values:
            return float("nan")
        s = sorted(values)
        return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]

    def as_dict(self) -> dict:
        p = self.percentile
        return {
            "sessions": self.sessions, "waves": self.waves, "completed": self.completed,
            "errors": len(self.errors),
            "error_list": self.errors[:20],
            "slider_server_ms_p50": p(self.slider_server_ms, 50),
            "slider_server_ms_p95": p(self.slider_server_ms, 95),
            "slider_roundtrip_ms_p50": p(self.slider_roundtrip_ms, 50),
            "slider_roundtrip_ms_p95": p(self.slider_roundtrip_ms, 95),
            "slider_moves": len(self.slider_server_ms),
            "page_run_ms_p50": p(self.page_ms, 50), "page_run_ms_p95": p(self.page_ms, 95),
            "model_loads": self.model_loads, "peak_rss_mb": self.peak_rss_mb,
            "rss_start_mb": self.rss_start_mb, "rss_after_close_mb": self.rss_after_mb,
            "peak_rss_per_wave_mb": [round(v) for v in self.peak_rss_per_wave_mb],
            "trainings_started": self.trainings_started, "max_running": self.max_running,
            "max_queued": self.max_queued, "run_states": self.run_states,
            "max_queue_wait_s": max(self.queue_wait_s, default=0.0),
            "wall_s": self.wall_s,
        }


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Watcher(threading.Thread):
    """Polls the server's RSS and the runs folder's job states until stopped."""

    def __init__(self, pid: int, runs: Path, report: Report):
        super().__init__(daemon=True)
        self.pid, self.runs, self.report = pid, runs, report
        self.done = threading.Event()
        self.seen: dict[str, float] = {}
        self.started: dict[str, float] = {}

    def states(self) -> dict[str, str]:
        out = {}
        for p in self.runs.glob(f"*/{rf.STATUS}"):  # written by atomic renames: never half
            out[p.parent.name] = rf.read_status(p.parent).state
        return out

    def run(self):
        while not self.done.wait(0.25):
            self.report.peak_rss_mb = max(self.report.peak_rss_mb, rss_mb(self.pid))
            states = self.states()
            now = time.time()
            for run, state in states.items():
                self.seen.setdefault(run, now)
                if state != rf.QUEUED:
                    self.started.setdefault(run, now)
            values = list(states.values())
            self.report.max_running = max(self.report.max_running, values.count(rf.RUNNING))
            self.report.max_queued = max(self.report.max_queued, values.count(rf.QUEUED))
        self.report.queue_wait_s = [self.started.get(r, time.time()) - t
                                    for r, t in self.seen.items()]


async def wait_idle(page, timeout: float = 120.0) -> None:
    """Until Streamlit has finished running the script (no status widget for 0.5 s)."""
    deadline = time.monotonic() + timeout
    quiet = None
    while time.monotonic() < deadline:
        if await page.locator('[data-testid="stStatusWidget"]').count():
            quiet = None
        elif quiet is None:
            quiet = time.monotonic()
        elif time.monotonic() - quiet > 0.5:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the app kept running for more than {timeout:.0f} s")


async def check_page(page, where: str, errors: list[str]) -> None:
    n = await page.locator('[data-testid="stException"]').count()
    if n:
        text = await page.locator('[data-testid="stException"]').first.inner_text()
        errors.append(f"{where}: exception on the page: {text[:200]}")
    if await page.get_by_text("Traceback (most recent call last)").count():
        errors.append(f"{where}: a traceback is shown")


async def open_page(page, url: str, heading: str, timeout: float) -> None:
    await page.goto(url, timeout=timeout * 1000)
    await page.get_by_role("heading", name=heading).first.wait_for(timeout=timeout * 1000)
    await wait_idle(page, timeout)


def run_in_url(url: str) -> str | None:
    from urllib.parse import parse_qs, urlparse

    return (parse_qs(urlparse(url).query).get("run") or [None])[0]


async def one_session(browser, url: str, i: int, image: Path, moves: int, train: bool,
                      report: Report, timeout: float) -> None:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 1400})
    ctx.set_default_timeout(timeout * 1000)  # clicks wait for a page that is busy re-rendering
    page = await ctx.new_page()
    page.on("pageerror", lambda e: report.errors.append(f"session {i}: JavaScript error {e}"))
    step = "start"
    try:
        step = "anchors"
        await open_page(page, f"{url}/anchors", "Anchors", timeout)
        await check_page(page, f"session {i} anchors", report.errors)
        step = "detection"
        await open_page(page, f"{url}/detection", "Detection", timeout)
        await page.get_by_text("Upload", exact=True).first.click()
        await wait_idle(page, timeout)
        step = "upload"
        await page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
            str(image))
        # the results' caption names the image and the thresholds once the server has run
        caption = re.compile(re.escape(image.name) + r" \(\d+×\d+\), model")
        await page.get_by_text(caption).first.wait_for(timeout=timeout * 1000)
        await wait_idle(page, timeout)
        await check_page(page, f"session {i} upload", report.errors)
        step = "sliders"
        handle = page.locator('[data-testid="stSlider"]').filter(
            has_text="Confidence").first.locator('input[type="range"]').first
        await handle.focus()
        conf = 50  # the page's default threshold, in hundredths
        for k in range(moves):
            t0 = time.perf_counter()
            conf += -1 if k % 2 == 0 else 1
            await handle.press("ArrowLeft" if k % 2 == 0 else "ArrowRight")
            await page.get_by_text(f"confidence ≥ {conf / 100:.2f},").first.wait_for(
                timeout=timeout * 1000)
            report.slider_roundtrip_ms.append((time.perf_counter() - t0) * 1000)
        await check_page(page, f"session {i} sliders", report.errors)
        if train:
            step = "training"
            await open_page(page, f"{url}/training", "Training", timeout)
            # The run's name ends its id: the session finds its own run by it, whatever run of
            # a classmate the page shows meanwhile.
            own = f"load-session-{i}"
            for label, value in [*TRAIN_SETTINGS, ("Run name (optional)", own)]:
                box = page.get_by_label(label, exact=True)
                await box.fill(value)
                await box.press("Tab")
            size = page.locator('[data-testid="stSlider"]').filter(
                has_text="Input size").first.locator('input[type="range"]').first
            await size.focus()
            await size.press("Home")  # 64 px
            await wait_idle(page, timeout)
            await page.get_by_role("button", name="Start training").click()
            await page.wait_for_url(lambda u: (run_in_url(u) or "").endswith(f"-{own}"),
                                    timeout=timeout * 1000)
            await page.get_by_text(re.compile(
                rf"(queued|running|finished) · run {re.escape(run_in_url(page.url))}")
            ).first.wait_for(timeout=timeout * 1000)
            report.trainings_started += 1
            await check_page(page, f"session {i} training", report.errors)
        report.completed += 1
    except Exception as e:  # noqa: BLE001 (every failure is counted, none stops the others)
        lines = str(e).splitlines() or [""]
        # Playwright's call log ends with why it kept waiting (not enabled, not visible, ...)
        why = lines[0][:200] + "".join(f" | {x.strip()[:160]}" for x in lines[1:][-3:])
        report.errors.append(f"session {i} at {step}: {type(e).__name__}: {why}")
    finally:
        await ctx.close()


async def drive(url: str, images: list[Path], moves: int, train_every: int, report: Report,
                timeout: float, deadline: float, chromium_path: str, wave: int = 0) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            tasks = [one_session(browser, url, i, images[i], moves,
                                 wave == 0 and train_every > 0 and i % train_every == 0,
                                 report, timeout)
                     for i in range(len(images))]
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=deadline)
        except asyncio.TimeoutError:
            report.errors.append(f"the whole run passed its deadline of {deadline:.0f} s")
        finally:
            await browser.close()


def make_images(n: int, folder: Path) -> list[Path]:
    from ssd_core.data import SyntheticDetection

    ds = SyntheticDetection(n, seed=777, image_size=320)
    paths = []
    for i in range(n):
        path = folder / f"student-{i:02d}.jpg"
        ds.sample(i)[0].save(path, quality=90)
        paths.append(path)
    return paths


def read_timing(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_in_own_loop(coro) -> None:
    """``asyncio.run`` in a thread of its own: the caller may already be inside an event loop
    (pytest with Playwright's sync API open in the same process runs one on the main thread)."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 (re-raised in the caller's thread)
            failure.append(e)

    thread = threading.Thread(target=target, name="load-driver")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def run_load(sessions: int, moves: int = 6, train_every: int = 5, timeout: float = 180.0,
             deadline: float = 900.0, work: Path | None = None, settle_runs: bool = True,
             settle_timeout: float = 600.0, waves: int = 1) -> Report:
    """Start a server, drive ``sessions`` concurrent browser sessions, return the Report.
    ``waves`` > 1 sends the whole class again (new sessions, new images, no more training)
    once the previous one has closed: if sessions' memory is released and reused, the later
    waves' peak RSS stays at the first one's. With ``settle_runs`` the server stays up (bounded
    by ``settle_timeout``) until every training run has left the queue and finished."""
    chromium_path = chromium()
    if chromium_path is None:
        raise RuntimeError("no chromium on PATH (install Debian's chromium package)")
    work = Path(work or tempfile.mkdtemp(prefix="ssd-load-"))
    runs, log = work / "runs", work / "timing.jsonl"
    runs.mkdir(parents=True, exist_ok=True)
    images = make_images(sessions * waves, work)
    report = Report(sessions, waves)
    env = {"SSD_RUNS_DIR": str(runs), "SSD_TIMING_LOG": str(log)}
    t0 = time.time()
    with serve(work / "server.log", env=env) as server:
        report.rss_start_mb = rss_mb(server.pid)
        watcher = Watcher(server.pid, runs, report)
        watcher.start()
        try:
            for wave in range(waves):
                batch = images[wave * sessions:(wave + 1) * sessions]
                run_in_own_loop(drive(server.url, batch, moves, train_every, report, timeout,
                                      deadline, chromium_path, wave))
                # every browser context is closed: give the server time to drop the sessions
                time.sleep(5)
                report.peak_rss_per_wave_mb.append(report.peak_rss_mb)
            report.rss_after_mb = rss_mb(server.pid)
            end = time.time() + settle_timeout
            while settle_runs and time.time() < end and any(
                    s in rf.ACTIVE for s in watcher.states().values()):
                time.sleep(1)
            report.peak_rss_mb = max(report.peak_rss_mb, rss_mb(server.pid, "VmHWM"))
        finally:
            watcher.done.set()
            watcher.join()
        if server.proc.poll() is not None:
            report.errors.append(f"the server died (exit {server.proc.returncode})")
    report.wall_s = time.time() - t0
    records = read_timing(log)
    for r in records:
        if r["what"] == "detection results" and r.get("fragment"):  # a slider move
            report.slider_server_ms.append(r["ms"])
        elif r["what"].startswith("page ") and "ms" in r:
            report.page_ms.append(r["ms"])
        elif r["what"] == "model load":
            report.model_loads[r["model"]] = report.model_loads.get(r["model"], 0) + 1
    for p in runs.glob(f"*/{rf.STATUS}"):
        state = rf.read_status(p.parent).state
        report.run_states[state] = report.run_states.get(state, 0) + 1
    made = sum(report.run_states.values())
    if made != report.trainings_started:  # a press of Start training that made no run, or more
        report.errors.append(f"{report.trainings_started} sessions saw their run start, but the "
                             f"runs folder holds {made} runs")
    return report


def table(reports: list[Report]) -> str:
    rows = [("sessions at once", "sessions"), ("waves (one after the other)", "waves"),
            ("sessions completed", "completed"), ("errors (goal 0)", "errors"),
            ("slider move, server ms p50", "slider_server_ms_p50"),
            ("slider move, server ms p95", "slider_server_ms_p95"),
            ("slider move, browser round trip ms p50", "slider_roundtrip_ms_p50"),
            ("slider move, browser round trip ms p95", "slider_roundtrip_ms_p95"),
            ("slider moves measured", "slider_moves"),
            ("page script run ms p50", "page_run_ms_p50"),
            ("page script run ms p95", "page_run_ms_p95"),
            ("server RSS at start MB", "rss_start_mb"), ("server peak RSS MB", "peak_rss_mb"),
            ("server RSS after all sessions closed MB", "rss_after_close_mb"),
            ("server peak RSS after each wave MB", "peak_rss_per_wave_mb"),
            ("model loads (per model)", "model_loads"),
            ("trainings started", "trainings_started"),
            ("max runs training at once", "max_running"), ("max runs queued", "max_queued"),
            ("longest wait in the queue s", "max_queue_wait_s"),
            ("run states at the end", "run_states"), ("wall s", "wall_s")]
    ds = [r.as_dict() for r in reports]
    out = ["| measure | " + " | ".join(f"N = {d['sessions']}" for d in ds) + " |",
           "|---|" + "---:|" * len(ds)]
    for label, key in rows:
        cells = []
        for d in ds:
            v = d[key]
            cells.append(f"{v:.0f}" if isinstance(v, float) else str(v))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[10, 30])
    ap.add_argument("--moves", type=int, default=6, help="slider moves per session")
    ap.add_argument("--train-every", type=int, default=5,
                    help="every k-th session starts a tiny training run (0: none)")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per browser wait")
    ap.add_argument("--deadline", type=float, default=1200.0, help="seconds for a whole run")
    ap.add_argument("--waves", type=int, default=2,
                    help="send the class this many times, one after the other (memory reuse)")
    args = ap.parse_args(argv)
    reports = []
    for n in args.sessions:
        print(f"driving {n} sessions ...", flush=True)
        r = run_load(n, args.moves, args.train_every, args.timeout, args.deadline,
                     waves=args.waves)
        reports.append(r)
        for e in r.errors:
            print("  error:", e)
    print(table(reports))
    return 0 if all(not r.errors for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
