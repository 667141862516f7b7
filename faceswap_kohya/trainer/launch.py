"""Run sd-scripts: the subprocess in its own process group with a watchdog (which stops it if the launcher
dies), its output logged and turned into live events, a stall limit, the whole group stopped on Ctrl-C, and
the run judged (failed also when the trainer exits 0 without a LoRA; a full disk named as such, and a LoRA file
it cut short never listed). A full disk stops the log (TrainLog), never the reading of the trainer's output."""

from __future__ import annotations

import math
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from faceswap_kohya.config.torchenv import with_torch_env
from faceswap_kohya.errors import free_bytes, is_no_space
from faceswap_kohya.runs.artifacts import checkpoints, final_lora, whole_safetensors
from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.trainer import render
from faceswap_kohya.trainer.progress import NO_SPACE, Diagnosis, Event, LineSplitter, TrainerOutput, diagnose, no_space


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
    checkpoints: list = field(default_factory=list)  # runs.artifacts.Checkpoint of each LoRA, in training order

    @property
    def ok(self) -> bool:
        return self.diagnosis is None and not self.interrupted


STALL_MARK = "faceswap-kohya: the trainer stalled"


def trainer_env() -> dict:
    """The environment the trainer runs in: this one, unbuffered UTF-8 output, wide lines, no PYTHONPATH, and
    PyTorch's huge-page allocation (config/torchenv.py)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONIOENCODING="utf-8",
               COLUMNS="200")  # rich wraps log lines at the terminal width
    env.pop("PYTHONPATH", None)
    return dict(with_torch_env(env))


def launch(argv: list[str], cwd: Path, log_path: Path, on_event: Callable[[Event], None] = lambda e: None,
           on_line: Callable[[str], None] = lambda s: None, on_start: Callable[[int], None] = lambda pid: None,
           stall_seconds: Optional[float] = None, stop_grace: float = 20.0) -> tuple[int, bool]:
    """Run the trainer in its own process group, log everything, report events.

    Ctrl-C / SIGTERM stop the whole group (SIGINT, then after `stop_grace` s SIGTERM, then SIGKILL) and
    leave no orphans. A trainer that prints nothing for `stall_seconds` is stopped the same way, and the
    log ends with a line saying so and quoting its last line (see `diagnose`). Returns (exit code, interrupted).

    While the trainer runs, this process sleeps in `poll` until the trainer prints, ends or the stall time
    is up: its own CPU time stays a small fraction of a percent of the trainer's (benchmarks/bench_train_wrapper.py).
    """
    interrupted = False
    with TrainLog(log_path) as log:
        log.write(("$ " + render.shell_command(argv, cwd) + "\n").encode())
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=trainer_env(), start_new_session=True, bufsize=0, preexec_fn=sigint_default())
        watchdog, done = _watch_over(proc.pid)
        try:
            on_start(proc.pid)

            def stop(signum, _frame):
                nonlocal interrupted
                interrupted = True
                _stop_group(proc, stop_grace)

            in_main = threading.current_thread() is threading.main_thread()  # signal handlers only work there
            old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
            try:
                stalled = _pump(proc, log, on_event, on_line, stall_seconds)
                if stalled is not None and not interrupted:
                    minutes = f"{stall_seconds / 60:g} min" if stall_seconds >= 60 else f"{stall_seconds:g} s"
                    log.write(f"\n{STALL_MARK}: no output for {minutes} (kohya.stall_minutes); stopped it. "
                              f"Its last line: {stalled}\n".encode())
                    _stop_group(proc, stop_grace)
                    _drain(proc, log)
                code = proc.wait()
            finally:
                for s, handler in old.items():
                    signal.signal(s, handler)
                if proc.poll() is None:
                    _stop_group(proc, stop_grace)
        finally:
            _reap_group(proc.pid)
            _release(watchdog, done)
            proc.stdout.close()
    return code, interrupted


class TrainLog:
    """train.log, opened for appending: a full disk stops the logging, never the training's reading (the trainer
    would block on a full pipe) nor the launcher. `full` says whether it happened."""

    def __init__(self, path: Path):
        self.path, self.full = Path(path), False
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            if not is_no_space(e):
                raise
            self._fd, self.full = -1, True

    def write(self, data: bytes) -> None:
        if self.full:
            return
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as e:
            if not is_no_space(e):
                raise
            self.full = True

    def flush(self) -> None:  # every write goes straight to the file
        pass

    def __enter__(self) -> "TrainLog":
        return self

    def __exit__(self, *exc) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _pump(proc: subprocess.Popen, log, on_event, on_line, stall_seconds: Optional[float]) -> Optional[str]:
    """Copy the trainer's output to the log and the callbacks until it ends; returns its last line when it
    printed nothing for `stall_seconds` (None when it ended by itself).

    Sleeps in `poll` on the pipe and on a pidfd of the trainer (readable once it has ended: a child it left
    behind may hold the pipe open), with the time left until a stall as the only timeout: no busy waiting."""
    fd = proc.stdout.fileno()
    splitter, output = LineSplitter(), TrainerOutput()
    last_line, last_output = "(no output at all)", time.monotonic()
    try:
        ended = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (not Linux, an old kernel): look at the trainer each second
        ended = None
    poller = select.poll()
    for watched in (fd, ended):
        if watched is not None:
            poller.register(watched, select.POLLIN)

    def handle(line: str) -> None:
        nonlocal last_line
        last_line = line
        on_line(line)
        for event in output.feed(line):
            on_event(event)

    try:
        while True:
            wait = None if not stall_seconds else max(0.0, last_output + stall_seconds - time.monotonic())
            if ended is None:
                wait = 1.0 if wait is None else min(wait, 1.0)
            ready = {f for f, _ in poller.poll(None if wait is None else math.ceil(wait * 1000))}
            if fd in ready:
                chunk = os.read(fd, 65536)  # whatever is there, without waiting for more
                if not chunk:
                    break
                last_output = time.monotonic()
                log.write(chunk)
                log.flush()  # one write per chunk read: the log is as far as the trainer
                for line in splitter.feed(chunk.decode("utf-8", "replace")):
                    handle(line)
                continue
            if ready or (ended is None and proc.poll() is not None):  # it ended, all it printed is read
                break
            if stall_seconds and time.monotonic() - last_output >= stall_seconds:
                for event in output.flush():
                    on_event(event)
                return splitter.pending().strip() or last_line.strip()
    finally:
        if ended is not None:
            os.close(ended)
    for line in splitter.flush():
        handle(line)
    for event in output.flush():
        on_event(event)
    return None


def _drain(proc: subprocess.Popen, log) -> None:
    """What a stopped trainer printed while it stopped, into the log."""
    fd, poller = proc.stdout.fileno(), select.poll()
    poller.register(fd, select.POLLIN)
    while poller.poll(0) and (chunk := os.read(fd, 65536)):
        log.write(chunk)


# Stops the trainer's group when the process that launched it dies without cleaning up (SIGKILL, OOM killer):
# argv = [the read end of a pipe whose write end only the launcher holds, the trainer's group]. It sleeps in
# `read` until the launcher writes a byte (done: it ends) or dies (end of file: it stops the group).
# It ignores Ctrl-C (the launcher handles that).
_WATCHDOG = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
fd, group = int(sys.argv[1]), int(sys.argv[2])
if os.read(fd, 1):
    sys.exit()
for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 0)):
    try:
        os.killpg(group, sig)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            time.sleep(0.5)
            os.killpg(group, 0)
    except ProcessLookupError:
        break
"""


