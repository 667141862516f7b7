"""Which base model a preset names (the check model, a file, a diffusers folder or a hub id), and whether a
model file is what it claims (an SDXL checkpoint; a FLUX DiT, AE, CLIP-L or T5-XXL), read from its header alone
before anything is loaded."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from faceswap_kohya.config.schema import CHECK_MODEL, CHECK_MODEL_FLUX
from faceswap_kohya.errors import UserError
from faceswap_kohya.models.checkmodel import check_model_path, flux_check_built, flux_check_files

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".sft")


def looks_local(path: str) -> bool:
    return (path.endswith(SINGLE_FILE_SUFFIXES) or path.startswith((".", "/", "~")) or path.count("/") != 1
            or os.sep in path.replace("/", "") or Path(path).drive != "")


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a .safetensors file, from its header alone (no torch, nothing loaded)."""
    return list(safetensors_header(path))


def safetensors_header(path: Path) -> dict[str, dict]:
    """Tensor name → {"dtype", "shape", ...} of a .safetensors file, from its header alone."""
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
    return {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def check_checkpoint(path: Path, label: str = "base model") -> None:
    """A single-file SDXL checkpoint: refuse what is plainly something else (a LoRA, a UNet alone) before loading."""
    if not str(path).endswith((".safetensors", ".sft")):
        return  # .ckpt is a pickle: only loading it tells
    keys = safetensors_keys(path)
    if any(k.startswith(("lora_", "lycoris_")) or ".lora_down." in k or ".lora_A." in k for k in keys):
        raise UserError(f"{label} {path}: a LoRA file, not a base model (give a LoRA as TARGET, and the SDXL model as the base)")
    if _flux_kind(safetensors_header(path)) == "dit":
        raise UserError(f"{label} {path}: a FLUX DiT, not an SDXL checkpoint (set base_model.family: flux and give "
                        "base_model.ae, clip_l and t5xxl)")
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        first = keys[0] if keys else "none"
        raise UserError(f"{label} {path}: not a single-file SDXL checkpoint (no model.diffusion_model.* weights; "
                        f"first tensor: {first})")


def resolve_base(base_model: str) -> tuple[str, str]:
    """(kind, location): kind is "file", "folder", "hub" or "flux" (the FLUX check model: its folder). Cheap:
    checks what it can without loading."""
    if not base_model or not str(base_model).strip():
        raise UserError("base model: empty (give a hub id, a diffusers folder or a .safetensors file)")
    base_model = str(base_model)
    if base_model == CHECK_MODEL_FLUX:
        if not flux_check_built():
            raise UserError(f"{CHECK_MODEL_FLUX}: {flux_check_files()['dit'].parent} is not built yet; build it with "
                            "`faceswap-kohya check-model --family flux`")
        return "flux", str(flux_check_files()["dit"].parent)
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
    if base_model == CHECK_MODEL_FLUX:
        return "flux-check"
    p = Path(os.path.expanduser(base_model))
    return p.stem if p.suffix in SINGLE_FILE_SUFFIXES else (p.name if p.exists() else base_model)


# --- FLUX: the DiT and its three companion files, each recognised by a tensor sd-scripts' loader needs ---------------
FLUX_KINDS = {  # kind → (what it is, a tensor name, its shape's first dimension or None)
    "dit": ("a FLUX DiT", "double_blocks.0.img_attn.proj.bias", None),
    "ae": ("the FLUX autoencoder (16 latent channels)", "encoder.conv_out.weight", 32),
    "clip_l": ("a CLIP-L text encoder", "text_model.encoder.layers.0.self_attn.q_proj.weight", 768),
    "t5xxl": ("a T5-XXL text encoder", "encoder.block.0.layer.0.SelfAttention.q.weight", 4096),
}


def _flux_kind(header: dict[str, dict]) -> str | None:
    """Which FLUX file (or "sdxl" for an SDXL single file) a header looks like; None when none."""
    names = {k.removeprefix("model.diffusion_model.") for k in header}
    if "transformer_blocks.0.attn.add_k_proj.bias" in names:
        return "dit"  # a diffusers-format DiT, which sd-scripts converts
    for kind, (_, key, dim) in FLUX_KINDS.items():
        if key in names:
            shape = header.get(key, header.get("model.diffusion_model." + key, {})).get("shape") or [None]
            if dim is None or shape[0] == dim:
                return kind
    if any(k.startswith("model.diffusion_model.input_blocks.") for k in header):
        return "sdxl"
    return None


def check_flux_file(path: str | None, kind: str, field: str) -> None:
    """One of a FLUX model's files exists and is what `field` claims (read from its header); else one UserError."""
    what = FLUX_KINDS[kind][0]
    if not path:
        raise UserError(f"{field}: not set ({what} .safetensors file is required for base_model.family flux)")
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{field}: {path} does not exist ({what} .safetensors file)")
    if not str(p).endswith((".safetensors", ".sft")):
        raise UserError(f"{field}: {path} is not a .safetensors file ({what})")
    try:
        header = safetensors_header(p)
    except UserError as e:
        raise UserError(f"{field}: {e} ({what})") from None
    keys = list(header)
    if any(k.startswith(("lora_", "lycoris_")) or ".lora_down." in k for k in keys):
        raise UserError(f"{field}: {path} is a LoRA file, not {what}")
    found = _flux_kind(header)
    if found == kind:
        return
    other = {"sdxl": "an SDXL checkpoint"} | {k: v[0] for k, v in FLUX_KINDS.items()}
    looks = f"it looks like {other[found]}" if found else f"first tensor: {keys[0] if keys else 'none'}"
    raise UserError(f"{field}: {path} is not {what} ({looks})")


def flux_files(base) -> dict[str, str]:
    """{"dit", "ae", "clip_l", "t5xxl"} → the paths a FLUX preset's base_model names (the check model resolved)."""
    if base.path == CHECK_MODEL_FLUX:
        return {k: str(p) for k, p in flux_check_files().items()}
    return {"dit": base.path, "ae": base.ae, "clip_l": base.clip_l, "t5xxl": base.t5xxl}


def check_flux_base(base, chroma: bool = False) -> dict[str, str]:
    """Every file of a FLUX preset's base_model, checked; returns `flux_files(base)`. `chroma` (flux.model_type
    chroma): Chroma has no CLIP-L, so an unset clip_l is not checked."""
    files = flux_files(base)
    if chroma and not files.get("clip_l"):
        files.pop("clip_l")
    if base.path == CHECK_MODEL_FLUX:
        if not flux_check_built():
            raise UserError(f"{CHECK_MODEL_FLUX}: {flux_check_files()['dit'].parent} is not built yet; build it with "
                            "`faceswap-kohya check-model --family flux`")
        return files
    for kind, path in files.items():
        check_flux_file(path, kind, "base_model.path" if kind == "dit" else f"base_model.{kind}")
    return files


def generation_files(base, base_model: str) -> dict[str, str] | None:
    """The FLUX files to generate with when `base_model` is a FLUX preset's own DiT (`base`: its base_model
    section), every one checked; None otherwise (an SDXL model, the FLUX check model or another --base,
    checked by resolve_base)."""
    if base is not None and base.is_flux and base_model == base.path and base.path != CHECK_MODEL_FLUX:
        return check_flux_base(base)
    resolve_base(base_model)
    return None
