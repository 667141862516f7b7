"""Preset → the two TOML files of `sdxl_train_network.py` (family sdxl) or `flux_train_network.py` (family
flux), its prompt file and its command line.

Pure: the functions compute dicts, text and argv from a preset and a run folder; `write_*` only
writes them. Every config key is one the script's `setup_parser()` knows, typed as it parses. The dataset
TOML is the same for both families; the config differs in the model files, the network module and the
FLUX-only settings (the preset's `flux` section).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import numpy as np
import tomli_w

from faceswap_kohya.config.samplers import SAMPLERS
from faceswap_kohya.config.schema import CHECK_MODEL, CHECK_MODEL_FLUX, Preset
from faceswap_kohya.config.texts import fill
from faceswap_kohya.models.base import flux_files
from faceswap_kohya.models.checkmodel import check_model_path
from faceswap_kohya.runs.layout import RunLayout, has_regularization, instance_dir, reg_dir, subset_dir, validation_dir
from faceswap_kohya.trainer.install import Trainer


def has_held_out(preset: Preset, run: RunLayout) -> bool:
    """Whether the run has held-out photos: in a prepared run folder, whether its validation folder holds
    images; before preparation (a dry run), whether the preset asks for them."""
    if instance_dir(preset, run).is_dir():
        folder = validation_dir(preset, run)
        return folder.is_dir() and any(p.suffix.lower() == ".png" for p in folder.iterdir())
    return bool(preset.dataset.holdout)


def mask_mean_weight(folder: Path) -> Optional[float]:
    """The mean alpha (0-1) of the training images in `folder`, or None when it has none with alpha."""
    from PIL import Image

    weights = []
    for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
        with Image.open(path) as im:
            if im.mode == "RGBA":
                weights.append(float(np.asarray(im.getchannel("A"), dtype=np.float64).mean() / 255))
    return sum(weights) / len(weights) if weights else None


def prior_loss_weight(preset: Preset, run: RunLayout) -> Optional[float]:
    """The class images' loss weight when it isn't sd-scripts' 1.0. sd-scripts multiplies a masked image's
    loss by its mask without rescaling, so masked training images weigh their mean mask weight (~0.2-0.4)
    while unmasked class images weigh 1: unless set, the class images get that mean weight too (measured
    on the prepared images; unknown before preparation)."""
    r = preset.regularization
    if not has_regularization(preset):
        return None
    if r.prior_loss_weight is not None:
        return r.prior_loss_weight
    if preset.dataset.mask == "none":
        return None
    measured = mask_mean_weight(instance_dir(preset, run))
    return round(measured, 3) if measured is not None else None


def _dataset_params(preset: Preset) -> dict:
    d = preset.dataset
    params = {"resolution": d.resolution, "batch_size": preset.training.batch_size, "enable_bucket": d.enable_bucket}
    if d.enable_bucket:
        params |= {
            "min_bucket_reso": d.min_bucket_reso,
            "max_bucket_reso": d.max_bucket_reso,
            "bucket_reso_steps": d.bucket_reso_steps,
            "bucket_no_upscale": d.bucket_no_upscale,
        }
    return params


def dataset_config(preset: Preset, run: RunLayout) -> dict:
    """The dataset TOML: the instance subset (one per Kohya folder; loss-masked by their PNGs' alpha with
    `dataset.mask`) and, when given, the `is_reg` ones; with held-out photos a second dataset of them only,
    all of it validation (`validation_split = 1`: sd-scripts trains on none of it and computes the
    validation loss on all of it)."""
    d, c, r = preset.dataset, preset.dataset.captions, preset.regularization
    general = {
        "caption_extension": ".txt",
        "shuffle_caption": c.shuffle,
        "keep_tokens": c.keep_tokens,
    }
    masked = {"alpha_mask": True} if d.mask != "none" else {}

    def instance(image_dir: Path, class_tokens: str, repeats: int) -> dict:
        subset = {
            "image_dir": str(image_dir),
            "class_tokens": class_tokens,
            "num_repeats": repeats,
            "flip_aug": d.flip_aug,
            "color_aug": d.color_aug,
            "random_crop": d.random_crop,
            **masked,
        }
        if d.face_crop_aug_range:
            subset["face_crop_aug_range"] = list(d.face_crop_aug_range)
        if c.dropout_rate:
            subset["caption_dropout_rate"] = c.dropout_rate
        return subset

    if d.subsets:
        subsets = [instance(subset_dir(run.img, s), s.class_tokens, s.repeats) for s in d.subsets]
    else:
        subsets = [instance(instance_dir(preset, run), preset.instance_tokens, d.repeats)]
    if r.subsets:
        subsets += [{"image_dir": str(subset_dir(run.reg, s)), "class_tokens": s.class_tokens,
                     "num_repeats": s.repeats, "is_reg": True} for s in r.subsets]
    elif has_regularization(preset):
        subsets.append({
            "image_dir": str(reg_dir(preset, run)),
            "class_tokens": preset.subject.class_word,
            "num_repeats": r.repeats,
            "is_reg": True,
        })
    datasets = [_dataset_params(preset) | {"subsets": subsets}]
    if has_held_out(preset, run):
        held = {"image_dir": str(validation_dir(preset, run)), "class_tokens": preset.instance_tokens,
                "num_repeats": 1, **masked}
        datasets.append(_dataset_params(preset) | {"validation_split": 1.0, "subsets": [held]})
    return {"general": general, "datasets": datasets}


def _text_encoder_lr(preset: Preset) -> list[float]:
    lr = preset.optimizer.text_encoder_lr
    return list(lr) if isinstance(lr, tuple) else [lr, lr]


def train_config(preset: Preset, run: RunLayout, base_model: str, tokenizer_cache: str | None = None) -> dict:
    """The config TOML, in readable sections (sd-scripts flattens them; names are ignored)."""
    # long: one block per config.toml section, in sd-scripts' order; splitting it would scatter the mapping
    n, o, t, s = preset.network, preset.optimizer, preset.training, preset.sampling
    res = preset.dataset.resolution

    flux = preset.base_model.is_flux
    model = {"pretrained_model_name_or_path": base_model}
    if flux:
        model |= flux_model_files(preset)
    if preset.base_model.vae:
        model["vae"] = preset.base_model.vae
    if tokenizer_cache:
        model["tokenizer_cache_dir"] = tokenizer_cache

    network_args = []
    if n.conv_dim is not None:
        network_args += [f"conv_dim={n.conv_dim}", f"conv_alpha={n.conv_alpha if n.conv_alpha is not None else n.conv_dim}"]
    network_args += n.args
    module = "networks.lora_flux" if flux and n.module == "networks.lora" else n.module
    network = {"network_module": module, "network_dim": n.dim, "network_alpha": float(n.alpha)}
    if network_args:
        network["network_args"] = network_args
    if n.dropout is not None:
        network["network_dropout"] = n.dropout
    if o.unet_only:
        network["network_train_unet_only"] = True

    optimizer = {
        "optimizer_type": o.type,
        "learning_rate": o.unet_lr,
        "unet_lr": o.unet_lr,
        "lr_scheduler": o.scheduler,
        "lr_warmup_steps": o.warmup_steps,
        "max_grad_norm": o.max_grad_norm,
    }
    if not o.unet_only:
        optimizer["text_encoder_lr"] = _text_encoder_lr(preset)
    if o.args:
        optimizer["optimizer_args"] = list(o.args)
    if o.scheduler == "cosine_with_restarts":
        optimizer["lr_scheduler_num_cycles"] = o.num_cycles

    training = {"resolution": f"{res},{res}"}
    if t.max_steps:
        training["max_train_steps"] = t.max_steps
    else:
        training["max_train_epochs"] = t.epochs
    training |= {
        "gradient_accumulation_steps": t.gradient_accumulation,
        "mixed_precision": t.mixed_precision,
        "gradient_checkpointing": t.gradient_checkpointing,
        "cache_latents": t.cache_latents,
        "cache_latents_to_disk": t.cache_latents_to_disk,
        "cache_text_encoder_outputs": t.cache_text_encoder_outputs,
        **({} if flux else {"no_half_vae": t.no_half_vae}),
        "seed": t.seed,
        "max_data_loader_n_workers": t.max_data_loader_workers,
    }
    if t.attention != "none":
        training[t.attention] = True
    for flag in ("full_bf16", "fp8_base", "lowram"):
        if getattr(t, flag):
            training[flag] = True
    if t.noise_offset:
        training["noise_offset"] = t.noise_offset
    if t.min_snr_gamma is not None:
        training["min_snr_gamma"] = t.min_snr_gamma
    if t.max_token_length != 75 and not flux:
        training["max_token_length"] = t.max_token_length
    if flux:
        training |= flux_training(preset)
    if preset.dataset.mask != "none":
        training["masked_loss"] = True  # the alpha masks alone switch it on at the pinned sd-scripts; said for clarity
    if (weight := prior_loss_weight(preset, run)) is not None:
        training["prior_loss_weight"] = weight
    if has_held_out(preset, run):
        for key in ("validate_every_n_epochs", "validate_every_n_steps"):
            if getattr(t, key):
                training[key] = getattr(t, key)

    saving = {
        "output_dir": str(run.model),
        "output_name": preset.output.name,
        "save_model_as": "safetensors",
        "save_precision": t.save_precision,
        "logging_dir": str(run.logs),
    }
    if t.save_every_n_epochs:
        saving["save_every_n_epochs"] = t.save_every_n_epochs
    if t.save_every_n_steps:
        saving["save_every_n_steps"] = t.save_every_n_steps
    if t.save_state:
        saving["save_state"] = True
        saving["save_last_n_epochs_state"] = 1

    config = {"model": model, "network": network, "optimizer": optimizer, "training": training, "saving": saving}
    if s.prompts:
        sampling = {"sample_prompts": str(run.sample_prompts), "sample_sampler": SAMPLERS[s.sampler].sd_scripts}
        if s.every_n_epochs:
            sampling["sample_every_n_epochs"] = s.every_n_epochs
        if s.every_n_steps:
            sampling["sample_every_n_steps"] = s.every_n_steps
        config["sampling"] = sampling
    return config


def flux_model_files(preset: Preset) -> dict:
    """The FLUX DiT's companion files (absolute where they exist) and, for Chroma, the model type."""
    files = flux_files(preset.base_model)
    out = {}
    for key in ("ae", "clip_l", "t5xxl"):
        if key == "clip_l" and preset.flux.model_type == "chroma":
            continue  # Chroma has no CLIP-L
        p = Path(files[key])
        out[key] = str(p.absolute()) if p.exists() else files[key]
    if preset.flux.model_type != "flux":
        out["model_type"] = preset.flux.model_type
    return out


