"""The caption-editing job: read and edit the captions of a prepared run's training images (its `.txt` files).

The captions' mode is the run's own preset's (`dataset.captions.mode`, the schema's default
`files_or_template` where the preset does not set it). Each saved caption keeps the trigger and class first,
as the CLI does with caption files (`data.captions.with_trigger`). Plain values in, a message out; it never prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

from faceswap_kohya.config.presets import read_run_preset
from faceswap_kohya.data.captions import with_trigger
from faceswap_kohya.errors import UserError
from faceswap_kohya.events import Message, OnEvent, ignore


def dataset_record(run: Path) -> dict:
    """The run's dataset.json (what `prepare` did with each photo)."""
    path = Path(run) / "dataset.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{run}: no readable dataset.json: not a prepared run folder (run prepare first)") from None


def instance_folder(run: Path) -> Path:
    """The folder of the run's training images (`img/<repeats>_<trigger> <class>/`)."""
    return Path(run) / dataset_record(run)["instance_dir"]


def caption_mode(run: Path) -> str:
    """How the run's captions were made: its preset's `dataset.captions.mode` (schema default where unset)."""
    try:
        return read_run_preset(Path(run)).dataset.captions.mode
    except UserError:
        from faceswap_kohya.config.schema import Captions

        return Captions().mode


def caption_of(image: Path) -> Optional[str]:
    """The text of an image's caption file, None when it has none."""
    txt = Path(image).with_suffix(".txt")
    return txt.read_text(encoding="utf-8").strip() if txt.is_file() else None


def captions(run: Path) -> list[tuple[str, str]]:
    """Every training image of the run (augmented copies included) with its caption ("" without a file)."""
    return [(p.name, caption_of(p) or "") for p in sorted(instance_folder(run).glob("*.png"))]


def save_captions(run: Path, rows: Iterable, on_event: OnEvent = ignore) -> str:
    """Write edited captions (`rows`: (image name, text) pairs) into the run's `.txt` files; only changed ones are
    written. UserError for a name that is not one of its training images, or an empty caption."""
    run = Path(run)
    preset = read_run_preset(run)
    folder = instance_folder(run)
    changed = 0
    for name, text in rows:
        image = folder / Path(str(name)).name
        if not image.is_file() or image.suffix.lower() != ".png":
            raise UserError(f"captions: {name} is not a training image of {run.name}")
        if not str(text).strip():
            raise UserError(f"captions: {name}: the caption is empty; write at least the trigger and class")
        caption = with_trigger(str(text), preset.subject.trigger, preset.subject.class_word)
        if caption != caption_of(image):
            image.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
            changed += 1
    message = f"saved {changed} caption{'s' if changed != 1 else ''} in {folder}"
    on_event(Message(message))
    return message
