"""Runs page: every run folder of the workspace with its state (running / finished / failed / interrupted), read
from the folders themselves; any run can be opened (a training run on the Train page, a prepared one on Photos)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faceswap_kohya.runs.status import list_runs, read_status
from faceswap_kohya.web import photos
from faceswap_kohya.web.common import Workspace, error_text, run_choices, run_dir

HEADERS = ["run", "kind", "state", "started", "step", "loss", "LoRAs", "error", "folder"]
# Every header fits on one line: the long cells (error, folder) wrap, the short columns keep their width.
COLUMN_WIDTHS = ["150px", "80px", "150px", "160px", "70px", "70px", "70px", "200px", "260px"]
STATE_WORDS = {"preparing": "running (preparing)", "training": "running (training)", "evaluating": "running (evaluating)"}


def rows(ws: Workspace) -> list[list]:
    out = []
    for root, s in list_runs(ws.output):
        step = f"{s.get('step') or 0}/{s['total']}" if s.get("total") else ""
        loss = f"{s['loss']:.4f}" if isinstance(s.get("loss"), (int, float)) else ""
        out.append([f"{root.parent.name}/{root.name}", s.get("kind", ""), STATE_WORDS.get(s.get("state"), s.get("state", "")),
                    (s.get("started") or "").replace("T", " ")[:19], step, loss, len(s.get("loras") or []),
                    s.get("error") or "", str(root)])
    return out


@dataclass
class Page:
    table: Any
    choice: Any
    open: Any
    refresh: Any
    message: Any

    @property
    def outputs(self) -> list:
        return [self.table, self.choice]


def refresh_values(ws: Workspace, current=None):
    import gradio as gr

    choices = run_choices(ws)
    values = [v for _, v in choices]
    return rows(ws), gr.Dropdown(choices=choices, value=current if current in values else (values[0] if values else None))


def build(shared) -> Page:
    import gradio as gr

    ws = shared.ws
    gr.Markdown(f"Every run folder under `{ws.output}`, newest first. A run keeps going when this page is closed.")
    table = gr.Dataframe(headers=HEADERS, value=rows(ws), interactive=False, wrap=True, column_widths=COLUMN_WIDTHS,
                         elem_id="runs-table")
    with gr.Row():
        choice = gr.Dropdown(run_choices(ws), label="Run", elem_id="runs-choice")
        open_btn = gr.Button("Open", variant="primary", elem_id="runs-open")
        refresh_btn = gr.Button("Refresh", elem_id="runs-refresh")
    message = gr.Markdown(elem_id="runs-message")
    return Page(table, choice, open_btn, refresh_btn, message)


def wire(page: Page, shared, photos_page, train_page) -> None:
    import gradio as gr


    ws = shared.ws
    page.refresh.click(lambda current: refresh_values(ws, current), [page.choice], page.outputs)

    def opened(value):
        skip = [gr.skip()] * 5
        try:
            root = run_dir(value, ws)
        except Exception as e:  # noqa: BLE001
            return [error_text(e), gr.skip(), gr.skip(), gr.skip()] + skip
        status = read_status(root) or {}
        if status.get("kind") == "prepare" and (root / "dataset.json").is_file():
            return [f"opened {root.name} on the Photos page", gr.Tabs(selected="photos"), gr.skip(), str(root),
                    *photos.prepare_view(root), f"prepared photos of `{root}`", gr.skip()]
        return [f"opened {root.name} on the Train page", gr.Tabs(selected="train"), str(root), gr.skip()] + skip

    page.open.click(opened, [page.choice],
                    [page.message, shared.tabs, shared.followed, shared.prepared, photos_page.sheet, photos_page.table,
                     photos_page.captions, photos_page.status, photos_page.log])


def tab_refresh(ws: Workspace):
    return lambda current: refresh_values(ws, current)

