"""What every page shares: the workspace folders, safe upload names, run lists, and in-app jobs that stream events.

No gradio here: the pages turn these plain values into components.
"""

from __future__ import annotations

import datetime as dt
import queue
import re
import shutil
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from faceswap_kohya import events as ev
from faceswap_kohya.config.paths import new_folder
from faceswap_kohya.errors import UserError
from faceswap_kohya.runs.artifacts import final_lora
from faceswap_kohya.runs.status import list_runs

# What a full disk tells the app's user to move: the pages have no folder field; every run and evaluation goes under
# the folder the app was started with (given to the jobs the app runs, and to the CLI it starts, as SPACE_FIELD_ENV).
SPACE_FIELD = "the app's output folder (faceswap-kohya ui --output)"

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Workspace:
    """The one folder the app reads and writes: run folders `<output>/<name>/<timestamp>/`, uploads and the app's
    own scratch space. The web server serves files from nowhere else."""

    output: Path

    @property
    def uploads(self) -> Path:
        return self.output / ".uploads"

    @property
    def scratch(self) -> Path:
        return self.output / ".ui"

    @property
    def launches(self) -> Path:
        """Output of the CLI processes the app started (training runs in its own process)."""
        return self.scratch / "launch"

    def make(self) -> "Workspace":
        for folder in (self.output, self.uploads, self.launches):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def check_output_dir(path: Path) -> Path:
    """The workspace folder, absolute; refused when serving it would expose far more than runs and uploads."""
    out = Path(path).expanduser().absolute()
    if out == Path(out.anchor) or out in (Path.home(), *Path.home().parents):
        raise UserError(f"--output {out}: the app serves every file under this folder; use a folder of its own "
                        "(e.g. ./output)")
    return out


# ---------------------------------------------------------------- uploads
def safe_name(name: str, default: str = "file") -> str:
    """A plain file name for an uploaded file: no folders (`../x.jpg` → `x.jpg`), no leading dots, no odd characters."""
    base = re.split(r"[\\/]", str(name))[-1]
    base = unicodedata.normalize("NFKC", base)
    base = re.sub(r"[^\w .()+-]", "_", base).strip().lstrip(".").strip()
    return base[:120] or default


def new_upload_folder(ws: Workspace, kind: str) -> Path:
    return new_folder(ws.uploads / kind, "upload folder")


def save_upload(src: Path, folder: Path, name: Optional[str] = None) -> Path:
    """Copy one uploaded file into `folder` under a safe name (never outside it, never over another file)."""
    folder = Path(folder).absolute()
    target_name = safe_name(name or Path(src).name)
    stem, suffix = Path(target_name).stem, Path(target_name).suffix
    target = folder / target_name
    n = 2
    while target.exists():
        target = folder / f"{stem}-{n}{suffix}"
        n += 1
    if target.resolve().parent != folder.resolve():
        raise UserError(f"upload {name or src}: refused (its name points outside the upload folder)")
    shutil.copyfile(src, target)
    return target


def save_photos(files: list, ws: Workspace) -> Path:
    """Uploaded photos (and their .txt captions) → a new folder under the workspace's uploads."""
    if not files:
        raise UserError("no photos: drop 5-10 photos of the person (JPEG, PNG, HEIC, WebP)")
    folder = new_upload_folder(ws, "photos")
    for f in files:
        path = Path(getattr(f, "name", f))
        if path.suffix.lower() in PHOTO_SUFFIXES | {".txt", ".caption"}:
            save_upload(path, folder)
    return folder


# ---------------------------------------------------------------- runs
def run_label(root: Path, status: dict) -> str:
    step = f" {status.get('step')}/{status['total']}" if status.get("total") else ""
    return f"{root.parent.name}/{root.name} · {status.get('kind', '?')} · {status.get('state', '?')}{step}"


def run_choices(ws: Workspace, kind: Optional[str] = None, with_lora: bool = False) -> list[tuple[str, str]]:
    """(label, path) of every run folder, newest first; optionally only one kind, or only runs with a final LoRA."""
    found = []
    for root, status in list_runs(ws.output):
        if kind and status.get("kind") != kind:
            continue
        if with_lora and not final_lora(root):
            continue
        found.append((run_label(root, status), str(root)))
    return found


