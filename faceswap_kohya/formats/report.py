"""What the Kohya formats share: the import report (every key mapped, transformed, ignored or unsupported),
loose GUI numbers, command-line arguments split and joined, other model families refused (SD 1.5, Flux.1,
SD3, ...), `SdArgs`, and whether the trainer's python has LyCORIS."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field

from faceswap_kohya.errors import UserError

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
def loose_number(v):
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


def loose_int(v, default=None):
    v = loose_number(v)
    if v is None or isinstance(v, str):
        return default
    return int(v)


def loose_float(v, default=None):
    v = loose_number(v)
    if v is None or isinstance(v, str):
        return default
    return float(v)


# Keys whose values are numbers (kohya_ss writes many as strings): anything else is refused, naming the key.
NUMERIC_KEYS = {
    "learning_rate", "unet_lr", "text_encoder_lr", "network_dim", "network_alpha", "conv_dim", "conv_alpha",
    "network_dropout", "rank_dropout", "module_dropout", "lr_warmup", "lr_warmup_steps", "max_train_epochs",
    "max_train_steps", "epoch", "seed", "train_batch_size", "gradient_accumulation_steps", "max_grad_norm",
    "noise_offset", "adaptive_noise_scale", "noise_offset_random_strength", "multires_noise_iterations",
    "multires_noise_discount", "min_snr_gamma", "save_every_n_epochs", "save_every_n_steps", "keep_tokens",
    "caption_dropout_rate", "caption_dropout_every_n_epochs", "min_bucket_reso", "max_bucket_reso",
    "bucket_reso_steps", "max_token_length", "max_data_loader_n_workers", "lr_scheduler_num_cycles",
    "lr_scheduler_power", "min_timestep", "max_timestep", "scale_weight_norms", "prior_loss_weight",
    "vae_batch_size", "ip_noise_gamma", "ip_noise_gamma_random_strength", "num_cpu_threads_per_process",
    "num_processes", "huber_c", "huber_scale", "v_pred_like_loss", "loraplus_lr_ratio", "loraplus_unet_lr_ratio",
    "loraplus_text_encoder_lr_ratio", "save_last_n_steps", "save_last_n_steps_state", "save_last_n_epochs",
    "save_last_n_epochs_state", "factor",
}
_OPTION = re.compile(r"^--?[A-Za-z]")


def check_numbers(values: dict, source: str, label=lambda key: key) -> None:
    """Refuse a number key whose value is not a number ("learning_rate": "fast"), naming the key."""
    for key, value in values.items():
        if key not in NUMERIC_KEYS:
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and isinstance(loose_number(v), str):
                raise UserError(f"{source}: {label(key)}: {v!r} is not a number; fix the value in the file")


def check_not_options(values: dict, source: str, label=lambda key: key) -> None:
    """Refuse values the trainer's argument parser would read as options of their own: `"lr_scheduler_args":
    "--output_dir=/x"` would become `--lr_scheduler_args --output_dir=/x`, a second --output_dir."""
    for key, value in values.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and _OPTION.match(v.strip()):
                raise UserError(f"{source}: {label(key) or 'additional_parameters'}: the value {v!r} would be read by "
                                "sd-scripts as an option of its own; remove it from the file")


def gui_unset(v) -> bool:
    """kohya_ss drops these (`value not in ["", False, None]`, and 0 == False)."""
    if isinstance(v, list):
        return not v
    return v is None or v == "" or v is False or (not isinstance(v, str) and v == 0)


def toml_value(v) -> str:
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
            out[key] = loose_number(val) if eq else True
            if eq:
                key = None  # `--k=v` takes no more values
        elif key is not None:
            prev = out[key]
            v = loose_number(tok)
            out[key] = v if prev is True else (prev if isinstance(prev, list) else [prev]) + [v]
        else:
            out.setdefault("", []).append(tok)
    return out


def to_cli_args(key: str, value) -> list[str]:
    if value is True:
        return [f"--{key}"]
    if isinstance(value, list):
        return [f"--{key}", *(str(v) for v in value)]
    return [f"--{key}={toml_value(value) if not isinstance(value, str) else value}"]


# ---------------------------------------------------------------- families
class Refused(UserError):
    """The file targets a model family this tool does not train."""


_FAMILY_CHECKBOXES = {"sd3_checkbox": "SD3", "hunyuan_image_checkbox": "HunyuanImage-2.1",
                      "anima_checkbox": "Anima", "lumina_checkbox": "Lumina Image 2.0"}
_FAMILY_LORA_TYPES = {"Flux1 OFT": "Flux.1 OFT", "HunyuanImage-2.1": "HunyuanImage-2.1",
                      "Anima": "Anima", "Lumina": "Lumina Image 2.0"}
_FAMILY_MODULES = {"networks.oft_flux": "Flux.1 OFT", "networks.lora_sd3": "SD3",
                   "networks.lora_hunyuan_image": "HunyuanImage-2.1", "networks.lora_anima": "Anima",
                   "networks.lora_lumina": "Lumina Image 2.0"}
_FAMILY_KEYS = {"clip_g": "SD3"}
# what makes an sd-scripts argument set a FLUX.1 one (flux_train_network.py's own options)
FLUX_KEYS = ("ae", "t5xxl", "clip_l", "guidance_scale", "discrete_flow_shift", "timestep_sampling", "apply_t5_attn_mask",
             "model_prediction_type", "t5xxl_max_token_length", "blocks_to_swap", "model_type")


def _refuse(source: str, family: str, why: str):
    raise Refused(f"{source}: this preset targets {family} ({why}); faceswap-kohya trains SDXL and FLUX.1 LoRAs only. "
                  "Use an SDXL or FLUX.1 preset, or start from a shipped one (`faceswap-kohya presets ls`).")


def check_family_gui(gui: dict, source: str) -> str:
    """The model family of a kohya_ss GUI preset ("sdxl" or "flux"); any other family is refused."""
    for key, family in _FAMILY_CHECKBOXES.items():
        if gui.get(key) is True:
            _refuse(source, family, f"{key} is true")
    if gui.get("LoRA_type") in _FAMILY_LORA_TYPES:
        _refuse(source, _FAMILY_LORA_TYPES[gui["LoRA_type"]], f"LoRA_type {gui['LoRA_type']!r}")
    if gui.get("flux1_checkbox") is True or gui.get("LoRA_type") == "Flux1":
        return "flux"
    if gui.get("v2") is True:
        _refuse(source, "SD 2.x", "v2 is true")
    if gui.get("sdxl") is not True:
        _refuse(source, "SD 1.5", "sdxl is " + ("missing" if "sdxl" not in gui else json.dumps(gui["sdxl"])))
    return "sdxl"


def check_family_sd(args: dict, source: str) -> str:
    """The model family of sd-scripts arguments ("sdxl" or "flux"); any other family is refused."""
    module = str(args.get("network_module", ""))
    if module in _FAMILY_MODULES:
        _refuse(source, _FAMILY_MODULES[module], f"network_module {module}")
    for key, family in _FAMILY_KEYS.items():
        if not gui_unset(args.get(key)):
            _refuse(source, family, f"it sets {key}")
    if args.get("v2") is True:
        _refuse(source, "SD 2.x", "v2 is true")
    model = str(args.get("pretrained_model_name_or_path", "")).lower()
    if module == "networks.lora_flux" or any(not gui_unset(args.get(k)) for k in FLUX_KEYS):
        return "flux"
    for pat, family in (("flux", "Flux.1"), ("sd3", "SD3"), ("stable-diffusion-3", "SD3"), ("v1-5", "SD 1.5"),
                        ("sd15", "SD 1.5"), ("sd-1-5", "SD 1.5"), ("stable-diffusion-v1", "SD 1.5")):
        if pat in model and "xl" not in model:
            if family == "Flux.1":
                return "flux"
            _refuse(source, family, f"its base model is {args['pretrained_model_name_or_path']}")
    return "sdxl"


def network_arg_text(v) -> str:
    """A GUI value as kohya_ss' f-string writes it into network_args (Python str())."""
    return str(v)


PATH_KEYS = {"train_data_dir", "reg_data_dir", "output_dir", "logging_dir", "dataset_config", "resume",
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


# ---------------------------------------------------------------- LyCORIS in the trainer's venv
def lycoris_available(preset=None):
    """True/False when the trainer's python answers; None when there is no trainer venv."""
    from faceswap_kohya.config.schema import CHECK_MODEL, Preset
    from faceswap_kohya.trainer.install import Trainer

    trainer = Trainer.of(preset or Preset(base_model=CHECK_MODEL))
    if not trainer.python.is_file():
        return None
    try:
        proc = subprocess.run([str(trainer.python), "-c", "import importlib.util as u; print(u.find_spec('lycoris') is not None)"],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise UserError(f"kohya.python: {trainer.python} did not answer within 60 s "
                        "(asked whether lycoris-lora is installed)") from None
    return proc.stdout.strip() == "True"


def lycoris_status(preset=None) -> str:
    ok = lycoris_available(preset)
    if ok:
        return "LyCORIS network: lycoris-lora is installed in the trainer's venv"
    if ok is None:
        return "LyCORIS network: the trainer's venv is missing (run scripts/setup.sh), then install lycoris-lora in it"
    return ("LyCORIS network: lycoris-lora is NOT installed in the trainer's venv; "
            "install it with `.venv-kohya/bin/pip install lycoris-lora` before training")
