"""Evaluate page: the identity chart and per-checkpoint table of a run's latest evaluation, its best checkpoint and
top-3 images; a button runs `faceswap-kohya evaluate RUN` for a run trained without it (a full disk is one message
naming the app's own output folder, SPACE_FIELD)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from faceswap_kohya.runs.artifacts import REPORT, SCORES, latest_scores, read_scores
from faceswap_kohya.scoring.summary import TABLE_HEADERS as SUMMARY_HEADERS
from faceswap_kohya.scoring.summary import EvaluationSummary, summarize_scores
from faceswap_kohya.web.common import SPACE_FIELD, Workspace, run_dir, run_job
from faceswap_kohya.web.pages import run_dropdown

TABLE_HEADERS = SUMMARY_HEADERS  # the same columns as `evaluate` prints


def latest_evaluation(run: Path) -> Optional[Path]:
    """The newest `eval/<timestamp>/` folder of the run that holds readable scores."""
    path = latest_scores(run)
    return path.parent if read_scores(path) is not None else None


def summary_text(summary: EvaluationSummary, folder: Path) -> str:
    """The page's summary: the verdict word for word as `evaluate` prints it, then the best checkpoint and why."""
    text = f"**Verdict:** {summary.verdict}\n\n"
    if summary.best is not None:
        b = summary.best
        held = f"held-out identity {b.held_out:.3f} · " if b.held_out is not None else "no held-out photos · "
        vs = f" ({b.above_base:+.3f} vs the base model)" if b.above_base is not None else ""
        bleed = f" · bleed {b.bleed:.3f}" if b.bleed is not None else ""
        text += (f"**Best checkpoint: {b.label}** — {held}identity vs all photos {b.identity:.3f}{summary.of_own(b)}{vs}{bleed}  \n"
                 f"Why: {summary.reason}  \n`{b.file}`")
    else:
        text += f"**Best checkpoint: none** ({summary.best_line().split('(', 1)[1]}"
    return text + f"\n\n{summary.baseline_line()}  \n{summary.embedder} scores, {folder}"


def evaluation_view(folder: Optional[Path]) -> list:
    """[summary markdown, chart, table rows, top-3 images, why the top 3 is empty, report and scores files] of one
    evaluation folder."""
    scores = read_scores(Path(folder) / SCORES) if folder is not None else None
    if scores is None:
        return ["No evaluation yet for this run: press **Evaluate**.", None, [], [], "", []]
    folder = Path(folder)
    summary = summarize_scores(scores)
    top = [(str(folder / t["file"]), f"{t['checkpoint']} · {t['score']:.3f}") for t in summary.top]
    files = [str(p) for p in (folder / REPORT, folder / SCORES) if p.is_file()]
    chart = folder / "identity.png"
    note = f"**No top-3 images:** {summary.why_no_top}." if not top else ""
    return [summary_text(summary, folder), str(chart) if chart.is_file() else None, summary.table(), top, note, files]


def evaluate(ws: Workspace, run: str, emit):
    """`faceswap-kohya evaluate RUN`."""
    from faceswap_kohya.errors import no_space_in
    from faceswap_kohya.jobs import evaluate as ev

    plan = ev.plan_run(run_dir(run, ws))
    with no_space_in(plan.out_parent, SPACE_FIELD):  # a full disk: the unfinished evaluation is removed, one message
        return ev.evaluate(plan, emit)


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
        with gr.Column():
            top = gr.Gallery(label="Top 3", columns=3, height=300, object_fit="contain", fit_columns=False,
                             elem_id="evaluate-top")
            top_note = gr.Markdown(elem_id="evaluate-top-note")
    table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, label="Per checkpoint (held-out: identity to photos the "
                         "LoRA never saw; all photos: to the nearest of every photo; bleed: faces without the trigger)",
                         elem_id="evaluate-table")
    files = gr.File(label="Report", file_count="multiple", interactive=False, elem_id="evaluate-files")
    page = Page(run, start, status, log, summary, chart, table, top, files)
    view = [summary, chart, table, top, top_note, files]

    def shown(value):
        try:
            return evaluation_view(latest_evaluation(run_dir(value, ws)))
        except Exception:  # noqa: BLE001 - no run chosen or an unreadable folder: an empty view
            return evaluation_view(None)

    run.change(shown, [run], view, show_progress="hidden")

    def on_start(value):
        for state in run_job("evaluate", lambda emit: evaluate(ws, value, emit)):
            if not state.done:
                yield [state.progress, state.log] + [gr.skip()] * len(view)
        folder = state.result.folder if state.result is not None else None
        yield [state.progress, state.log] + (evaluation_view(folder) if folder else [gr.skip()] * len(view))

    start.click(on_start, [run], [status, log] + view)
    page.show, page.view = shown, view
    return page
