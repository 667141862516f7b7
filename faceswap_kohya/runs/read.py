"""A run read back from its own record: `status.json` and the events of `events.jsonl` folded into one
`RunRecord` (state, steps, losses per step, validation losses, the likeness of the trainer's samples, errors,
stage times, how evaluation went).

`refresh()` reads only the events written since the last call, so a page or a sweep can follow a running
training cheaply. Torn files never raise: an unreadable status reads as state `unknown`, a line cut mid-write
is skipped (and read once it is whole).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from faceswap_kohya import events as ev
from faceswap_kohya.runs.status import ACTIVE, UNREADABLE, read_events, read_status

UNKNOWN = UNREADABLE  # no readable status.json (missing, or torn)


@dataclass
class RunRecord:
    """What a run folder says about its run, so far."""

    root: Path
    offset: int = 0  # the byte in events.jsonl read up to
    status: dict = field(default_factory=dict)
    step: Optional[ev.Step] = None  # the last training step
    epoch: Optional[ev.Epoch] = None
    losses: dict = field(default_factory=dict)  # step → training loss
    val_losses: dict = field(default_factory=dict)  # step → validation loss
    validation: list = field(default_factory=list)  # every ValidationLoss, in order
    likeness: list = field(default_factory=list)  # every SampleLikeness (the trainer's samples scored), in order
    stage: str = ""  # the stage last started
    stages: dict = field(default_factory=dict)  # stage → seconds, for the stages that finished
    errors: list = field(default_factory=list)  # every Error's message
    evaluation_error: Optional[str] = None  # EvaluationFailed's message (the training itself succeeded)
    written: list = field(default_factory=list)  # the checkpoint files the trainer said it saved
    summary: str = ""  # Finished's summary

    def add(self, event: ev.Event) -> None:
        if isinstance(event, ev.Step) and event.unit == "step":
            self.step = event
            if event.loss is not None:
                self.losses[event.step] = event.loss
        elif isinstance(event, ev.Epoch):
            self.epoch = event
        elif isinstance(event, ev.ValidationLoss):
            self.validation.append(event)
            self.val_losses[event.step if event.step is not None else (self.step.step if self.step else 0)] = event.loss
        elif isinstance(event, ev.SampleLikeness):
            self.likeness.append(event)
        elif isinstance(event, ev.StageStarted):
            self.stage = event.stage
        elif isinstance(event, ev.StageFinished):
            self.stages[event.stage] = event.seconds
        elif isinstance(event, (ev.Error, ev.WorkerDied)):
            self.errors.append(event.message)
        elif isinstance(event, ev.EvaluationFailed):
            self.evaluation_error = event.message
        elif isinstance(event, ev.CheckpointWritten):
            self.written.append(event.path)
        elif isinstance(event, ev.Finished):
            self.summary = event.summary

    def refresh(self) -> "RunRecord":
        """Fold the events written since the last call and read the status again."""
        found, self.offset = read_events(self.root, self.offset)
        for event in found:
            self.add(event)
        self.status = read_status(self.root) or {}
        return self

    @property
    def state(self) -> str:
        """preparing / training / evaluating / finished / failed / interrupted, or `unknown` without a readable status."""
        return self.status.get("state") or UNKNOWN

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def steps(self) -> int:
        """The last step trained (the status's count, else the last step event's)."""
        step = self.status.get("step")
        return step if isinstance(step, int) and step else (self.step.step if self.step else 0)

    @property
    def total(self) -> Optional[int]:
        total = self.status.get("total")
        return total if isinstance(total, int) else (self.step.total if self.step else None)

    @property
    def error(self) -> Optional[str]:
        """Why the run failed: the status's error, else the last Error event's message."""
        return self.status.get("error") or (self.errors[-1] if self.errors else None)

    @property
    def sample_likeness(self) -> Optional[ev.SampleLikeness]:
        """The latest sample's likeness: status.json's, else the last SampleLikeness event's; None before any."""
        kept = self.status.get("sample_likeness")
        if isinstance(kept, dict):
            try:
                return ev.from_dict({"type": "SampleLikeness", **kept})
            except (TypeError, KeyError, ValueError):
                pass
        return self.likeness[-1] if self.likeness else None

    @property
    def loras(self) -> list[str]:
        """The LoRA files the status lists (every checkpoint the run kept)."""
        found = self.status.get("loras")
        return [str(p) for p in found] if isinstance(found, list) else list(self.written)


def read_run(root: Path) -> RunRecord:
    """The run folder's record, read from its start."""
    return RunRecord(Path(root)).refresh()


def validation_losses(root: Optional[Path]) -> list[ev.ValidationLoss]:
    """sd-scripts' validation losses on the held-out photos, as the run recorded them (none without a run)."""
    return read_run(root).validation if root else []
