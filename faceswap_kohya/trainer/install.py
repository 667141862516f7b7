"""The trainer's installation: its python and sd-scripts folder (`Trainer`; a kohya_ss install works too) and its
script for the preset's model family, and the checks before a launch: the base model (SDXL, or FLUX's four
files), the trainer, free disk space, and the offline tokenizer cache."""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from faceswap_kohya.config.paths import default_sd_scripts, default_trainer_python
from faceswap_kohya.config.schema import CHECK_MODEL, CHECK_MODEL_FLUX, Preset
from faceswap_kohya.errors import UserError
from faceswap_kohya.models.base import check_checkpoint, check_flux_base
from faceswap_kohya.models.tokenizers import T5_TOKENIZER_NAME, ensure_flux_check_tokenizers, ensure_tokenizers

TRAIN_SCRIPTS = {"sdxl": "sdxl_train_network.py", "flux": "flux_train_network.py"}
TRAIN_SCRIPT = TRAIN_SCRIPTS["sdxl"]


@dataclass(frozen=True)
class Trainer:
    """The trainer's python and sd-scripts folder (a kohya_ss install works too)."""

    python: Path
    sd_scripts: Path
    family: str = "sdxl"  # which training script: TRAIN_SCRIPTS[family]

    @classmethod
    def of(cls, preset: Preset) -> "Trainer":
        k = preset.kohya
        sd = Path(k.sd_scripts).expanduser() if k.sd_scripts else default_sd_scripts()
        py = Path(k.python).expanduser() if k.python else default_trainer_python()
        return cls(py.absolute(), sd.absolute(), preset.base_model.family)

    @property
    def script(self) -> Path:
        return self.sd_scripts / TRAIN_SCRIPTS[self.family]


MIN_FREE_BYTES = 2 * 1024**3


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "TRUE"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def check_base_model(preset: Preset) -> None:
    path = preset.base_model.path
    if path in (CHECK_MODEL, CHECK_MODEL_FLUX):
        return  # built (once) when the run is prepared
    if preset.base_model.is_flux:
        check_flux_base(preset.base_model)
        check_t5_tokenizer(preset)
        return
    p = Path(path)
    looks_local = p.suffix in (".safetensors", ".ckpt") or path.startswith((".", "/", "~")) or path.count("/") != 1
    if p.is_dir():
        if not (p / "model_index.json").is_file():
            raise UserError(f"base_model.path: {path} is a folder but not a diffusers model (no model_index.json)")
        return
    if p.is_file():
        if p.suffix not in (".safetensors", ".ckpt", ".sft"):
            raise UserError(f"base_model.path: {path} is not a checkpoint file (expected .safetensors or .ckpt)")
        check_checkpoint(p, "base_model.path:")
        return
    if looks_local:
        raise UserError(f"base_model.path: {path} does not exist (a .safetensors file, a diffusers folder or a hub id)")
    if not _hub_reachable():
        raise UserError(f"base_model.path: {path} is a hub id but the Hugging Face hub can't be reached; "
                        "download the model and point base_model.path at the local .safetensors file")


def check_t5_tokenizer(preset: Preset) -> None:
    """A real FLUX model needs Google's T5 tokenizer: in the tokenizer cache, or from the hub (sd-scripts saves it there)."""
    setting = preset.kohya.tokenizer_cache
    if setting is None or _hub_reachable():
        return
    cache = Path(tokenizer_cache(preset))
    if not (cache / T5_TOKENIZER_NAME.replace("/", "_")).is_dir():
        raise UserError(f"kohya.tokenizer_cache: {cache} has no {T5_TOKENIZER_NAME.replace('/', '_')} folder and the "
                        f"Hugging Face hub can't be reached: copy the tokenizer files of {T5_TOKENIZER_NAME} there "
                        "(sd-scripts reads T5's tokenizer from it)")


def check_trainer(trainer: Trainer) -> None:
    if not trainer.script.is_file():
        raise UserError(f"kohya.sd_scripts: {trainer.sd_scripts} has no {trainer.script.name}; "
                        "run scripts/setup.sh (it fetches vendor/sd-scripts) or point kohya.sd_scripts at a kohya_ss checkout")
    if not trainer.python.is_file():
        raise UserError(f"kohya.python: {trainer.python} does not exist; run scripts/setup.sh, "
                        "or point kohya.python at the python of an existing kohya_ss venv")


def check_disk(folder: Path, need: int = MIN_FREE_BYTES) -> None:
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UserError(f"output.dir: only {free / 1024**3:.1f} GB free in {folder}; a run needs at least {need / 1024**3:.0f} GB")


def tokenizer_cache(preset: Preset) -> Optional[str]:
    setting = preset.kohya.tokenizer_cache
    if setting is None:
        return None

    if setting == "auto" and preset.base_model.path == CHECK_MODEL_FLUX:
        return str(ensure_flux_check_tokenizers().absolute())  # with the check model's stand-in T5 tokenizer
    return str(ensure_tokenizers(None if setting == "auto" else Path(setting)).absolute())
