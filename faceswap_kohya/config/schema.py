"""The preset: Pydantic models for one YAML file, strict at every level (`extra="forbid"`).

Paths are kept as written (``~`` expanded); relative paths are relative to the working directory.
Cross-field rules live in ``config/rules.py`` (reported beside the field errors) and say what to change.
"""

from __future__ import annotations

import re
from typing import Literal, Optional, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from faceswap_kohya.config import rules
from faceswap_kohya.config.evaluation import Evaluation
from faceswap_kohya.config.flux import FLUX_GUIDANCE, FluxSettings
from faceswap_kohya.config.resources import Resources
from faceswap_kohya.config.samplers import SAMPLERS
from faceswap_kohya.config.sampling import Sampling
from faceswap_kohya.config.sections import Section, expand_home
from faceswap_kohya.config.texts import (
    KeyValue,
    PromptTemplate,
    Template,
    check_class_word,
    check_extra_args,
    check_trigger,
    sampler_name,
)

CHECK_MODEL = "builtin:pipeline-check"  # the random-init SDXL built by `faceswap-kohya check-model`
CHECK_MODEL_FLUX = "builtin:flux-check"  # the random-init FLUX.1 (one double, one single block), built the same way
CHECK_MODELS = {CHECK_MODEL: "sdxl", CHECK_MODEL_FLUX: "flux"}
FAMILIES = ("sdxl", "flux")

OPTIMIZERS = (
    "AdamW8bit", "AdamW", "PagedAdamW8bit", "PagedAdamW", "PagedAdamW32bit", "Lion", "Lion8bit",
    "PagedLion8bit", "SGDNesterov", "SGDNesterov8bit", "Adafactor", "Prodigy", "DAdaptation",
    "DAdaptAdam", "DAdaptAdaGrad", "DAdaptAdan", "DAdaptAdanIP", "DAdaptLion", "DAdaptSGD",
    "DAdaptAdamPreprint", "AdamWScheduleFree", "RAdamScheduleFree", "SGDScheduleFree",
)
SCHEDULERS = (
    "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
    "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay", "piecewise_constant", "adafactor",
)
NETWORK_MODULES = ("networks.lora", "networks.lora_flux", "lycoris.kohya")


class BaseModelSection(Section):
    """SDXL: a hub id, local diffusers folder, single .safetensors file, or `builtin:pipeline-check`.
    FLUX: the DiT file (or `builtin:flux-check`) and its three companions, `ae`, `clip_l` and `t5xxl`."""

    family: Literal[FAMILIES] = Field("sdxl", description="sdxl (sdxl_train_network.py) or flux (FLUX.1/Chroma, "  # type: ignore[valid-type]
                                                          "flux_train_network.py)")
    path: str = Field(description="hub id, diffusers folder, .safetensors file, or builtin:pipeline-check; "
                                  "family flux: the DiT .safetensors file, or builtin:flux-check")
    vae: Optional[str] = Field(None, description="optional VAE file or hub id (e.g. an fp16-fixed SDXL VAE)")
    ae: Optional[str] = Field(None, description="family flux: the autoencoder file (ae.safetensors)")
    clip_l: Optional[str] = Field(None, description="family flux: the CLIP-L text encoder file (clip_l.safetensors)")
    t5xxl: Optional[str] = Field(None, description="family flux: the T5-XXL text encoder file (e.g. t5xxl_fp16.safetensors)")

    _expand_paths = field_validator("path", "vae", "ae", "clip_l", "t5xxl", mode="before")(expand_home)

    @property
    def is_flux(self) -> bool:
        return self.family == "flux"

    @property
    def is_single_file(self) -> bool:
        return self.path.endswith((".safetensors", ".ckpt"))


class Subject(Section):
    trigger: str = Field("myface", description="the rare word that will mean this person")
    class_word: str = Field("woman", description="what the person is: woman, man, person, ...")

    _check_trigger = field_validator("trigger")(check_trigger)
    _check_class_word = field_validator("class_word")(check_class_word)


class Captions(Section):
    mode: Literal["files_or_template", "template", "files", "blip"] = Field(
        "files_or_template", description="files_or_template: a photo's own .txt/.caption file where there is one, "
        "else `template`; template: always `template`; files: the file beside each photo (a warning for each photo "
        "without one); blip: automatic")
    template: Template = Field("{trigger} {class}, photo", description="caption text; {trigger} and {class} are filled in")
    blip_model: str = Field("Salesforce/blip-image-captioning-base", description="hub id or local folder (mode blip)")
    shuffle: bool = Field(False, description="shuffle comma-separated caption parts (the trigger stays first)")
    keep_tokens: int = Field(1, ge=0, description="leading comma-separated parts never shuffled or dropped")
    dropout_rate: float = Field(0.0, ge=0, le=1, description="caption_dropout_rate: train some steps with no caption")


