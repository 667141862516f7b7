"""Kohya presets in and out: kohya_ss GUI JSON, flat sd-scripts TOML, sectioned kohya-colab TOML.

Import runs in two steps. A kohya_ss GUI preset is first turned into the sd-scripts arguments
kohya_ss itself would write (`gui_to_sd_args`, following `train_model` in bmaltais/kohya_ss
kohya_gui/lora_gui.py: its `config_toml_data` dict, the filter that drops ""/False/None/0, the
`LoRA_type` → network_module/network_args branches, `resolve_lr_warmup_steps` in common_gui.py
(percent → ratio) and `run_cmd_advanced_training` (additional_parameters: quotes removed, split on
spaces, appended to the command line)). sd-scripts arguments, from that step or from a TOML (whose
sections sd-scripts flattens, names ignored), then become preset fields (`sd_args_to_preset`).
Every key of the input ends in the report: mapped, transformed (from → to), ignored (with the
reason) or unsupported. Settings the schema has no field for go to network.args, optimizer.args or
kohya.extra_args (passed to the trainer's command line, which wins over its TOML).

Export writes the reverse: a flat sd-scripts config TOML (+ its dataset TOML) or a kohya_ss JSON.
No torch here: this module only reads and writes text.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import UserError
from .presets import read_text

try:  # Python 3.11+
    import tomllib
except ImportError:  # pragma: no cover
    import tomli as tomllib

DEFAULT_BASE_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
KOHYA_SUFFIXES = (".json", ".toml")


# ---------------------------------------------------------------- report
@dataclass
class Entry:
    key: str
    status: str  # mapped | transformed | ignored | unsupported
    detail: str


@dataclass
class Report:
    source: str
    kind: str  # "kohya_ss GUI JSON", "sd-scripts TOML", ...
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, key: str, status: str, detail: str) -> None:
        self.entries.append(Entry(key, status, detail))

    def keys(self) -> set[str]:
        return {e.key for e in self.entries}

    def by_key(self, key: str) -> list[Entry]:
        return [e for e in self.entries if e.key == key]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("mapped", "transformed", "ignored", "unsupported")}
        for e in self.entries:
            out[e.status] += 1
        return out

    def text(self) -> str:
        c = self.counts()
        lines = [f"imported {self.source} ({self.kind}): " + ", ".join(f"{n} {s}" for s, n in c.items())]
        for status in ("mapped", "transformed", "unsupported", "ignored"):
            group = [e for e in self.entries if e.status == status]
            if group:
                lines.append(f"{status}:")
                lines += [f"  {e.key}: {e.detail}" for e in group]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# ---------------------------------------------------------------- value helpers
def _num(v):
    """Loose GUI numbers: "1e-4" → 0.0001, "" / None → None, bools kept."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v
    s = str(v).strip()
    if s == "":
        return None
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return s


def _int(v, default=None):
    v = _num(v)
    if v is None or isinstance(v, str):
        return default
    return int(v)


def _float(v, default=None):
    v = _num(v)
    if v is None or isinstance(v, str):
        return default
    return float(v)


def _unset(v) -> bool:
    """kohya_ss drops these (`value not in ["", False, None]`, and 0 == False)."""
    if isinstance(v, list):
        return not v
    return v is None or v == "" or v is False or (not isinstance(v, str) and v == 0)


def _fmt(v) -> str:
    return json.dumps(v) if isinstance(v, (str, list)) else str(v).lower() if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)


def split_args(text) -> list[str]:
    """kohya_ss' way with optimizer_args/network_args/additional_parameters: drop quotes, split on spaces."""
    if isinstance(text, list):
        return [str(x) for x in text]
    return str(text or "").replace('"', "").split()


def parse_cli_args(tokens: list[str]) -> dict:
    """`--key=v`, `--key v1 v2`, `--flag` → {key: value}; lists for several values."""
    out: dict = {}
    key = None
    for tok in tokens:
        if tok.startswith("--"):
            name, eq, val = tok[2:].partition("=")
            key = name
            out[key] = _num(val) if eq else True
            if eq:
                key = None  # `--k=v` takes no more values
        elif key is not None:
            prev = out[key]
            v = _num(tok)
            out[key] = v if prev is True else (prev if isinstance(prev, list) else [prev]) + [v]
        else:
            out.setdefault("", []).append(tok)
    return out


def to_cli_args(key: str, value) -> list[str]:
    if value is True:
        return [f"--{key}"]
    if isinstance(value, list):
        return [f"--{key}", *(str(v) for v in value)]
    return [f"--{key}={_fmt(value) if not isinstance(value, str) else value}"]


# ---------------------------------------------------------------- families
class Refused(UserError):
    """The file targets a model family this tool does not train."""


_FAMILY_CHECKBOXES = {"flux1_checkbox": "Flux.1", "sd3_checkbox": "SD3", "hunyuan_image_checkbox": "HunyuanImage-2.1",
                      "anima_checkbox": "Anima", "lumina_checkbox": "Lumina Image 2.0"}
_FAMILY_LORA_TYPES = {"Flux1": "Flux.1", "Flux1 OFT": "Flux.1", "HunyuanImage-2.1": "HunyuanImage-2.1",
                      "Anima": "Anima", "Lumina": "Lumina Image 2.0"}
_FAMILY_MODULES = {"networks.lora_flux": "Flux.1", "networks.oft_flux": "Flux.1", "networks.lora_sd3": "SD3",
                   "networks.lora_hunyuan_image": "HunyuanImage-2.1", "networks.lora_anima": "Anima",
                   "networks.lora_lumina": "Lumina Image 2.0"}
_FAMILY_KEYS = {"t5xxl": "Flux.1 or SD3", "ae": "Flux.1", "clip_g": "SD3", "guidance_scale": "Flux.1",
                "discrete_flow_shift": "Flux.1", "timestep_sampling": "Flux.1", "apply_t5_attn_mask": "Flux.1"}


def _refuse(source: str, family: str, why: str):
    raise Refused(f"{source}: this preset targets {family} ({why}); faceswap-kohya trains SDXL LoRAs only. "
                  "Use an SDXL preset, or start from a shipped one (`faceswap-kohya presets ls`).")


def check_family_gui(gui: dict, source: str) -> None:
    for key, family in _FAMILY_CHECKBOXES.items():
        if gui.get(key) is True:
            _refuse(source, family, f"{key} is true")
    if gui.get("LoRA_type") in _FAMILY_LORA_TYPES:
        _refuse(source, _FAMILY_LORA_TYPES[gui["LoRA_type"]], f"LoRA_type {gui['LoRA_type']!r}")
    if gui.get("v2") is True:
        _refuse(source, "SD 2.x", "v2 is true")
    if gui.get("sdxl") is not True:
        _refuse(source, "SD 1.5", "sdxl is " + ("missing" if "sdxl" not in gui else json.dumps(gui["sdxl"])))


def check_family_sd(args: dict, source: str) -> None:
    module = str(args.get("network_module", ""))
    if module in _FAMILY_MODULES:
        _refuse(source, _FAMILY_MODULES[module], f"network_module {module}")
    for key, family in _FAMILY_KEYS.items():
        if not _unset(args.get(key)):
            _refuse(source, family, f"it sets {key}")
    if args.get("v2") is True:
        _refuse(source, "SD 2.x", "v2 is true")
    model = str(args.get("pretrained_model_name_or_path", "")).lower()
    for pat, family in (("flux", "Flux.1"), ("sd3", "SD3"), ("stable-diffusion-3", "SD3"), ("v1-5", "SD 1.5"),
                        ("sd15", "SD 1.5"), ("sd-1-5", "SD 1.5"), ("stable-diffusion-v1", "SD 1.5")):
        if pat in model and "xl" not in model:
            _refuse(source, family, f"its base model is {args['pretrained_model_name_or_path']}")


# ---------------------------------------------------------------- kohya_ss GUI JSON → sd-scripts arguments
# Defaults of the GUI's widgets, used when an older preset lacks the key (the GUI then keeps its own value).
GUI_DEFAULTS = {
    "LyCORIS_preset": "full", "conv_dim": 1, "conv_alpha": 1, "use_tucker": False, "rank_dropout": 0,
    "module_dropout": 0, "bypass_mode": False, "dora_wd": False, "use_scalar": False, "rank_dropout_scale": False,
    "train_norm": False, "factor": -1, "use_cp": False, "decompose_both": False, "constrain": 0.0,
    "rescaled": False, "unit": 1, "train_on_input": True, "noise_offset_type": "Original", "lr_warmup": 0,
    "lr_warmup_steps": 0, "max_train_steps": 0, "max_train_epochs": 0, "epoch": 1, "lr_scheduler_num_cycles": "",
}

