"""Which base model a preset names (the check model, a file, a diffusers folder or a hub id), and whether a
model file is what it claims, read from its header alone before anything is loaded."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from faceswap_kohya.config.schema import CHECK_MODEL
from faceswap_kohya.errors import UserError
from faceswap_kohya.models.checkmodel import check_model_path

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".sft")


def looks_local(path: str) -> bool:
    return (path.endswith(SINGLE_FILE_SUFFIXES) or path.startswith((".", "/", "~")) or path.count("/") != 1
            or os.sep in path.replace("/", "") or Path(path).drive != "")


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a .safetensors file, from its header alone (no torch, nothing loaded)."""
    try:
        with open(path, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            if not 2 <= size <= 100 * 2**20:
                raise ValueError(f"header size {size}")
            header = json.loads(f.read(size))
        if not isinstance(header, dict):
            raise ValueError("header is not a mapping")
    except (OSError, ValueError, struct.error) as e:
        raise UserError(f"{path}: not a readable .safetensors file, truncated or corrupt ({e})") from None
    return [k for k in header if k != "__metadata__"]


def check_checkpoint(path: Path, label: str = "base model") -> None:
    """A single-file SDXL checkpoint: refuse what is plainly something else (a LoRA, a UNet alone) before loading."""
    if not str(path).endswith((".safetensors", ".sft")):
        return  # .ckpt is a pickle: only loading it tells
    keys = safetensors_keys(path)
    if any(k.startswith(("lora_", "lycoris_")) or ".lora_down." in k or ".lora_A." in k for k in keys):
        raise UserError(f"{label} {path}: a LoRA file, not a base model (give a LoRA as TARGET, and the SDXL model as the base)")
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        first = keys[0] if keys else "none"
        raise UserError(f"{label} {path}: not a single-file SDXL checkpoint (no model.diffusion_model.* weights; "
                        f"first tensor: {first})")


def resolve_base(base_model: str) -> tuple[str, str]:
    """(kind, location): kind is "file", "folder" or "hub". Cheap: checks what it can without loading."""
    if not base_model or not str(base_model).strip():
        raise UserError("base model: empty (give a hub id, a diffusers folder or a .safetensors file)")
    base_model = str(base_model)
    if base_model == CHECK_MODEL:
        path = check_model_path()
        if not path.is_file():
            raise UserError(f"{CHECK_MODEL}: {path} does not exist yet; build it with `faceswap-kohya check-model`")
        return "file", str(path)
    path = os.path.expanduser(base_model)
    if os.path.isfile(path):
        if not path.endswith(SINGLE_FILE_SUFFIXES):
            raise UserError(f"base model {path}: not a checkpoint file (expected .safetensors or .ckpt)")
        check_checkpoint(Path(path))
        return "file", path
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "model_index.json")):
            raise UserError(f"base model {path}: a folder but not a diffusers pipeline (no model_index.json)")
        return "folder", path
    if looks_local(base_model):
        raise UserError(f"base model {base_model}: does not exist (a .safetensors file, a diffusers folder or a hub id)")
    return "hub", base_model


def model_label(base_model: str) -> str:
    """A short model name for image metadata: file stem, folder name or hub id."""
    if base_model == CHECK_MODEL:
        return "pipeline-check"
    p = Path(os.path.expanduser(base_model))
    return p.stem if p.suffix in SINGLE_FILE_SUFFIXES else (p.name if p.exists() else base_model)
