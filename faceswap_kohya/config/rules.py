"""The preset's cross-field rules: `check_*` functions over the raw preset, each yielding
(field path, message, value) for what to change, so they are reported with the field errors, in their form.

A rule reads each field it needs through `Fields.get`, which validates that one field as the schema does
(its default when unset); a field that fails its own validation makes the rules that need it step aside
(its own error is already reported). `check` runs every rule in `RULES`.
"""

from __future__ import annotations

import re
from typing import Iterator, NamedTuple

from pydantic import BaseModel, ValidationError


class Problem(NamedTuple):
    path: str  # the field to change, e.g. "dataset.color_aug"
    message: str
    value: object  # the field's value, shown as `(got VALUE)`


class Invalid(Exception):
    """A field the rule needs failed its own validation (or its section is not a mapping)."""


class Fields:
    """Typed values of a raw preset, one field at a time: `get("dataset.captions.shuffle")`."""

    def __init__(self, data: dict, model: type[BaseModel]):
        self.data, self.model = data, model

    def get(self, path: str):
        model, raw = self.model, self.data
        *sections, name = path.split(".")
        for part in sections:
            model = model.model_fields[part].annotation
            if raw is not UNSET:
                raw = raw.get(part, UNSET)
                if raw is not UNSET and not isinstance(raw, dict):
                    raise Invalid(path)  # pydantic says the section is not a mapping
        field = model.model_fields[name]
        if raw is UNSET or name not in raw:
            return field.get_default(call_default_factory=True)
        holder = model.model_construct()
        try:
            setattr(holder, name, raw[name])  # the sections validate assignments: the field's own checks run
        except (ValidationError, ValueError, TypeError):
            raise Invalid(path) from None
        return getattr(holder, name)


UNSET = object()


CACHED_TE = "while training.cache_text_encoder_outputs is true (it needs fixed text-encoder outputs), or set that to false"


def check_text_encoder_lr(f: Fields) -> Iterator[Problem]:
    lr = f.get("optimizer.text_encoder_lr")
    if f.get("training.cache_text_encoder_outputs") and any(x != 0 for x in (lr if isinstance(lr, tuple) else (lr,))):
        yield Problem("optimizer.text_encoder_lr", "must be 0 (UNet-only training) " + CACHED_TE, lr)


def check_caption_shuffle(f: Fields) -> Iterator[Problem]:
    if f.get("training.cache_text_encoder_outputs") and (shuffle := f.get("dataset.captions.shuffle")):
        yield Problem("dataset.captions.shuffle", "must be false " + CACHED_TE, shuffle)


def check_caption_dropout(f: Fields) -> Iterator[Problem]:
    if f.get("training.cache_text_encoder_outputs") and (rate := f.get("dataset.captions.dropout_rate")):
        yield Problem("dataset.captions.dropout_rate", "must be 0 " + CACHED_TE, rate)


def check_augmentation_vs_cache(f: Fields) -> Iterator[Problem]:
    for key in ("color_aug", "random_crop"):
        if (on := f.get(f"dataset.{key}")) and f.get("training.cache_latents"):
            yield Problem(f"dataset.{key}", "changes images every step, so latents can't be cached: "
                                            "turn it off or set training.cache_latents to false", on)


def check_buckets(f: Fields) -> Iterator[Problem]:
    low, high = f.get("dataset.min_bucket_reso"), f.get("dataset.max_bucket_reso")
    if f.get("dataset.enable_bucket") and low > high:
        yield Problem("dataset.min_bucket_reso", f"is larger than dataset.max_bucket_reso ({high})", low)


def check_regularization_prompts(f: Fields) -> Iterator[Problem]:
    prompts = f.get("regularization.prompts")
    if f.get("regularization.generate") and not prompts:
        yield Problem("regularization.prompts", "is empty but regularization.generate is set: add a prompt", prompts)


def check_regularization_source(f: Fields) -> Iterator[Problem]:
    generate = f.get("regularization.generate")
    if generate and (f.get("regularization.images") or f.get("regularization.subsets")):
        yield Problem("regularization.generate", "set either regularization.images (a folder) or generate (a count), "
                                                 "not both", generate)


def check_conv(f: Fields) -> Iterator[Problem]:
    alpha = f.get("network.conv_alpha")
    if alpha is not None and f.get("network.conv_dim") is None:
        yield Problem("network.conv_alpha", "is set but network.conv_dim is not: set conv_dim too", alpha)


