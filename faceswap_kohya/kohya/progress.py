"""Reading sd-scripts' output: progress events from its tqdm/log lines, and why a run failed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from faceswap_kohya.events import CheckpointWritten, Epoch, Event, ModelSaved, Step, ValidationLoss

_STEP = re.compile(
    r"steps:\s*(?P<pct>\d+)%\|[^|]*\|\s*(?P<step>\d+)/(?P<total>\d+)\s*\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)"
    r"(?:,\s*(?P<rate>[\d.]+|\?)(?P<unit>s/it|it/s))?(?:,\s*avr_loss=(?P<loss>[-+\w.]+))?")
_EPOCH = re.compile(r"\bepoch (?P<epoch>\d+)/(?P<total>\d+)\b")
_SAVED = re.compile(r"saving checkpoint: (?P<path>\S.*?\.safetensors)")
_FINAL = re.compile(r"\bmodel saved\.")
_VAL = re.compile(r"validation steps:\s*(?P<pct>\d+)%\|[^|]*\|\s*(?P<step>\d+)/(?P<total>\d+).*?val_avg_loss=(?P<loss>[-+\w.]+)")


def _float(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text not in (None, "?") else None
    except ValueError:
        return None


def parse_line(line: str) -> Optional[Event]:
    """One line (tqdm redraws are separate lines: split output on both \\r and \\n) → an event or None."""
    if m := _VAL.search(line):  # before _STEP: "validation steps:" contains "steps:"
        loss = _float(m["loss"])
        return ValidationLoss(None, loss) if loss is not None and m["step"] == m["total"] else None
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


class LineSplitter:
    """Bytes from the trainer's pipe → complete lines, splitting on \\r and \\n (tqdm redraws with \\r)."""

    def __init__(self) -> None:
        self._rest = ""

    def feed(self, text: str) -> list[str]:
        parts = re.split(r"\r\n|\r|\n", self._rest + text)
        self._rest = parts.pop()
        return [p for p in parts if p.strip()]

    def flush(self) -> list[str]:
        rest, self._rest = self._rest, ""
        return [rest] if rest.strip() else []


# Known causes: (pattern in the log, what it means, what to do).
KNOWN_FAILURES = [
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


def diagnose(log_text: str, max_lines: int = 6) -> Diagnosis:
    """The lines that explain a failed run, and a hint for known causes."""
    lines = [ln.rstrip() for ln in re.split(r"\r|\n", log_text) if ln.strip() and not _BENIGN.search(ln)]
    explaining = [ln for ln in lines if _EXPLAINS.search(ln) and not _LAUNCHER_NOISE.search(ln)]
    nan = [ln for ln in explaining if "avr_loss=nan" in ln]
    explaining = [ln for ln in explaining if "avr_loss=nan" not in ln] + nan[-1:]
    shown = (explaining or lines)[-max_lines:]
    tail = "\n".join(lines[-300:])
    for pattern, reason, hint in KNOWN_FAILURES:
        if pattern.search(tail):
            return Diagnosis(reason, hint, shown)
    return Diagnosis("the trainer failed", "read the full log in the run folder (train.log)", shown)
