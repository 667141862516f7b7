"""Run sd-scripts: a new run folder, checks before launch, the subprocess in its own process group,
live progress, failure detection (also when the trainer exits 0), interrupt and resume.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from faceswap_kohya.config.layout import RunLayout
from faceswap_kohya.kohya import render
from faceswap_kohya.kohya.progress import Diagnosis, Event, LineSplitter, TrainerOutput, diagnose


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
    evaluation: object = None  # the evaluation's result when the preset had evaluate.enabled
    steps: int = 0

    @property
    def ok(self) -> bool:
        return self.diagnosis is None and not self.interrupted


def launch(argv: list[str], cwd: Path, log_path: Path, on_event: Callable[[Event], None] = lambda e: None,
           on_line: Callable[[str], None] = lambda s: None,
           on_start: Callable[[int], None] = lambda pid: None) -> tuple[int, bool]:
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
        watchdog = _watch_over(proc.pid)
        on_start(proc.pid)

        def stop(signum, _frame):
            nonlocal interrupted
            interrupted = True
            _stop_group(proc)

        in_main = threading.current_thread() is threading.main_thread()  # signal handlers only work there
        old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
        try:
            splitter, output = LineSplitter(), TrainerOutput()
            while chunk := proc.stdout.read1(65536):  # whatever is there, without waiting for more
                log.write(chunk)
                log.flush()
                for line in splitter.feed(chunk.decode("utf-8", "replace")):
                    on_line(line)
                    for event in output.feed(line):
                        on_event(event)
            for line in splitter.flush():
                on_line(line)
                for event in output.feed(line):
                    on_event(event)
            for event in output.flush():
                on_event(event)
            code = proc.wait()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            if proc.poll() is None:
                _stop_group(proc)
        _reap_group(proc.pid)
        try:
            watchdog.wait(timeout=5)  # it ends within a second once the group is gone
        except subprocess.TimeoutExpired:
            watchdog.kill()
    return code, interrupted


# Stops the trainer's group when the process that launched it dies without cleaning up (SIGKILL, OOM killer):
# argv = [our pid, the trainer's group]. It ignores Ctrl-C (the launcher handles that) and ends with the group.
_WATCHDOG = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
parent, group = int(sys.argv[1]), int(sys.argv[2])
def alive(pid, kill=os.kill):
    try:
        kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
while alive(group, os.killpg):
    if not alive(parent):
        for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 0)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + wait
            while time.monotonic() < end and alive(group, os.killpg):
                time.sleep(0.5)
        break
    time.sleep(1)
"""


def _watch_over(pgid: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(pgid)], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


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


def latest_state(run: RunLayout) -> Optional[Path]:
    states = [p for p in run.model.glob("*-state") if p.is_dir()] if run.model.is_dir() else []
    return max(states, key=lambda p: p.stat().st_mtime) if states else None
