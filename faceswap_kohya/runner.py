"""Run sd-scripts: a new run folder, checks before launch, the subprocess in its own process group,
live progress, failure detection (also when the trainer exits 0), interrupt and resume.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from . import presets, render
from .errors import UserError
from .folders import new_folder
from .progress import Diagnosis, Event, LineSplitter, diagnose, parse_line
from .render import RunLayout, Trainer
from .schema import CHECK_MODEL, Preset

MIN_FREE_BYTES = 2 * 1024**3


def new_run(preset: Preset, now: Optional[dt.datetime] = None) -> RunLayout:
    """`<output.dir>/<name>/<timestamp>/`, never an existing folder."""
    return RunLayout(new_folder(Path(preset.output.dir) / preset.output.name, "output.dir", now))


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "TRUE"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def check_base_model(preset: Preset) -> None:
    path = preset.base_model.path
    if path == CHECK_MODEL:
        return
    p = Path(path)
    looks_local = p.suffix in (".safetensors", ".ckpt") or path.startswith((".", "/", "~")) or path.count("/") != 1
    if p.exists():
        return
    if looks_local:
        raise UserError(f"base_model.path: {path} does not exist (a .safetensors file, a diffusers folder or a hub id)")
    if not _hub_reachable():
        raise UserError(f"base_model.path: {path} is a hub id but the Hugging Face hub can't be reached; "
                        "download the model and point base_model.path at the local .safetensors file")


def check_trainer(trainer: Trainer) -> None:
    if not trainer.script.is_file():
        raise UserError(f"kohya.sd_scripts: {trainer.sd_scripts} has no {render.TRAIN_SCRIPT}; "
                        "run scripts/setup.sh (it fetches vendor/sd-scripts) or point kohya.sd_scripts at a kohya_ss checkout")
    if not trainer.python.is_file():
        raise UserError(f"kohya.python: {trainer.python} does not exist; run scripts/setup.sh, "
                        "or point kohya.python at the python of an existing kohya_ss venv")


def check_disk(folder: Path, need: int = MIN_FREE_BYTES) -> None:
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UserError(f"output.dir: only {free / 1024**3:.1f} GB free in {folder}; a run needs at least {need / 1024**3:.0f} GB")


def preflight(preset: Preset, trainer: Trainer, confirmed: bool = False, echo=print) -> None:
    """Everything that can be checked before a run folder is made: one UserError for the first problem."""
    from .dataset import check_folder

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
        from .regularization import check_cost

        check_cost(preset, confirmed, echo)


@dataclass
class RunResult:
    run: RunLayout
    returncode: int
    loras: list[Path] = field(default_factory=list)
    final: Optional[Path] = None
    diagnosis: Optional[Diagnosis] = None
    interrupted: bool = False
    seconds: float = 0.0
    last_loss: Optional[float] = None
    steps: int = 0

    @property
    def ok(self) -> bool:
        return self.diagnosis is None and not self.interrupted


def launch(argv: list[str], cwd: Path, log_path: Path, on_event: Callable[[Event], None] = lambda e: None,
           on_line: Callable[[str], None] = lambda s: None) -> tuple[int, bool]:
    """Run the trainer in its own process group, log everything, report events.

    Ctrl-C / SIGTERM stop the whole group (SIGINT, then SIGTERM, then SIGKILL) and leave no orphans.
    Returns (exit code, interrupted).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONIOENCODING="utf-8",
               COLUMNS="200")  # rich wraps log lines at the terminal width
    env.pop("PYTHONPATH", None)
    interrupted = False
    with open(log_path, "ab") as log:
        log.write(("$ " + render.shell_command(argv, cwd) + "\n").encode())
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)

        def stop(signum, _frame):
            nonlocal interrupted
            interrupted = True
            _stop_group(proc)

        old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            splitter = LineSplitter()
            while chunk := proc.stdout.read1(65536):  # whatever is there, without waiting for more
                log.write(chunk)
                log.flush()
                for line in splitter.feed(chunk.decode("utf-8", "replace")):
                    on_line(line)
                    if (event := parse_line(line)) is not None:
                        on_event(event)
            for line in splitter.flush():
                on_line(line)
                if (event := parse_line(line)) is not None:
                    on_event(event)
            code = proc.wait()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            if proc.poll() is None:
                _stop_group(proc)
        _reap_group(proc.pid)
    return code, interrupted


def _stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(proc.pid):
                return
            time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _reap_group(pgid: int) -> None:
    """Children left behind by the trainer (dataloader workers, accelerate) are stopped too."""
    if _group_alive(pgid):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            time.sleep(1.0)


def collect_loras(run: RunLayout, name: str) -> tuple[list[Path], Optional[Path]]:
    files = sorted(run.model.glob(f"{name}*.safetensors")) if run.model.is_dir() else []
    final = run.model / f"{name}.safetensors"
    return files, final if final.is_file() else None


def judge(run: RunLayout, name: str, code: int, interrupted: bool) -> RunResult:
    """A run failed if it exited non-zero, said "No data found", or wrote no final LoRA."""
    loras, final = collect_loras(run, name)
    log_text = run.log.read_text(encoding="utf-8", errors="replace") if run.log.is_file() else ""
    result = RunResult(run, code, loras, final, interrupted=interrupted)
    if interrupted:
        return result
    if code != 0 or final is None or re.search(r"No data found|avr_loss=nan", log_text):
        d = diagnose(log_text)
        if code == 0 and d.reason == "the trainer failed":
            d = Diagnosis("the trainer exited without writing a LoRA", "read train.log in the run folder", d.lines)
        result.diagnosis = d
    return result


def tokenizer_cache(preset: Preset) -> Optional[str]:
    setting = preset.kohya.tokenizer_cache
    if setting is None:
        return None
    from .tokenizers import ensure_tokenizers

    return str(ensure_tokenizers(None if setting == "auto" else Path(setting)).absolute())


def write_run_files(preset: Preset, origin: str, run: RunLayout, trainer: Trainer, extra: list[str] = ()) -> list[str]:
    """The resolved preset, both TOMLs, the prompt file and command.sh; returns the trainer's argv."""
    run.preset.write_text(f"# {origin}\n" + presets.dump(preset), encoding="utf-8")
    render.write_all(preset, run, render.base_model_arg(preset), tokenizer_cache(preset))
    argv = render.trainer_argv(preset, trainer, run, list(extra))
    run.command.write_text("#!/bin/sh\n" + render.shell_command(argv, trainer.sd_scripts) + "\n", encoding="utf-8")
    return argv


def prepare_run(preset: Preset, preset_path: Path, run: RunLayout, echo=print) -> tuple[list[str], Trainer]:
    """Lay out the dataset and write preset, TOMLs and command into the run folder."""
    from . import dataset

    trainer = Trainer.of(preset)
    if preset.base_model.path == CHECK_MODEL:
        from .checkmodel import build_check_model

        build_check_model(trainer, echo=echo)
    summary = dataset.layout(preset, run, echo=echo)
    for line in summary.brief(run.root)[1:]:  # the run folder was named already
        echo(line)
    if preset.regularization.generate:
        from .regularization import balance_advice, ensure_regularization

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


def latest_state(run: RunLayout) -> Optional[Path]:
    states = [p for p in run.model.glob("*-state") if p.is_dir()] if run.model.is_dir() else []
    return max(states, key=lambda p: p.stat().st_mtime) if states else None


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
