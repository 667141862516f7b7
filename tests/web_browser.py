"""Browser-test helpers: Debian's chromium (installed with apt-get when missing), the real app in a subprocess on a
free loopback port, the `browser` and `page_of` fixtures (every test module has them, through conftest.py), and small
Playwright steps for Gradio pages. Screenshots go to tests/.artifacts/screenshots/."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parent / ".artifacts" / "screenshots"


def ensure_chromium() -> Optional[str]:
    """None when /usr/bin/chromium is there (installed now with apt-get if needed); else why it can't be."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None:
        return "no /usr/bin/chromium, and no apt-get to install Debian's chromium"
    if os.geteuid() != 0:
        return "no /usr/bin/chromium, and not root to apt-get install chromium"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"],
                ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "fonts-dejavu-core"]):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"`{' '.join(cmd)}` did not finish: {e}"
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
            return f"`{' '.join(cmd[:2])}` failed (exit {r.returncode}): {tail[0]}"
    return None if CHROMIUM.exists() else "apt-get install chromium left no /usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """`python -m faceswap_kohya ui` on a free loopback port, its output in `log`."""

    def __init__(self, output: Path, log: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output, self.log = output, log
        self.argv = [sys.executable, "-m", "faceswap_kohya", "ui", "--port", str(self.port), "--output", str(output), *extra]
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 180) -> "App":
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=Path(__file__).parents[1], start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the app did not answer within {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop the app, and any training it started that is still going (as the Stop button does)."""
        from faceswap_kohya.runs.status import ACTIVE, list_runs, pid_alive
        from faceswap_kohya.web.follow import stop_run

        for root, status in list_runs(self.output) if self.output.is_dir() else []:
            if status.get("state") in ACTIVE:
                stop_run(root)
                deadline = time.monotonic() + 120
                while pid_alive(status.get("pid")) and time.monotonic() < deadline:
                    time.sleep(1)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def get(self, path: str) -> int:
        """The HTTP status of GET `path`."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code


# ---------------------------------------------------------------- the browser (fixtures)
@pytest.fixture(scope="session")
def browser():
    pytest.importorskip("playwright", reason="playwright is not installed (pip install -e '.[dev]')")
    reason = ensure_chromium()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page_of(browser):
    """make(url) → a new page on `url` (a tab of its own) that records every host it talks to."""
    pages = []

    def make(url):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.hosts = set()
        page.on("request", lambda r: page.hosts.add(r.url.split("/")[2]))
        page.goto(url)
        page.wait_for_selector("#tab-photos, [role=tab]")
        pages.append(page)
        return page

    yield make
    for p in pages:
        p.close()


# ---------------------------------------------------------------- Playwright steps for Gradio pages
def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_tab(page, tab_id: str) -> None:
    page.get_by_role("tab", name=tab_id).click()
    page.wait_for_timeout(500)


def pick(page, elem_id: str, option: str) -> None:
    """Choose `option` in the gr.Dropdown with this elem_id."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option).first.click()
    page.wait_for_timeout(300)


def fill(page, elem_id: str, value: str) -> None:
    """Type into the gr.Textbox / gr.Number with this elem_id (the change is sent on blur)."""
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(value)
    box.blur()
    page.wait_for_timeout(300)


def text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def wait_text(page, elem_id: str, needle: str, timeout: float = 120) -> str:
    """Wait until the element's text contains `needle`; returns it (fails with what it said last)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = text_of(page, elem_id)
        if needle in last:
            return last
        page.wait_for_timeout(500)
    raise AssertionError(f"#{elem_id} never said {needle!r} within {timeout:.0f} s; it says:\n{last[-2000:]}")


def images_in(page, elem_id: str) -> list[str]:
    """The sources of the images shown in a component."""
    return page.locator(f"#{elem_id} img").evaluate_all("els => els.map(e => e.src)")


def wait_images(page, elem_id: str, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [s for s in images_in(page, elem_id) if s]
        if found:
            return found
        page.wait_for_timeout(500)
    raise AssertionError(f"#{elem_id} shows no image after {timeout:.0f} s")


LINE_JS = """e => [...e.querySelectorAll('g.mark-line path')].map(p => {  // the data's lines, not the grid
    const d = p.getAttribute('d') || '';
    if (!/^M[-0-9.e]+,[-0-9.e]+(L[-0-9.e]+,[-0-9.e]+)+$/.test(d)) return null;  // a polyline, not an axis box or a mark
    const s = getComputedStyle(p), box = p.getBoundingClientRect();
    return {points: d.split('L').length, stroke: s.stroke, opacity: s.strokeOpacity, width: box.width, height: box.height};
}).filter(x => x)"""
Y_TICKS_JS = """e => {
    const labels = [...e.querySelectorAll('svg text')].map(t => ({v: parseFloat(t.textContent), y: t.getBoundingClientRect().top,
                                                               x: t.getBoundingClientRect().left}));
    return labels.filter(l => !isNaN(l.v));
}"""


def drawn_lines(page, elem_id: str) -> list[dict]:
    """The polylines a gr.LinePlot drew (points, size on screen, stroke) with ≥2 points, a size and a colour (a
    series the chart had no colour for has the path but stroke `none`: nothing on screen)."""
    return [ln for ln in page.locator(f"#{elem_id}").evaluate(LINE_JS)
            if ln["points"] >= 2 and ln["opacity"] != "0" and ln["stroke"] not in ("none", "")
            and (ln["width"] > 1 or ln["height"] > 1)]


def y_axis_rises(page, elem_id: str) -> bool:
    """The plot's y-axis labels (the leftmost column of numbers) grow upwards, as a number axis does."""
    labels = page.locator(f"#{elem_id}").evaluate(Y_TICKS_JS)
    if not labels:
        return False
    rows: dict = {}
    for lab in labels:
        rows.setdefault(round(lab["y"]), []).append(lab)
    x_axis = max(rows, key=lambda y: len(rows[y]))  # the row with the most numbers: the x axis
    labels = [lab for lab in labels if round(lab["y"]) != x_axis]
    if not labels:
        return False
    left = min(lab["x"] for lab in labels)
    column = sorted((lab for lab in labels if lab["x"] < left + 30), key=lambda lab: lab["y"])
    values = [lab["v"] for lab in column]
    return len(values) >= 2 and values == sorted(values, reverse=True)


def whole_images(page, elem_id: str) -> list[dict]:
    """Each shown image's natural and displayed aspect ratios and whether it is cropped (object-fit cover, or the
    box cutting it off)."""
    return page.locator(f"#{elem_id} img").evaluate_all("""els => els.filter(e => e.naturalWidth).map(e => {
        const s = getComputedStyle(e), r = e.getBoundingClientRect();
        return {src: e.src, natural: e.naturalWidth / e.naturalHeight, shown: r.width / Math.max(r.height, 1),
                fit: s.objectFit, width: r.width, height: r.height};
    })""")
