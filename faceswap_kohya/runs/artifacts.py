"""What a run folder holds, found in one place: its LoRA checkpoints in training order and the final LoRA,
whether a LoRA file was cut short (`whole_safetensors`), the trainer's sample images (and the epoch or step of
each), saved training states and whether each is whole (`resumable_state`: the newest one a kill mid-save did not
leave half-written), its photo folders, and its evaluations with the latest scores.

Every other part asks these functions; nothing else globs `model/`, `img/` or `eval/` or knows the trainer's
file names. A run is given as its folder or its `RunLayout`. The run's LoRA name is its `status.json` name,
else its `preset.yaml` `output.name`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.runs.status import read_status

LORA_SUFFIX = ".safetensors"
SCORES = "scores.json"
REPORT = "report.html"
CHART = "identity.png"
COMPARE = "compare"  # `compare`'s folders in a run: `compare/<timestamp>/` with its grids and their images
EPOCH_FILE = re.compile(r"-(\d{6})$")
STEP_FILE = re.compile(r"-step(\d+)$")
# sd-scripts' sample images: `<name>_e000003_00_<yyyymmddHHMMSS>[_<seed>].png` (epoch 3, prompt 0) or
# `<name>_000500_00_<time>...` (step 500)
SAMPLE_FILE = re.compile(r"_(?:e(?P<epoch>\d{6})|(?P<step>\d{6}))_(?P<prompt>\d{2})_\d{14}(?:_-?\d+)?$")

Run = Union[Path, str, RunLayout]


def layout_of(run: Run) -> RunLayout:
    """The run's layout, whether it is given as a folder or as its layout."""
    return run if isinstance(run, RunLayout) else RunLayout(Path(run))


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
    for p in sorted(Path(model_dir).glob(f"*{LORA_SUFFIX}")):
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


def whole_safetensors(path: Path) -> bool:
    """Whether a .safetensors file is as long as its header says (not cut short by a full disk or a crash while
    it was saved). Reads the header only."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return False
            n = int.from_bytes(head, "little")
            if n > 100_000_000:
                return False
            header = json.loads(f.read(n))
            size = os.fstat(f.fileno()).st_size
    except (OSError, ValueError):
        return False
    if not isinstance(header, dict):
        return False
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
    return size >= 8 + n + max(ends, default=0)


def is_checkpoint(stem: str) -> bool:
    """A numbered checkpoint's file stem (`<name>-000003`, `<name>-step00000500`), not a final LoRA."""
    return bool(EPOCH_FILE.search(stem) or STEP_FILE.search(stem))


def lora_name(run: Run) -> Optional[str]:
    """The run's LoRA file name without `.safetensors`: status.json's name, else preset.yaml's output.name."""
    layout = layout_of(run)
    name = (read_status(layout.root) or {}).get("name")
    if name:
        return name
    try:
        import yaml

        return ((yaml.safe_load(layout.preset.read_text(encoding="utf-8")) or {}).get("output") or {}).get("name")
    except (OSError, ValueError, AttributeError):
        return None


def lora_path(run: Run, name: str, epoch: Optional[int] = None) -> Path:
    """Where the trainer writes the LoRA of epoch `epoch` (`model/<name>-000003.safetensors`), or the final one
    (`model/<name>.safetensors`) without an epoch; the file need not exist."""
    stem = name if epoch is None else f"{name}-{epoch:06d}"
    return layout_of(run).model / f"{stem}{LORA_SUFFIX}"


def checkpoints(run: Run, name: Optional[str] = None) -> list[Checkpoint]:
    """The run's LoRAs in training order, the final one last."""
    name = name or lora_name(run)
    return find_checkpoints(layout_of(run).model, name) if name else []


def final_lora(run: Run, name: Optional[str] = None) -> Optional[Path]:
    """`model/<name>.safetensors` when the trainer wrote it."""
    name = name or lora_name(run)
    path = lora_path(run, name) if name else None
    return path if path is not None and path.is_file() else None


def run_of_lora(lora: Path) -> Optional[Path]:
    """The run folder a LoRA file was saved in (`<run>/model/<file>` beside the run's preset.yaml), else None."""
    lora = Path(lora)
    layout = RunLayout(lora.parent.parent)
    return layout.root if lora.parent == layout.model and layout.preset.is_file() else None


def samples(run: Run) -> list[Path]:
    """The trainer's sample images, oldest first."""
    folder = layout_of(run).samples
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.png"), key=lambda p: (p.stat().st_mtime, p.name))


def sample_when(path: Path) -> tuple[Optional[int], Optional[int]]:
    """(epoch, step) a sample image was rendered at, from sd-scripts' file name; (None, None) for another name."""
    m = SAMPLE_FILE.search(Path(path).stem)
    if not m:
        return None, None
    return (int(m["epoch"]), None) if m["epoch"] else (None, int(m["step"]))


def latest_grids(run: Run) -> list[Path]:
    """The before/after grids of the run's newest `compare` (`compare/<timestamp>/grid-p<N>.png`), by prompt."""
    folder = layout_of(run).root / COMPARE
    made = sorted(p for p in folder.iterdir() if p.is_dir() and any(p.glob("grid-p*.png"))) if folder.is_dir() else []
    if not made:
        return []
    return sorted(made[-1].glob("grid-p*.png"), key=lambda p: (len(p.stem), p.stem))