class Augment(Section):
    """Extra training images made from the photos (marked as augmented in the summary)."""

    mirror: int = Field(2, ge=0, description="add a mirrored copy of this many photos (skipped when flip_aug is on)")
    relight: int = Field(1, ge=0, description="add a brightness/contrast/warmth variant of this many photos")


class Subset(Section):
    """One Kohya image folder (`N_<tokens>`), trained as one sd-scripts subset."""

    folder: str = Field(description="the folder its photos are read from (never modified)")
    repeats: int = Field(ge=1, le=1000, description="num_repeats (the N of `N_<tokens>`)")
    class_tokens: str = Field(description="the folder's tokens: the caption of a photo without a caption file")

    _expand_paths = field_validator("folder", mode="before")(expand_home)

    @field_validator("class_tokens")
    @classmethod
    def check_tokens(cls, v: str) -> str:
        if not v.strip() or re.search(r"[/\\\n]", v):
            raise ValueError("must be words for a folder name, e.g. 'ohwx man'")
        return v


SUBSETS_HELP = ("Kohya folders (`N_<tokens>`), one sd-scripts subset each; filled in from `images` "
                "when it is a Kohya folder, and recorded in each run's preset.yaml")


class Dataset(Section):
    images: Optional[str] = Field(None, description="folder with 5-10 photos of the person (required to train)")
    repeats: int = Field(10, ge=1, le=1000, description="times each photo is seen per epoch (the 10 in `10_myface woman`)")
    captions: Captions = Field(default_factory=Captions)
    resolution: int = Field(1024, ge=64, le=4096, description="training resolution in pixels (square)")
    enable_bucket: bool = Field(True, description="aspect-ratio buckets instead of square crops")
    min_bucket_reso: int = Field(512, ge=64)
    max_bucket_reso: int = Field(2048, ge=64)
    bucket_reso_steps: int = Field(64, ge=32)
    bucket_no_upscale: bool = True
    flip_aug: bool = Field(False, description="Kohya's random horizontal flip (faces are not symmetric: off by default)")
    color_aug: bool = False
    random_crop: bool = False
    face_crop_aug_range: Optional[tuple[float, float]] = None
    framing: Literal["face", "head_and_shoulders", "as_is"] = Field(
        "head_and_shoulders", description="crop each photo around its main face (face, head_and_shoulders) or keep it whole (as_is)")
    max_upscale: float = Field(2.0, ge=1.0, description="never enlarge a crop more than this; smaller crops are kept smaller, with a warning")
    augment: Augment = Field(default_factory=Augment)
    mask: Literal["none", "face", "head", "person"] = Field(
        "none", description="weight the training loss by a soft mask around the face (face), head and hair (head) "
                            "or head and body (person), stored as each image's alpha; none: every pixel counts the same")
    mask_floor: float = Field(0.1, ge=0, le=1, description="loss weight outside the mask (the background is still learned a little)")
    holdout: Optional[int] = Field(
        None, ge=0, le=100, description="photos kept out of training to measure likeness and validation loss on; "
                                        "unset: 1 when at least 6 photos are usable, else 0")
    identity_check: Literal["exclude", "warn", "off"] = Field(
        "exclude", description="a photo whose face does not match the others (someone else): left out (exclude), kept "
                               "with a warning (warn) or not checked (off); a set with no clear majority person is an error")
    subsets: list[Subset] = Field(default_factory=list, description=SUBSETS_HELP)

    _expand_paths = field_validator("images", mode="before")(expand_home)

    @field_validator("identity_check", mode="before")
    @classmethod
    def off_is_off(cls, v):
        return "off" if v is False else v  # YAML reads a bare `off` as false

    @field_validator("resolution")
    @classmethod
    def check_resolution(cls, v: int) -> int:
        if v % 64:
            raise ValueError(f"must be a multiple of 64 for SDXL (try {max(64, round(v / 64) * 64)})")
        return v

    @field_validator("bucket_reso_steps")
    @classmethod
    def check_bucket_steps(cls, v: int) -> int:
        if v % 32:
            raise ValueError("SDXL bucket steps must be a multiple of 32 (use 32 or 64)")
        return v



