"""Sweeps page: every sweep and batch of the workspace (`<output>/sweeps/*`, `<output>/batches/*`), each trial's
progress while it runs (read from its run folder), the leaderboard with its chart and winner, and Stop (Ctrl-C
to the `faceswap-kohya sweep` process). Sweeps are started with the CLI (`output.dir=<workspace>`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from faceswap_kohya.errors import UserError
from faceswap_kohya.jobs import sweeps_status as status_job
from faceswap_kohya.web.common import Workspace, error_text

HEADERS = ["#", "trial", "settings", "state", "progress", "held-out", "identity", "bleed", "best", "min", "LoRA"]


def sweep_folders(ws: Workspace) -> list[Path]:
    """Every sweep or batch folder (it holds sweep.json), newest first."""
    return status_job.sweep_folders(ws.output)


def is_running(folder: Path) -> bool:
    return status_job.is_running(folder)


def sweep_choices(ws: Workspace) -> list[tuple[str, str]]:
    out = []
    for folder in sweep_folders(ws):
        board = status_job.board(folder)
        counts = ", ".join(f"{n} {s}" for s, n in board.get("counts", {}).items())
        running = " · running" if is_running(folder) else ""
        out.append((f"{board.get('kind', '?')} {folder.name} · {counts}{running}", str(folder)))
    return out


def _num(x) -> str:
    return "" if x is None else f"{x:.3f}"


def rows(folder: Path, status: Optional[status_job.SweepStatus] = None) -> list[list]:
    """One row per trial: the leaderboard's numbers, and live progress for trials still going."""
    status = status or status_job.sweep_status(folder)
    out = []
    for r in status.board["rows"]:
        minutes = f"{r['seconds'] / 60:.1f}" if r.get("seconds") else ""
        lora = r.get("best_lora") or r.get("lora") or ""
        out.append([r.get("rank") or "", r["id"], r["label"], "skipped (done before)" if r.get("skipped") else r["state"],
                    r["progress"][:200], _num(r.get("held_out")), _num(r.get("identity")), _num(r.get("bleed")),
                    r.get("best_checkpoint") or "", minutes, Path(lora).name if lora else ""])
    return out


def verdict(folder: Path, status: Optional[status_job.SweepStatus] = None) -> str:
    status = status or status_job.sweep_status(folder)
    board = status.board
    head = f"**{status.kind} {folder.name}** — {status.counts or 'no trials yet'}" + (" — running" if status.running else "")
    w = board.get("winner")
    if w:
        head += (f"\n\n**Winner: {w['label']}** — {board['basis_name']} {w['score']:.3f}\n\nLoRA: `{w['lora']}`")
        row = next((r for r in board["rows"] if r["id"] == w["id"]), {})
        if row.get("verdict"):
            head += f"\n\nIts evaluation: {row['verdict']}"
    elif board.get("kind") == "sweep":
        head += "\n\nNo winner yet: no finished trial has an identity score."
    return head + f"\n\nFolder: `{folder}`"


def sweep_folder(value: str, ws: Workspace) -> Path:
    return status_job.check_sweep_folder(value, ws.output)


def stop_sweep(folder: Path) -> str:
    """The stop job: SIGINT to the sweep's process, as Ctrl-C."""
    return status_job.stop_sweep(folder)


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
    status = status_job.sweep_status(folder)
    return [verdict(folder, status), rows(folder, status), str(chart) if chart.is_file() else None, files,
            gr.Timer(active=status.running)]


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