def saved_states(run: Run) -> list[Path]:
    """The run's saved training states (`model/<name>-*-state/`, sd-scripts' save_state), newest first."""
    model = layout_of(run).model
    states = [p for p in model.glob("*-state") if p.is_dir()] if model.is_dir() else []
    return sorted(states, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def latest_state(run: Run) -> Optional[Path]:
    """The newest saved training state, whole or not (`resumable_state` says which one `train --resume` takes)."""
    states = saved_states(run)
    return states[0] if states else None


# What accelerate's save_state (sd-scripts' save_state / save_state_on_train_end) writes into a state folder, in
# order: train_state.json (sd-scripts' save hook, first), model.safetensors (the network), optimizer.bin,
# scheduler.bin, [sampler.bin, dl_state_dict.bin, scaler.pt], random_states_0.pkl (last).
STATE_FILES = ("train_state.json", "model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl")
STATE_MODEL_FILES = ("model.safetensors", "pytorch_model.bin")  # safe_serialization on / off


def whole_pickle(path: Path) -> bool:
    """Whether a torch.save / pickle file is whole: a zip (torch's format) whose every member reads back with its CRC,
    else a plain pickle whose opcodes run to its STOP (read, never executed)."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return z.testzip() is None
        with open(path, "rb") as f:
            for _ in pickletools.genops(f):
                pass
        return True
    except Exception:  # noqa: BLE001 - cut short or not a pickle at all: either way not whole
        return False


def state_problem(state: Path) -> Optional[str]:
    """Why a saved state can't be resumed from (a file missing or cut short: the trainer stopped mid-save), or None
    when it is whole: train_state.json parses, the model's .safetensors is as long as its header says, and every
    .bin / .pkl / .pt reads back."""
    state = Path(state)
    if not state.is_dir():
        return "not a folder"
    try:
        train_state = json.loads((state / "train_state.json").read_text(encoding="utf-8"))
        if not isinstance(train_state, dict):
            return "train_state.json is not a JSON object"
    except FileNotFoundError:
        return "train_state.json is missing"
    except (OSError, ValueError):
        return "train_state.json can't be read (cut short?)"
    model = next((state / f for f in STATE_MODEL_FILES if (state / f).is_file()), None)
    if model is None:
        return "model.safetensors is missing"
    missing = [f for f in STATE_FILES[2:] if not (state / f).is_file()]
    if missing:
        return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"
    for path in sorted(state.iterdir()):
        if path.suffix == ".safetensors" and not whole_safetensors(path):
            return f"{path.name} is cut short (shorter than its header says)"
        if path.suffix in (".bin", ".pkl", ".pt") and not whole_pickle(path):
            return f"{path.name} is cut short or unreadable"
    return None


@dataclass
class StateChoice:
    """What `train --resume` continues from: the newest whole state (None when there is none), and the newer
    states skipped, each with why."""

    state: Optional[Path]
    skipped: list = field(default_factory=list)  # [(state folder, why)], newest first

    def skipped_text(self) -> str:
        """`X-state (optimizer.bin is missing); ...`: what was skipped, for people."""
        return "; ".join(f"{p.name} ({why})" for p, why in self.skipped)


def resumable_state(run: Run) -> StateChoice:
    """The newest saved state that is whole (state_problem), and the newer ones passed over: a trainer killed during
    a save leaves its newest state half-written."""
    skipped = []
    for state in saved_states(run):
        why = state_problem(state)
        if why is None:
            return StateChoice(state, skipped)
        skipped.append((state, why))
    return StateChoice(None, skipped)


def photo_folders(run: Run) -> list[Path]:
    """The run's Kohya photo folders in `img/` (`<repeats>_<tokens>`), by name."""
    img = layout_of(run).img
    return sorted(p for p in img.glob("*_*") if p.is_dir()) if img.is_dir() else []


def evaluations(run: Run) -> list[Path]:
    """The run's evaluation folders (`eval/<timestamp>/`) that hold scores, oldest first."""
    folder = layout_of(run).eval
    return [p.parent for p in sorted(folder.glob(f"*/{SCORES}"))] if folder.is_dir() else []


def latest_scores(run: Run) -> Optional[Path]:
    """The newest evaluation's scores.json, if the run was evaluated."""
    found = evaluations(run)
    return found[-1] / SCORES if found else None


def write_scores(folder: Path, scores: dict) -> Path:
    """An evaluation's scores.json, written whole or not at all (a torn one is never read as an evaluation)."""
    partial = Path(folder) / (SCORES + ".tmp")
    partial.write_text(json.dumps(scores, indent=1), encoding="utf-8")
    os.replace(partial, Path(folder) / SCORES)
    return Path(folder) / SCORES


def read_scores(path: Optional[Path]) -> Optional[dict]:
    """A scores.json as data; None when it is missing or unreadable (a torn write reads as no scores)."""
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