# LyCORIS branches of train_model (kohya_ss lora_gui.py): which GUI keys go into network_args, in order.
_LYCORIS_ARGS = {
    "LyCORIS/BOFT": ("boft", ["LyCORIS_preset", "conv_dim", "conv_alpha", "module_dropout", "use_tucker", "rank_dropout",
                               "rank_dropout_scale", "train_norm"]),
    "LyCORIS/Diag-OFT": ("diag-oft", ["LyCORIS_preset", "conv_dim", "conv_alpha", "module_dropout", "use_tucker",
                                       "rank_dropout", "rank_dropout_scale", "constrain", "rescaled", "train_norm"]),
    "LyCORIS/DyLoRA": ("dylora", ["LyCORIS_preset", "conv_dim", "conv_alpha", "use_tucker", "unit", "rank_dropout",
                                   "module_dropout", "train_norm"]),
    "LyCORIS/GLoRA": ("glora", ["LyCORIS_preset", "conv_dim", "conv_alpha", "use_tucker", "rank_dropout",
                                 "module_dropout", "rank_dropout_scale", "train_norm"]),
    "LyCORIS/iA3": ("ia3", ["LyCORIS_preset", "conv_dim", "conv_alpha", "train_on_input"]),
    "LyCORIS/LoCon": ("locon", ["LyCORIS_preset", "conv_dim", "conv_alpha", "use_tucker", "rank_dropout", "bypass_mode",
                                 "dora_wd", "module_dropout", "use_scalar", "rank_dropout_scale", "train_norm"]),
    "LyCORIS/LoHa": ("loha", ["LyCORIS_preset", "conv_dim", "conv_alpha", "use_tucker", "rank_dropout", "bypass_mode",
                               "dora_wd", "module_dropout", "use_scalar", "rank_dropout_scale", "train_norm"]),
    "LyCORIS/LoKr": ("lokr", ["LyCORIS_preset", "conv_dim", "conv_alpha", "use_tucker", "rank_dropout", "bypass_mode",
                               "dora_wd", "module_dropout", "factor", "use_cp", "use_scalar", "decompose_both",
                               "rank_dropout_scale", "train_norm"]),
    "LyCORIS/Native Fine-Tuning": ("full", ["LyCORIS_preset", "rank_dropout", "module_dropout", "rank_dropout_scale",
                                             "train_norm"]),
}
_LYCORIS_ARGS["LoCon"] = _LYCORIS_ARGS["LyCORIS/LoCon"]
_ARG_NAMES = {"LyCORIS_preset": "preset", "unit": "block_size", "constrain": "constraint"}
# Standard / Kohya LoCon: these GUI keys become network_args when truthy.
_KOHYA_LORA_VARS = ["down_lr_weight", "mid_lr_weight", "up_lr_weight", "block_lr_zero_threshold", "block_dims",
                    "block_alphas", "conv_block_dims", "conv_block_alphas", "rank_dropout", "module_dropout"]
_NETWORK_KEYS = set().union(*(set(v[1]) for v in _LYCORIS_ARGS.values()), _KOHYA_LORA_VARS,
                            {"LoRA_type", "conv_dim", "conv_alpha"})

# GUI keys whose value goes to sd-scripts unchanged, under the same name (0/""/false dropped).
_GUI_SAME = [
    "bucket_no_upscale", "bucket_reso_steps", "cache_latents", "cache_latents_to_disk", "caption_dropout_rate",
    "color_aug", "debiased_estimation_loss", "enable_bucket", "flip_aug", "fp8_base", "full_bf16", "full_fp16",
    "gradient_checkpointing", "highvram", "ip_noise_gamma", "ip_noise_gamma_random_strength", "learning_rate",
    "loss_type", "huber_c", "huber_schedule", "huber_scale", "lr_scheduler", "lr_scheduler_power", "lr_scheduler_type",
    "masked_loss", "max_bucket_reso", "max_grad_norm", "max_timestep", "mem_eff_attn", "min_snr_gamma",
    "min_timestep", "mixed_precision", "network_alpha", "network_dim", "network_dropout", "optimizer_type",
    "prior_loss_weight", "random_crop", "save_every_n_epochs", "save_every_n_steps", "save_last_n_steps",
    "save_last_n_steps_state", "save_last_n_epochs", "save_last_n_epochs_state", "save_precision", "save_state",
    "save_state_on_train_end", "scale_v_pred_loss_like_noise_pred", "scale_weight_norms", "shuffle_caption",
    "train_batch_size", "unet_lr", "v_parameterization", "v_pred_like_loss", "vae_batch_size", "weighted_captions",
    "no_token_padding", "output_name", "pretrained_model_name_or_path", "vae", "lowram", "clip_skip",
]
_GUI_INT = ["caption_dropout_every_n_epochs", "gradient_accumulation_steps", "keep_tokens", "max_token_length",
            "min_bucket_reso", "persistent_data_loader_workers"]
# GUI keys that never reach the trainer's training settings, with the reason.
_GUI_IGNORED = {
    "sdxl": "selects SDXL (the only family this tool trains)",
    "v2": "SD 2.x switch (off)",
    "training_comment": "metadata text only", "caption_extension": "the dataset step writes .txt captions",
    "num_machines": "accelerate multi-machine setting", "multi_gpu": "accelerate multi-GPU setting",
    "gpu_ids": "accelerate GPU selection", "main_process_port": "accelerate setting",
    "dynamo_backend": "accelerate setting", "dynamo_mode": "accelerate setting",
    "dynamo_use_fullgraph": "accelerate setting", "dynamo_use_dynamic": "accelerate setting",
    "extra_accelerate_launch_args": "accelerate setting",
    "log_with": "logging only", "log_prefix": "logging only", "log_tracker_name": "logging only",
    "log_tracker_config": "logging only", "log_config": "logging only", "wandb_api_key": "logging only",
    "wandb_run_name": "logging only",
    "stop_text_encoder_training": "kohya_ss ignores it ('not yet supported')",
    "stop_text_encoder_training_pct": "kohya_ss ignores it ('not yet supported')",
    "save_model_as": "always safetensors", "sample_every_n_epochs": "sampling prompts live in the preset's sampling section",
    "sample_every_n_steps": "sampling prompts live in the preset's sampling section",
    "sample_prompts": "sampling prompts live in the preset's sampling section",
    "sample_sampler": "sampling prompts live in the preset's sampling section",
    "model_list": "GUI model picker", "save_as_bool": "GUI state", "print_only": "GUI state",
    "headless": "GUI state", "use_shell": "GUI state",
}
_PATH_KEYS = {"train_data_dir", "reg_data_dir", "output_dir", "logging_dir", "dataset_config", "resume",
              "lora_network_weights", "network_weights", "log_tracker_config", "sample_prompts", "output_config",
              "config_file"}


@dataclass
class SdArgs:
    """sd-scripts arguments with, for each, the source key it came from and how (for the report)."""

    values: dict = field(default_factory=dict)
    origin: dict = field(default_factory=dict)  # sd key → (source key, note or "")

    def set(self, key, value, source, note=""):
        self.values[key] = value
        self.origin[key] = (source, note)


