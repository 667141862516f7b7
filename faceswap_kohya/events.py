"""What a job reports while it works: small typed records, the same for the CLI, the web app and sweeps.

Every job takes `on_event(event)`; nothing in a job prints. `to_dict`/`from_dict` give the JSON form used
in a run folder's `events.jsonl`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Union


@dataclass(frozen=True)
class Message:
    """A line of information (what the CLI prints as is)."""

    text: str


@dataclass(frozen=True)
class Warning:  # noqa: A001 - the event's name is the word users see
    text: str


@dataclass(frozen=True)
class Error:
    """The one-line message a failed job ends with (the CLI's `error: ...`)."""

    message: str


@dataclass(frozen=True)
class StageStarted:
    stage: str  # preparing / training / evaluating / generating / swapping / ...


@dataclass(frozen=True)
class StageFinished:
    stage: str
    seconds: float


@dataclass(frozen=True)
class Step:
    """Step `step` of `total`; loss, lr (the scheduler's value at this step), ETA as the trainer shows it."""

    step: int
    total: int
    elapsed: str = ""
    eta: str = ""
    sec_per_it: Optional[float] = None
    loss: Optional[float] = None
    lr: Optional[float] = None
    unit: str = "step"  # "step" for training, "image" for generation


@dataclass(frozen=True)
class Epoch:
    epoch: int
    total: int


@dataclass(frozen=True)
class ValidationLoss:
    """sd-scripts' validation loss on the held-out photos (masked like the training loss), after training
    step `step` in `epoch`; `kind` "epoch" (after an epoch) or "step" (every N steps)."""

    step: Optional[int]
    loss: float
    epoch: Optional[int] = None
    kind: str = "epoch"


@dataclass(frozen=True)
class ImageWritten:
    path: str
    kind: str = "image"  # image / sample / grid / swap / contact_sheet / chart / report


@dataclass(frozen=True)
class SampleLikeness:
    """A sample image the trainer wrote while training (`image`, of `epoch` / after `step`), its main face scored
    against the person's photos: `identity` against the nearest training photo, `held_out` against the nearest
    held-out photo (None without held-out photos), both on the `embedder`'s scale (as `evaluate` scores them);
    `faces` the number of faces found. `note` says why there is no number (no face in the sample, scoring off)."""

    image: str
    epoch: Optional[int] = None
    step: Optional[int] = None
    identity: Optional[float] = None
    held_out: Optional[float] = None
    faces: int = 0
    embedder: str = ""
    note: str = ""

    @property
    def when(self) -> str:
        """"epoch 3, step 120", "step 500", or "" when neither is known."""
        parts = ([f"epoch {self.epoch}"] if self.epoch is not None else []) + ([f"step {self.step}"] if self.step is not None else [])
        return ", ".join(parts)

    @property
    def text(self) -> str:
        """The line people read."""
        name = self.image.replace("\\", "/").rsplit("/", 1)[-1]
        when = f" ({self.when})" if self.when else ""
        if self.identity is None:
            return f"{self.note or f'sample {name} not scored'}{when}"
        held = f", held-out photos {self.held_out:.2f}" if self.held_out is not None else ""
        faces = f"; {self.faces} faces, the largest scored" if self.faces > 1 else ""
        return f"sample likeness{when}: {self.identity:.2f} to your photos{held} ({self.embedder}{faces}; {name})"


@dataclass(frozen=True)
class CheckpointWritten:
    path: str


@dataclass(frozen=True)
class ModelSaved:
    """The trainer said `model saved.` (its last line on success)."""


@dataclass(frozen=True)
class Finished:
    summary: str
    paths: list = field(default_factory=list)


@dataclass(frozen=True)
class EvaluationFailed:
    """The evaluation after training failed (the training itself succeeded); `run` is the run folder to
    evaluate again."""

    message: str
    run: str = ""

    @property
    def text(self) -> str:
        """The lines people read: what failed and how to retry."""
        retry = f"; retry with: faceswap-kohya evaluate {self.run}" if self.run else ""
        return f"evaluation failed: {self.message}\n  (the training itself succeeded{retry})"


@dataclass(frozen=True)
class WorkerDied:
    """The process that ran the job and wrote its run folder (a Ray worker) died mid-run (SIGKILL, the OOM killer);
    recorded by the process that saw it die (the sweep's driver). `pid` is the dead worker's."""

    message: str
    pid: Optional[int] = None


@dataclass(frozen=True)
class TrialProgress:
    """Where one trial of a sweep or batch stands (sent when it changes): state is waiting, preparing, training,
    evaluating, finished, failed, interrupted or skipped (finished before); detail is a short line for people."""

    trial: str
    label: str
    state: str
    step: int = 0
    total: int = 0
    loss: Optional[float] = None
    detail: str = ""


Event = Union[Message, Warning, Error, StageStarted, StageFinished, Step, Epoch, ValidationLoss, ImageWritten,
              SampleLikeness, CheckpointWritten, ModelSaved, Finished, EvaluationFailed, WorkerDied, TrialProgress]
EVENT_TYPES = {cls.__name__: cls for cls in Event.__args__}
OnEvent = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The default callback: report nothing."""


def to_dict(event: Event, at: Optional[float] = None) -> dict:
    return {"type": type(event).__name__, "time": round(time.time() if at is None else at, 3), **dataclasses.asdict(event)}


def from_dict(data: dict) -> Event:
    data = dict(data)
    cls = EVENT_TYPES[data.pop("type")]
    data.pop("time", None)
    return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def echo_to(on_event: OnEvent) -> Callable[[str], None]:
    """An `echo(text)` for lower layers that report plain lines: each line becomes a Message."""
    return lambda text: on_event(Message(str(text)))