class Regularization(Section):
    images: Optional[str] = Field(None, description="folder of class photos (e.g. other women) for prior preservation")
    repeats: int = Field(1, ge=1, le=1000)
    generate: int = Field(0, ge=0, description="generate this many class images with the base model before training")
    prompts: list[PromptTemplate] = Field(
        default_factory=lambda: [
            "photo of a {class}",
            "close-up portrait photo of a {class}",
            "photo of a {class}, head and shoulders, natural light",
            "photo of a {class}, outdoors",
        ],
        description="class prompts for generated images, used in turn; {class} is filled in")
    negative_prompt: str = "lowres, blurry, deformed, cartoon, drawing, text, watermark"
    steps: int = Field(30, ge=1, le=200)
    cfg: float = Field(7.0, ge=0)
    seed: int = 1234
    scheduler: Literal[tuple(SAMPLERS)] = Field("euler", description="sampler for the class images")  # type: ignore[valid-type]
    prior_loss_weight: Optional[float] = Field(
        None, gt=0, le=10, description="loss weight of the class images; unset: 1, or with dataset.mask the training "
                                       "images' mean mask weight (sd-scripts does not rescale masked losses)")
    identity_check: Literal["exclude", "warn", "off"] = Field(
        "exclude", description="a photo whose face does not match the others (someone else): left out (exclude), kept "
                               "with a warning (warn) or not checked (off); a set with no clear majority person is an error")
    subsets: list[Subset] = Field(default_factory=list, description=SUBSETS_HELP)

    _expand_paths = field_validator("images", mode="before")(expand_home)
    _sampler_alias = field_validator("scheduler", mode="before")(sampler_name)



class Network(Section):
    module: Literal[NETWORK_MODULES] = "networks.lora"  # type: ignore[valid-type]
    dim: int = Field(32, ge=1, le=100000, description="LoRA rank (LyCORIS LoKr: a huge value such as 100000 means full-size factors)")
    alpha: float = Field(16, gt=0, description="LoRA alpha (scale = alpha / dim)")
    conv_dim: Optional[int] = Field(None, ge=1, le=100000, description="rank for 3x3 convolutions (LoCon); unset = none")
    conv_alpha: Optional[float] = Field(None, gt=0)
    dropout: Optional[float] = Field(None, ge=0, le=1, description="network_dropout (neuron dropout)")
    args: list[KeyValue] = Field(default_factory=list, description="extra network_args, each 'key=value'")



class Optimizer(Section):
    type: str = Field("AdamW8bit", description="sd-scripts optimizer_type, or a 'module.Class' path")
    unet_lr: float = Field(1e-4, gt=0, le=1)
    text_encoder_lr: Union[float, tuple[float, float]] = Field(
        0.0, description="0 trains the UNet only; one value or one per text encoder [te1, te2]")
    scheduler: Literal[SCHEDULERS] = "cosine"  # type: ignore[valid-type]
    warmup_steps: Union[int, float] = Field(0, ge=0, description="steps, or a ratio of all steps when < 1")
    num_cycles: int = Field(1, ge=1, description="restarts for cosine_with_restarts")
    max_grad_norm: float = Field(1.0, ge=0)
    args: list[KeyValue] = Field(default_factory=list, description="optimizer_args, each 'key=value' (e.g. weight_decay=0.01)")

    @field_validator("type")
    @classmethod
    def check_type(cls, v: str) -> str:
        known = {o.lower(): o for o in OPTIMIZERS}
        if v.lower() in known:
            return known[v.lower()]
        if "." in v:
            return v
        raise ValueError(f"unknown optimizer; use one of {', '.join(OPTIMIZERS[:6])}, ... or a 'module.Class' path")

    @field_validator("text_encoder_lr")
    @classmethod
    def check_te_lr(cls, v):
        values = v if isinstance(v, tuple) else (v,)
        if any(x < 0 or x > 1 for x in values):
            raise ValueError("learning rates must be between 0 and 1")
        return v

    @property
    def unet_only(self) -> bool:
        values = self.text_encoder_lr if isinstance(self.text_encoder_lr, tuple) else (self.text_encoder_lr,)
        return all(x == 0 for x in values)


