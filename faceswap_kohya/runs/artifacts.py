"""What a run folder holds, found in one place: its LoRA checkpoints in training order and the final LoRA,
the trainer's sample images, saved training states, and its evaluations with the latest scores.

Every other part asks these functions; nothing else globs `model/` or `eval/`. The run's LoRA name is its
`status.json` name, else its `preset.yaml` `output.name`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.runs.status import read_status

SCORES = "scores.json"
REPORT = "report.html"
EPOCH_FILE = re.compile(r"-(\d{6})$")
STEP_FILE = re.compile(r"-step(\d+)$")


@dataclass
class Checkpoint:
    """One model to evaluate: the base (path None) or a LoRA file of the run."""

    label: str  # "base", "epoch 3", "step 500", "final", or the file stem
    path: Optional[Path] = None
    epoch: Optional[int] = None
    step: Optional[int] = None

    @property
    def slug(self) -> str:
        """File-name prefix of its images."""
        if self.path is None:
            return "base"
        if self.epoch is not None:
            return f"e{self.epoch:06d}"
        if self.step is not None:
            return f"s{self.step:08d}"
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.label)


BASE = Checkpoint("base")


def find_checkpoints(model_dir: Path, name: str) -> list[Checkpoint]:
    """The run's LoRA files in training order: `<name>-NNNNNN` (epochs), `<name>-stepNNNNNNNN` (steps),
    then the final `<name>.safetensors`. With both epoch and step files, file times give the order."""
    if not Path(model_dir).is_dir():
        return []
    numbered, final = [], None
    for p in sorted(Path(model_dir).glob("*.safetensors")):
        if p.stem == name:
            final = Checkpoint("final", p)
        elif m := re.fullmatch(re.escape(name) + r"-(\d{6})", p.stem):
            numbered.append(Checkpoint(f"epoch {int(m.group(1))}", p, epoch=int(m.group(1))))
        elif m := re.fullmatch(re.escape(name) + r"-step(\d+)", p.stem):
            numbered.append(Checkpoint(f"step {int(m.group(1))}", p, step=int(m.group(1))))
    if any(c.epoch is not None for c in numbered) and any(c.step is not None for c in numbered):
        numbered.sort(key=lambda c: (c.path.stat().st_mtime, c.path.name))
    else:
        numbered.sort(key=lambda c: c.epoch if c.epoch is not None else c.step)
    return numbered + ([final] if final else [])


def is_checkpoint(stem: str) -> bool:
    """A numbered checkpoint's file stem (`<name>-000003`, `<name>-step00000500`), not a final LoRA."""
    return bool(EPOCH_FILE.search(stem) or STEP_FILE.search(stem))


def lora_name(run_dir: Path) -> Optional[str]:
    """The run's LoRA file name without `.safetensors`: status.json's name, else preset.yaml's output.name."""
    run_dir = Path(run_dir)
    name = (read_status(run_dir) or {}).get("name")
    if name:
        return name
    try:
        import yaml

        return ((yaml.safe_load((run_dir / "preset.yaml").read_text(encoding="utf-8")) or {}).get("output") or {}).get("name")
    except (OSError, ValueError, AttributeError):
        return None


def checkpoints(run_dir: Path, name: Optional[str] = None) -> list[Checkpoint]:
    """The run's LoRAs in training order, the final one last."""
    name = name or lora_name(run_dir)
    return find_checkpoints(RunLayout(Path(run_dir)).model, name) if name else []


def final_lora(run_dir: Path, name: Optional[str] = None) -> Optional[Path]:
    """`model/<name>.safetensors` when the trainer wrote it."""
    name = name or lora_name(run_dir)
    path = RunLayout(Path(run_dir)).model / f"{name}.safetensors" if name else None
    return path if path is not None and path.is_file() else None


def samples(run_dir: Path) -> list[Path]:
    """The trainer's sample images, oldest first."""
    folder = RunLayout(Path(run_dir)).samples
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.png"), key=lambda p: (p.stat().st_mtime, p.name))


def latest_state(run_dir: Path) -> Optional[Path]:
    """The newest saved training state (`model/<name>-*-state/`), what `train --resume` continues from."""
    model = RunLayout(Path(run_dir)).model
    states = [p for p in model.glob("*-state") if p.is_dir()] if model.is_dir() else []
    return max(states, key=lambda p: p.stat().st_mtime) if states else None


def evaluations(run_dir: Path) -> list[Path]:
    """The run's evaluation folders (`eval/<timestamp>/`) that hold scores, oldest first."""
    folder = Path(run_dir) / "eval"
    return [p.parent for p in sorted(folder.glob(f"*/{SCORES}"))] if folder.is_dir() else []


def latest_scores(run_dir: Path) -> Optional[Path]:
    """The newest evaluation's scores.json, if the run was evaluated."""
    found = evaluations(run_dir)
    return found[-1] / SCORES if found else None


def read_scores(path: Optional[Path]) -> Optional[dict]:
    """A scores.json as data; None when it is missing or unreadable (a torn write reads as no scores)."""
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