def check_precision(f: Fields) -> Iterator[Problem]:
    precision = f.get("training.mixed_precision")
    if f.get("training.full_bf16") and precision != "bf16":
        yield Problem("training.mixed_precision", "must be bf16 for training.full_bf16 (or set full_bf16 to false)",
                      precision)


def check_sampling(f: Fields) -> Iterator[Problem]:
    prompts = f.get("sampling.prompts")
    if (f.get("sampling.every_n_epochs") or f.get("sampling.every_n_steps")) and not prompts:
        yield Problem("sampling.prompts", "is empty but sampling.every_n_epochs/every_n_steps is set: add a prompt",
                      prompts)


def check_bleed_without_trigger(f: Fields) -> Iterator[Problem]:
    prompts, trigger = f.get("evaluate.bleed_prompts"), f.get("subject.trigger")
    for i, prompt in enumerate(prompts):
        if trigger.lower() in re.findall(r"[a-z0-9]+", prompt.lower()):
            yield Problem(f"evaluate.bleed_prompts.{i}", f"contains the trigger {trigger!r}; bleed prompts test faces "
                                                         "the LoRA should leave alone", prompt)


FLUX_FILES = {"ae": "the autoencoder, ae.safetensors", "clip_l": "the CLIP-L text encoder, clip_l.safetensors",
              "t5xxl": "the T5-XXL text encoder, e.g. t5xxl_fp16.safetensors"}
BUILTIN_FAMILIES = {"builtin:pipeline-check": "sdxl", "builtin:flux-check": "flux"}


def check_family_files(f: Fields) -> Iterator[Problem]:
    """FLUX needs its three companion files (the check model brings its own; Chroma has no CLIP-L and is not
    evaluated); SDXL takes none of them."""
    family, path = f.get("base_model.family"), f.get("base_model.path")
    builtin = BUILTIN_FAMILIES.get(path)
    if builtin and builtin != family:
        yield Problem("base_model.family", f"must be {builtin} for {path}", family)
        return
    chroma = family == "flux" and f.get("flux.model_type") == "chroma"
    if chroma and f.get("evaluate.enabled"):
        yield Problem("evaluate.enabled", "must be false for flux.model_type chroma (evaluation loads FLUX.1 pipelines "
                                          "only)", True)
    for key, what in FLUX_FILES.items():
        value = f.get(f"base_model.{key}")
        if key == "clip_l" and chroma:
            continue  # Chroma has no CLIP-L
        if family == "flux" and not builtin and not value:
            yield Problem(f"base_model.{key}", f"is required for base_model.family flux ({what})", value)
        elif family == "flux" and builtin and value:
            yield Problem(f"base_model.{key}", f"must be unset with {path} (it brings its own)", value)
        elif family == "sdxl" and value:
            yield Problem(f"base_model.{key}", "is a FLUX file: set base_model.family to flux, or remove it", value)
    if family == "flux" and (vae := f.get("base_model.vae")):
        yield Problem("base_model.vae", "is for SDXL; FLUX's autoencoder is base_model.ae", vae)


def check_family_network(f: Fields) -> Iterator[Problem]:
    family, module = f.get("base_model.family"), f.get("network.module")
    if family == "sdxl" and module == "networks.lora_flux":
        yield Problem("network.module", "networks.lora_flux is for base_model.family flux (SDXL: networks.lora)", module)
    if family == "flux" and (conv := f.get("network.conv_dim")) is not None:
        yield Problem("network.conv_dim", "FLUX's DiT has no 3x3 convolutions: remove it (LoCon is SDXL only)", conv)


RULES = (check_family_files, check_family_network, check_text_encoder_lr, check_caption_shuffle, check_caption_dropout, check_augmentation_vs_cache, check_buckets,
         check_regularization_prompts, check_regularization_source, check_conv, check_precision, check_sampling,
         check_bleed_without_trigger)


def check(data: dict, model: type[BaseModel]) -> list[Problem]:
    """Every cross-field problem of the raw preset `data` (validated field by field against `model`)."""
    fields, problems = Fields(data if isinstance(data, dict) else {}, model), []
    for rule in RULES:
        try:
            problems.extend(rule(fields))
        except Invalid:
            continue
    return problems
