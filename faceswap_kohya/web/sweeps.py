"""Sweeps page: every sweep and batch of the workspace (`<output>/sweeps/*`, `<output>/batches/*`), each trial's
progress while it runs (read from its run folder), the leaderboard with its chart and winner, and Stop (Ctrl-C
to the `faceswap-kohya sweep` process). Sweeps are started with the CLI (`output.dir=<workspace>`)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from faceswap_kohya.errors import UserError
from faceswap_kohya.runs.status import ACTIVE, list_runs, pid_alive
from faceswap_kohya.web.common import Workspace, error_text, inside

HEADERS = ["#", "trial", "settings", "state", "progress", "held-out", "identity", "bleed", "best", "min", "LoRA"]
FINAL = ("finished", "failed", "interrupted")


def sweep_folders(ws: Workspace) -> list[Path]:
    """Every sweep or batch folder (it holds sweep.json), newest first."""
    found = [p.parent for kind in ("sweeps", "batches") for p in (ws.output / kind).glob("*/sweep.json")]
    return sorted(found, key=lambda p: (p / "sweep.json").stat().st_mtime, reverse=True)


def _board(folder: Path) -> dict:
    from faceswap_kohya.sweeps import leaderboard

    return leaderboard.read(folder) or {"kind": "?", "name": folder.name, "rows": [], "counts": {}, "winner": None,
                                         "basis": "identity", "basis_name": "identity"}


def _plan(folder: Path) -> dict:
    from faceswap_kohya.sweeps.plan import read_plan

    return read_plan(folder) or {}


def is_running(folder: Path) -> bool:
    """The sweep's process (recorded in sweep.json) is alive and some trial has not ended."""
    board = _board(folder)
    return pid_alive(_plan(folder).get("pid")) and any(r.get("state") not in FINAL for r in board["rows"])


def sweep_choices(ws: Workspace) -> list[tuple[str, str]]:
    out = []
    for folder in sweep_folders(ws):
        board = _board(folder)
        counts = ", ".join(f"{n} {s}" for s, n in board.get("counts", {}).items())
        running = " · running" if is_running(folder) else ""
        out.append((f"{board.get('kind', '?')} {folder.name} · {counts}{running}", str(folder)))
    return out


def live(trial_folder: Path) -> str:
    """What a trial not yet ended is doing, from its newest run folder's status."""
    for root, status in list_runs(trial_folder):
        state = status.get("state")
        if state not in ACTIVE:
            return ""
        step = f" step {status.get('step') or 0}/{status['total']}" if status.get("total") else ""
        loss = f", loss {status['loss']:.4f}" if isinstance(status.get("loss"), (int, float)) else ""
        return f"{state}{step}{loss}"
    return ""


def _num(x) -> str:
    return "" if x is None else f"{x:.3f}"


def rows(folder: Path) -> list[list]:
    """One row per trial: the leaderboard's numbers, and live progress for trials still going."""
    out = []
    for r in _board(folder)["rows"]:
        state = r.get("state") or "waiting"
        progress = live(Path(r["folder"])) if state not in FINAL else (r.get("error") or r.get("why") or "")
        state = "running" if state not in FINAL and progress else state
        minutes = f"{r['seconds'] / 60:.1f}" if r.get("seconds") else ""
        lora = r.get("best_lora") or r.get("lora") or ""
        out.append([r.get("rank") or "", r["id"], r["label"], "skipped (done before)" if r.get("skipped") else state,
                    progress[:200], _num(r.get("held_out")), _num(r.get("identity")), _num(r.get("bleed")),
                    r.get("best_checkpoint") or "", minutes, Path(lora).name if lora else ""])
    return out


def verdict(folder: Path) -> str:
    board = _board(folder)
    counts = ", ".join(f"{n} {s}" for s, n in board.get("counts", {}).items()) or "no trials yet"
    head = f"**{board.get('kind', 'sweep')} {folder.name}** — {counts}" + (" — running" if is_running(folder) else "")
    w = board.get("winner")
    if w:
        head += (f"\n\n**Winner: {w['label']}** — {board['basis_name']} {w['score']:.3f}\n\nLoRA: `{w['lora']}`")
    elif board.get("kind") == "sweep":
        head += "\n\nNo winner yet: no finished trial has an identity score."
    return head + f"\n\nFolder: `{folder}`"


