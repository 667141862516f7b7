"""The `train` job: checks before anything is made, a new run folder (dataset, TOMLs, command), sd-scripts in
its own process group with live events (the samples it writes scored for likeness as they appear: scoring.live),
failure detection, evaluation when enabled; and `resume` (from the newest saved state that is whole).

The run folder records every event (events.jsonl) and its state (status.json) as it goes. Free space is
checked before against what the run will write; a disk that fills up anyway ends the run `failed` with one
message naming the folder (NoSpace), whether the trainer or this program found it full.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

from faceswap_kohya.config import presets
from faceswap_kohya.config.schema import CHECK_MODEL, CHECK_MODEL_FLUX, Preset
from faceswap_kohya.data.regularization import balance_advice, check_cost, ensure_regularization
from faceswap_kohya.errors import NoSpace, UserError, is_no_space, no_space_message
from faceswap_kohya.events import Error, Finished, Message, OnEvent, StageFinished, StageStarted, Step, Warning, echo_to, ignore
from faceswap_kohya.jobs.evaluate import evaluate_after_training
from faceswap_kohya.runs.artifacts import resumable_state
from faceswap_kohya.runs.layout import RunLayout, instance_dir, new_parents, new_run, remove_run_folder
from faceswap_kohya.runs.lock import held
from faceswap_kohya.runs.status import RunRecorder
from faceswap_kohya.scoring import live as live_likeness
from faceswap_kohya.trainer import render
from faceswap_kohya.trainer.install import (
    Trainer,
    check_base_model,
    check_disk,
    check_model_space,
    check_trainer,
    count_photos,
    space_needed,
    tokenizer_cache,
)
from faceswap_kohya.trainer.launch import RunResult, judge, launch


def preflight(preset: Preset, trainer: Trainer, confirmed: bool = False, echo=print, photos: bool = True) -> None:
    """Everything that can be checked before a run folder is made: one UserError for the first problem.

    `photos=False` when the photos were laid out already (`train --prepared`)."""
    from faceswap_kohya.data.images import check_folder

    if photos and not preset.dataset.subsets:  # Kohya folders were checked when read (kohya_folders.resolve)
        check_folder(preset.dataset.images, "dataset.images")
    if preset.regularization.images and not preset.regularization.subsets:
        check_folder(preset.regularization.images, "regularization.images")
    check_trainer(trainer)
    check_base_model(preset)
    out = Path(preset.output.dir).expanduser().absolute()
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise UserError(f"output.dir: {probe} is not writable")
    check_disk(probe, space_needed(preset, count_photos(preset) if photos else None))
    if preset.base_model.path == CHECK_MODEL:
        check_model_space(preset)
    if preset.regularization.generate:
        check_cost(preset, confirmed, echo)


def write_run_files(preset: Preset, origin: str, run: RunLayout, trainer: Trainer, extra: list[str] = ()) -> list[str]:
    """The resolved preset, both TOMLs, the prompt file and command.sh; returns the trainer's argv."""
    run.preset.write_text(f"# {origin}\n" + presets.dump(preset), encoding="utf-8")
    render.write_all(preset, run, render.base_model_arg(preset), tokenizer_cache(preset))
    argv = render.trainer_argv(preset, trainer, run, list(extra))
    run.command.write_text("#!/bin/sh\n" + render.shell_command(argv, trainer.sd_scripts) + "\n", encoding="utf-8")
    return argv


