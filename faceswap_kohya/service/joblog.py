"""A service job's own folder: its uploads, its run folders (trainings), its images, and `events.jsonl` where the
service notes what it did to the job (queued, started, resumed after a restart, canceled) in the run folders'
event format, so one stream can merge both by time."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from faceswap_kohya import events as ev
from faceswap_kohya.runs.status import EVENTS, append_event, list_runs


def runs_dir(folder: Path) -> Path:
    return Path(folder) / "runs"


def photos_dir(folder: Path) -> Path:
    return Path(folder) / "photos"


def images_dir(folder: Path) -> Path:
    return Path(folder) / "images"


def note(folder: Path, event: ev.Event) -> None:
    """Append one event to the job's own events.jsonl (the run folders' format, written the same way)."""
    append_event(Path(folder), event)


def job_runs(folder: Path) -> list[Path]:
    """The job's run folders, oldest first (a restart adds one: the resumed or restarted run)."""
    return [run for run, _ in sorted(list_runs(runs_dir(folder)), key=lambda item: item[1].get("started") or "")]


def latest_run(folder: Path) -> Optional[Path]:
    runs = job_runs(folder)
    return runs[-1] if runs else None


def event_files(folder: Path) -> list[Path]:
    """Every events.jsonl that belongs to the job: its own, then each run's."""
    return [Path(folder) / EVENTS] + [run / EVENTS for run in job_runs(folder)]
