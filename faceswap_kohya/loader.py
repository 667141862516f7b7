"""Load an SDXL pipeline (hub id, diffusers folder, single file) and Kohya LoRAs into it.

Every LoRA is checked after loading: each module named in the file must have attached to the model,
because diffusers drops some keys silently (mixed key layouts, blocks the model lacks).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import UserError
from .home import home
from .schema import CHECK_MODEL

SDXL_CONFIG = Path(__file__).parent / "sdxl_config"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".sft")
COMPONENTS = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
DTYPES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16", "half": "float16",
          "bf16": "bfloat16", "bfloat16": "bfloat16"}


@dataclass
class LoraInfo:
    """A LoRA attached to a pipeline as a peft adapter."""

    name: str
    path: Path
    weight: float
    modules: int


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
    from .tokenizers import find_bpe, vocab_and_merges, write_tokenizer

    dest = home() / "sdxl-config"
    shutil.copytree(SDXL_CONFIG, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    tokenizers = [dest / "tokenizer", dest / "tokenizer_2"]
    if not all((t / "vocab.json").is_file() and (t / "merges.txt").is_file() for t in tokenizers):
        vocab, merges = vocab_and_merges(find_bpe())
        for folder, pad in zip(tokenizers, ("<|endoftext|>", "!")):
            write_tokenizer(folder, vocab, merges, pad)
    return dest


def _looks_local(path: str) -> bool:
    return (path.endswith(SINGLE_FILE_SUFFIXES) or path.startswith((".", "/", "~")) or path.count("/") != 1
            or os.sep in path.replace("/", "") or Path(path).drive != "")


def resolve_base(base_model: str) -> tuple[str, str]:
    """(kind, location): kind is "file", "folder" or "hub"."""
    if not base_model or not str(base_model).strip():
        raise UserError("base model: empty (give a hub id, a diffusers folder or a .safetensors file)")
    base_model = str(base_model)
    if base_model == CHECK_MODEL:
        from .checkmodel import check_model_path

        path = check_model_path()
        if not path.is_file():
            raise UserError(f"{CHECK_MODEL}: {path} does not exist yet; build it with `faceswap-kohya check-model`")
        return "file", str(path)
    path = os.path.expanduser(base_model)
    if os.path.isfile(path):
        if not path.endswith(SINGLE_FILE_SUFFIXES):
            raise UserError(f"base model {path}: not a checkpoint file (expected .safetensors or .ckpt)")
        return "file", path
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "model_index.json")):
            raise UserError(f"base model {path}: a folder but not a diffusers pipeline (no model_index.json)")
        return "folder", path
    if _looks_local(base_model):
        raise UserError(f"base model {base_model}: does not exist (a .safetensors file, a diffusers folder or a hub id)")
    return "hub", base_model


def model_label(base_model: str) -> str:
    """A short model name for image metadata: file stem, folder name or hub id."""
    if base_model == CHECK_MODEL:
        return "pipeline-check"
    p = Path(os.path.expanduser(base_model))
    return p.stem if p.suffix in SINGLE_FILE_SUFFIXES else (p.name if p.exists() else base_model)


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


def quiet_libraries() -> None:
    """diffusers/transformers log notes meant for their developers (torchvision backends, dtype casts,
    text encoders without LoRA keys); keep warnings that matter to users only."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is first imported
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()


def load_pipeline(base_model: str, device=None, dtype=None, offload: Optional[str] = None):
    """An SDXL pipeline from a hub id, a local diffusers folder, a single file, or builtin:pipeline-check.

    offload: None, "model" (whole models to the GPU in turn) or "sequential" (layer by layer: least VRAM).
    """
    quiet_libraries()
    from diffusers import StableDiffusionXLPipeline

    kind, where = resolve_base(base_model)
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype)
    try:
        if kind == "file":
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
        raise UserError(f"base model {base_model}: cannot load it as an SDXL pipeline ({first[:300]})") from None
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
    return pipe


# ---------------------------------------------------------------- Kohya names
_RESNET = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
           "conv_shortcut": "skip_connection", "norm1": "in_layers.0", "norm2": "out_layers.0"}
