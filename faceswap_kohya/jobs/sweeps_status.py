"""The sweep-status job: every sweep and batch under an output folder (`<output>/sweeps/*`, `<output>/batches/*`),
each one's leaderboard with its trials' live progress (read from their run folders), whether its process still
runs, and Stop (SIGINT to the `faceswap-kohya sweep` process, as Ctrl-C). Plain values in, data out; it never prints.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from faceswap_kohya.errors import UserError
from faceswap_kohya.events import Message, OnEvent, ignore
from faceswap_kohya.runs.status import ACTIVE, list_runs, pid_alive
from faceswap_kohya.sweeps import leaderboard
from faceswap_kohya.sweeps.plan import read_plan

FINAL = ("finished", "failed", "interrupted")
KINDS = ("sweeps", "batches")


def sweep_folders(output: Path) -> list[Path]:
    """Every sweep or batch folder (it holds sweep.json) under `output`, newest first."""
    found = [p.parent for kind in KINDS for p in (Path(output) / kind).glob("*/sweep.json")]
    return sorted(found, key=lambda p: (p / "sweep.json").stat().st_mtime, reverse=True)


def board(folder: Path) -> dict:
    """The sweep's leaderboard document (an empty one before its first trial ended)."""
    return leaderboard.read(folder) or {"kind": "?", "name": Path(folder).name, "rows": [], "counts": {}, "winner": None,
                                        "basis": "identity", "basis_name": leaderboard.BASIS_NAME["identity"]}


def sweep_pid(folder: Path) -> Optional[int]:
    return (read_plan(folder) or {}).get("pid")


def is_running(folder: Path, doc: Optional[dict] = None) -> bool:
    """The sweep's process (recorded in sweep.json) is alive and some trial has not ended."""
    doc = doc if doc is not None else board(folder)
    return pid_alive(sweep_pid(folder)) and any(r.get("state") not in FINAL for r in doc["rows"])


def live(trial_folder: Path) -> str:
    """What a trial not yet ended is doing, from its newest run folder's status ("" when nothing runs)."""
    for _, status in list_runs(trial_folder):
        state = status.get("state")
        if state not in ACTIVE:
            return ""
        step = f" step {status.get('step') or 0}/{status['total']}" if status.get("total") else ""
        loss = f", loss {status['loss']:.4f}" if isinstance(status.get("loss"), (int, float)) else ""
        return f"{state}{step}{loss}"
    return ""


@dataclass
class SweepStatus:
    folder: Path
    board: dict  # the leaderboard document; each row has "state" (running where live) and "progress"
    running: bool

    @property
    def counts(self) -> str:
        return ", ".join(f"{n} {s}" for s, n in self.board.get("counts", {}).items())

    @property
    def kind(self) -> str:
        return self.board.get("kind", "sweep")


def sweep_status(folder: Path) -> SweepStatus:
    """The sweep's leaderboard, each trial's state and progress (live for trials still going), and whether it runs."""
    folder = Path(folder)
    doc = board(folder)
    for r in doc["rows"]:
        state = r.get("state") or "waiting"
        progress = live(Path(r["folder"])) if state not in FINAL else (r.get("error") or r.get("why") or "")
        r["state"] = "running" if state not in FINAL and progress else state
        r["progress"] = progress
    return SweepStatus(folder, doc, is_running(folder, board(folder)))


def check_sweep_folder(value: str, output: Path) -> Path:
    """`value` as a sweep folder under `output`; UserError otherwise."""
    if not value:
        raise UserError(f"no sweep chosen: start one with `faceswap-kohya sweep PRESET key=v1,v2 output.dir={output}`")
    path = Path(value)
    try:
        inside = path.resolve().is_relative_to(Path(output).resolve())
    except OSError:
        inside = False
    if not (path / "sweep.json").is_file() or not inside:
        raise UserError(f"{value}: not a sweep folder of this app's output folder {output}")
    return path


def stop_sweep(folder: Path, on_event: OnEvent = ignore) -> str:
    """SIGINT to the sweep's process, as Ctrl-C: it cancels every trial and stops their trainers."""
    folder = Path(folder)
    if not is_running(folder):
        raise UserError(f"{folder.name}: not running")
    pid = sweep_pid(folder)
    os.kill(pid, signal.SIGINT)
    message = f"stopping {folder.name} (SIGINT to process {pid}: every trial is cancelled, each trainer stopped)"
    on_event(Message(message))
    return message
