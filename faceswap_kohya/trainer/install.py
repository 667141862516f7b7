"""The trainer's installation: its python and sd-scripts folder (`Trainer`; a kohya_ss install works too) and its
script for the preset's model family, and the checks before a launch: the base model (SDXL, or FLUX's four
files), the trainer, free disk space against what this run will write (`space_needed`: its LoRA files, states
and cached latents), and the offline tokenizer cache."""

from __future__ import annotations

import math
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from faceswap_kohya.config.paths import default_sd_scripts, default_trainer_python
from faceswap_kohya.config.schema import CHECK_MODEL, CHECK_MODEL_FLUX, Preset
from faceswap_kohya.errors import UserError, size_text
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


# What a run writes into output.dir, estimated before it starts (see space_needed). The LoRA sizes are those of
# sd-scripts' networks.lora on SDXL (measured: the UNet's attention and feed-forward layers take 2.66 M
# parameters per rank, both text encoders 0.9 M; LoCon's 3x3 convolutions about 2 M per conv rank).
UNET_PARAMS_PER_RANK = 2_660_000
TEXT_PARAMS_PER_RANK = 900_000
CONV_PARAMS_PER_RANK = 2_000_000
SAVE_BYTES = {"float": 4, "fp16": 2, "bf16": 2}
STATE_COPIES = 2  # sd-scripts writes the new state before it removes the old one (save_last_n_epochs_state=1)
RUN_MARGIN = 64 * 1024**2  # the dataset's images, logs, events, samples, an evaluation
CHECK_MODEL_BYTES = 7 * 1024**3  # the pipeline-check model, built once into the cache
TYPICAL_PHOTOS = 10  # an epoch's photos when they can't be counted before the run


@dataclass(frozen=True)
class SpaceNeeded:
    """What one run will write into output.dir, in bytes, and what it is made of (for the message)."""

    total: int
    parts: tuple

    def text(self) -> str:
        return ", ".join(self.parts)


def lora_bytes(preset: Preset) -> int:
    """The size of one LoRA file the trainer will save, from the network's ranks and the save precision."""
    n = preset.network
    per_rank = UNET_PARAMS_PER_RANK + (0 if preset.optimizer.unet_only else TEXT_PARAMS_PER_RANK)
    params = min(n.dim, 4096) * per_rank + min(n.conv_dim or 0, 4096) * CONV_PARAMS_PER_RANK
    return params * SAVE_BYTES[preset.training.save_precision] + 1024**2  # + the header and metadata


def count_photos(preset: Preset) -> Optional[int]:
    """Photos × repeats of one epoch (the photos as given, before any mirrored or relit copies); None if unknown."""
    from faceswap_kohya.data.samples import resolve_images
    from faceswap_kohya.files.images import list_images

    try:
        if preset.dataset.subsets:
            return sum(len(list_images(Path(s.folder).expanduser())) * s.repeats for s in preset.dataset.subsets)
        folder = resolve_images(preset.dataset.images)
        return len(list_images(Path(folder).expanduser())) * preset.dataset.repeats if folder else None
    except OSError:
        return None


def space_needed(preset: Preset, photos: Optional[int] = None) -> SpaceNeeded:
    """What this run will write into output.dir: every checkpoint and the final LoRA, the saved training states,
    the cached latents (training.cache_latents_to_disk) and a margin. `photos`: one epoch's images (count_photos);
    unknown (a prepared dataset), TYPICAL_PHOTOS photos × dataset.repeats."""
    t = preset.training
    photos = photos or TYPICAL_PHOTOS * preset.dataset.repeats
    per_epoch = max(1, math.ceil(photos / (t.batch_size * t.gradient_accumulation)))
    epochs = math.ceil(t.max_steps / per_epoch) if t.max_steps else t.epochs
    steps = t.max_steps or epochs * per_epoch
    files = 1 + ((epochs - 1) // t.save_every_n_epochs if t.save_every_n_epochs else 0)
    files += steps // t.save_every_n_steps if t.save_every_n_steps else 0
    files = min(files, 10_000)
    lora = lora_bytes(preset)
    parts = [f"{files} LoRA file{'s' if files != 1 else ''} of {size_text(lora)}"]
    total = files * lora + RUN_MARGIN
    if t.save_state:  # the trained weights in fp32 and AdamW's two moments
        state = (lora - 1024**2) // SAVE_BYTES[t.save_precision] * 4 * 3
        total += STATE_COPIES * state
        parts.append(f"{STATE_COPIES} training states of {size_text(state)}")
    if t.cache_latents and t.cache_latents_to_disk:
        latents = photos * 4 * (preset.dataset.resolution // 8) ** 2 * 4 * 2  # fp32, with the flipped copy
        total += latents
        parts.append(f"cached latents {size_text(latents)}")
    parts.append(f"{size_text(RUN_MARGIN)} for the dataset, logs and samples")
    return SpaceNeeded(total, tuple(parts))


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "TRUE"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def check_flux_model(preset: Preset) -> None:
    """A FLUX preset's four files exist and are what they claim (from their headers), and T5's tokenizer can be had:
    what `train` checks before it starts, and `validate` and the service's submissions with it. builtin:flux-check
    passes (it is built when a run is prepared); an SDXL preset is not looked at."""
    if not preset.base_model.is_flux or preset.base_model.path == CHECK_MODEL_FLUX:
        return
    check_flux_base(preset.base_model, chroma=preset.flux.model_type == "chroma")
    check_t5_tokenizer(preset)


def check_base_model(preset: Preset) -> None:
    path = preset.base_model.path
    if path in (CHECK_MODEL, CHECK_MODEL_FLUX):
        return  # built (once) when the run is prepared
    if preset.base_model.is_flux:
        check_flux_model(preset)
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


def check_disk(folder: Path, need: SpaceNeeded, field: str = "output.dir") -> None:
    """One UserError when the disk of `folder` has less free space than this run will need."""
    free = shutil.disk_usage(folder).free
    if free < need.total:
        raise UserError(f"{field}: this run needs about {size_text(need.total)} ({need.text()}) but only {size_text(free)} "
                        f"is free in {folder}; free space there or set {field} to a folder on another disk")


def check_model_space(preset: Preset) -> None:
    """The pipeline-check model is built into the cache on its first use (~7 GB): is there room for it?"""
    from faceswap_kohya.models.checkmodel import check_model_path

    path = check_model_path()
    if path.is_file():
        return
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < CHECK_MODEL_BYTES:
        raise UserError(f"base_model.path: building the pipeline-check model needs about {size_text(CHECK_MODEL_BYTES)} "
                        f"but only {size_text(free)} is free in {folder}; free space there (or set FACESWAP_KOHYA_HOME "
                        "to a folder on another disk)")


def tokenizer_cache(preset: Preset) -> Optional[str]:
    setting = preset.kohya.tokenizer_cache
    if setting is None:
        return None

    if setting == "auto" and preset.base_model.path == CHECK_MODEL_FLUX:
        return str(ensure_flux_check_tokenizers().absolute())  # with the check model's stand-in T5 tokenizer
    return str(ensure_tokenizers(None if setting == "auto" else Path(setting)).absolute())