def prepare_run(preset: Preset, preset_path: Path, run: RunLayout, echo=print, notes=(),
                prepared: Optional[Path] = None, trainer: Optional[Trainer] = None,
                prepared_photos: Optional[Path] = None) -> tuple[list[str], Trainer]:
    """Lay out the dataset (or copy the one `prepare` made in `prepared`) and write preset, TOMLs and command
    (`notes`: kohya_folders.resolve's). `trainer` and `prepared_photos` (check_prepared's answer): what the
    caller found already, so that nothing is looked up twice."""
    from faceswap_kohya.data import dataset

    trainer = trainer or Trainer.of(preset)
    if prepared is not None:
        n_images = copy_prepared(preset, prepared, run, prepared_photos)
        echo(f"dataset: {n_images} training images (captions as saved) from {prepared}")
    else:
        summary = dataset.layout(preset, run, echo=echo, notes=notes)  # first: bad photos fail before a model is built
        for line in summary.brief(run.root)[1:]:  # the run folder was named already
            echo(line)
        n_images = len(summary.photos)
    if preset.base_model.path == CHECK_MODEL:
        from faceswap_kohya.models.checkmodel import build_check_model

        build_check_model(trainer, echo=echo)
    elif preset.base_model.path == CHECK_MODEL_FLUX:
        from faceswap_kohya.models.checkmodel import build_flux_check_model

        build_flux_check_model(trainer, echo=echo)
    if preset.regularization.generate:
        ensure_regularization(preset, run, echo=echo)
        if advice := balance_advice(preset, n_images, preset.regularization.generate):
            echo(advice)
    return write_run_files(preset, f"resolved from {preset_path}", run, trainer), trainer


# What a prepared dataset was made for: these settings must not change between `prepare` and `train --prepared`.
PREPARED_KEYS = ("subject.trigger", "subject.class_word", "dataset.resolution", "dataset.framing", "regularization.images")


def check_prepared(preset: Preset, prepared: Path) -> Path:
    """The instance folder of a `prepare` run folder whose settings match `preset`; else one UserError."""
    old = RunLayout(Path(prepared).expanduser().absolute())
    if not (old.root / "dataset.json").is_file() or not old.img.is_dir():
        raise UserError(f"{prepared}: not a prepared run folder (no dataset.json / img/); run `faceswap-kohya prepare` first")
    folders = [d for d in old.img.iterdir() if d.is_dir()]
    if len(folders) != 1:
        raise UserError(f"{old.img}: expected one photo folder, found {len(folders)}; prepare again")
    if old.preset.is_file():
        was = presets.validate(presets.read_yaml(old.preset), str(old.preset))
        for key in PREPARED_KEYS:
            a, b = _get(was, key), _get(preset, key)
            if a != b:
                raise UserError(f"{key}: the photos in {old.root} were prepared with {a!r}, the preset says {b!r}; "
                                f"prepare again, or set {key}={a}")
    return folders[0]


def _get(preset: Preset, dotted: str):
    value = preset
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def copy_prepared(preset: Preset, prepared: Path, run: RunLayout, source: Optional[Path] = None) -> int:
    """Copy a prepared dataset (images, captions as edited, held-out photos, class images, reports) into the run;
    returns the image count.
    `source`: its photo folder when check_prepared found it already."""
    source = source or check_prepared(preset, prepared)
    old = RunLayout(Path(prepared).expanduser().absolute())
    shutil.copytree(source, instance_dir(preset, run))  # the folder name carries this preset's repeats
    for folder in (old.val, old.reg):  # the held-out photos (validation loss, held-out likeness) and class images
        if folder.is_dir():
            shutil.copytree(folder, run.root / folder.name)
    for name in ("contact_sheet.png", "dataset.json", "dataset.md"):
        if (old.root / name).is_file():
            shutil.copyfile(old.root / name, run.root / name)
    return sum(1 for p in source.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))


def scheduled_lr(preset: Preset, step: int, total: int) -> Optional[float]:
    """The UNet learning rate the scheduler gives at `step` (sd-scripts does not print it); None when unknown."""
    o = preset.optimizer
    warmup = o.warmup_steps * total if 0 < o.warmup_steps < 1 else o.warmup_steps
    if step < warmup:
        return o.unet_lr * step / warmup
    done = (step - warmup) / max(1.0, total - warmup)
    if o.scheduler in ("constant", "constant_with_warmup"):
        return o.unet_lr
    if o.scheduler in ("linear", "polynomial"):
        return o.unet_lr * (1 - done)
    if o.scheduler == "cosine":
        return o.unet_lr * 0.5 * (1 + math.cos(math.pi * done))
    if o.scheduler == "cosine_with_restarts":
        return o.unet_lr * 0.5 * (1 + math.cos(math.pi * ((o.num_cycles * done) % 1.0))) if done < 1 else 0.0
    return None