def flux_training(preset: Preset) -> dict:
    """The `flux` section as flux_train_network.py's options (unset ones left to sd-scripts)."""
    f = preset.flux
    out = {"guidance_scale": f.guidance_scale, "timestep_sampling": f.timestep_sampling,
           "model_prediction_type": f.model_prediction_type, "discrete_flow_shift": f.discrete_flow_shift}
    if f.sigmoid_scale != 1.0:
        out["sigmoid_scale"] = f.sigmoid_scale
    for key in ("blocks_to_swap", "t5xxl_max_token_length"):
        if getattr(f, key) is not None:
            out[key] = getattr(f, key)
    for key in ("apply_t5_attn_mask", "cache_text_encoder_outputs_to_disk"):
        if getattr(f, key):
            out[key] = True
    return out


def sample_prompts(preset: Preset) -> str:
    """sd-scripts' prompt-file lines: `prompt --n neg --w W --h H --s steps --d seed --l cfg` (FLUX.1: `--l 1
    --g cfg`, cfg being its embedded guidance)."""
    s = preset.sampling
    size = s.size or preset.dataset.resolution
    if not preset.base_model.is_flux:
        scales = f"--l {s.cfg:g}"
    elif preset.flux.model_type == "chroma":
        scales = f"--l {s.cfg:g} --g 0"  # Chroma: true CFG, no embedded guidance
    else:
        scales = f"--l 1 --g {s.cfg:g}"  # FLUX.1: cfg is the embedded guidance, no negative pass
    lines = []
    for i, prompt in enumerate(s.prompts):
        line = f"{fill(prompt, preset)} --n {s.negative_prompt} --w {size} --h {size} --s {s.steps} --d {s.seed + i} {scales}"
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def trainer_argv(preset: Preset, trainer: Trainer, run: RunLayout, extra: list[str] = ()) -> list[str]:
    """The exact command: `accelerate launch ... sdxl_train_network.py --config_file ... --dataset_config ...`
    (`flux_train_network.py` for family flux: the trainer knows its family)."""
    k = preset.kohya
    if k.launcher == "accelerate":
        mp = preset.training.mixed_precision
        head = [str(trainer.python), "-m", "accelerate.commands.launch",
                "--num_processes", str(k.num_processes), "--num_machines", "1",
                "--num_cpu_threads_per_process", str(k.num_cpu_threads_per_process),
                "--mixed_precision", mp, "--dynamo_backend", "no"]
    else:
        head = [str(trainer.python)]
    return head + [str(trainer.script), "--config_file", str(run.config_toml),
                   "--dataset_config", str(run.dataset_toml), *k.extra_args, *extra]


