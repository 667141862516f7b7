"""The `render` job: a preset's sd-scripts files without training (a dry run): dataset.toml, config.toml, the
sample-prompt file, and the exact trainer command. It writes what `train` writes into a run folder
(`trainer.render.write_all`, the same base-model and tokenizer arguments), into a folder of the user's choice.
Plain values in, a `Rendered` out; notes go to `on_event`; it never prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from faceswap_kohya.config.presets import override_keys
from faceswap_kohya.config.schema import Preset
from faceswap_kohya.events import Message, OnEvent, ignore
from faceswap_kohya.runs.layout import RunLayout, instance_dir
from faceswap_kohya.trainer import render as files
from faceswap_kohya.trainer.install import Trainer, tokenizer_cache


@dataclass
class Rendered:
    run: RunLayout
    written: list[Path]  # dataset.toml, config.toml (and the prompt file when the preset samples)
    photos: Path  # where `prepare` lays the photos out
    command: str  # the trainer command, as a shell line (cd sd-scripts && ...)
    notes: list[str]


def render(preset: Preset, out_dir: Path, overrides=(), on_event: OnEvent = ignore) -> Rendered:
    """Resolve the preset's own Kohya folders (as `train` does), then write its sd-scripts files into `out_dir`."""
    from faceswap_kohya.data.kohya_folders import resolve

    resolved = resolve(preset, override_keys(overrides))
    p, run = resolved.preset, RunLayout(Path(out_dir).absolute())
    for note in resolved.notes:
        on_event(Message(f"note: {note}"))
    files.write_all(p, run, files.base_model_arg(p), tokenizer_cache(p))
    written = [run.dataset_toml, run.config_toml] + ([run.sample_prompts] if p.sampling.prompts else [])
    trainer = Trainer.of(p)
    command = files.shell_command(files.trainer_argv(p, trainer, run), trainer.sd_scripts)
    return Rendered(run, written, instance_dir(p, run), command, list(resolved.notes))


def rendered_lines(result: Rendered) -> list[str]:
    """What `faceswap-kohya render` prints after the notes."""
    lines = [f"wrote {path}" for path in result.written]
    lines.append(f"the photos go to {result.photos} (faceswap-kohya prepare lays them out)")
    return lines + ["", result.command]