def gui_to_sd_args(gui: dict, report: Report) -> SdArgs:
    """What kohya_ss' train_model writes for an SDXL LoRA (config TOML + additional_parameters)."""
    g = dict(GUI_DEFAULTS)
    g.update(gui)
    out = SdArgs()
    done: set[str] = set()

    def use(key, sd_key=None, value=None, note=""):
        done.add(key)
        v = g.get(key) if value is None else value
        if _unset(v):
            if key in gui:
                report.add(key, "ignored", f"unset ({_fmt(gui[key])}); kohya_ss leaves it out")
            return
        out.set(sd_key or key, v, key, note)

    for key in _GUI_SAME:
        if key in gui:
            sd_key = {"optimizer_type": "optimizer"}.get(key, key)
            done.add(sd_key)
            use(sd_key, key, _num(gui[sd_key]) if not isinstance(gui[sd_key], (bool, list)) else gui[sd_key])
    for key in _GUI_INT:
        if key in gui:
            use(key, value=_int(gui[key], 0))
    if "optimizer" in gui:
        use("optimizer", "optimizer_type")
    # resolution, attention, SDXL switches
    if "max_resolution" in gui:
        use("max_resolution", "resolution", note="kohya_ss passes it as resolution")
    if "xformers" in gui:
        x = gui["xformers"]
        choice = "xformers" if x in (True, "xformers") else "sdpa" if x == "sdpa" else None
        done.add("xformers")
        if choice:
            out.set(choice, True, "xformers", f"{_fmt(x)} means --{choice}")
        else:
            report.add("xformers", "transformed", f"{_fmt(x)} → no xformers/sdpa flag (attention: none)")
            out.set("_attention_none", True, "xformers")
    if "sdxl_no_half_vae" in gui:
        use("sdxl_no_half_vae", "no_half_vae", value=True if gui["sdxl_no_half_vae"] else None, note="sdxl_no_half_vae")
        if not gui["sdxl_no_half_vae"]:
            out.set("_no_half_vae_off", True, "sdxl_no_half_vae")
    if "sdxl_cache_text_encoder_outputs" in gui:
        use("sdxl_cache_text_encoder_outputs", "cache_text_encoder_outputs",
            value=True if gui["sdxl_cache_text_encoder_outputs"] else None)
    # seed: `int(seed) if int(seed) != 0 else None`
    if "seed" in gui:
        done.add("seed")
        if _int(gui["seed"], 0):
            out.set("seed", _int(gui["seed"]), "seed")
        else:
            report.add("seed", "transformed", f"unset ({_fmt(gui['seed'])}: sd-scripts picks a random seed) → "
                       "training.seed = 42 (a preset always fixes one)")
    # noise: Original → noise_offset (+ adaptive_noise_scale, random strength); Multires → multires_*
    nt = g.get("noise_offset_type")
    noise_keys = {"Original": ("noise_offset", "adaptive_noise_scale", "noise_offset_random_strength"),
                  "Multires": ("multires_noise_iterations", "multires_noise_discount")}
    for kind, keys in noise_keys.items():
        for key in (k for k in keys if k in gui):
            if nt == kind:
                use(key, value=_num(gui[key]))
            else:
                done.add(key)
                report.add(key, "ignored", f"noise_offset_type is {nt!r}: kohya_ss leaves it out")
    if "noise_offset_type" in gui:
        done.add("noise_offset_type")
        report.add("noise_offset_type", "mapped", f"{_fmt(nt)} selects which noise keys apply")
    # learning rates: text_encoder_lr → [te, te]; unet_lr 0 → unset; UNet-only when te == 0 < unet
    te = _float(g.get("text_encoder_lr"), 0.0) or 0.0
    unet = _float(g.get("unet_lr"), 0.0) or 0.0
    if "text_encoder_lr" in gui:
        done.add("text_encoder_lr")
        if te > 0:
            out.set("text_encoder_lr", [te, te], "text_encoder_lr", "one value per text encoder")
        else:
            report.add("text_encoder_lr", "ignored", f"unset ({_fmt(gui['text_encoder_lr'])}); kohya_ss leaves it out")
    if te == 0 and unet != 0:
        out.set("network_train_unet_only", True, "text_encoder_lr", "0 with unet_lr set means UNet only")
    if unet == 0 and te != 0:
        out.set("network_train_text_encoder_only", True, "unet_lr", "0 with text_encoder_lr set")
    # epochs and steps: with a folder dataset kohya_ss computes max_train_steps from `epoch`
    # (images × repeats ÷ batch ÷ accumulation × epoch × reg factor), which is what sd-scripts
    # computes itself from max_train_epochs for the same folder.
    mte, mts, ep = _int(g.get("max_train_epochs"), 0), _int(g.get("max_train_steps"), 0), _int(g.get("epoch"), 1)
    for key in ("epoch", "max_train_epochs", "max_train_steps"):
        done.add(key)
    if mte:
        out.set("max_train_epochs", mte, "max_train_epochs")
    if mts:
        out.set("max_train_steps", mts, "max_train_steps")
    if not mts:
        if not mte and "epoch" in gui:
            out.set("max_train_epochs", ep, "epoch", "kohya_ss turns epoch into max_train_steps for its image folder; "
                    "sd-scripts computes the same count from max_train_epochs")
        for key in ("max_train_steps",):
            if key in gui:
                report.add(key, "ignored", f"unset ({_fmt(gui[key])}): the step count follows from the epochs")
    if mte and "epoch" in gui:
        report.add("epoch", "ignored", f"max_train_epochs={mte} overrides it")
    elif mts and "epoch" in gui:
        report.add("epoch", "ignored", f"max_train_steps={mts} is set, so kohya_ss does not use it")
    if not mte and "max_train_epochs" in gui:
        report.add("max_train_epochs", "ignored", f"unset ({_fmt(gui['max_train_epochs'])})")
    # lr_warmup (percent) / lr_warmup_steps (absolute override): resolve_lr_warmup_steps
    done.update({"lr_warmup", "lr_warmup_steps"})
    pct, steps = _float(g.get("lr_warmup"), 0.0) or 0.0, _float(g.get("lr_warmup_steps"), 0.0) or 0.0
    if steps > 0:
        out.set("lr_warmup_steps", int(steps), "lr_warmup_steps")
        if "lr_warmup" in gui:
            report.add("lr_warmup", "ignored", "lr_warmup_steps overrides it")
    elif pct:
        out.set("lr_warmup_steps", pct / 100, "lr_warmup", f"{_fmt(pct)} % → ratio {pct / 100:g} of all steps")
    else:
        for key in ("lr_warmup", "lr_warmup_steps"):
            if key in gui:
                report.add(key, "ignored", f"unset ({_fmt(gui[key])}); no warmup")
    # lr_scheduler_num_cycles: "" → epoch
    if "lr_scheduler_num_cycles" in gui:
        done.add("lr_scheduler_num_cycles")
        cyc = _int(gui["lr_scheduler_num_cycles"])
        note = "" if cyc is not None else f"empty → epoch ({ep}), as kohya_ss does"
        out.set("lr_scheduler_num_cycles", cyc if cyc is not None else ep, "lr_scheduler_num_cycles", note)
    for key, sd_key in (("optimizer_args", "optimizer_args"), ("lr_scheduler_args", "lr_scheduler_args")):
        if key in gui:
            use(key, sd_key, value=split_args(gui[key]))
    if "max_data_loader_n_workers" in gui:  # re-added after the filter, 0 included
        done.add("max_data_loader_n_workers")
        out.set("max_data_loader_n_workers", _int(gui["max_data_loader_n_workers"], 0), "max_data_loader_n_workers")
    for key in ("num_cpu_threads_per_process", "num_processes"):
        if key in gui:
            done.add(key)
            out.set(f"_accelerate_{key}", _int(gui[key], 1), key)
    # network: LoRA_type branches
    _gui_network(g, gui, out, report, done)
    # additional_parameters: appended to the command line (wins over the TOML)
    if "additional_parameters" in gui:
        done.add("additional_parameters")
        extra = parse_cli_args(split_args(gui["additional_parameters"]))
        if not extra:
            report.add("additional_parameters", "ignored", "empty")
        for key, value in extra.items():
            out.set(key, value, "additional_parameters", f"--{key} on kohya_ss' command line" if key else "")
    for key, value in gui.items():
        if key in done:
            continue
        if key in _PATH_KEYS:
            report.add(key, "ignored", "a path on the machine that wrote the preset" if not _unset(value) else "empty path")
        elif key in _GUI_IGNORED:
            report.add(key, "ignored", _GUI_IGNORED[key])
        elif key.startswith(("metadata_", "huggingface_", "resume_from_huggingface", "save_state_to_huggingface",
                             "async_upload")):
            report.add(key, "ignored", "metadata / upload setting" if not _unset(value) else "unset")
        elif _unset(value):
            report.add(key, "ignored", f"unset ({_fmt(value)}); kohya_ss leaves it out")
        else:
            report.add(key, "unsupported", f"{_fmt(value)}: not a setting this importer knows; not applied")
    return out


