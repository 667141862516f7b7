"""Load an SDXL pipeline (hub id, diffusers folder, single file, or the check model) or a FLUX.1 one (its four
files, or the FLUX check model; diffusion/flux.py) offline, on the chosen device and dtype, and give its memory
back when it is dropped; for a long-lived app (the web UI), keep the last one loaded between its jobs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

from faceswap_kohya.config.paths import home
from faceswap_kohya.config.schema import CHECK_MODEL_FLUX
from faceswap_kohya.errors import UserError
from faceswap_kohya.models.base import check_flux_file, model_label, resolve_base
from faceswap_kohya.models.checkmodel import flux_check_files
from faceswap_kohya.models.tokenizers import find_bpe, vocab_and_merges, write_tokenizer

SDXL_CONFIG = Path(__file__).parent / "sdxl_config"
DTYPES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16", "half": "float16",
          "bf16": "bfloat16", "bfloat16": "bfloat16"}


# ---------------------------------------------------------------- device and dtype
def pick_device(device: Optional[str] = None) -> str:
    import torch

    if device:
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, dtype=None):
    """CUDA: bf16 where supported, else fp16; MPS fp16; CPU fp32 (CPUs round bf16 LoRA deltas away)."""
    import torch

    if dtype is not None and not isinstance(dtype, str):
        return dtype
    if isinstance(dtype, str):
        if dtype.lower() not in DTYPES:
            raise UserError(f"dtype {dtype!r}: use one of fp32, fp16, bf16")
        return getattr(torch, DTYPES[dtype.lower()])
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.startswith("mps"):
        return torch.float16
    return torch.float32


# ---------------------------------------------------------------- base model
def config_folder() -> Path:
    """SDXL-base configs (shipped) plus offline CLIP tokenizers, for loading single files with no hub."""
    dest = home() / "sdxl-config"
    shutil.copytree(SDXL_CONFIG, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    tokenizers = [dest / "tokenizer", dest / "tokenizer_2"]
    if not all((t / "vocab.json").is_file() and (t / "merges.txt").is_file() for t in tokenizers):
        vocab, merges = vocab_and_merges(find_bpe())
        for folder, pad in zip(tokenizers, ("<|endoftext|>", "!")):
            write_tokenizer(folder, vocab, merges, pad)
    return dest


def free_memory() -> None:
    """Give a dropped pipeline's memory back to the system (call once no reference is left), so that a
    process started next — the trainer — can have it: a collected SDXL otherwise stays ~6 GB in glibc's heap."""
    import ctypes
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


# ---------------------------------------------------------------- one pipeline kept between jobs
_kept: dict = {"on": False, "key": None, "pipe": None}


def keep_between_jobs(on: bool = True) -> None:
    """A long-lived app (the web UI) keeps the last base pipeline loaded between its jobs, as A1111 does: the next
    Generate, Compare, Evaluate or Swap on the same base model, device and dtype starts at once instead of loading it
    again (~30 s for SDXL on a CPU). While on, LoRAs are applied as adapters and never fused into the weights, and
    they are removed (with the sampler set back) when the pipeline is handed out again, so every job starts from
    the base model as loaded. `release_kept()` gives the memory back: before a training starts, the trainer needs it."""
    _kept["on"] = on
    if not on:
        release_kept()


def keeping() -> bool:
    """Whether this process keeps its pipeline between jobs (then: apply LoRAs as adapters, never fuse them)."""
    return bool(_kept["on"])


def release_kept() -> bool:
    """Drop the kept pipeline, if any, and give its memory back; whether there was one."""
    if _kept["pipe"] is None:
        return False
    _kept.update(key=None, pipe=None)
    free_memory()
    return True