class Training(Section):
    epochs: int = Field(10, ge=1, le=10000)
    max_steps: Optional[int] = Field(None, ge=1, description="stop after this many steps (overrides epochs)")
    batch_size: int = Field(1, ge=1, le=64)
    gradient_accumulation: int = Field(1, ge=1)
    mixed_precision: Literal["no", "fp16", "bf16"] = "bf16"
    save_precision: Literal["float", "fp16", "bf16"] = "fp16"
    full_bf16: bool = Field(False, description="keep gradients in bf16 too (saves VRAM; needs mixed_precision bf16)")
    fp8_base: bool = Field(False, description="hold the frozen base UNet in fp8 (saves VRAM)")
    gradient_checkpointing: bool = True
    cache_latents: bool = True
    cache_latents_to_disk: bool = False
    cache_text_encoder_outputs: bool = False
    no_half_vae: bool = Field(True, description="run SDXL's VAE in fp32 (its fp16 mode gives NaN)")
    noise_offset: float = Field(0.0, ge=0, le=1)
    min_snr_gamma: Optional[float] = Field(None, gt=0)
    seed: int = 42
    save_every_n_epochs: Optional[int] = Field(1, ge=1, description="write a checkpoint LoRA every N epochs")
    save_every_n_steps: Optional[int] = Field(None, ge=1, description="also write a checkpoint (and state) every N steps")
    save_state: bool = Field(False, description="save optimizer state with checkpoints so `train --resume` can continue")
    attention: Literal["sdpa", "xformers", "none"] = "sdpa"
    max_token_length: Literal[75, 150, 225] = 75
    lowram: bool = False
    max_data_loader_workers: int = Field(0, ge=0)
    validate_every_n_epochs: Optional[int] = Field(
        None, ge=1, description="validation loss on the held-out photos every N epochs (unset: every epoch)")
    validate_every_n_steps: Optional[int] = Field(None, ge=1, description="also every N steps")


class Output(Section):
    dir: str = Field("output", description="runs go to <dir>/<name>/<timestamp>/")
    name: str = Field("myface", description="LoRA file name (without .safetensors)")

    _expand_paths = field_validator("dir", mode="before")(expand_home)

    @field_validator("name")
    @classmethod
    def check_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("must be a plain file name: letters, digits, '_', '-', '.'")
        return v


class Kohya(Section):
    sd_scripts: Optional[str] = Field(None, description="sd-scripts folder; default: vendor/sd-scripts of this project")
    python: Optional[str] = Field(None, description="the trainer's python; default: .venv-kohya/bin/python of this project")
    launcher: Literal["accelerate", "python"] = "accelerate"
    num_processes: int = Field(1, ge=1)
    num_cpu_threads_per_process: int = Field(2, ge=1)
    tokenizer_cache: Optional[str] = Field(
        "auto", description="'auto' builds CLIP tokenizers offline; a folder to use; null to let sd-scripts use the hub")
    extra_args: list[str] = Field(default_factory=list, description="passed to sdxl_train_network.py verbatim")
    stall_minutes: Optional[float] = Field(
        30, gt=0, description="stop the trainer and report its last line when it prints nothing for this long (minutes); "
        "null: wait forever")

    _expand_paths = field_validator("sd_scripts", "python", "tokenizer_cache", mode="before")(expand_home)

    _check_extra_args = field_validator("extra_args")(check_extra_args)


class Preset(Section):
    """One training recipe: what to train on, how, and where to write it."""

    base_model: BaseModelSection
    subject: Subject = Field(default_factory=Subject)
    dataset: Dataset = Field(default_factory=Dataset)
    regularization: Regularization = Field(default_factory=Regularization)
    network: Network = Field(default_factory=Network)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    training: Training = Field(default_factory=Training)
    flux: FluxSettings = Field(default_factory=FluxSettings)
    sampling: Sampling = Field(default_factory=Sampling)
    output: Output = Field(default_factory=Output)
    kohya: Kohya = Field(default_factory=Kohya)
    evaluate: Evaluation = Field(default_factory=Evaluation)
    resources: Resources = Field(default_factory=Resources)

    @field_validator("base_model", mode="before")
    @classmethod
    def accept_plain_path(cls, v):
        if isinstance(v, (int, float, list, bool)):
            raise ValueError("expected a hub id, a diffusers folder or a .safetensors file")
        if isinstance(v, str):
            return {"path": v, "family": CHECK_MODELS.get(v, "sdxl")}
        return v

    @property
    def instance_tokens(self) -> str:
        return f"{self.subject.trigger} {self.subject.class_word}"

    @model_validator(mode="after")
    def flux_guidance(self):
        """A FLUX.1 preset's `cfg` is the DiT's embedded guidance: where sampling, evaluate or regularization leave it
        unset it is FLUX_GUIDANCE (3.5), not the 6-7 of SDXL's classifier-free guidance (Chroma keeps those)."""
        if self.base_model.is_flux and self.flux.model_type == "flux":
            for section in (self.sampling, self.evaluate, self.regularization):
                if "cfg" not in section.model_fields_set:
                    section.cfg = FLUX_GUIDANCE
        return self

    @model_validator(mode="after")
    def check_rules(self, info: ValidationInfo):
        """The cross-field rules (config/rules.py); `presets.validate` runs them itself, beside the field errors."""
        if (info.context or {}).get("rules", True):
            problems = rules.check(self.model_dump(), type(self))
            if problems:
                raise ValueError("; ".join(f"{p.path}: {p.message} (got {p.value!r})" for p in problems))
        return self