def _gui_network(g: dict, gui: dict, out: SdArgs, report: Report, done: set) -> None:
    lora_type = g.get("LoRA_type", "Standard")
    done.add("LoRA_type")
    used: list[str] = []
    args: list[str] = []
    if lora_type in _LYCORIS_ARGS:
        algo, keys = _LYCORIS_ARGS[lora_type]
        module = "lycoris.kohya"
        for k in keys:
            args.append(f"{_ARG_NAMES.get(k, k)}={_fmt_arg(g.get(k))}")
            used.append(k)
        args.append(f"algo={algo}")
    elif lora_type in ("Standard", "Kohya LoCon"):
        module = "networks.lora"
        if lora_type == "Kohya LoCon":
            args += [f"conv_dim={_fmt_arg(g.get('conv_dim'))}", f"conv_alpha={_fmt_arg(g.get('conv_alpha'))}"]
            used += ["conv_dim", "conv_alpha"]
        for k in _KOHYA_LORA_VARS:
            if not _unset(_num(g.get(k))):
                args.append(f"{k}={_fmt_arg(g.get(k))}")
                used.append(k)
    else:
        module = {"LoRA-FA": "networks.lora_fa", "Kohya DyLoRA": "networks.dylora", "Kohya LoHa": "networks.loha",
                  "Kohya LoKr": "networks.lokr"}.get(lora_type, f"? ({lora_type})")
    for k in ("loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio"):
        if not _unset(_num(g.get(k))):
            args.append(f"{k}={_fmt_arg(g.get(k))}")
            used.append(k)
    out.set("network_module", module, "LoRA_type", f"{lora_type!r} → {module}")
    if args:
        out.set("network_args", args, "LoRA_type", "network_args built from " + ", ".join(dict.fromkeys(used)))
    for k in _NETWORK_KEYS | {"loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio"}:
        if k in gui and k != "LoRA_type":
            done.add(k)
            if k in used:
                report.add(k, "transformed", f"{_fmt(gui[k])} → network.args ({lora_type})")
            elif _unset(_num(gui[k])):
                report.add(k, "ignored", f"unset ({_fmt(gui[k])})")
            else:
                report.add(k, "ignored", f"{_fmt(gui[k])}: LoRA_type {lora_type!r} does not use it (kohya_ss leaves it out)")
    if "dim_from_weights" in gui:
        done.add("dim_from_weights")
        if gui["dim_from_weights"]:
            report.add("dim_from_weights", "unsupported",
                       "true: needs the LoRA file it was taken from (a path on the preset's machine); network.dim is used")
        else:
            report.add("dim_from_weights", "ignored", "unset (false)")


def _fmt_arg(v) -> str:
    """A GUI value as kohya_ss' f-string writes it into network_args (Python str())."""
    return str(v)


# ---------------------------------------------------------------- sd-scripts arguments → preset
# sd-scripts options without a preset field that change training: kept as kohya.extra_args.
EXTRA_OPTIONS = {
    "adaptive_noise_scale", "noise_offset_random_strength", "multires_noise_iterations", "multires_noise_discount",
    "min_timestep", "max_timestep", "scale_weight_norms", "prior_loss_weight", "debiased_estimation_loss",
    "ip_noise_gamma", "ip_noise_gamma_random_strength", "caption_dropout_every_n_epochs", "full_fp16",
    "v_pred_like_loss", "scale_v_pred_loss_like_noise_pred", "v_parameterization", "zero_terminal_snr",
    "vae_batch_size", "persistent_data_loader_workers", "weighted_captions", "mem_eff_attn", "highvram",
    "lr_scheduler_power", "lr_scheduler_args", "lr_scheduler_type", "save_every_n_steps", "save_last_n_steps",
    "save_last_n_steps_state", "save_last_n_epochs", "save_last_n_epochs_state", "save_state_on_train_end",
    "loss_type", "huber_c", "huber_schedule", "huber_scale", "masked_loss", "no_token_padding",
    "network_train_text_encoder_only",
}
# Defaults of sd-scripts: a value equal to these changes nothing.
SD_DEFAULTS = {"prior_loss_weight": 1.0, "min_timestep": 0, "max_timestep": 1000, "loss_type": "l2",
               "huber_c": 0.1, "huber_schedule": "snr", "huber_scale": 1.0, "lr_scheduler_type": "",
               "max_grad_norm": 1.0, "clip_skip": None}
_SD_IGNORED = {
    "output_dir": "the run folder is made per run", "logging_dir": "the run folder is made per run",
    "log_prefix": "logging only", "log_with": "logging only", "wandb_api_key": "logging only",
    "wandb_run_name": "logging only", "training_comment": "metadata text only", "save_model_as": "always safetensors",
    "caption_extension": "the dataset step writes .txt captions", "clip_skip": "sd-scripts ignores clip_skip for SDXL (it only warns)",
    "epoch": "not an sd-scripts option (kohya_ss writes it for information)",
    "sample_prompts": "sampling prompts live in the preset's sampling section",
    "sample_sampler": "sampling prompts live in the preset's sampling section",
    "sample_every_n_epochs": "sampling prompts live in the preset's sampling section",
    "sample_every_n_steps": "sampling prompts live in the preset's sampling section",
    "noise_offset_type": "kohya_ss GUI selector, not an sd-scripts option",
    "metadata_title": "metadata only", "metadata_author": "metadata only", "metadata_description": "metadata only",
    "metadata_license": "metadata only", "metadata_tags": "metadata only", "log_config": "logging only",
    "sdxl": "selects SDXL", "dynamo_backend": "accelerate setting", "skip_cache_check": "cache bookkeeping only",
    "seed": None,
}
# sd-scripts key → preset field (same meaning, maybe another name).
_DIRECT = {
    "network_dim": ("network", "dim", int), "network_alpha": ("network", "alpha", float),
    "network_dropout": ("network", "dropout", float), "optimizer_type": ("optimizer", "type", str),
    "lr_scheduler": ("optimizer", "scheduler", str), "max_grad_norm": ("optimizer", "max_grad_norm", float),
    "lr_scheduler_num_cycles": ("optimizer", "num_cycles", int),
    "train_batch_size": ("training", "batch_size", int), "gradient_accumulation_steps": ("training", "gradient_accumulation", int),
    "mixed_precision": ("training", "mixed_precision", str), "save_precision": ("training", "save_precision", str),
    "full_bf16": ("training", "full_bf16", bool), "fp8_base": ("training", "fp8_base", bool),
    "gradient_checkpointing": ("training", "gradient_checkpointing", bool),
    "cache_latents": ("training", "cache_latents", bool), "cache_latents_to_disk": ("training", "cache_latents_to_disk", bool),
    "cache_text_encoder_outputs": ("training", "cache_text_encoder_outputs", bool),
    "no_half_vae": ("training", "no_half_vae", bool), "noise_offset": ("training", "noise_offset", float),
    "min_snr_gamma": ("training", "min_snr_gamma", float), "save_every_n_epochs": ("training", "save_every_n_epochs", int),
    "save_state": ("training", "save_state", bool), "max_token_length": ("training", "max_token_length", int),
    "lowram": ("training", "lowram", bool), "max_data_loader_n_workers": ("training", "max_data_loader_workers", int),
    "max_train_epochs": ("training", "epochs", int), "max_train_steps": ("training", "max_steps", int),
    "enable_bucket": ("dataset", "enable_bucket", bool), "min_bucket_reso": ("dataset", "min_bucket_reso", int),
    "max_bucket_reso": ("dataset", "max_bucket_reso", int), "bucket_reso_steps": ("dataset", "bucket_reso_steps", int),
    "bucket_no_upscale": ("dataset", "bucket_no_upscale", bool), "flip_aug": ("dataset", "flip_aug", bool),
    "color_aug": ("dataset", "color_aug", bool), "random_crop": ("dataset", "random_crop", bool),
    "shuffle_caption": ("dataset.captions", "shuffle", bool), "keep_tokens": ("dataset.captions", "keep_tokens", int),
    "caption_dropout_rate": ("dataset.captions", "dropout_rate", float),
    "pretrained_model_name_or_path": ("base_model", "path", str), "vae": ("base_model", "vae", str),
    "output_name": ("output", "name", str),
}


def _put(data: dict, section: str, key: str, value) -> None:
    node = data
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = value


def _get(data: dict, section: str, key: str, default=None):
    node = data
    for part in section.split("."):
        node = node.get(part, {})
    return node.get(key, default)