_TOP = {"conv_in": "input_blocks.0.0", "conv_out": "out.2", "conv_norm_out": "out.0",
        "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def sgm_name(name: str, layers_per_block: int = 2, up_has_attention=lambda b: True) -> Optional[str]:
    """A diffusers UNet module name in the original SDXL (sgm) layout that sd-scripts writes:
    `down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q` → `input_blocks.4.1.transformer_blocks.0.attn1.to_q`."""
    if name in _TOP:
        return _TOP[name]
    parts = name.split(".")
    n = layers_per_block + 1

    def resnet(rest):
        return ".".join([_RESNET.get(rest[0], rest[0])] + rest[1:])

    try:
        if parts[0] == "down_blocks":
            b, kind, i, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
            if kind == "resnets":
                return f"input_blocks.{b * n + i + 1}.0." + resnet(rest)
            if kind == "attentions":
                return f"input_blocks.{b * n + i + 1}.1." + ".".join(rest)
            if kind == "downsamplers":
                return f"input_blocks.{(b + 1) * n}.0.op"
        elif parts[0] == "up_blocks":
            b, kind, i, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
            if kind == "resnets":
                return f"output_blocks.{b * n + i}.0." + resnet(rest)
            if kind == "attentions":
                return f"output_blocks.{b * n + i}.1." + ".".join(rest)
            if kind == "upsamplers":
                return f"output_blocks.{b * n + n - 1}.{2 if up_has_attention(b) else 1}.conv"
        elif parts[0] == "mid_block":
            kind, i, rest = parts[1], int(parts[2]), parts[3:]
            if kind == "attentions":
                return "middle_block.1." + ".".join(rest)
            if kind == "resnets":
                return f"middle_block.{2 * i}." + resnet(rest)
    except (IndexError, ValueError):
        return None
    return None


def _peft_layers(model, adapter: str):
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in model.named_modules():
        if isinstance(module, BaseTunerLayer) and adapter in getattr(module, "lora_A", {}):
            yield name, module


def attached_names(pipe, adapter: str) -> set[str]:
    """Every name a file could use for the modules that carry `adapter` (Kohya original and diffusers
    layouts, and peft/diffusers names)."""
    names = set()
    for component, prefix in COMPONENTS.items():
        model = getattr(pipe, component, None)
        if model is None:
            continue
        up_attn = lambda b: True  # noqa: E731
        lpb = 2
        if component == "unet":
            lpb = model.config.layers_per_block
            up_types = model.config.up_block_types
            up_attn = lambda b: "CrossAttn" in up_types[b]  # noqa: E731
        for name, _ in _peft_layers(model, adapter):
            names.add(f"{component}.{name}")
            names.add(prefix + name.replace(".", "_"))
            if component != "unet":  # sd-scripts (transformers 4) names CLIP layers text_model.encoder...; 5.x drops it
                bare = name.removeprefix("text_model.")
                names |= {f"{component}.{bare}", f"{component}.text_model.{bare}",
                          prefix + bare.replace(".", "_"), prefix + "text_model_" + bare.replace(".", "_")}
            if component == "unet" and (sgm := sgm_name(name, lpb, up_attn)):
                names.add(prefix + sgm.replace(".", "_"))
    return names


# ---------------------------------------------------------------- LoRA files
_KOHYA_SUFFIX = re.compile(r"\.(lora_down|lora_up|alpha|dora_scale|lora_mid)(\.weight)?$")
_PEFT_SUFFIX = re.compile(r"\.(lora_A|lora_B|lora\.down|lora\.up|lora_linear_layer\.(down|up))(\.[\w]+)?\.weight$")
_LYCORIS = re.compile(r"\.(hada_w1_a|hada_w2_a|lokr_w1|lokr_w1_a|oft_blocks|oft_diag)\b")


def read_lora_modules(path: Path) -> list[str]:
    """The module names in a LoRA file (one per lora_down/lora_A), after checking it is an SDXL LoRA."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable .safetensors file, truncated or corrupt ({e})") from None
    if not keys:
        raise UserError(f"{path}: the file holds no tensors")
    if any(_LYCORIS.search(k) for k in keys):
        raise UserError(f"{path}: a LyCORIS LoHa/LoKr/OFT file; only LoRA/LoCon (networks.lora, lycoris locon) can be loaded")
    modules = sorted({k.split(".")[0] for k in keys if k.endswith(".lora_down.weight")})
    modules += sorted({_PEFT_SUFFIX.sub("", k) for k in keys if _PEFT_SUFFIX.search(k) and
                       re.search(r"lora_A|lora\.down|lora_linear_layer\.down", k)})
    if not modules:
        raise UserError(f"{path}: not a LoRA: none of its {len(keys)} tensors is a lora_down/lora_up pair "
                        f"(first key: {keys[0]!r}); is it a full model checkpoint?")
    if any(m.startswith("lora_te_") for m in modules) or any("down_blocks_0_attentions" in m for m in modules):
        raise UserError(f"{path}: a LoRA for SD 1.x/2.x (one text encoder: lora_te_*, or attention in the first UNet "
                        "block); it cannot be used with SDXL")
    unet = [m for m in modules if m.startswith("lora_unet_")]
    sgm = [m for m in unet if re.match(r"lora_unet_(input_blocks|middle_block|output_blocks)_", m)]
    diff = [m for m in unet if re.match(r"lora_unet_(down_blocks|mid_block|up_blocks)_", m)]
    if sgm and diff:
        raise UserError(f"{path}: mixes two UNet key layouts ({len(sgm)} original like {sgm[0]!r} and {len(diff)} "
                        f"diffusers like {diff[0]!r}); diffusers would silently drop the original ones. "
                        "Re-save it with one layout")
    return modules


def _adapter_name(path: Path, pipe) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]", "_", path.stem) or "lora"
    taken = set(pipe.fsk_loras) if hasattr(pipe, "fsk_loras") else set()
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def attach_lora(pipe, path, weight: float = 1.0, adapter_name: Optional[str] = None) -> int:
    """Load a LoRA file as a peft adapter and prove every module in it attached; returns the module count.

    The adapter is added to the pipeline's active adapters at `weight` (several LoRAs sum).
    """
    path = Path(os.path.expanduser(str(path)))
    if not os.path.isfile(path):  # else diffusers treats the path as a hub repo id
        raise UserError(f"LoRA {path}: no such file")
    modules = read_lora_modules(path)
    if not hasattr(pipe, "fsk_loras"):
        pipe.fsk_loras = {}
    name = adapter_name or _adapter_name(path, pipe)
    if name in pipe.fsk_loras or name in _all_adapters(pipe):
        raise UserError(f"LoRA {path}: an adapter named {name!r} is already loaded; give another adapter name")
    try:
        pipe.load_lora_weights(str(path), adapter_name=name)
    except (ValueError, KeyError, RuntimeError, OSError, IndexError) as e:
        _drop(pipe, name)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = " (tensor shapes don't fit: a LoRA for another model architecture?)" if "size mismatch" in str(e) else ""
        raise UserError(f"LoRA {path}: diffusers cannot load it{hint}: {msg[:300]}") from None
    attached = attached_names(pipe, name)
    missing = [m for m in modules if m not in attached]
    if missing:
        _drop(pipe, name)
        shown = ", ".join(missing[:6]) + (f", ... ({len(missing) - 6} more)" if len(missing) > 6 else "")
        raise UserError(f"LoRA {path}: only {len(modules) - len(missing)} of {len(modules)} modules attached to the model; "
                        f"not attached: {shown}. Is it a LoRA for this base model (SDXL)?")
    pipe.fsk_loras[name] = LoraInfo(name, path, float(weight), len(modules))
    set_weights(pipe, {n: info.weight for n, info in pipe.fsk_loras.items()})
    return len(modules)


def _all_adapters(pipe) -> set[str]:
    try:
        return {a for names in pipe.get_list_adapters().values() for a in names}
    except (AttributeError, ValueError):
        return set()


def _drop(pipe, name: str) -> None:
    if name in _all_adapters(pipe):
        pipe.delete_adapters(name)


def set_weights(pipe, weights: dict[str, float]) -> None:
    """Activate exactly these adapters at these weights; an empty dict (or all zero) runs the base model."""
    active = {n: w for n, w in weights.items() if w != 0}
    if not active:
        if _all_adapters(pipe):
            pipe.disable_lora()
        return
    pipe.enable_lora()
    pipe.set_adapters(list(active), list(active.values()))
    for name, w in weights.items():
        if name in pipe.fsk_loras:
            pipe.fsk_loras[name].weight = w


def fuse(pipe, weights: dict[str, float]) -> None:
    """Merge the LoRAs into the base weights at these weights and drop the adapters: base-model speed.

    The pipeline can't go back to the base model afterwards (load it again for that)."""
    set_weights(pipe, weights)
    active = [n for n, w in weights.items() if w != 0]
    if active:
        pipe.fuse_lora(adapter_names=active, lora_scale=1.0)
    pipe.unload_lora_weights()
    pipe.fsk_fused = dict(weights)
