"""Training in its own process: start `python -m faceswap_kohya train ...` detached, find its run folder, follow it
from `events.jsonl` / `status.json`, stop it as Ctrl-C does. Closing the browser or the app leaves it running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from faceswap_kohya import events as ev
from faceswap_kohya.errors import SPACE_FIELD_ENV, UserError
from faceswap_kohya.runs.artifacts import checkpoints
from faceswap_kohya.runs.artifacts import samples as sample_images
from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.runs.read import RunRecord
from faceswap_kohya.runs.status import ACTIVE, list_runs, pid_alive, read_status
from faceswap_kohya.trainer.launch import sigint_default
from faceswap_kohya.web.common import SPACE_FIELD, Workspace, event_lines, timestamp


# ---------------------------------------------------------------- starting
@dataclass
class Launch:
    proc: subprocess.Popen
    log: Path
    argv: list[str]


def spawn_cli(args: list[str], ws: Workspace) -> Launch:
    """`python -m faceswap_kohya ARGS` in a new session (so it outlives the app), its output in a launch log."""
    ws.make()
    log = ws.launches / f"{timestamp()}-{args[0]}-{os.getpid()}-{time.monotonic_ns() % 10**6}.log"
    argv = [sys.executable, "-m", "faceswap_kohya", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{SPACE_FIELD_ENV: SPACE_FIELD})  # a full disk names the app's folder
    with open(log, "wb") as out:
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, preexec_fn=sigint_default())
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()  # no zombie while the app lives
    return Launch(proc, log, argv)


def launch_error(launch: Launch) -> str:
    """The CLI's own `error: ...` line (or its last lines) for a process that ended before making a run folder."""
    text = launch.log.read_text(encoding="utf-8", errors="replace") if launch.log.is_file() else ""
    lines = [line for line in text.splitlines()[1:] if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if errors:
        start = lines.index(errors[-1])
        return "\n".join(lines[start:start + 12])
    return "error: the command ended with code {} before starting:\n{}".format(launch.proc.returncode, "\n".join(lines[-8:]))


def wait_for_run(launch: Launch, ws: Workspace, timeout: float = 300.0) -> Path:
    """The run folder the launched process writes (its status.json names its pid); UserError if it ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for root, status in list_runs(ws.output):
            if status.get("pid") == launch.proc.pid:
                return root
        if launch.proc.poll() is not None:
            for root, status in list_runs(ws.output):  # it may have finished between the two looks
                if status.get("pid") == launch.proc.pid:
                    return root
            raise UserError(launch_error(launch).removeprefix("error: "))
        time.sleep(0.3)
    raise UserError(f"no run folder appeared within {timeout:.0f} s; see {launch.log}")


def stop_run(root: Path) -> str:
    """SIGINT to the run's process, as Ctrl-C: it stops the trainer's process group and keeps what was saved."""
    status = read_status(root)
    if status is None:
        raise UserError(f"{root}: no status.json: not a run folder")
    if status.get("state") not in ACTIVE:
        raise UserError(f"{root.name}: not running (state {status.get('state')})")
    pid = status.get("pid")
    if not pid_alive(pid):
        raise UserError(f"{root.name}: its process {pid} is gone")
    os.kill(pid, signal.SIGINT)
    return f"stopping {root.name} (SIGINT to process {pid}; the trainer saves what it has and stops)"


def running_training(ws: Workspace) -> Optional[Path]:
    """The newest training run still going (a reloaded page re-attaches to it)."""
    for root, status in list_runs(ws.output):
        if status.get("kind") == "train" and status.get("state") in ACTIVE:
            return root
    return None


# ---------------------------------------------------------------- following
@dataclass
class RunView(RunRecord):
    """A run folder's story so far (runs.read's record, read incrementally), with the lines a page shows."""

    lines: deque = field(default_factory=lambda: deque(maxlen=300))

    def add(self, event: ev.Event) -> None:
        super().add(event)
        self.lines.extend(event_lines(event))
        if isinstance(event, ev.CheckpointWritten):
            self.lines.append(f"checkpoint: {event.path}")
        elif isinstance(event, ev.SampleLikeness):
            self.lines.append(event.text)

    def headline(self) -> str:
        s, st = self.step, self.status
        parts = [f"**{self.root.parent.name}/{self.root.name}**: {self.status.get('state') or 'starting'}"]
        if s is not None:
            parts.append(f"step {s.step}/{s.total}")
            if s.eta and self.active:
                parts.append(f"ETA {s.eta}")
            if s.sec_per_it:
                parts.append(f"{s.sec_per_it:.1f} s/step")
        elif self.active and self.stage and self.stage != self.state:
            parts.append(self.stage)
        if self.epoch:
            parts.append(f"epoch {self.epoch.epoch}/{self.epoch.total}")
        if st.get("loss") is not None:
            parts.append(f"loss {st['loss']:.4f}")
        if self.val_losses:
            parts.append(f"validation loss {list(self.val_losses.values())[-1]:.4f}")
        if (sample := self.sample_likeness) is not None:
            parts.append(likeness_words(sample))
        text = " · ".join(parts)
        if self.summary and self.state == "finished":
            text += f"\n\n{self.summary}"
        if st.get("error"):
            text += f"\n\nerror: {st['error']}"
        return text


def likeness_words(sample: ev.SampleLikeness) -> str:
    """The latest sample's likeness in a few words, for the headline."""
    if sample.identity is None:
        return "latest sample: no face" if sample.note.startswith("no face") else "latest sample: not scored"
    held = f", held-out {sample.held_out:.2f}" if sample.held_out is not None else ""
    return f"sample likeness {sample.identity:.2f}{held}"


_views: dict[Path, RunView] = {}
_views_lock = threading.Lock()


def view_of(root: Path) -> RunView:
    """The run's view, kept between calls so each refresh reads only new events."""
    root = Path(root).absolute()
    with _views_lock:
        view = _views.setdefault(root, RunView(root))
        return view.refresh()


def samples(root: Path) -> list[str]:
    """The trainer's sample images so far, oldest first."""
    return [str(p) for p in sample_images(root)]


def loras(root: Path) -> list[str]:
    """The run's LoRA files so far, in training order (the final one last)."""
    return [str(c.path) for c in checkpoints(root)]


ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")  # CSI, OSC and 2-byte escapes
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
BAR = re.compile(r"^(?P<name>[^|:]{0,60}?):?\s*\d{1,3}%\|")  # a tqdm bar: "steps:  50%|## | 2/4 ..."


def clean_lines(text: str) -> list[str]:
    """Terminal output as a reader sees it: escape codes (cursor moves, colours) and control characters gone,
    each carriage-return redraw reduced to its last state, and each progress bar (tqdm) kept only in its latest
    state, where it first appeared."""
    out: list[str] = []
    bars: dict[str, int] = {}
    for raw in ANSI.sub("", text).split("\n"):
        line = CONTROL.sub("", raw.rstrip("\r").split("\r")[-1]).rstrip()
        if not line.strip():
            continue
        m = BAR.match(line)
        if m:
            key = m.group("name").strip()
            if key in bars:
                out[bars[key]] = line
                continue
            bars[key] = len(out)
        out.append(line)
    return out


def log_tail(root: Path, lines: int = 30, max_bytes: int = 32768) -> str:
    """The last lines of train.log as a reader sees them (`clean_lines`: no escape codes, one line per bar)."""
    log = RunLayout(Path(root)).log
    if not log.is_file():
        return ""
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - max_bytes))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(clean_lines(text)[-lines:])