def sd_args_to_preset(sd: SdArgs, report: Report, from_gui: bool) -> dict:
    """sd-scripts arguments → a preset dict (validated by the caller)."""
    v = dict(sd.values)
    data: dict = {}
    extra: list[str] = []

    def label(key):
        return sd.origin.get(key, (key, ""))[0]

    def note(key, text):
        how = sd.origin.get(key, (key, ""))[1]
        return f"{text} ({how})" if how else text

    def mapped(key, target, value):
        src = label(key)
        renamed = src != key or bool(sd.origin.get(key, ("", ""))[1])
        status = "transformed" if renamed else "mapped"
        report.add(src, status, note(key, f"{target} = {_fmt(value)}"))

    # model family switches that slipped through (TOML)
    check_family_sd(v, report.source)
    # network
    module = v.pop("network_module", "networks.lora")
    if "network_module" in sd.origin or not from_gui:
        if module not in ("networks.lora", "lycoris.kohya"):
            raise UserError(f"{report.source}: network module {module!r} ({label('network_module')}) is not supported; "
                            "use LoRA_type Standard, Kohya LoCon or a LyCORIS type")
        _put(data, "network", "module", module)
        if "network_module" in sd.origin:
            mapped("network_module", "network.module", module)
    net_args = [str(a) for a in v.pop("network_args", [])]
    conv = {}
    rest = []
    for a in net_args:
        k, _, val = a.partition("=")
        if k in ("conv_dim", "conv_alpha") and _num(val) is not None and not isinstance(_num(val), str):
            conv[k] = _num(val)
        else:
            rest.append(a)
    if conv.get("conv_dim"):
        _put(data, "network", "conv_dim", int(conv["conv_dim"]))
        if "conv_alpha" in conv:
            _put(data, "network", "conv_alpha", float(conv["conv_alpha"]))
    elif conv:
        rest += [f"{k}={val}" for k, val in conv.items()]
    if rest:
        _put(data, "network", "args", rest)
    if net_args:
        mapped("network_args", "network.args/conv_dim", net_args)
    if module == "lycoris.kohya":
        report.warnings.append(lycoris_status())
    # learning rates → unet_lr / text_encoder_lr, as sd-scripts resolves them
    lr = _float(v.pop("learning_rate", None))
    unet = _float(v.pop("unet_lr", None))
    te = v.pop("text_encoder_lr", None)
    unet_only = bool(v.pop("network_train_unet_only", False))
    if not unet_only and "network_train_unet_only" in sd.origin:
        report.add(label("network_train_unet_only"), "ignored", "false: the text encoders train too")
    te_only = bool(v.get("network_train_text_encoder_only", False))
    te_vals = [float(x) for x in (te if isinstance(te, list) else [te] if te is not None else [])]
    eff_unet = unet if unet else lr
    if te_only:
        v.pop("network_train_text_encoder_only")
        raise UserError(f"{report.source}: trains the text encoders only (unet_lr is 0 / network_train_text_encoder_only); "
                        "a face LoRA needs the UNet: set a unet_lr")
    if not eff_unet:
        raise UserError(f"{report.source}: no learning rate is set (learning_rate, unet_lr): set unet_lr")
    _put(data, "optimizer", "unet_lr", eff_unet)
    if "unet_lr" in sd.origin and unet:
        mapped("unet_lr", "optimizer.unet_lr", eff_unet)
    if "learning_rate" in sd.origin:
        if unet:
            if unet_only or te_vals:
                report.add(label("learning_rate"), "ignored" if lr != unet else "mapped",
                           f"{_fmt(lr)}: " + ("same as unet_lr" if lr == unet else "unet_lr and text_encoder_lr are set, so it has no effect"))
            else:
                report.add(label("learning_rate"), "transformed", f"{_fmt(lr)} → optimizer.text_encoder_lr (text_encoder_lr unset)")
        else:
            report.add(label("learning_rate"), "transformed", note("learning_rate", f"optimizer.unet_lr = {_fmt(lr)} (unet_lr unset)"))
    if unet_only:
        te_value = 0.0
        src = label("network_train_unet_only")
        report.add(src, "transformed", note("network_train_unet_only", "optimizer.text_encoder_lr = 0 (UNet only)"))
        if te_vals and label("text_encoder_lr") != src:
            report.add(label("text_encoder_lr"), "ignored", f"{_fmt(te_vals[0])}: network_train_unet_only, so the text encoders are not trained")
    elif te_vals:
        te_value = te_vals[0] if len(te_vals) == 1 or len(set(te_vals)) == 1 else (te_vals[0], te_vals[1])
        mapped("text_encoder_lr", "optimizer.text_encoder_lr", te_value if not isinstance(te_value, tuple) else list(te_value))
    else:
        te_value = lr if lr else eff_unet  # sd-scripts trains the text encoders at learning_rate
    _put(data, "optimizer", "text_encoder_lr", list(te_value) if isinstance(te_value, tuple) else te_value)
    opt_args = v.pop("optimizer_args", None)
    if opt_args:
        _put(data, "optimizer", "args", split_args(opt_args))
        mapped("optimizer_args", "optimizer.args", split_args(opt_args))
    # warmup
    if "lr_warmup_steps" in v:
        w = _num(v.pop("lr_warmup_steps"))
        _put(data, "optimizer", "warmup_steps", w)
        mapped("lr_warmup_steps", "optimizer.warmup_steps", w)
    # epochs vs steps: max_train_epochs wins in sd-scripts; neither → 1600 steps
    mte, mts = _int(v.pop("max_train_epochs", None)), _int(v.pop("max_train_steps", None))
    if mte:
        _put(data, "training", "epochs", mte)
        mapped("max_train_epochs", "training.epochs", mte)
        if mts:
            report.add(label("max_train_steps"), "ignored", f"{mts}: max_train_epochs overrides it in sd-scripts")
    elif mts:
        _put(data, "training", "max_steps", mts)
        mapped("max_train_steps", "training.max_steps", mts)
    else:
        _put(data, "training", "max_steps", 1600)
        report.warnings.append("neither max_train_epochs nor max_train_steps is set: sd-scripts trains 1600 steps "
                               "(training.max_steps=1600); set training.epochs instead if you prefer")
    # resolution "W,H"
    if "resolution" in v:
        raw = v.pop("resolution")
        parts = [int(float(x)) for x in (raw if isinstance(raw, list) else str(raw).replace("x", ",").split(","))]
        w, h = (parts * 2)[:2]
        side = w if w == h else max(64, round(math.sqrt(w * h) / 64) * 64)
        if w == h and w % 64 == 0:
            _put(data, "dataset", "resolution", w)
            mapped("resolution", "dataset.resolution", w)
        else:
            _put(data, "dataset", "resolution", side)
            report.add(label("resolution"), "transformed",
                       f"{_fmt(raw)} → dataset.resolution = {side} (square, a multiple of 64, about the same area)")
    # attention
    flags = {k: v.pop(k) for k in ("sdpa", "xformers") if k in v}
    attention = "sdpa" if flags.get("sdpa") else "xformers" if flags.get("xformers") else None
    for k, on in flags.items():
        if k != attention and k in sd.origin and label(k) != label(attention or ""):
            report.add(label(k), "ignored", f"{_fmt(on)}" + (f": {attention} is used" if attention else ""))
    if attention:
        _put(data, "training", "attention", attention)
        src_key = "sdpa" if "sdpa" in sd.origin else "xformers"
        mapped(src_key, "training.attention", attention)
    elif from_gui and v.pop("_attention_none", False) or (not from_gui and "sdpa" not in sd.origin and "xformers" not in sd.origin):
        _put(data, "training", "attention", "none")
        if not from_gui:
            report.warnings.append("no sdpa/xformers option: sd-scripts uses its plain attention (training.attention=none)")
    if from_gui:
        for k in ("no_half_vae", "cache_latents", "cache_latents_to_disk", "gradient_checkpointing",
                  "cache_text_encoder_outputs", "bucket_no_upscale", "enable_bucket", "shuffle_caption"):
            # the GUI leaves false out, so its absence means false for sd-scripts
            if k not in v:
                field_ = _DIRECT[k]
                _put(data, field_[0], field_[1], False)
        v.pop("_no_half_vae_off", None)
        if "keep_tokens" not in v:
            _put(data, "dataset.captions", "keep_tokens", 0)
        for k in ("num_cpu_threads_per_process", "num_processes"):
            val = v.pop(f"_accelerate_{k}", None)
            if val is not None:
                _put(data, "kohya", k, max(1, val))
                report.add(k, "mapped", f"kohya.{k} = {val}")
    else:
        for k in ("cache_latents", "gradient_checkpointing", "no_half_vae", "enable_bucket", "bucket_no_upscale"):
            if k not in v:
                field_ = _DIRECT[k]
                _put(data, field_[0], field_[1], False)
        if "keep_tokens" not in v:
            _put(data, "dataset.captions", "keep_tokens", 0)
    # seed: unset means random in sd-scripts; a preset always fixes one
    if "seed" in v:
        s = _int(v.pop("seed"))
        _put(data, "training", "seed", s)
        mapped("seed", "training.seed", s)
    elif from_gui and "seed" not in sd.origin:
        pass
    # bucket steps: SDXL needs multiples of 32
    if "bucket_reso_steps" in v:
        b = _int(v["bucket_reso_steps"])
        if b is None or b % 32:
            v.pop("bucket_reso_steps")
            report.add(label("bucket_reso_steps"), "unsupported",
                       f"{_fmt(b)}: sd-scripts rejects SDXL bucket steps that are not a multiple of 32; kept 64")
    if "max_token_length" in v and _int(v["max_token_length"]) not in (75, 150, 225):
        bad = v.pop("max_token_length")
        report.add(label("max_token_length"), "unsupported", f"{_fmt(bad)}: sd-scripts accepts only 75, 150 or 225; kept 75")
    # direct fields
    for key in list(v):
        if key in _DIRECT:
            section, name, typ = _DIRECT[key]
            raw = v.pop(key)
            if _unset(raw) and typ is not bool and key not in ("max_data_loader_n_workers", "max_grad_norm"):
                report.add(label(key), "ignored", f"unset ({_fmt(raw)})")
                continue
            value = bool(raw) if typ is bool else typ(_num(raw)) if typ in (int, float) else str(raw)
            if key == "min_snr_gamma" and not value:
                continue
            _put(data, section, name, value)
            mapped(key, f"{section}.{name}", value)
    # options kept for the command line
    for key in list(v):
        if key in EXTRA_OPTIONS:
            raw = v.pop(key)
            if _unset(raw) or SD_DEFAULTS.get(key, object()) == _num(raw):
                report.add(label(key), "ignored", f"{_fmt(raw)}: sd-scripts' default")
                continue
            value = _int(raw) if key == "persistent_data_loader_workers" else raw
            if key == "persistent_data_loader_workers":
                value = True
            args = to_cli_args(key, value)
            extra += args
            report.add(label(key), "transformed", note(key, f"kohya.extra_args += {' '.join(args)}"))
    for key in list(v):
        raw = v.pop(key)
        if key.startswith("_"):
            continue
        src = label(key)
        if key in _SD_IGNORED and _SD_IGNORED[key]:
            report.add(src, "ignored", _SD_IGNORED[key])
        elif key in _PATH_KEYS or key in ("train_data_dir", "reg_data_dir"):
            report.add(src, "ignored", "a path on the machine that wrote the preset")
        elif key == "" and raw:
            report.add(src, "unsupported", f"{raw}: stray values without an option name; not applied")
        elif _unset(raw):
            report.add(src, "ignored", f"unset ({_fmt(raw)})")
        else:
            report.add(src, "unsupported", f"{_fmt(raw)}: not a setting this importer knows; not applied")
    if extra:
        _put(data, "kohya", "extra_args", extra)
    data.setdefault("base_model", {}).setdefault("path", DEFAULT_BASE_MODEL)
    if _get(data, "base_model", "path") == DEFAULT_BASE_MODEL and "pretrained_model_name_or_path" not in sd.origin:
        report.warnings.append(f"no base model in the file: using {DEFAULT_BASE_MODEL} (override with base_model.path=...)")
    _fix_cross_rules(data, report)
    return data