def reuse_kept(key: tuple):
    """The kept pipeline, cleaned to the base model as loaded, if it was loaded with `key` and nothing was fused into
    it; otherwise None, and any other kept pipeline is released first (two never share the memory)."""
    pipe = _kept["pipe"]
    if pipe is None or _kept["key"] != key or getattr(pipe, "fsk_fused", None):
        release_kept()
        return None
    try:
        adapters = pipe.get_list_adapters()
    except (AttributeError, ValueError):
        adapters = {}
    if any(adapters.values()):
        pipe.unload_lora_weights()  # the LoRA layers go; the base weights were never changed (no fusing while kept)
    pipe.fsk_loras = {}
    if getattr(pipe, "fsk_scheduler", None) is not None:
        pipe.scheduler = pipe.fsk_scheduler
    return pipe


def quiet_libraries() -> None:
    """diffusers/transformers log notes meant for their developers (torchvision backends, dtype casts,
    text encoders without LoRA keys); keep warnings that matter to users only."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is first imported
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()


def load_pipeline(base_model: str, device=None, dtype=None, offload: Optional[str] = None,
                  flux: Optional[dict] = None, inpaint: bool = False, t5_tokens: Optional[int] = None):
    """An SDXL pipeline from a hub id, a local diffusers folder, a single file, or builtin:pipeline-check; a FLUX
    pipeline from `flux` (`models.base.flux_files`: the DiT, AE, CLIP-L and T5-XXL) or builtin:flux-check.

    offload: None, "model" (whole models to the GPU in turn) or "sequential" (layer by layer: least VRAM).
    inpaint: FLUX only, a FluxInpaintPipeline (SDXL swap makes its own inpainting pipeline from this one).
    t5_tokens: FLUX only, the T5 tokens prompts are encoded to (`config.flux.t5_tokens` of the run; None: 512).
    With keep_between_jobs() on, the kept pipeline is handed out again when it was loaded the same way.
    """
    quiet_libraries()
    from diffusers import StableDiffusionXLPipeline

    kind, where = resolve_base(base_model) if flux is None else ("flux", flux["dit"])
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype)
    key = (base_model, device, str(torch_dtype), offload, tuple(sorted((flux or {}).items())), inpaint)
    if keeping():
        kept = reuse_kept(key)
        if kept is not None:
            kept.fsk_t5_tokens = t5_tokens
            return kept
    try:
        if kind == "flux":
            from faceswap_kohya.diffusion.flux import load_flux_pipeline

            files = flux if flux is not None else {k: str(v) for k, v in flux_check_files().items()}
            for key, path in files.items():
                check_flux_file(path, key, f"base model {key}")
            pipe = load_flux_pipeline(files, torch_dtype, check_model=base_model == CHECK_MODEL_FLUX, inpaint=inpaint)
        elif kind == "file":
            pipe = StableDiffusionXLPipeline.from_single_file(where, config=str(config_folder()), torch_dtype=torch_dtype,
                                                              local_files_only=True)
        elif kind == "folder":
            pipe = StableDiffusionXLPipeline.from_pretrained(where, torch_dtype=torch_dtype, local_files_only=True)
        else:
            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
            pipe = StableDiffusionXLPipeline.from_pretrained(where, torch_dtype=torch_dtype, local_files_only=offline)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - diffusers/safetensors raise many types for a bad or partial file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        family = "a FLUX" if kind == "flux" else "an SDXL"
        raise UserError(f"base model {base_model}: cannot load it as {family} pipeline ({first[:300]})") from None
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload:
        raise UserError(f"offload {offload!r}: use 'model' or 'sequential'")
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.fsk_base = {"model": base_model, "path": where if kind != "hub" else None, "label": model_label(base_model)}
    pipe.fsk_loras = {}
    pipe.fsk_family = "flux" if kind == "flux" else "sdxl"
    pipe.fsk_t5_tokens = t5_tokens
    pipe.fsk_scheduler = pipe.scheduler  # the sampler it came with, set back when a kept pipeline is reused
    if keeping():
        _kept.update(key=key, pipe=pipe)
    return pipe