def _run_trainer(preset: Preset, run: RunLayout, argv: list[str], trainer: Trainer, emit: OnEvent,
                 on_line: Callable[[str], None], recorder: RunRecorder) -> RunResult:
    live = live_likeness.watch(run, preset, emit)  # the samples scored as they appear, in a thread of its own

    def with_lr(event):
        if isinstance(event, Step) and event.lr is None:
            event = dataclasses.replace(event, lr=scheduled_lr(preset, event.step, event.total))
        if live is not None:
            live.seen(event)
        emit(event)

    recorder.set(state="training")
    emit(StageStarted("training"))
    start = time.monotonic()
    stall = preset.kohya.stall_minutes
    interrupted = True
    try:
        code, interrupted = launch(argv, trainer.sd_scripts, run.log, with_lr, on_line,
                                   on_start=lambda pid: recorder.set(trainer_pid=pid),
                                   stall_seconds=stall * 60 if stall else None)
    finally:
        if live is not None:
            live.stop(score_rest=not interrupted)  # the last samples are scored before the run is judged
    result = judge(run, preset.output.name, code, interrupted)
    result.seconds = time.monotonic() - start
    emit(StageFinished("training", result.seconds))
    return result


def _finish(preset: Preset, result: RunResult, emit: OnEvent, recorder: RunRecorder) -> RunResult:
    """Evaluate when the preset asks for it, then record how the run ended."""
    loras = [str(p) for p in result.loras]
    if result.interrupted:
        recorder.set(state="interrupted", loras=loras)
    elif result.diagnosis:
        recorder.set(state="failed", loras=loras, error=result.diagnosis.reason)
        emit(Error(f"training failed: {result.diagnosis.reason}"))
    else:
        if preset.evaluate.enabled:  # what training holds goes on as it is: the preset, its checkpoints, the layout
            recorder.set(state="evaluating")
            emit(StageStarted("evaluating"))
            t = time.monotonic()
            result.evaluation = evaluate_after_training(preset, result.run, result.checkpoints, emit)
            emit(StageFinished("evaluating", time.monotonic() - t))
        recorder.set(state="finished", loras=loras)
        emit(Finished(f"LoRA written: {result.final}", [str(result.final)] + [p for p in loras if p != str(result.final)]))
    return result