def _fix_cross_rules(data: dict, report: Report) -> None:
    """Keep what sd-scripts would accept; say what changed."""
    t, d = data.get("training", {}), data.get("dataset", {})
    if t.get("cache_latents", True) and (d.get("color_aug") or d.get("random_crop")):
        t["cache_latents"] = False
        t["cache_latents_to_disk"] = False
        report.warnings.append("color_aug/random_crop change images every step, so sd-scripts cannot cache latents: "
                               "training.cache_latents set to false")
    if t.get("full_bf16") and t.get("mixed_precision") != "bf16":
        t["full_bf16"] = False
        report.warnings.append("full_bf16 needs mixed_precision bf16: training.full_bf16 set to false")


# ---------------------------------------------------------------- TOML (flat / sectioned) + dataset TOML
COLAB_SECTIONS = ("network_arguments", "optimizer_arguments", "training_arguments", "saving_arguments",
                  "model_arguments", "dataset_arguments", "sample_prompt_arguments", "logging_arguments")


def toml_to_sd_args(config: dict, report: Report) -> SdArgs:
    """sd-scripts flattens sections (names ignored); the report names `section.key`."""
    out = SdArgs()
    for name, value in config.items():
        if isinstance(value, dict):
            for key, v in value.items():
                out.set(key, v, f"{name}.{key}")
        else:
            out.set(name, value, name)
    if "dataset_config" in out.values:
        out.values.pop("dataset_config")
        report.add(out.origin.pop("dataset_config")[0], "ignored", "read as the dataset TOML when it exists")
    return out


def is_dataset_toml(data: dict) -> bool:
    return "datasets" in data and isinstance(data.get("datasets"), list)


def dataset_toml_to_preset(ds: dict, data: dict, report: Report, prefix: str = "dataset TOML") -> None:
    """[general] + first [[datasets]] + its subsets → dataset/regularization/subject fields."""
    general = ds.get("general", {}) or {}
    datasets = ds.get("datasets", []) or []
    first = datasets[0] if datasets else {}
    for i, extra_ds in enumerate(datasets[1:], 2):
        report.add(f"{prefix}: datasets[{i}]", "unsupported", "only one dataset is trained; this one is not applied")
    layers = [("general", general), ("datasets[1]", {k: v for k, v in first.items() if k != "subsets"})]
    subsets = first.get("subsets", []) or []
    inst = [s for s in subsets if not s.get("is_reg")]
    reg = [s for s in subsets if s.get("is_reg")]
    if inst:
        layers.append(("subsets[instance]", inst[0]))
    for s in inst[1:]:
        report.add(f"{prefix}: subsets[{s.get('image_dir', '?')}]", "unsupported", "one instance subset is trained; not applied")
    for where, layer in layers:
        for key, value in layer.items():
            src = f"{prefix}: {where}.{key}"
            if key in ("resolution",):
                parts = value if isinstance(value, list) else [value, value]
                w, h = int(parts[0]), int(parts[-1])
                side = w if w == h and w % 64 == 0 else max(64, round(math.sqrt(w * h) / 64) * 64)
                _put(data, "dataset", "resolution", side)
                report.add(src, "mapped" if side == w == h else "transformed", f"dataset.resolution = {side}")
            elif key == "batch_size":
                _put(data, "training", "batch_size", int(value))
                report.add(src, "transformed", f"training.batch_size = {value}")
            elif key == "num_repeats":
                _put(data, "dataset", "repeats", int(value))
                report.add(src, "transformed", f"dataset.repeats = {value}")
            elif key == "image_dir":
                if Path(str(value)).expanduser().is_dir():
                    _put(data, "dataset", "images", str(value))
                    report.add(src, "transformed", f"dataset.images = {value}")
                else:
                    report.add(src, "ignored", "a folder that does not exist here; set dataset.images=...")
            elif key == "class_tokens":
                words = str(value).split()
                if len(words) >= 2 and re.fullmatch(r"[A-Za-z0-9]+", words[0]):
                    _put(data, "subject", "trigger", words[0])
                    _put(data, "subject", "class_word", " ".join(words[1:]))
                    report.add(src, "transformed", f"subject.trigger = {words[0]}, subject.class_word = {' '.join(words[1:])}")
                else:
                    report.add(src, "unsupported", f"{value!r}: expected 'trigger class', e.g. 'myface woman'")
            elif key == "face_crop_aug_range":
                _put(data, "dataset", "face_crop_aug_range", list(value))
                report.add(src, "mapped", f"dataset.face_crop_aug_range = {value}")
            elif key in _DIRECT and _DIRECT[key][0].startswith("dataset"):
                section, name, typ = _DIRECT[key]
                bad = key == "bucket_reso_steps" and int(value) % 32
                if bad:
                    report.add(src, "unsupported", f"{value}: SDXL bucket steps must be a multiple of 32; kept 64")
                    continue
                _put(data, section, name, bool(value) if typ is bool else typ(value))
                report.add(src, "mapped", f"{section}.{name} = {_fmt(value)}")
            elif key == "caption_extension":
                report.add(src, "ignored", "the dataset step writes .txt captions")
            elif key in ("is_reg",):
                continue
            elif _unset(value):
                report.add(src, "ignored", f"unset ({_fmt(value)})")
            else:
                report.add(src, "unsupported", f"{_fmt(value)}: not applied")
    for s in reg[:1]:
        if Path(str(s.get("image_dir", ""))).expanduser().is_dir():
            _put(data, "regularization", "images", str(s["image_dir"]))
            report.add(f"{prefix}: subsets[reg].image_dir", "transformed", f"regularization.images = {s['image_dir']}")
        else:
            report.add(f"{prefix}: subsets[reg].image_dir", "ignored", "a folder that does not exist here; set regularization.images=...")
        if "num_repeats" in s:
            _put(data, "regularization", "repeats", int(s["num_repeats"]))
            report.add(f"{prefix}: subsets[reg].num_repeats", "transformed", f"regularization.repeats = {s['num_repeats']}")
        for key in set(s) - {"image_dir", "num_repeats", "is_reg"}:
            report.add(f"{prefix}: subsets[reg].{key}", "ignored", "the class word names the regularization folder")


