"""What the pages share with each other (gradio components) and small component helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from faceswap_kohya.web.common import Workspace, run_choices


@dataclass
class Shared:
    ws: Workspace
    prepared: Any  # gr.State: the `prepare` run folder whose photos training uses
    photos_dir: Any  # gr.State: the folder of uploaded (or named) photos
    followed: Any  # gr.State: the training run the Train page shows
    tabs: Any = None  # gr.Tabs


def run_dropdown(ws: Workspace, label: str = "Run", elem_id: Optional[str] = None, with_lora: bool = True):
    import gradio as gr

    choices = run_choices(ws, "train", with_lora=with_lora)
    return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label=label, elem_id=elem_id,
                       info="a finished training run (its final LoRA)", allow_custom_value=False)


def refreshed_runs(ws: Workspace, current: Optional[str], with_lora: bool = True):
    """The dropdown's new choices, keeping the current run when it is still one of them."""
    import gradio as gr

    choices = run_choices(ws, "train", with_lora=with_lora)
    values = [v for _, v in choices]
    return gr.Dropdown(choices=choices, value=current if current in values else (values[0] if values else None))