def _recorded(preset: Preset, run: RunLayout, on_event: OnEvent, work) -> RunResult:
    """Run `work(emit, recorder)` with every event recorded in the run folder; the status says how it ended."""
    try:
        recorder = RunRecorder(run.root, preset.output.name)
    except OSError as e:
        if is_no_space(e):
            raise NoSpace(no_space_message(run.root)) from None
        raise
    emit = recorder.wrap(on_event)
    try:
        try:
            result = work(emit, recorder)
            return _finish(preset, result, emit, recorder)
        except OSError as e:  # this program's own writes (the dataset, the TOMLs, an evaluation) found the disk full
            if not is_no_space(e):
                raise
            raise NoSpace(no_space_message(run.root, Path(e.filename).name if e.filename else "")) from None
    except UserError as e:
        recorder.set(state="failed", error=str(e))
        emit(Error(str(e)))
        raise
    except KeyboardInterrupt:
        recorder.set(state="interrupted")
        raise
    except BaseException as e:
        recorder.set(state="failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        recorder.close()


def train(preset: Preset, preset_path: Path, on_event: OnEvent = ignore, on_line: Callable[[str], None] = lambda s: None,
          confirmed: bool = False, overrides=(), prepared: Optional[Path] = None) -> RunResult:
    """Train a LoRA in a new run folder; returns the result (failed and interrupted runs included).

    `overrides`: the command line's key=value pairs (a `subject.*` among them wins over Kohya folder names).
    `prepared`: a run folder made by `prepare` whose photos (and captions, as edited there) are used as they are."""
    from faceswap_kohya.data.kohya_folders import resolve

    resolved = resolve(preset, presets.override_keys(overrides))
    preset = resolved.preset
    trainer = Trainer.of(preset)
    prepared_photos = check_prepared(preset, prepared) if prepared is not None else None
    preflight(preset, trainer, confirmed, echo_to(on_event), photos=prepared is None)
    made = new_parents(preset)
    run = new_run(preset)
    started = []

    def work(emit, recorder):
        emit(StageStarted("preparing"))
        emit(Message(f"run folder: {run.root}"))
        t = time.monotonic()
        argv, _ = prepare_run(preset, preset_path, run, echo=echo_to(emit), notes=resolved.notes, prepared=prepared,
                              trainer=trainer, prepared_photos=prepared_photos)
        emit(StageFinished("preparing", time.monotonic() - t))
        started.append(True)
        return _run_trainer(preset, run, argv, trainer, emit, on_line, recorder)

    try:
        return _recorded(preset, run, on_event, work)
    except BaseException:
        if not started:  # failed before the trainer started (bad photos, ...): the message says it all
            remove_run_folder(run, made)
        raise


def resume(run_dir: Path, overrides=(), on_event: OnEvent = ignore, on_line: Callable[[str], None] = lambda s: None) -> RunResult:
    """Continue a run from its newest whole saved state (needs training.save_state: true), in a new run folder; a
    newer state left half-written (the trainer stopped mid-save) is skipped, saying so.

    The earlier run is left as it is; its dataset folders are copied and `--resume <state>` is passed.
    Overrides apply on top of its preset (e.g. `training.max_steps=4000` to train longer).
    """
    old = RunLayout(Path(run_dir).absolute())
    if not old.preset.is_file() or not old.config_toml.is_file():
        raise UserError(f"{run_dir}: not a run folder (no preset.yaml / config.toml)")
    with held(old.root, "being resumed"):  # a second `train --resume` of the same run is refused
        return _resume(old, overrides, on_event, on_line)


def _resume(old: RunLayout, overrides, on_event: OnEvent, on_line: Callable[[str], None]) -> RunResult:
    preset = presets.read_run_preset(old.root, overrides)
    choice = resumable_state(old)  # checked before anything starts: a kill mid-save leaves the newest state half-written
    state = choice.state
    if state is None and choice.skipped:
        raise UserError(f"{old.model}: no complete saved training state to resume from: {choice.skipped_text()} "
                        "(the trainer was stopped while saving); train again to start over")
    if state is None:
        hint = "" if preset.training.save_state else " (the run had training.save_state: false)"
        raise UserError(f"{old.root}: no saved training state to resume from{hint}")
    trainer = Trainer.of(preset)
    check_trainer(trainer)
    check_base_model(preset)
    made = new_parents(preset)
    run = new_run(preset)
    started = []

    def work(emit, recorder):
        if choice.skipped:
            emit(Warning(f"skipped the newer saved state {choice.skipped_text()}: the trainer was stopped while saving it"))
        emit(Message(f"resuming {old.root.name} from {state.name} in {run.root}"))
        for folder in (old.img, old.val, old.reg):
            if folder.is_dir():
                shutil.copytree(folder, run.root / folder.name)
        # without --skip_until_initial_step sd-scripts restores the state but trains all steps again
        argv = write_run_files(preset, f"resumed from {state}", run, trainer,
                               ["--resume", str(state), "--skip_until_initial_step"])
        started.append(True)
        return _run_trainer(preset, run, argv, trainer, emit, on_line, recorder)

    try:
        return _recorded(preset, run, on_event, work)
    except BaseException:
        if not started:
            remove_run_folder(run, made)
        raise
