"""What two pages of the web app look like in a real browser, with nothing trained: the Train page's loss chart of a
2-step run followed from its start (a visible line, both series in the legend) and its one sample, and the Results
page's before/after grid shown whole in the gallery. The run folder is written here through runs/ (events.jsonl,
status.json), with a grid PNG where `compare` puts it. Screenshots go to tests/.artifacts/screenshots/ (looks-*.png)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from faceswap_kohya.events import CheckpointWritten, Step, ValidationLoss
from faceswap_kohya.runs.artifacts import COMPARE
from faceswap_kohya.runs.status import RunRecorder
from faceswap_kohya.web.common import Workspace

LOSSES = {1: 0.687, 2: 0.798}  # a real cpu-check run's two steps
VALIDATION = (2, 0.742)


def started_run(ws: Workspace) -> tuple[Path, RunRecorder]:
    """A training run that has just started (no loss yet), recorded by this process (its pid is alive)."""
    root = ws.output / "myface" / "20260101-120000"
    (root / "model").mkdir(parents=True)
    recorder = RunRecorder(root, "myface")
    recorder.set(state="training")
    recorder.record(Step(0, 2))
    return root, recorder


def finish_run(root: Path, recorder: RunRecorder) -> None:
    """Its 2 steps (losses, one validation loss), its LoRA file, one sample, finished; then one before/after grid
    where `compare` writes it (wide: a title band on top, three columns, a band at the very bottom)."""
    from safetensors.numpy import save_file

    lora = root / "model" / "myface.safetensors"
    save_file({"lora_unet_x.lora_down.weight": np.zeros((1, 1), dtype=np.float32)}, str(lora))
    for step, loss in LOSSES.items():
        recorder.record(Step(step, 2, loss=loss))
    recorder.record(ValidationLoss(*VALIDATION))
    recorder.record(CheckpointWritten(str(lora)))
    (root / "model" / "sample").mkdir()
    sample = Image.new("RGB", (64, 96), (30, 160, 30))  # a portrait sample: cropped in a square if filled
    ImageDraw.Draw(sample).rectangle((0, 0, 63, 9), fill=(20, 20, 160))
    sample.save(root / "model" / "sample" / "myface_e000001_00_20260101120500_1.png")
    recorder.set(state="finished")
    recorder.close()
    grid = Image.new("RGB", (420, 200), "white")
    draw = ImageDraw.Draw(grid)
    draw.rectangle((0, 0, 419, 40), fill=(20, 20, 160))
    for i, colour in enumerate(((200, 30, 30), (30, 160, 30), (230, 160, 20))):
        draw.rectangle((20 + i * 135, 60, 130 + i * 135, 180), fill=colour)
    draw.rectangle((0, 190, 419, 199), fill=(160, 20, 160))
    made = root / COMPARE / "20260101-121000"
    made.mkdir(parents=True)
    grid.save(made / "grid-p1.png")


# Drives the page in its own process: a Playwright sync session may already be open in this one (tests/test_web.py).
BROWSE = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
from playwright.sync_api import sync_playwright
from web_browser import SCREENSHOTS, drawn_lines, open_tab, shot, wait_images, wait_text, whole_images
from PIL import Image

SHOWN_JS = '''e => { const box = e.getBoundingClientRect();
    return [...e.querySelectorAll('img')].filter(i => i.naturalWidth).map(i => { const r = i.getBoundingClientRect();
        return {fit: getComputedStyle(i).objectFit, natural: i.naturalWidth / i.naturalHeight,
                shown: r.width / Math.max(r.height, 1),
                inside: r.top >= box.top - 1 && r.bottom <= box.bottom + 1 && r.left >= box.left - 1 && r.right <= box.right + 1,
                rect: [r.left, r.top, r.right, r.bottom], box: [box.left, box.top, box.right, box.bottom]}; }); }'''

def shown(page, elem_id):
    return page.locator(f"#{elem_id}").evaluate(SHOWN_JS)

def colour_pixels(path, rgb, tolerance=40):
    im = Image.open(path).convert("RGB")
    return sum(1 for p in im.getdata() if all(abs(a - b) <= tolerance for a, b in zip(p, rgb)))

def rgb_of(css):
    inside = css[css.index("(") + 1:css.index(")")]
    return tuple(int(float(v)) for v in inside.split(",")[:3])

out = {}
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(sys.argv[1])
    page.wait_for_selector("[role=tab]")
    open_tab(page, "Runs")
    page.locator("#runs-open").click()
    wait_text(page, "train-progress", ": training", timeout=60)  # followed from its start: no loss yet
    page.wait_for_timeout(2500)
    open(sys.argv[3], "w").close()  # the test records the steps now
    out["headline"] = wait_text(page, "train-progress", ": finished", timeout=90)
    page.wait_for_timeout(3000)
    out["lines"] = drawn_lines(page, "train-loss")
    out["marks"] = page.locator("#train-loss").evaluate(
        "e => [...e.querySelectorAll('g.mark-line path, g.mark-symbol path')].map(p => "
        "({cls: p.parentElement.getAttribute('class'), d: (p.getAttribute('d') || '').slice(0, 80), "
        "stroke: getComputedStyle(p).stroke, fill: getComputedStyle(p).fill, opacity: getComputedStyle(p).opacity}))")
    out["legend"] = page.locator("#train-loss").evaluate(
        "e => [...e.querySelectorAll('g.role-legend text')].map(t => t.textContent)")
    chart = SCREENSHOTS / "looks-train-loss-chart.png"
    page.locator("#train-loss").screenshot(path=str(chart))
    strokes = {ln["stroke"] for ln in out["lines"]}
    out["line_pixels"] = {s: colour_pixels(chart, rgb_of(s)) if "(" in s else 0 for s in strokes}
    out["samples"] = shown(page, "train-samples")
    shot(page, "looks-train")

    open_tab(page, "3 · Results")
    out["gallery_images"] = wait_images(page, "results-gallery", timeout=60)
    page.wait_for_timeout(1500)
    out["gallery"] = shown(page, "results-gallery")
    out["grid"] = whole_images(page, "results-grid")
    gallery = SCREENSHOTS / "looks-results-gallery.png"
    page.locator("#results-gallery").screenshot(path=str(gallery))
    out["gallery_bands"] = {"title": colour_pixels(gallery, (20, 20, 160)), "bottom": colour_pixels(gallery, (160, 20, 160))}
    shot(page, "looks-results")
    browser.close()
print(json.dumps(out))
"""