# ---------------------------------------------------------------- entry points
def _read(path: Path):
    text = read_text(path, "a kohya_ss .json or sd-scripts .toml")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{path}: invalid TOML: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected one object of settings, got a {type(data).__name__}")
    return data


def _find_dataset_toml(path: Path, config: dict) -> Path | None:
    flat = {k: v for sec in config.values() if isinstance(sec, dict) for k, v in sec.items()} | config
    named = flat.get("dataset_config")
    if isinstance(named, str) and named:
        p = Path(named).expanduser()
        p = p if p.is_absolute() else path.parent / p
        if p.is_file():
            return p
    for name in (f"{path.stem}.dataset.toml", "dataset_config.toml", "dataset.toml"):
        p = path.parent / name
        if p.is_file() and p != path:
            return p
    return None


def import_file(path, dataset=None) -> tuple[dict, Report]:
    """A Kohya preset file (+ optional dataset TOML) → (preset dict, report). Not yet validated."""
    path = Path(path)
    raw = _read(path)
    if path.suffix.lower() == ".json":
        report = Report(str(path), "kohya_ss GUI JSON")
        check_family_gui(raw, str(path))
        sd = gui_to_sd_args(raw, report)
        data = sd_args_to_preset(sd, report, from_gui=True)
    else:
        if is_dataset_toml(raw):
            raise UserError(f"{path}: this is a dataset TOML ([[datasets]]); import the training config TOML and "
                            "give this one with --dataset")
        sectioned = any(isinstance(v, dict) for v in raw.values())
        report = Report(str(path), "kohya-colab sectioned TOML" if sectioned else "sd-scripts TOML")
        sd = toml_to_sd_args(raw, report)
        data = sd_args_to_preset(sd, report, from_gui=False)
        ds_path = Path(dataset) if dataset else _find_dataset_toml(path, raw)
        if ds_path:
            ds = _read(ds_path)
            if not is_dataset_toml(ds) and "general" not in ds:
                raise UserError(f"{ds_path}: not a dataset TOML (expected [general] and [[datasets]])")
            dataset_toml_to_preset(ds, data, report, prefix=ds_path.name)
            report.kind += f" + dataset {ds_path.name}"
    if dataset and path.suffix.lower() == ".json":
        ds = _read(Path(dataset))
        dataset_toml_to_preset(ds, data, report, prefix=Path(dataset).name)
    return data, report


def import_preset(path, dataset=None):
    """Import and validate: (Preset, report)."""
    from .presets import validate

    data, report = import_file(path, dataset)
    return validate(data, f"{path} (imported)"), report


def to_yaml(preset, report: Report) -> str:
    from .presets import dump

    head = [f"# {Path(report.source).stem}: imported from {Path(report.source).name} ({report.kind})",
            "# VRAM: ?",
            "# Run: faceswap-kohya train THIS.yaml dataset.images=~/photos subject.trigger=myface subject.class_word=woman"]
    head += [f"# {status}: {n}" for status, n in report.counts().items()]
    return "\n".join(head) + "\n" + dump(preset)


def is_kohya_file(path) -> bool:
    p = Path(path)
    return p.suffix.lower() in KOHYA_SUFFIXES and p.is_file()


def load_any(name_or_path: str, overrides=()):
    """A preset name/YAML, or a Kohya file imported on the fly: (Preset, Path, report or None)."""
    from .presets import apply_overrides, load, validate

    if is_kohya_file(name_or_path):
        data, report = import_file(name_or_path)
        preset = validate(apply_overrides(data, list(overrides)), f"{name_or_path} (imported)")
        path = Path(name_or_path)
    else:
        preset, path = load(name_or_path, overrides)
        report = None
    if preset.network.module == "lycoris.kohya" and not lycoris_available(preset):
        raise UserError(f"{path}: network.module is lycoris.kohya but {lycoris_status(preset)}")
    return preset, path, report


