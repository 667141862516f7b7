"""The web app's Sweeps page: the list of sweeps and batches, live progress of a trial, the leaderboard, Stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_data import fake_row, real_scores_of

from faceswap_kohya.errors import UserError
from faceswap_kohya.events import Step
from faceswap_kohya.runs.status import RunRecorder
from faceswap_kohya.scoring.summary import summarize_scores
from faceswap_kohya.sweeps import leaderboard
from faceswap_kohya.sweeps.grid import Trial
from faceswap_kohya.sweeps.plan import SweepPlan
from faceswap_kohya.web.common import Workspace


def workspace_with_a_sweep(root: Path) -> tuple[Workspace, SweepPlan, RunRecorder]:
    """A batch, then a sweep of three trials: one ranked, one failed, one training right now (in this process)."""
    ws = Workspace(root / "ws").make()
    empty = {"output": {}, "evaluate": {}}
    trials = [Trial(f"t{i}", f"network.dim={d}", {"network.dim": d}, empty) for i, d in enumerate((8, 16, 32))]
    batch = SweepPlan("batch", "people", ws.output / "batches" / "people", root / "p.yaml", [Trial("alice-1", "alice", {}, empty)])
    batch.write()
    leaderboard.write(batch, {})
    plan = SweepPlan("sweep", "demo", ws.output / "sweeps" / "demo", root / "p.yaml", trials)
    plan.write()
    failed = {**fake_row("t1", state="failed"), "error": "base_model.path: /nonexistent.safetensors does not exist"}
    leaderboard.write(plan, {"t0": fake_row("t0", kind="good"), "t1": failed})  # a real evaluation's numbers
    run = plan.trial_folder(trials[2]) / "myface" / "20260101-120000"
    run.mkdir(parents=True)
    recorder = RunRecorder(run, "myface")
    recorder.set(state="training")
    recorder.record(Step(3, 8, loss=0.1234))
    recorder.write_status()
    return ws, plan, recorder


def test_sweeps_page_lists_ranks_and_follows(tmp_path):
    from faceswap_kohya.web import sweeps

    ws, plan, recorder = workspace_with_a_sweep(tmp_path)
    try:
        choices = sweeps.sweep_choices(ws)
        assert {Path(v).name for _, v in choices} == {"demo", "people"}
        demo = next(label for label, v in choices if v == str(plan.folder))
        assert "1 finished, 1 failed, 1 waiting" in demo and "running" in demo, "its process (this one) is alive"
        table = {r[1]: r for r in sweeps.rows(plan.folder)}
        good = summarize_scores(real_scores_of("good"))
        assert table["t0"][0] == 1 and table["t0"][5] == f"{good.best.held_out:.3f}" and table["t0"][6] == f"{good.best.identity:.3f}"
        assert table["t0"][10] == "myface-final.safetensors" and table["t0"][8] == "final"
        assert table["t1"][3] == "failed" and "does not exist" in table["t1"][4]
        assert table["t2"][3] == "running" and table["t2"][4] == "training step 3/8, loss 0.1234"
        text = sweeps.verdict(plan.folder)
        assert "**Winner: network.dim=8**" in text and f"held-out identity {good.best.held_out:.3f}" in text
        assert f"Its evaluation: {good.verdict}" in text  # the verdict `evaluate` printed for that trial
        with pytest.raises(UserError, match="not a sweep folder"):
            sweeps.sweep_folder(str(tmp_path), ws)
    finally:
        recorder.close()


def test_stop_sends_ctrl_c_to_the_sweep_process(tmp_path, monkeypatch):
    from faceswap_kohya.web import sweeps

    _, plan, recorder = workspace_with_a_sweep(tmp_path)
    recorder.close()
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)) if sig else None)  # 0: "alive?"
    assert "SIGINT to process" in sweeps.stop_sweep(plan.folder)
    assert sent == [(os.getpid(), 2)]
    leaderboard.write(plan, {t.id: fake_row(t.id, kind="weaker") for t in plan.trials})
    with pytest.raises(UserError, match="not running"):
        sweeps.stop_sweep(plan.folder)


# Drives the page in its own process: a Playwright sync session may already be open in this one (tests/test_web.py).
BROWSE = """
import json, sys
sys.path.insert(0, sys.argv[3])
from playwright.sync_api import sync_playwright
from web_browser import open_tab, shot, wait_images, wait_text
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(sys.argv[1])
    page.wait_for_selector("[role=tab]")
    open_tab(page, "Sweeps")
    out = {"verdict": wait_text(page, "sweeps-verdict", "Winner:"), "table": wait_text(page, "sweeps-table", sys.argv[2]),
           "chart": bool(wait_images(page, "sweeps-chart"))}
    shot(page, "sweeps-page")
    browser.close()
print(json.dumps(out))
"""


def test_browser_sweeps_page(tmp_path):
    """The page in a real browser: the list, the ranked table with a training trial, the chart."""
    pytest.importorskip("playwright", reason="playwright is not installed (pip install -e '.[dev]')")
    from web_browser import App, ensure_chromium

    if reason := ensure_chromium():
        pytest.skip(reason)
    ws, _, recorder = workspace_with_a_sweep(tmp_path)
    app = App(ws.output, tmp_path / "app.log").start()
    try:
        done = subprocess.run([sys.executable, "-c", BROWSE, app.url, "training step 3/8", str(Path(__file__).parent)],
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        held = summarize_scores(real_scores_of("good")).best.held_out
        assert "Winner: network.dim=8" in seen["verdict"] and f"held-out identity {held:.3f}" in seen["verdict"]
        assert "network.dim=16" in seen["table"] and "failed" in seen["table"] and "running" in seen["table"]
        assert seen["chart"]
    finally:
        recorder.close()
        app.stop()
