"""Run sd-scripts: a new run folder, checks before launch, the subprocess in its own process group,
live progress, failure detection (also when the trainer exits 0), interrupt and resume.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from faceswap_kohya.config import presets
from faceswap_kohya.config.layout import RunLayout, new_run
from faceswap_kohya.config.schema import CHECK_MODEL, Preset
from faceswap_kohya.errors import UserError
from faceswap_kohya.kohya import render
from faceswap_kohya.kohya.launch import RunResult, judge, latest_state, launch
from faceswap_kohya.kohya.trainer import Trainer, check_base_model, check_disk, check_trainer, tokenizer_cache


def preflight(preset: Preset, trainer: Trainer, confirmed: bool = False, echo=print) -> None:
    """Everything that can be checked before a run folder is made: one UserError for the first problem."""
    from faceswap_kohya.data.images import check_folder

    check_folder(preset.dataset.images, "dataset.images")
    if preset.regularization.images:
        check_folder(preset.regularization.images, "regularization.images")
    check_trainer(trainer)
    check_base_model(preset)
    out = Path(preset.output.dir).expanduser().absolute()
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise UserError(f"output.dir: {probe} is not writable")
    check_disk(probe)
    if preset.regularization.generate:
        from faceswap_kohya.data.regularization import check_cost

        check_cost(preset, confirmed, echo)


def write_run_files(preset: Preset, origin: str, run: RunLayout, trainer: Trainer, extra: list[str] = ()) -> list[str]:
    """The resolved preset, both TOMLs, the prompt file and command.sh; returns the trainer's argv."""
    run.preset.write_text(f"# {origin}\n" + presets.dump(preset), encoding="utf-8")
    render.write_all(preset, run, render.base_model_arg(preset), tokenizer_cache(preset))
    argv = render.trainer_argv(preset, trainer, run, list(extra))
    run.command.write_text("#!/bin/sh\n" + render.shell_command(argv, trainer.sd_scripts) + "\n", encoding="utf-8")
    return argv


def prepare_run(preset: Preset, preset_path: Path, run: RunLayout, echo=print) -> tuple[list[str], Trainer]:
    """Lay out the dataset and write preset, TOMLs and command into the run folder."""
    from faceswap_kohya.data import dataset

    trainer = Trainer.of(preset)
    if preset.base_model.path == CHECK_MODEL:
        from faceswap_kohya.kohya.checkmodel import build_check_model

        build_check_model(trainer, echo=echo)
    summary = dataset.layout(preset, run, echo=echo)
    for line in summary.brief(run.root)[1:]:  # the run folder was named already
        echo(line)
    if preset.regularization.generate:
        from faceswap_kohya.data.regularization import balance_advice, ensure_regularization

        ensure_regularization(preset, run, echo=echo)
        if advice := balance_advice(preset, len(summary.photos), preset.regularization.generate):
            echo(advice)
    return write_run_files(preset, f"resolved from {preset_path}", run, trainer), trainer


def _run_trainer(preset: Preset, run: RunLayout, argv: list[str], trainer: Trainer, on_event, on_line) -> RunResult:
    start = time.monotonic()
    code, interrupted = launch(argv, trainer.sd_scripts, run.log, on_event, on_line)
    result = judge(run, preset.output.name, code, interrupted)
    result.seconds = time.monotonic() - start
    return result


def train(preset: Preset, preset_path: Path, on_event=lambda e: None, on_line=lambda s: None, echo=print,
          confirmed: bool = False) -> RunResult:
    trainer = Trainer.of(preset)
    preflight(preset, trainer, confirmed, echo)
    run = new_run(preset)
    echo(f"run folder: {run.root}")
    argv, trainer = prepare_run(preset, preset_path, run, echo=echo)
    return _run_trainer(preset, run, argv, trainer, on_event, on_line)


def resume(run_dir: Path, overrides=(), on_event=lambda e: None, on_line=lambda s: None, echo=print) -> RunResult:
    """Continue a run from its last saved state (needs training.save_state: true), in a new run folder.

    The earlier run is left as it is; its dataset folders are copied and `--resume <state>` is passed.
    Overrides apply on top of its preset (e.g. `training.max_steps=4000` to train longer).
    """
    old = RunLayout(Path(run_dir).absolute())
    if not old.preset.is_file() or not old.config_toml.is_file():
        raise UserError(f"{run_dir}: not a run folder (no preset.yaml / config.toml)")
    preset = presets.validate(presets.apply_overrides(presets.read_yaml(old.preset), overrides), str(old.preset))
    state = latest_state(old)
    if state is None:
        hint = "" if preset.training.save_state else " (the run had training.save_state: false)"
        raise UserError(f"{run_dir}: no saved training state to resume from{hint}")
    trainer = Trainer.of(preset)
    check_trainer(trainer)
    check_base_model(preset)
    run = new_run(preset)
    echo(f"resuming {old.root.name} from {state.name} in {run.root}")
    for folder in (old.img, old.reg):
        if folder.is_dir():
            shutil.copytree(folder, run.root / folder.name)
    # without --skip_until_initial_step sd-scripts restores the state but trains all steps again
    argv = write_run_files(preset, f"resumed from {state}", run, trainer,
                           ["--resume", str(state), "--skip_until_initial_step"])
    return _run_trainer(preset, run, argv, trainer, on_event, on_line)
