"""Reading sd-scripts' output: progress events from its tqdm/log lines, and why a run failed (`diagnose`; a full
disk is `no_space`, naming the folder)."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from typing import Optional

from faceswap_kohya.errors import NO_SPACE, no_space_message, space_field
from faceswap_kohya.events import CheckpointWritten, Epoch, Event, ModelSaved, Step, ValidationLoss

_STEP = re.compile(
    r"steps:\s*(?P<pct>\d+)%\|[^|]*\|\s*(?P<step>\d+)/(?P<total>\d+)\s*\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)"
    r"(?:,\s*(?P<rate>[\d.]+|\?)(?P<unit>s/it|it/s))?(?:,\s*avr_loss=(?P<loss>[-+\w.]+))?")
_EPOCH = re.compile(r"\bepoch (?P<epoch>\d+)/(?P<total>\d+)\b")
_SAVED = re.compile(r"saving checkpoint: (?P<path>\S.*?\.safetensors)")
_FINAL = re.compile(r"\bmodel saved\.")
# sd-scripts' validation bars: "validation steps" (every N steps) and "epoch validation steps" (after an
# epoch), one step per held-out image and timestep, the running mean loss in the postfix.
_VALIDATION = re.compile(
    r"(?P<epoch>epoch )?validation steps:\s*\d+%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)\s*\[(?P<rest>[^\]]*)\]")
_VAL_LOSS = re.compile(r"val_(?:epoch_)?avg_loss=(?P<loss>[-+\w.]+)")
# A line that gives an event has one of these (what the patterns above and below need).
_WORDS = ("steps:", "saving checkpoint: ", "epoch ", "model saved.")
_NEWLINES = re.compile(r"\r\n|\r|\n")
# Where sd-scripts writes the same numbers for tensorboard (`--logging_dir`).
VALIDATION_TAGS = {"epoch": "loss/validation/epoch_average", "step": "loss/validation/step_average"}


def _float(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text not in (None, "?") else None
    except ValueError:
        return None


@dataclass(frozen=True)
class ValidationBar:
    """A redraw of a validation bar: `kind` "epoch" (after an epoch) or "step" (every N steps), `done` of
    `total` held-out image × timestep passes, `loss` the mean masked loss so far (None before the first)."""

    kind: str
    done: int
    total: int
    loss: Optional[float]

    @property
    def complete(self) -> bool:
        return self.done == self.total


def validation_bar(line: str) -> Optional[ValidationBar]:
    if "validation steps:" not in line:  # most lines: a substring test, not a regex
        return None
    if m := _VALIDATION.search(line):
        loss = _VAL_LOSS.search(m["rest"])
        return ValidationBar("epoch" if m["epoch"] else "step", int(m["done"]), int(m["total"]),
                             _float(loss["loss"]) if loss else None)
    return None


def parse_line(line: str) -> Optional[Event]:
    """One line (tqdm redraws are separate lines: split output on both \\r and \\n) → an event or None.
    Validation bars give no event here: `TrainerOutput` reports each validation once, when it is done."""
    if not any(word in line for word in _WORDS):  # most lines: substring tests, no regex
        return None
    if "validation steps:" in line:  # before _STEP: "validation steps:" contains "steps:"
        return None
    if m := _STEP.search(line):
        rate = _float(m["rate"])
        if rate and m["unit"] == "it/s":
            rate = 1.0 / rate
        return Step(int(m["step"]), int(m["total"]), m["elapsed"], m["eta"], rate, _float(m["loss"]))
    if m := _SAVED.search(line):
        return CheckpointWritten(m["path"].strip())
    if m := _EPOCH.search(line):
        return Epoch(int(m["epoch"]), int(m["total"]))
    if _FINAL.search(line):
        return ModelSaved()
    return None


class TrainerOutput:
    """Lines of the trainer's output → events, with one `ValidationLoss` per validation.

    A validation bar's last redraws repeat its final state: tqdm redraws after `update` (with the previous
    loss), after `set_postfix` (the final loss) and again when the bar is closed, which can be much later.
    The loss reported is that of the last redraw of a bar seen in progress, sent when the next other event
    arrives (or at the end), with the epoch and step it followed."""

    def __init__(self) -> None:
        self.epoch: Optional[int] = None
        self.step: Optional[int] = None
        self._open: Optional[str] = None
        self._pending: Optional[ValidationBar] = None

    def feed(self, line: str) -> list[Event]:
        bar = validation_bar(line)
        if bar is not None:
            if not bar.complete:
                self._open, self._pending = bar.kind, None
            elif bar.kind == self._open and bar.loss is not None:
                self._pending = bar
            return []
        event = parse_line(line)
        if event is None:
            return []
        out = self.flush()
        if isinstance(event, Epoch):
            self.epoch = event.epoch
        elif isinstance(event, Step):
            self.step = event.step
        return out + [event]

    def flush(self) -> list[Event]:
        """The finished validation not reported yet, if any."""
        if self._pending is None:
            return []
        bar, self._pending, self._open = self._pending, None, None
        return [ValidationLoss(self.step, bar.loss, self.epoch, bar.kind)]


def log_events(text: str) -> list[Event]:
    """The events of a whole trainer log (e.g. a run's train.log)."""
    output = TrainerOutput()
    events = [e for line in _NEWLINES.split(text) for e in output.feed(line)]
    return events + output.flush()


def bar_clock(events) -> list[tuple[int, float]]:
    """(step, seconds since the step bar started) by the trainer's own clock, from its first redraw of each step.

    sd-scripts' step bar has tqdm's `smoothing=0`: the rate it shows is the mean since the bar started, so
    step × s/it is the bar's elapsed time at that redraw, to the rate's two decimals (the elapsed field itself
    has whole seconds only). It does not depend on when a reader got the line."""
    clock: dict[int, float] = {}
    for e in events:
        if isinstance(e, Step) and e.unit == "step" and e.sec_per_it is not None and e.step > 0:
            clock.setdefault(e.step, e.step * e.sec_per_it)
    return sorted(clock.items())


class LineSplitter:
    """Bytes from the trainer's pipe → complete lines, splitting on \\r and \\n (tqdm redraws with \\r)."""

    def __init__(self) -> None:
        self._rest = ""

    def feed(self, text: str) -> list[str]:
        parts = _NEWLINES.split(self._rest + text)
        self._rest = parts.pop()
        return [p for p in parts if p.strip()]

    def pending(self) -> str:
        """The part of a line received so far (a tqdm bar that is being redrawn)."""
        return self._rest

    def flush(self) -> list[str]:
        rest, self._rest = self._rest, ""
        return [rest] if rest.strip() else []


# Known causes: (pattern in the log, what it means, what to do).
KNOWN_FAILURES = [
    (re.compile(r"No space left on device|\[Errno 28\]|StorageFull|ENOSPC|Disk quota exceeded", re.I),
     NO_SPACE,
     "free space on that disk, or set {space_field} to a folder on another disk and train again"),
    (re.compile(r"No data found", re.I),
     "sd-scripts found no training images",
     "check that the photo folder has images; the run's img/ folder must hold `N_trigger class/` subfolders"),
    (re.compile(r"CUDA out of memory|OutOfMemoryError|out of memory", re.I),
     "the GPU ran out of memory",
     "use a smaller preset (`faceswap-kohya presets ls`: face-12gb or face-8gb), or lower dataset.resolution / network.dim"),
    (re.compile(r"avr_loss=nan|loss is nan|NaN detected|nan loss", re.I),
     "the loss became NaN",
     "set training.no_half_vae=true and lower optimizer.unet_lr (e.g. 5e-5); bf16 is safer than fp16"),
    (re.compile(r"bitsandbytes|libbitsandbytes|No module named 'bitsandbytes'", re.I),
     "bitsandbytes (8-bit optimizers) failed to load",
     "use optimizer.type=AdamW, or install a bitsandbytes build that matches your CUDA"),
    (re.compile(r"ModuleNotFoundError: No module named '(?P<mod>[\w.]+)'"),
     "a Python module is missing in the trainer's environment",
     "run scripts/setup.sh again, or install the module into kohya.python's environment"),
    (re.compile(r"(?:OSError|HTTPError|ConnectionError|LocalEntryNotFoundError).*(?:huggingface|hub|offline)", re.I),
     "the trainer tried to download from the Hugging Face hub",
     "point base_model.path at a local file, and keep kohya.tokenizer_cache on 'auto'"),
    (re.compile(r"is neither a valid local path nor a valid repo id"),
     "the base model could not be found",
     "point base_model.path at an existing .safetensors file or diffusers folder"),
    (re.compile(r"FileNotFoundError|No such file or directory", re.I),
     "a file the trainer needs does not exist",
     "check base_model.path / base_model.vae and the paths in the preset"),
]

# Printed by bitsandbytes on every CPU run; not a failure.
_BENIGN = re.compile(r"kernels-community|No module named 'kernels'")
# Lines that explain a failure: the script's own exception, sd-scripts' ERROR logs, a NaN loss.
_EXPLAINS = re.compile(r"^\s*[\w.]*(Error|Exception)\b.*:|\bERROR\b|No data found|avr_loss=nan|Killed|out of memory", re.I)
_LAUNCHER_NOISE = re.compile(r"CalledProcessError|accelerate/commands/launch\.py")


@dataclass(frozen=True)
class Diagnosis:
    reason: str
    hint: str
    lines: list[str]


_STALLED = re.compile(r"faceswap-kohya: the trainer stalled: no output for (?P<time>[^(]+?) \(kohya.stall_minutes\)"
                      r".*?Its last line: (?P<last>.*)$", re.M)


# accelerate's launcher, when the trainer it started died of a signal
_DIED = re.compile(r"died with <Signals\.(?P<name>SIG[A-Z0-9]+): (?P<number>\d+)>")


def killed_by(log_text: str, returncode: Optional[int]) -> Optional[str]:
    """The signal that killed the trainer ("SIGKILL"), from its exit status or accelerate's last words; else None."""
    if returncode is not None and returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    found = _DIED.findall(log_text[-20000:])
    return found[-1][0] if found else None


def died_of(name: str, lines: list[str]) -> Diagnosis:
    """What to tell the user when the trainer was killed by a signal that this program did not send."""
    if name == "SIGKILL":
        return Diagnosis("the trainer was killed (SIGKILL): out of memory? The kernel's OOM killer sends SIGKILL",
                         "use a smaller preset (`faceswap-kohya presets ls`), lower dataset.resolution or network.dim, "
                         "or close what else uses memory; `train --resume RUN` continues from the last saved state",
                         lines)
    if name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGABRT"):
        return Diagnosis(f"the trainer crashed ({name})",
                         "a native library failed (GPU driver, bitsandbytes, torch build): read train.log's end; "
                         "`train --resume RUN` continues from the last saved state", lines)
    return Diagnosis(f"the trainer was stopped by {name} from outside",
                     "`train --resume RUN` continues from the last saved state", lines)


def no_space(folder, lines: list[str], removed=()) -> Diagnosis:
    """The disk that holds `folder` filled up while the trainer wrote to it (`removed`: half-written files deleted)."""
    message = no_space_message(folder)
    reason, _, hint = message.partition(": ")
    if removed:
        hint += "; removed the half-written " + ", ".join(str(p) for p in removed)
    return Diagnosis(reason, hint, lines)


def diagnose(log_text: str, max_lines: int = 6, returncode: Optional[int] = None) -> Diagnosis:
    """The lines that explain a failed run, and a hint for known causes (a signal that killed the trainer first)."""
    if m := _STALLED.search(log_text):
        return Diagnosis(f"the trainer stalled: no output for {m['time']}; its last line was: {m['last'].strip()[:200]}",
                         "look at the end of train.log for what it was doing; raise kohya.stall_minutes if that step "
                         "is just slow on this machine", [m["last"].strip()])
    lines = [ln.rstrip() for ln in re.split(r"\r|\n", log_text) if ln.strip() and not _BENIGN.search(ln)]
    if name := killed_by(log_text, returncode):
        return died_of(name, [ln for ln in lines if not _LAUNCHER_NOISE.search(ln)][-2:])
    explaining = [ln for ln in lines if _EXPLAINS.search(ln) and not _LAUNCHER_NOISE.search(ln)]
    nan = [ln for ln in explaining if "avr_loss=nan" in ln]
    explaining = [ln for ln in explaining if "avr_loss=nan" not in ln] + nan[-1:]
    shown = (explaining or lines)[-max_lines:]
    tail = "\n".join(lines[-300:])
    for pattern, reason, hint in KNOWN_FAILURES:
        if pattern.search(tail):
            return Diagnosis(reason, hint.replace("{space_field}", space_field()), shown)
    return Diagnosis("the trainer failed", "read the full log in the run folder (train.log)", shown)
