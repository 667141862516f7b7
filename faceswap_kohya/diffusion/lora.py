"""Kohya LoRAs on a diffusers SDXL or FLUX pipeline: a LoRA file's modules read (and checked to be a LoRA of the
pipeline's family), each attached as a peft adapter, adapter weights set, LoRAs fused.

Every LoRA is checked after loading: each module named in the file must have attached to the model,
because diffusers drops some keys silently (mixed key layouts, blocks the model lacks).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from faceswap_kohya.errors import UserError

COMPONENTS = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
FLUX_COMPONENTS = {"transformer": "lora_unet_", "text_encoder": "lora_te1_"}  # lora_flux's T5 (lora_te3_) is not loaded


def pipeline_family(pipe) -> str:
    return getattr(pipe, "fsk_family", "sdxl")


def lora_family(modules: list[str]) -> str:
    """flux when the LoRA's modules are FLUX DiT blocks (`lora_unet_double_blocks_*`, `lora_unet_single_blocks_*`)."""
    return "flux" if any(m.startswith(("lora_unet_double_blocks_", "lora_unet_single_blocks_")) for m in modules) else "sdxl"


@dataclass
class LoraInfo:
    """A LoRA attached to a pipeline as a peft adapter."""

    name: str
    path: Path
    weight: float
    modules: int


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
    flux = pipeline_family(pipe) == "flux"
    for component, prefix in (FLUX_COMPONENTS if flux else COMPONENTS).items():
        model = getattr(pipe, component, None)
        if model is None:
            continue
        if component == "transformer":
            from faceswap_kohya.diffusion.flux import attached_kohya_names

            layers = {name for name, _ in _peft_layers(model, adapter)}
            names |= attached_kohya_names(model, layers) | {f"transformer.{n}" for n in layers}
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
    if lora_family(modules) == "flux":
        return modules
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


def attach_lora(pipe, path, weight: float = 1.0, adapter_name: Optional[str] = None,
                modules: Optional[list[str]] = None) -> int:
    """Load a LoRA file as a peft adapter and prove every module in it attached; returns the module count.

    The adapter is added to the pipeline's active adapters at `weight` (several LoRAs sum). `modules`: the file's
    module names when `read_lora_modules` has already read them (its header is then not read again).
    """
    path = Path(os.path.expanduser(str(path)))
    if not os.path.isfile(path):  # else diffusers treats the path as a hub repo id
        raise UserError(f"LoRA {path}: no such file")
    modules = read_lora_modules(path) if modules is None else modules
    family = pipeline_family(pipe)
    if lora_family(modules) != family:
        raise UserError(f"LoRA {path}: a {lora_family(modules).upper()} LoRA, and the base model is {family.upper()}: "
                        "give the base model it was trained on")
    if not hasattr(pipe, "fsk_loras"):
        pipe.fsk_loras = {}
    name = adapter_name or _adapter_name(path, pipe)
    if name in pipe.fsk_loras or name in all_adapters(pipe):
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
                        f"not attached: {shown}. Is it a LoRA for this base model ({family.upper()})?")
    pipe.fsk_loras[name] = LoraInfo(name, path, float(weight), len(modules))
    set_weights(pipe, {n: info.weight for n, info in pipe.fsk_loras.items()})
    return len(modules)


def attach_loras(pipe, paths, weight: float = 0.0, modules: Optional[dict] = None) -> dict:
    """Attach each LoRA file (see attach_lora; `modules`: {path: its module names} already read); returns
    {path: its adapter name}."""
    names = {}
    for path in paths:
        before = set(getattr(pipe, "fsk_loras", {}))
        attach_lora(pipe, path, weight=weight, modules=(modules or {}).get(path))
        names[path] = (set(pipe.fsk_loras) - before).pop()
    return names


def all_adapters(pipe) -> set[str]:
    try:
        return {a for names in pipe.get_list_adapters().values() for a in names}
    except (AttributeError, ValueError):
        return set()


def _drop(pipe, name: str) -> None:
    if name in all_adapters(pipe):
        pipe.delete_adapters(name)


def set_weights(pipe, weights: dict[str, float]) -> None:
    """Activate exactly these adapters at these weights; an empty dict (or all zero) runs the base model."""
    active = {n: w for n, w in weights.items() if w != 0}
    if not active:
        if all_adapters(pipe):
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