# ---------------------------------------------------------------- LyCORIS in the trainer's venv
def lycoris_available(preset=None):
    """True/False when the trainer's python answers; None when there is no trainer venv."""
    from .render import Trainer
    from .schema import CHECK_MODEL, Preset

    trainer = Trainer.of(preset or Preset(base_model=CHECK_MODEL))
    if not trainer.python.is_file():
        return None
    proc = subprocess.run([str(trainer.python), "-c", "import importlib.util as u; print(u.find_spec('lycoris') is not None)"],
                          capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() == "True"


def lycoris_status(preset=None) -> str:
    ok = lycoris_available(preset)
    if ok:
        return "LyCORIS network: lycoris-lora is installed in the trainer's venv"
    if ok is None:
        return "LyCORIS network: the trainer's venv is missing (run scripts/setup.sh), then install lycoris-lora in it"
    return ("LyCORIS network: lycoris-lora is NOT installed in the trainer's venv; "
            "install it with `.venv-kohya/bin/pip install lycoris-lora` before training")


# ---------------------------------------------------------------- export
def _extra_dict(preset) -> dict:
    return {k: v for k, v in parse_cli_args(list(preset.kohya.extra_args)).items() if k}


def _not_exported(preset) -> list[str]:
    """Preset settings neither Kohya format carries (listed on export)."""
    from .schema import Preset

    default = Preset(base_model=preset.base_model.path)
    out = []
    for section in ("captions", "regularization", "sampling", "evaluate", "output", "kohya"):
        obj = preset.dataset.captions if section == "captions" else getattr(preset, section)
        ref = default.dataset.captions if section == "captions" else getattr(default, section)
        for name in type(obj).model_fields:
            if section == "captions" and name in ("shuffle", "keep_tokens", "dropout_rate"):
                continue
            if section == "regularization" and name in ("images", "repeats"):
                continue
            if section == "output" and name == "name":
                continue
            if section == "kohya" and name in ("extra_args", "num_processes", "num_cpu_threads_per_process"):
                continue
            if getattr(obj, name) != getattr(ref, name):
                out.append(f"{'dataset.captions' if section == 'captions' else section}.{name}")
    return out


def export_sd_scripts(preset, out_path: Path) -> tuple[dict, dict, list[str]]:
    """A flat config TOML as kohya_ss v24+ writes it, plus its dataset TOML beside it."""
    from .render import RunLayout, dataset_config, train_config

    out_path = Path(out_path)
    run = RunLayout(Path("run"))
    cfg = {}
    for section in train_config(preset, run, preset.base_model.path).values():
        cfg.update(section)
    for key in ("output_dir", "logging_dir", "sample_prompts", "tokenizer_cache_dir"):
        cfg.pop(key, None)
    for key, value in _extra_dict(preset).items():
        cfg[key] = value
    ds_path = out_path.with_name(out_path.stem + ".dataset.toml")
    cfg["dataset_config"] = ds_path.name
    cfg["train_batch_size"] = preset.training.batch_size
    cfg["lr_scheduler_num_cycles"] = preset.optimizer.num_cycles  # kohya_ss always writes it
    ds = dataset_config(preset, run)
    inst = ds["datasets"][0]["subsets"][0]
    inst["image_dir"] = preset.dataset.images or "PHOTOS_FOLDER"
    if len(ds["datasets"][0]["subsets"]) > 1:
        ds["datasets"][0]["subsets"][1]["image_dir"] = preset.regularization.images or "REG_FOLDER"
    return dict(sorted(cfg.items())), ds, _not_exported(preset)


def export_gui(preset) -> tuple[dict, list[str]]:
    """A kohya_ss GUI preset (the keys train_model reads for an SDXL LoRA)."""
    n, o, t, d = preset.network, preset.optimizer, preset.training, preset.dataset
    extra = _extra_dict(preset)
    args = dict(a.split("=", 1) for a in n.args)
    lora_type = "Standard"
    gui: dict = {}
    additional: list[str] = []
    if n.module == "lycoris.kohya":
        algo = args.pop("algo", "locon")
        lora_type = next((k for k, (a, _) in _LYCORIS_ARGS.items() if a == algo and k.startswith("LyCORIS/")), None)
        if lora_type is None:
            raise UserError(f"LyCORIS algo {algo!r} has no kohya_ss LoRA_type")
        keys = _LYCORIS_ARGS[lora_type][1]
        back = {_ARG_NAMES.get(k, k): k for k in keys}
        for name, value in list(args.items()):
            if name in back:
                gui[back[name]] = _num(value) if value not in ("True", "False") else value == "True"
                args.pop(name)
    elif n.conv_dim is not None:
        lora_type = "Kohya LoCon"
    for name, value in list(args.items()):
        if name in _KOHYA_LORA_VARS or name.startswith("loraplus_"):
            gui[name] = _num(value)
            args.pop(name)
    if args:
        raise UserError("network.args " + ", ".join(f"{k}={v}" for k, v in args.items()) +
                        f" cannot be written for kohya_ss LoRA_type {lora_type!r}")
    te = o.text_encoder_lr
    if isinstance(te, tuple) and te[0] != te[1]:
        additional += ["--text_encoder_lr", str(te[0]), str(te[1])]
        te = te[0]
    te = te[0] if isinstance(te, tuple) else te
    warm = o.warmup_steps
    gui |= {
        "LoRA_type": lora_type, "sdxl": True, "network_dim": n.dim, "network_alpha": n.alpha,
        "conv_dim": n.conv_dim or 1, "conv_alpha": n.conv_alpha if n.conv_alpha is not None else (n.conv_dim or 1),
        "network_dropout": n.dropout or 0,
        "optimizer": o.type, "optimizer_args": " ".join(o.args), "learning_rate": o.unet_lr, "unet_lr": o.unet_lr,
        "text_encoder_lr": te, "lr_scheduler": o.scheduler,
        "lr_warmup": round(warm * 100, 6) if isinstance(warm, float) and warm < 1 else 0,
        "lr_warmup_steps": int(warm) if not (isinstance(warm, float) and warm < 1) else 0,
        "lr_scheduler_num_cycles": str(o.num_cycles), "max_grad_norm": o.max_grad_norm,
        "epoch": t.epochs, "max_train_epochs": "", "max_train_steps": str(t.max_steps) if t.max_steps else "",
        "train_batch_size": t.batch_size, "gradient_accumulation_steps": t.gradient_accumulation,
        "mixed_precision": t.mixed_precision, "save_precision": t.save_precision, "full_bf16": t.full_bf16,
        "fp8_base": t.fp8_base, "gradient_checkpointing": t.gradient_checkpointing, "cache_latents": t.cache_latents,
        "cache_latents_to_disk": t.cache_latents_to_disk,
        "sdxl_cache_text_encoder_outputs": t.cache_text_encoder_outputs, "sdxl_no_half_vae": t.no_half_vae,
        "noise_offset_type": "Original", "noise_offset": t.noise_offset, "min_snr_gamma": t.min_snr_gamma or 0,
        "seed": str(t.seed), "save_every_n_epochs": t.save_every_n_epochs or 0, "save_state": t.save_state,
        "xformers": t.attention, "max_token_length": str(t.max_token_length), "lowram": t.lowram,
        "max_data_loader_n_workers": str(t.max_data_loader_workers),
        "max_resolution": f"{d.resolution},{d.resolution}", "enable_bucket": d.enable_bucket,
        "min_bucket_reso": d.min_bucket_reso, "max_bucket_reso": d.max_bucket_reso,
        "bucket_reso_steps": d.bucket_reso_steps, "bucket_no_upscale": d.bucket_no_upscale,
        "flip_aug": d.flip_aug, "color_aug": d.color_aug, "random_crop": d.random_crop,
        "shuffle_caption": d.captions.shuffle, "keep_tokens": d.captions.keep_tokens,
        "caption_dropout_rate": d.captions.dropout_rate, "caption_extension": ".txt",
        "output_name": preset.output.name, "num_processes": preset.kohya.num_processes,
        "num_cpu_threads_per_process": preset.kohya.num_cpu_threads_per_process,
        "pretrained_model_name_or_path": preset.base_model.path, "vae": preset.base_model.vae or "",
    }
    if isinstance(warm, int) and warm >= 1:
        gui["lr_warmup"] = 0
    if t.max_steps:
        gui["max_train_steps"] = str(t.max_steps)
    # extra args: GUI keys where kohya_ss has them, the rest as additional_parameters
    noise = {"multires_noise_iterations", "multires_noise_discount"}
    if noise & set(extra):
        gui["noise_offset_type"] = "Multires"
    gui_names = {"adaptive_noise_scale", "noise_offset_random_strength", "multires_noise_iterations",
                 "multires_noise_discount", "min_timestep", "max_timestep", "scale_weight_norms", "prior_loss_weight",
                 "debiased_estimation_loss", "ip_noise_gamma", "caption_dropout_every_n_epochs", "full_fp16",
                 "v_pred_like_loss", "vae_batch_size", "weighted_captions", "mem_eff_attn", "lr_scheduler_power",
                 "lr_scheduler_type", "save_every_n_steps", "save_last_n_steps", "save_last_n_steps_state",
                 "persistent_data_loader_workers"}
    for key, value in extra.items():
        if key in gui_names and not (key == "noise_offset_random_strength" and gui["noise_offset_type"] != "Original"):
            gui[key] = value
        elif key == "lr_scheduler_args":
            gui[key] = " ".join(str(x) for x in (value if isinstance(value, list) else [value]))
        else:
            additional += to_cli_args(key, value)
    if t.attention == "none":
        gui["xformers"] = "none"
    if o.max_grad_norm == 0:  # kohya_ss drops a 0 from its TOML; the command line keeps it
        gui.pop("max_grad_norm")
        additional.append("--max_grad_norm=0")
    gui["additional_parameters"] = " ".join(additional)
    return gui, _not_exported(preset)


def write_export(preset, fmt: str, out: Path | None) -> list[str]:
    """Write the export; returns lines to print (files written, settings not carried)."""
    import tomli_w

    lines = []
    if fmt == "sd-scripts":
        out = Path(out or f"{preset.output.name}.toml")
        cfg, ds, skipped = export_sd_scripts(preset, out)
        ds_path = out.with_name(out.stem + ".dataset.toml")
        out.write_bytes(tomli_w.dumps(cfg).encode())
        ds_path.write_bytes(tomli_w.dumps(ds).encode())
        lines += [f"wrote {out}", f"wrote {ds_path}"]
    else:
        out = Path(out or f"{preset.output.name}.json")
        gui, skipped = export_gui(preset)
        out.write_text(json.dumps(gui, indent=4) + "\n", encoding="utf-8")
        lines.append(f"wrote {out}")
    if skipped:
        lines.append("not carried by this format (faceswap-kohya settings): " + ", ".join(skipped))
    return lines


def dump_yaml_data(data: dict) -> str:  # pragma: no cover - convenience for debugging
    return yaml.safe_dump(data, sort_keys=False)


__all__ = ["Report", "Entry", "Refused", "import_file", "import_preset", "load_any", "to_yaml", "write_export",
           "export_gui", "export_sd_scripts", "gui_to_sd_args", "parse_cli_args", "split_args", "lycoris_status"]