def test_finished_run_chart_and_grid_look_right(tmp_path):
    pytest.importorskip("playwright", reason="playwright is not installed (pip install -e '.[dev]')")
    from web_browser import App, ensure_chromium

    if reason := ensure_chromium():
        pytest.skip(reason)
    ws = Workspace(tmp_path / "ws").make()
    root, recorder = started_run(ws)
    opened = tmp_path / "opened"
    app = App(ws.output, tmp_path / "app.log").start()
    try:
        child = subprocess.Popen([sys.executable, "-c", BROWSE, app.url, str(Path(__file__).parent), str(opened)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while not opened.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        finish_run(root, recorder)
        stdout, stderr = child.communicate(timeout=300)
    finally:
        recorder.close()
        app.stop()
    assert child.returncode == 0, stderr[-3000:]
    seen = json.loads(stdout.strip().splitlines()[-1])
    print(json.dumps(seen, indent=1))
    assert "step 2/2" in seen["headline"], seen["headline"]
    # the training loss is a line through both steps, drawn in a colour that is on screen
    assert any(ln["points"] >= 2 for ln in seen["lines"]), seen
    assert all(n >= 30 for n in seen["line_pixels"].values()) and seen["line_pixels"], seen["line_pixels"]
    assert {"training", "validation"} <= set(seen["legend"]), seen["legend"]
    # each gallery image whole: contained in its cell (or the cell its shape), the cell inside the gallery's box
    for name in ("samples", "gallery"):
        assert seen[name], (name, seen)
        for im in seen[name]:
            assert im["inside"] and (im["fit"] == "contain" or abs(im["shown"] / im["natural"] - 1) < 0.05), (name, im)
    # the grid's title band (its top) and its bottom band both on screen in the gallery
    assert seen["gallery_bands"]["title"] > 200 and seen["gallery_bands"]["bottom"] > 50, seen["gallery_bands"]
    assert seen["grid"] and all(abs(im["shown"] / im["natural"] - 1) < 0.05 for im in seen["grid"]), seen["grid"]