def shell_command(argv: list[str], cwd: Path) -> str:
    return f"cd {shlex.quote(str(cwd))} && " + shlex.join(argv)


def base_model_arg(preset: Preset) -> str:
    """What sd-scripts gets as pretrained_model_name_or_path (the built-in check models resolved; FLUX: the DiT)."""
    if preset.base_model.path == CHECK_MODEL:
        return str(check_model_path())
    if preset.base_model.path == CHECK_MODEL_FLUX:
        return flux_files(preset.base_model)["dit"]
    p = Path(preset.base_model.path)
    return str(p.absolute()) if p.exists() else preset.base_model.path


def write_toml(path: Path, data: dict) -> None:
    path.write_bytes(tomli_w.dumps(data).encode("utf-8"))


def write_all(preset: Preset, run: RunLayout, base_model: str, tokenizer_cache: str | None) -> None:
    """Write dataset.toml, config.toml and (when sampling) the prompt file into the run folder."""
    run.root.mkdir(parents=True, exist_ok=True)
    write_toml(run.dataset_toml, dataset_config(preset, run))
    write_toml(run.config_toml, train_config(preset, run, base_model, tokenizer_cache))
    if preset.sampling.prompts:
        run.sample_prompts.write_text(sample_prompts(preset), encoding="utf-8")