def sweep_folder(value: str, ws: Workspace) -> Path:
    if not value:
        raise UserError("no sweep chosen: start one with `faceswap-kohya sweep PRESET key=v1,v2 output.dir=" f"{ws.output}`")
    path = Path(value)
    if not (path / "sweep.json").is_file() or not inside(path, ws.output):
        raise UserError(f"{value}: not a sweep folder of this app's output folder {ws.output}")
    return path


def stop_sweep(folder: Path) -> str:
    """SIGINT to the sweep's process, as Ctrl-C: it cancels every trial and stops their trainers."""
    if not is_running(folder):
        raise UserError(f"{folder.name}: not running")
    pid = _plan(folder)["pid"]
    os.kill(pid, signal.SIGINT)
    return f"stopping {folder.name} (SIGINT to process {pid}: every trial is cancelled, each trainer stopped)"


# ---------------------------------------------------------------- the page
@dataclass
class Page:
    choice: Any
    refresh: Any
    stop: Any
    message: Any
    verdict: Any
    table: Any
    chart: Any
    files: Any
    timer: Any

    @property
    def outputs(self) -> list:
        return [self.verdict, self.table, self.chart, self.files, self.timer]


def build(shared) -> Page:
    import gradio as gr

    ws = shared.ws
    gr.Markdown("Sweeps train many settings (or many people: batches) and rank them by measured likeness. Start one "
                f"with `faceswap-kohya sweep PRESET key=v1,v2 ... output.dir={ws.output}` (or `batch PRESET SUBJECTS_DIR "
                f"output.dir={ws.output}`); it runs on Ray, here or on a cluster, and shows up below.")
    choices = sweep_choices(ws)
    with gr.Row():
        choice = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Sweep", elem_id="sweeps-choice")
        refresh = gr.Button("Refresh", elem_id="sweeps-refresh")
        stop = gr.Button("Stop", variant="stop", elem_id="sweeps-stop")
    message = gr.Markdown(elem_id="sweeps-message")
    verdict_md = gr.Markdown("No sweep yet." if not choices else "", elem_id="sweeps-verdict")
    table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, elem_id="sweeps-table")
    chart = gr.Image(label="Leaderboard", type="filepath", interactive=False, elem_id="sweeps-chart")
    files = gr.File(label="leaderboard.html / .json", file_count="multiple", interactive=False, elem_id="sweeps-files")
    timer = gr.Timer(3.0, active=False)  # ticks only while the chosen sweep runs
    return Page(choice, refresh, stop, message, verdict_md, table, chart, files, timer)


def view(value: Optional[str], ws: Workspace) -> list:
    """verdict, table, chart, files and the timer (on while the sweep runs) for the chosen sweep."""
    import gradio as gr

    from faceswap_kohya.sweeps import leaderboard

    if not value:
        return ["No sweep yet.", [], None, [], gr.Timer(active=False)]
    try:
        folder = sweep_folder(value, ws)
    except UserError as e:
        return [error_text(e), [], None, [], gr.Timer(active=False)]
    chart = folder / leaderboard.CHART
    files = [str(folder / name) for name in (leaderboard.HTML, leaderboard.JSON) if (folder / name).is_file()]
    return [verdict(folder), rows(folder), str(chart) if chart.is_file() else None, files,
            gr.Timer(active=is_running(folder))]


def refreshed(ws: Workspace, current: Optional[str]):
    import gradio as gr

    choices = sweep_choices(ws)
    values = [v for _, v in choices]
    return gr.Dropdown(choices=choices, value=current if current in values else (values[0] if values else None))


def wire(page: Page, shared) -> None:
    ws = shared.ws
    outputs = page.outputs

    def on_stop(value):
        try:
            return stop_sweep(sweep_folder(value, ws))
        except UserError as e:
            return error_text(e)

    page.choice.change(lambda v: view(v, ws), [page.choice], outputs, show_progress="hidden")
    page.refresh.click(lambda v: refreshed(ws, v), [page.choice], [page.choice]).then(
        lambda v: view(v, ws), [page.choice], outputs, show_progress="hidden")
    page.timer.tick(lambda v: view(v, ws), [page.choice], outputs, show_progress="hidden")
    page.stop.click(on_stop, [page.choice], [page.message])


def tab_select(ws: Workspace):
    """When the tab is opened: the list again, then the chosen sweep."""
    return lambda current: refreshed(ws, current)
