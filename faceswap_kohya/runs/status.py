"""A run folder tells its own story: `events.jsonl` (one event a line, as it happens) and `status.json`.

Any process can list and follow runs from these two files alone. A status left `preparing`/`training`/
`evaluating` by a process that no longer lives reads as `interrupted`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

from faceswap_kohya import events as ev

STATUS = "status.json"
EVENTS = "events.jsonl"
ACTIVE = ("preparing", "training", "evaluating")
STATES = ACTIVE + ("finished", "failed", "interrupted")


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def pid_alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class RunRecorder:
    """Appends every event to events.jsonl and keeps status.json up to date; wraps a job's callback.

    Safe to call from several threads (the trainer's output and the live likeness of its samples): one event
    at a time is recorded and passed on. `status["sample_likeness"]` is the latest `SampleLikeness` (its fields)."""

    def __init__(self, root: Path, name: str = "", kind: str = "train"):
        self.root = Path(root)
        self.status = {"state": "preparing", "kind": kind, "name": name, "pid": os.getpid(), "trainer_pid": None,
                       "started": _now(), "ended": None, "step": 0, "total": None, "loss": None, "val_loss": None,
                       "loras": [], "error": None, "sample_likeness": None}
        self._lock = threading.RLock()
        self._file = open(self.root / EVENTS, "a", encoding="utf-8")
        self._last_write = 0.0
        self.write_status()

    def write_status(self, force: bool = True) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last_write < 1.0:
                return
            tmp = self.root / (STATUS + ".tmp")
            tmp.write_text(json.dumps(self.status, indent=1), encoding="utf-8")
            os.replace(tmp, self.root / STATUS)
            self._last_write = now

    def set(self, **changes) -> None:
        with self._lock:
            self.status.update(changes)
            if changes.get("state") in ("finished", "failed", "interrupted"):
                self.status["ended"] = _now()
            self.write_status()

    def record(self, event: ev.Event) -> None:
        with self._lock:
            self._file.write(json.dumps(ev.to_dict(event)) + "\n")
            self._file.flush()
            s = self.status
            if isinstance(event, ev.Step) and event.unit == "step":
                s.update(step=event.step, total=event.total, loss=event.loss if event.loss is not None else s["loss"])
                self.write_status(force=event.step == event.total)
            elif isinstance(event, ev.ValidationLoss):
                self.set(val_loss=event.loss)
            elif isinstance(event, ev.SampleLikeness):
                self.set(sample_likeness=dataclasses.asdict(event))
            elif isinstance(event, ev.CheckpointWritten):
                self.set(loras=s["loras"] + [event.path])
            elif isinstance(event, ev.Error):
                self.set(error=event.message)

    def wrap(self, on_event: ev.OnEvent) -> ev.OnEvent:
        def both(event: ev.Event) -> None:
            with self._lock:  # events from two threads reach the callback one at a time, in the order recorded
                self.record(event)
                on_event(event)

        return both

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_status(root: Path) -> Optional[dict]:
    """The run's status, with a dead writer's unfinished state read as `interrupted`; None if there is none."""
    try:
        status = json.loads((Path(root) / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, or torn mid-write
        return None
    if not isinstance(status, dict):
        return None
    pid = status.get("pid")
    if status.get("state") in ACTIVE and not pid_alive(pid if isinstance(pid, int) else None):
        status["state"] = "interrupted"
    return status


def read_events(root: Path, start: int = 0) -> tuple[list[ev.Event], int]:
    """Events from byte offset `start` on, and the offset to continue from (only whole lines are read)."""
    path = Path(root) / EVENTS
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return [], start
    end = data.rfind(b"\n") + 1
    found = []
    for line in data[:end].decode("utf-8", "replace").splitlines():
        try:  # a line torn mid-write (or not an event) is skipped
            found.append(ev.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return found, start + end


def append_event(root: Path, event: ev.Event) -> None:
    """Add one event to a run's events.jsonl after its recorder closed (e.g. a later evaluation's failure)."""
    with open(Path(root) / EVENTS, "ab+") as f:
        torn = False
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"  # a line cut mid-write stays a line of its own (and is skipped)
        f.write((b"\n" if torn else b"") + json.dumps(ev.to_dict(event)).encode() + b"\n")


def list_runs(output_dir: Path) -> Iterator[tuple[Path, dict]]:
    """Every run folder under `output_dir` (`<name>/<timestamp>/`) that has a status, newest first."""
    found = []
    for status in Path(output_dir).expanduser().glob(f"*/*/{STATUS}"):
        s = read_status(status.parent)
        if s is not None:
            found.append((status.parent, s))
    found.sort(key=lambda item: item[1].get("started") or "", reverse=True)
    return iter(found)