def inside(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def run_dir(value: str, ws: Workspace) -> Path:
    """A run folder chosen in the page, checked to be one of the workspace's."""
    if not value:
        raise UserError("no run chosen: pick a run folder first (the Runs page lists them)")
    path = Path(value)
    if not path.is_dir() or not inside(path, ws.output):
        raise UserError(f"{value}: not a run folder of this app's output folder {ws.output}")
    return path


# ---------------------------------------------------------------- jobs inside the app
def error_text(e: BaseException) -> str:
    """The CLI's one line: `error: <UserError text>`; anything else with its type."""
    return f"error: {e}" if isinstance(e, UserError) else f"error: {type(e).__name__}: {e}"


def event_lines(event: ev.Event) -> list[str]:
    """The log lines a page shows for a message, a warning, an error or a failed evaluation; none for other events."""
    if isinstance(event, (ev.Message, ev.EvaluationFailed)):
        return event.text.splitlines()
    if isinstance(event, ev.Warning):
        return [f"warning: {event.text}"]
    if isinstance(event, ev.Error):
        return [f"error: {event.message}"]
    return []


@dataclass
class JobState:
    """What a job reported so far, as the pages show it."""

    name: str
    lines: list[str] = field(default_factory=list)
    step: Optional[ev.Step] = None
    images: list[str] = field(default_factory=list)
    done: bool = False
    error: str = ""
    result: object = None
    started: float = field(default_factory=time.monotonic)

    def add(self, event: ev.Event) -> None:
        self.lines.extend(event_lines(event))
        if isinstance(event, ev.Step):
            self.step = event
        elif isinstance(event, ev.ImageWritten):
            self.images.append(event.path)
        elif isinstance(event, ev.Finished):
            self.lines.append(event.summary)

    @property
    def progress(self) -> str:
        spent = f"{time.monotonic() - self.started:.0f} s"
        if self.error:
            return f"**{self.name}: failed** after {spent}\n\n{self.error}"
        if self.done:
            return f"**{self.name}: done** in {spent}"
        s = self.step
        if s is None:
            return f"**{self.name}…** {spent} (loading)"
        eta = f", about {s.eta} left" if s.eta and s.eta != "?" else ""
        return f"**{self.name}…** {s.unit} {s.step}/{s.total}{eta} ({spent})"

    @property
    def log(self) -> str:
        return "\n".join(self.lines[-200:] + ([self.error] if self.error else []))


_busy = threading.Lock()
_busy_with = {"name": ""}


def run_job(name: str, work: Callable[[ev.OnEvent], object], poll: float = 0.5) -> Iterator[JobState]:
    """Run `work(on_event)` in a thread (one in-app job at a time); yield the JobState as events come and at the end."""
    state = JobState(name)
    if not _busy.acquire(blocking=False):
        state.done, state.error = True, f"error: busy: {_busy_with['name']} is running; wait for it to finish"
        yield state
        return
    _busy_with["name"] = name
    events: queue.Queue = queue.Queue()

    def target():
        try:
            state.result = work(events.put)
        except BaseException as e:  # noqa: BLE001 - shown on the page, like the CLI's error line
            state.error = error_text(e)
        finally:
            try:
                from faceswap_kohya.diffusion.pipeline import free_memory

                free_memory()  # a pipeline loaded for this job goes back to the system
            except ImportError:
                pass
            _busy_with["name"] = ""
            _busy.release()
            events.put(None)

    threading.Thread(target=target, name=f"job-{name}", daemon=True).start()
    while True:
        try:
            item = events.get(timeout=poll)
        except queue.Empty:
            yield state
            continue
        if item is None:
            break
        state.add(item)
        while not events.empty():
            more = events.get()
            if more is None:
                events.put(None)
                break
            state.add(more)
        yield state
    state.done = True
    yield state


def timestamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")
