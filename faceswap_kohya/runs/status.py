"""A run folder tells its own story: `events.jsonl` (one event a line, as it happens) and `status.json`.

Any process can list and follow runs from these two files alone. A status left `preparing`/`training`/
`evaluating` by a process that no longer lives reads as `interrupted`, unless the process that saw it die recorded
why (`fail_dead_run`: a WorkerDied event, the run `failed`).

A full disk can't tear them or leave a run stuck at `training`: status.json is replaced whole (a small file
written beside it, then renamed), an event line is appended whole or not at all (a partial write is cut back),
and while the recorder is open the run folder holds a small reserve file (`.space-reserve`), given up only to
write how the run ended when the disk is full: a full disk mid-run drops the writes (whole), never the last one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import json
import os
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

from faceswap_kohya import events as ev
from faceswap_kohya.errors import is_no_space

STATUS = "status.json"
EVENTS = "events.jsonl"
ACTIVE = ("preparing", "training", "evaluating")
ENDED = ("finished", "failed", "interrupted")
STATES = ACTIVE + ENDED
RESERVE = ".space-reserve"  # given up to make room for the last status write when the disk fills up
RESERVE_BYTES = 1024**2


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
    at a time is recorded and passed on. `status["sample_likeness"]` is the latest `SampleLikeness` (its fields).
    `disk_full` is set once a write found the disk full (the reserve was given up to go on)."""

    def __init__(self, root: Path, name: str = "", kind: str = "train"):
        self.root = Path(root)
        self.status = {"state": "preparing", "kind": kind, "name": name, "pid": os.getpid(), "trainer_pid": None,
                       "started": _now(), "ended": None, "step": 0, "total": None, "loss": None, "val_loss": None,
                       "loras": [], "error": None, "sample_likeness": None}
        self._lock = threading.RLock()
        self.disk_full = False
        self._reserve = self.root / RESERVE
        self._hold_reserve()
        self._fd = os.open(self.root / EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._last_write = 0.0
        self.write_status()

    def _hold_reserve(self) -> None:
        try:
            with open(self._reserve, "wb") as f:
                f.write(bytes(RESERVE_BYTES))  # written, not sparse: the blocks are really taken
                f.flush()
                os.fsync(f.fileno())
        except OSError:  # no room even for that: the checks before a run say so
            self._reserve.unlink(missing_ok=True)

    def _retry_on_full_disk(self, write) -> bool:
        """`write()`; False when the disk was full. Once the run has ended (its last state is being written), the
        reserve is given up to make room and it is tried again; before, the write is left out (status.json stays
        as it was, whole) and the reserve is kept for the end."""
        for last_try in (False, True):
            try:
                write()
                return True
            except OSError as e:
                if not is_no_space(e):
                    raise
                self.disk_full = True
                if last_try or self.status["state"] not in ENDED or not self._reserve.exists():
                    return False
                self._reserve.unlink()
        return False

    def write_status(self, force: bool = True) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last_write < 1.0:
                return
            tmp = self.root / (STATUS + ".tmp")
            data = json.dumps(self.status, indent=1).encode("utf-8")

            def write():
                try:
                    with open(tmp, "wb") as f:
                        f.write(data)
                    os.replace(tmp, self.root / STATUS)
                except OSError:
                    tmp.unlink(missing_ok=True)  # the old status.json stays as it was, whole
                    raise

            self._retry_on_full_disk(write)
            self._last_write = now

    def _append(self, line: bytes) -> None:
        """One whole line at the end of events.jsonl, or nothing (a partial write is cut back off)."""
        size = os.fstat(self._fd).st_size
        try:
            if os.write(self._fd, line) != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.root / EVENTS))
        except OSError:
            os.ftruncate(self._fd, size)
            raise

    def set(self, **changes) -> None:
        with self._lock:
            self.status.update(changes)
            if changes.get("state") in ENDED:
                self.status["ended"] = _now()
            self.write_status()

    def record(self, event: ev.Event) -> None:
        with self._lock:
            line = (json.dumps(ev.to_dict(event)) + "\n").encode("utf-8")
            self._retry_on_full_disk(lambda: self._append(line))
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
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._reserve.unlink(missing_ok=True)


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


def read_json_lines(path: Path, start: int = 0) -> tuple[list[dict], int]:
    """The whole JSON lines of an events.jsonl from byte offset `start` on, and the offset to continue from; a
    line not yet ended is left for the next read, a torn or foreign one is skipped."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return [], start
    end = data.rfind(b"\n") + 1
    found = []
    for line in data[:end].decode("utf-8", "replace").splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found, start + end


def read_events(root: Path, start: int = 0) -> tuple[list[ev.Event], int]:
    """Events from byte offset `start` on, and the offset to continue from (only whole lines are read)."""
    lines, offset = read_json_lines(Path(root) / EVENTS, start)
    found = []
    for line in lines:
        try:  # a line that is not an event is skipped
            found.append(ev.from_dict(line))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return found, offset


def append_event(root: Path, event: ev.Event) -> None:
    """Add one event to a run's events.jsonl after its recorder closed (e.g. a later evaluation's failure)."""
    with open(Path(root) / EVENTS, "ab+") as f:
        torn = False
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"  # a line cut mid-write stays a line of its own (and is skipped)
        f.write((b"\n" if torn else b"") + json.dumps(ev.to_dict(event)).encode() + b"\n")


def fail_dead_run(root: Path, event: ev.WorkerDied) -> bool:
    """A run whose writer died mid-run (status left preparing/training/evaluating, its pid gone), told by the process
    that saw it die: `event` is added to events.jsonl and status.json reads `failed` with its message (replaced whole).
    False, changing nothing, when the run had ended, its writer still lives, or its status can't be read."""
    root = Path(root)
    try:
        status = json.loads((root / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    pid = status.get("pid") if isinstance(status, dict) else None
    if not isinstance(status, dict) or status.get("state") not in ACTIVE or pid_alive(pid if isinstance(pid, int) else None):
        return False
    append_event(root, event)
    status.update(state="failed", error=event.message, ended=_now())
    tmp = root / (STATUS + ".tmp")
    tmp.write_text(json.dumps(status, indent=1), encoding="utf-8")
    os.replace(tmp, root / STATUS)
    return True


UNREADABLE = "unknown"  # the state of a run whose status.json can't be read (cut mid-write)


def unreadable_status(root: Path) -> dict:
    """What a run with a torn status.json is listed as: state `unknown`, saying why."""
    return {"state": UNREADABLE, "kind": "", "name": "", "pid": None, "started": "", "step": 0, "total": None,
            "loss": None, "loras": [], "error": f"{STATUS} can't be read (cut mid-write?): see events.jsonl and train.log in {root}"}


def list_runs(output_dir: Path) -> Iterator[tuple[Path, dict]]:
    """Every run folder under `output_dir` (`<name>/<timestamp>/`) that has a status, newest first; one whose
    status.json can't be read is listed as `unknown` (unreadable_status), last."""
    found = []
    for status in Path(output_dir).expanduser().glob(f"*/*/{STATUS}"):
        s = read_status(status.parent)
        found.append((status.parent, s if s is not None else unreadable_status(status.parent)))
    found.sort(key=lambda item: item[1].get("started") or "", reverse=True)
    return iter(found)
