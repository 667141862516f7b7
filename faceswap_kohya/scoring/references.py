"""What a run's generated faces are compared with: its training photos (`run_refs`), its held-out photos
(`run_held_out`), and the subject a LoRA file records when there is no run folder (`subject_from_lora`).
`evaluate` and `swap` both read them from here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from faceswap_kohya.errors import UserError
from faceswap_kohya.runs.artifacts import layout_of, photo_folders
from faceswap_kohya.runs.layout import instance_dir, validation_dir


def run_refs(run, preset) -> Path:
    """The run's training photos (its instance folder, else its only photo folder); `run`: a folder or its layout."""
    run = layout_of(run)
    folder = instance_dir(preset, run)
    if folder.is_dir():
        return folder
    others = photo_folders(run)
    if len(others) == 1:
        return others[0]
    raise UserError(f"{run.root}: no training photos in {folder} to compare with; give --refs PHOTOS_DIR")


def run_held_out(run, preset) -> Optional[Path]:
    """The run's held-out photos (`val/1_<trigger> <class>`), when it has any."""
    from faceswap_kohya.files.images import list_images

    folder = validation_dir(preset, layout_of(run))
    return folder if folder.is_dir() and list_images(folder) else None


def subject_from_lora(path: Path) -> Optional[tuple[str, str]]:
    """(trigger, class) from the dataset folder name sd-scripts records in a LoRA (`ss_dataset_dirs`: `10_myface woman`)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            dirs = json.loads((f.metadata() or {}).get("ss_dataset_dirs", "{}"))
    except Exception:  # noqa: BLE001 - metadata is optional
        return None
    for name in dirs:
        m = re.fullmatch(r"\d+_([A-Za-z0-9]+) ([A-Za-z]+(?: [A-Za-z]+)?)", str(name))
        if m:
            return m.group(1), m.group(2)
    return None
