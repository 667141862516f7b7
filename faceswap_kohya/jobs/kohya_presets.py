"""The Kohya preset jobs: import a kohya_ss GUI JSON or sd-scripts TOML as a preset, export a preset back."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from faceswap_kohya.errors import UserError
from faceswap_kohya.events import Finished, Message, OnEvent, ignore


def import_kohya(file: Path, dataset: Optional[Path] = None, out: Optional[Path] = None, on_event: OnEvent = ignore):
    """The preset YAML text and the import report; written to `out` when given (never over an existing file)."""
    from faceswap_kohya.formats.importer import import_preset, to_yaml

    if out and Path(out).exists():
        raise UserError(f"{out} already exists; choose another name (nothing was overwritten)")
    preset, report = import_preset(file, dataset)
    text = to_yaml(preset, report)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        on_event(Finished(f"wrote {out}", [str(out)]))
    return text, report


def export_kohya(preset: str, overrides=(), fmt: str = "sd-scripts", out: Optional[Path] = None,
                 on_event: OnEvent = ignore) -> list[str]:
    """Write a preset as an sd-scripts config TOML (+ dataset TOML) or a kohya_ss GUI JSON; returns what was done."""
    from faceswap_kohya.formats.export import write_export
    from faceswap_kohya.formats.importer import load_any

    p, _, imported = load_any(preset, overrides)  # a preset name or YAML, or a Kohya file imported on the fly
    if imported:
        on_event(Message(imported.text()))
    lines = write_export(p, fmt, out)
    for line in lines:
        on_event(Message(line))
    return lines
