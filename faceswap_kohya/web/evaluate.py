"""Evaluate page: the identity chart and per-checkpoint table of a run's latest evaluation, its best checkpoint and
top-3 images; a button runs `faceswap-kohya evaluate RUN` for a run trained without it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from faceswap_kohya.runs.artifacts import latest_scores, read_scores
from faceswap_kohya.web.common import Workspace, run_dir, run_job
from faceswap_kohya.web.pages import run_dropdown

TABLE_HEADERS = ["checkpoint", "identity (mean)", "spread", "faces / images", "copy gap"]


def latest_evaluation(run: Path) -> Optional[Path]:
    """The newest `eval/<timestamp>/` folder of the run that holds readable scores."""
    path = latest_scores(run)
    return path.parent if read_scores(path) is not None else None


def _num(x, fmt: str) -> str:
    return "" if x is None else format(x, fmt)


def evaluation_view(folder: Optional[Path]) -> list:
    """[summary markdown, chart, table rows, top-3 images, report and scores files] of one evaluation folder."""
    if folder is None:
        return ["No evaluation yet for this run: press **Evaluate**.", None, [], [], []]
    scores = json.loads((folder / "scores.json").read_text(encoding="utf-8"))
    rows = []
    for c in scores["checkpoints"]:
        s = c["summary"]
        rows.append([c["label"], _num(s["mean"], ".3f"), _num(s.get("std"), ".3f"), f"{s['faces']}/{s['images']}",
                     _num(s.get("copy_gap_mean"), "+.3f")])
    best = scores.get("best")
    if best:
        vs = f" ({best['above_base']:+.3f} vs the base model)" if best.get("above_base") is not None else ""
        text = f"**Best checkpoint: {best['label']}** — identity {best['mean']:.3f}{vs}  \n`{best['file']}`"
    else:
        text = "**Best checkpoint: none** (no face was found in any LoRA image)"
    text += f"\n\n{scores['embedder']} scores, {folder}"
    top = [(str(folder / t["file"]), f"{t['checkpoint']} · {t['score']:.3f}") for t in scores.get("top", [])]
    files = [str(p) for p in (folder / "report.html", folder / "scores.json") if p.is_file()]
    chart = folder / "identity.png"
    return [text, str(chart) if chart.is_file() else None, rows, top, files]


def evaluate(ws: Workspace, run: str, emit):
    """`faceswap-kohya evaluate RUN`."""
    from faceswap_kohya.jobs import evaluate as ev

    return ev.evaluate(ev.plan_run(run_dir(run, ws)), emit)


@dataclass
class Page:
    run: Any
    start: Any
    status: Any
    log: Any
    summary: Any
    chart: Any
    table: Any
    top: Any
    files: Any
    show: Any = None  # run → the view's values
    view: Any = None  # the components show() fills


def build(shared) -> Page:
    import gradio as gr

    ws = shared.ws
    gr.Markdown("How much the generated person looks like the photos, per checkpoint, against the base model "
                "(the preset's `evaluate` prompts and seeds; faces scored against the training photos).")
    with gr.Row():
        run = run_dropdown(ws, elem_id="evaluate-run")
        start = gr.Button("Evaluate", variant="primary", elem_id="evaluate-start")
    status = gr.Markdown(elem_id="evaluate-status")
    log = gr.Textbox(label="Log", lines=4, max_lines=8, elem_id="evaluate-log")
    summary = gr.Markdown(elem_id="evaluate-summary")
    with gr.Row():
        chart = gr.Image(label="Identity per checkpoint", type="filepath", interactive=False, elem_id="evaluate-chart")
        top = gr.Gallery(label="Top 3", columns=3, height=300, object_fit="contain", elem_id="evaluate-top")
    table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, label="Per checkpoint", elem_id="evaluate-table")
    files = gr.File(label="Report", file_count="multiple", interactive=False, elem_id="evaluate-files")
    page = Page(run, start, status, log, summary, chart, table, top, files)
    view = [summary, chart, table, top, files]

    def shown(value):
        try:
            return evaluation_view(latest_evaluation(run_dir(value, ws)))
        except Exception:  # noqa: BLE001 - no run chosen or an unreadable folder: an empty view
            return evaluation_view(None)

    run.change(shown, [run], view, show_progress="hidden")

    def on_start(value):
        for state in run_job("evaluate", lambda emit: evaluate(ws, value, emit)):
            if not state.done:
                yield [state.progress, state.log] + [gr.skip()] * 5
        folder = state.result.folder if state.result is not None else None
        yield [state.progress, state.log] + (evaluation_view(folder) if folder else [gr.skip()] * 5)

    start.click(on_start, [run], [status, log] + view)
    page.show, page.view = shown, view
    return page