def _watch_over(pgid: int) -> tuple[subprocess.Popen, int]:
    """The watchdog of group `pgid` and the pipe's write end that keeps it waiting."""
    read_end, write_end = os.pipe()
    try:
        watchdog = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCHDOG, str(read_end), str(pgid)],
                                    pass_fds=(read_end,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return watchdog, write_end


def _release(watchdog: subprocess.Popen, write_end: int) -> None:
    """Tell the watchdog the group is dealt with, and reap it."""
    try:
        os.write(write_end, b"x")
    except OSError:
        pass
    os.close(write_end)
    try:
        watchdog.wait(timeout=5)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


def sigint_default():
    """For `Popen(preexec_fn=)`: where this process was started with SIGINT ignored (a shell's `command &`), the child
    would inherit that and never stop on the SIGINT that stops it gently; give it SIGINT's default. None otherwise."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return None
    return lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGINT to the whole group (the trainer may save), then SIGTERM, then SIGKILL, until no process of it runs."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, min(10.0, grace)), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(proc.pid):
                return
            time.sleep(0.2)


def group_members(pgid: int) -> Optional[list[int]]:
    """Live (not zombie) processes of a process group, from /proc; None where there is no /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        return None
    members = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies, which a container's init may never reap, don't).
    /proc is read only while the group has a process at all."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    members = group_members(pgid)
    return True if members is None else bool(members)


def _reap_group(pgid: int) -> None:
    """Children left behind by the trainer (dataloader workers, accelerate) are stopped too."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(pgid):
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5.0
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)


FULL_DISK_BYTES = 8 * 1024**2  # a trainer that fails with less than this free in its run folder ran out of space


def judge(run: RunLayout, name: str, code: int, interrupted: bool) -> RunResult:
    """A run failed if it exited non-zero, said "No data found", or wrote no final LoRA.

    A LoRA file cut short (the disk filled up while the trainer saved it) is never a result: it is not listed,
    and after a failed training it is removed. A failure on a full disk names the folder (`no_space`)."""
    found = checkpoints(run, name)
    torn = [c.path for c in found if not whole_safetensors(c.path)]
    found = [c for c in found if c.path not in torn]
    final = final_lora(run, name)
    final = final if final is not None and final not in torn else None
    log_text = run.log.read_text(encoding="utf-8", errors="replace") if run.log.is_file() else ""
    result = RunResult(run, code, [c.path for c in found], final, interrupted=interrupted, checkpoints=found)
    if interrupted:
        return result
    if code != 0 or result.final is None or re.search(r"No data found|avr_loss=nan", log_text):
        d = diagnose(log_text, returncode=code)
        free = free_bytes(run.root)
        full = d.reason == NO_SPACE or (d.reason == "the trainer failed" and free is not None and free < FULL_DISK_BYTES)
        removed = []
        for path in torn:  # half-written: useless, and it holds the space the user needs back
            try:
                path.unlink()
                removed.append(path.relative_to(run.root))
            except OSError:
                pass
        if full:
            d = no_space(run.root, d.lines, removed)
        elif code == 0 and d.reason == "the trainer failed":
            d = Diagnosis("the trainer exited without writing a LoRA", "read train.log in the run folder", d.lines)
        result.diagnosis = d
    return result
