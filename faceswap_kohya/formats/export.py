"""Export a preset as Kohya files: a flat sd-scripts config TOML (as kohya_ss v24+ writes it) with its dataset
TOML beside it, or a kohya_ss GUI JSON; the settings neither format carries are listed. No torch here."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from faceswap_kohya.errors import UserError
from faceswap_kohya.formats.gui_json import KOHYA_LORA_VARS, LYCORIS_ARG_NAMES, LYCORIS_ARGS
from faceswap_kohya.formats.report import loose_number, parse_cli_args, to_cli_args

# ---------------------------------------------------------------- export
# Dataset settings that act when faceswap-kohya prepares the photos (crops, alpha masks, held-out photos):
# a Kohya folder exported for another trainer holds the user's own photos, so neither format carries them.
PREPARE_ONLY = ("framing", "max_upscale", "augment", "mask", "mask_floor", "holdout")


def _extra_dict(preset) -> dict:
    return {k: v for k, v in parse_cli_args(list(preset.kohya.extra_args)).items() if k}


def _not_exported(preset) -> list[str]:
    """Preset settings neither Kohya format carries (listed on export)."""
    from faceswap_kohya.config.schema import Preset

    default = Preset(base_model=preset.base_model.path)
    out = []
    for section in ("dataset", "captions", "regularization", "sampling", "evaluate", "output", "kohya"):
        obj = preset.dataset.captions if section == "captions" else getattr(preset, section)
        ref = default.dataset.captions if section == "captions" else getattr(default, section)
        for name in type(obj).model_fields:
            if section == "dataset" and name not in PREPARE_ONLY:
                continue
            if section == "captions" and name in ("shuffle", "keep_tokens", "dropout_rate"):
                continue
            if section == "regularization" and name in ("images", "repeats", "subsets"):
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
    from faceswap_kohya.runs.layout import RunLayout
    from faceswap_kohya.trainer.render import dataset_config, train_config

    out_path = Path(out_path)
    run = RunLayout(Path("run"))
    # no alpha masks (masked_loss) and no validation dataset: both need photos this tool prepared
    skipped = _not_exported(preset)
    preset = preset.model_copy(update={"dataset": preset.dataset.model_copy(update={"mask": "none", "holdout": 0})})
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
    d, r = preset.dataset, preset.regularization
    folders = ([s.folder for s in d.subsets] or [d.images or "PHOTOS_FOLDER"]) + \
        ([s.folder for s in r.subsets] or [r.images or "REG_FOLDER"])
    for subset, folder in zip(ds["datasets"][0]["subsets"], folders):  # the Kohya folders themselves
        subset["image_dir"] = folder
    return dict(sorted(cfg.items())), ds, skipped


def export_gui(preset) -> tuple[dict, list[str]]:
    """A kohya_ss GUI preset (the keys train_model reads for an SDXL or FLUX.1 LoRA)."""
    # long: one line per kohya_ss GUI key, the mirror of gui_to_sd_args
    n, o, t, d = preset.network, preset.optimizer, preset.training, preset.dataset
    extra = _extra_dict(preset)
    args = dict(a.split("=", 1) for a in n.args)
    lora_type = "Standard"
    gui: dict = {}
    additional: list[str] = []
    if n.module == "lycoris.kohya":
        algo = args.pop("algo", "locon")
        lora_type = next((k for k, (a, _) in LYCORIS_ARGS.items() if a == algo and k.startswith("LyCORIS/")), None)
        if lora_type is None:
            raise UserError(f"LyCORIS algo {algo!r} has no kohya_ss LoRA_type")
        keys = LYCORIS_ARGS[lora_type][1]
        back = {LYCORIS_ARG_NAMES.get(k, k): k for k in keys}
        for name, value in list(args.items()):
            if name in back:
                gui[back[name]] = loose_number(value) if value not in ("True", "False") else value == "True"
                args.pop(name)
    elif n.conv_dim is not None:
        lora_type = "Kohya LoCon"
    flux = preset.base_model.is_flux
    if flux:
        lora_type = "Flux1"
        gui["train_blocks"] = args.pop("train_blocks", "all")
    for name, value in list(args.items()):
        if name in KOHYA_LORA_VARS or name.startswith("loraplus_"):
            gui[name] = loose_number(value)
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
    if flux:  # kohya_ss' FLUX.1 keys (flux1_checkbox and its options), the SDXL switches off
        f, b = preset.flux, preset.base_model
        gui |= {"sdxl": False, "flux1_checkbox": True, "ae": b.ae or "", "clip_l": b.clip_l or "", "t5xxl": b.t5xxl or "",
                "guidance_scale": f.guidance_scale, "timestep_sampling": f.timestep_sampling,
                "model_prediction_type": f.model_prediction_type, "discrete_flow_shift": f.discrete_flow_shift,
                "t5xxl_max_token_length": f.t5xxl_max_token_length or 0, "apply_t5_attn_mask": f.apply_t5_attn_mask,
                "blocks_to_swap": f.blocks_to_swap or 0,
                "flux1_cache_text_encoder_outputs": t.cache_text_encoder_outputs,
                "flux1_cache_text_encoder_outputs_to_disk": f.cache_text_encoder_outputs_to_disk}
        for key in ("sdxl_cache_text_encoder_outputs", "sdxl_no_half_vae", "max_token_length", "conv_dim", "conv_alpha"):
            gui.pop(key)
        if f.sigmoid_scale != 1.0:
            gui["sigmoid_scale"] = f.sigmoid_scale
        if f.model_type != "flux":
            additional.append(f"--model_type={f.model_type}")
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
        ds_path = out.with_name(out.stem + ".dataset.toml")
        _refuse_existing(out, ds_path)
        cfg, ds, skipped = export_sd_scripts(preset, out)
        texts = {out: tomli_w.dumps(cfg), ds_path: tomli_w.dumps(ds)}
    else:
        out = Path(out or f"{preset.output.name}.json")
        _refuse_existing(out)
        gui, skipped = export_gui(preset)
        texts = {out: json.dumps(gui, indent=4) + "\n"}
    for path, text in texts.items():
        try:
            with open(path, "x", encoding="utf-8") as f:  # "x": never over a file made meanwhile
                f.write(text)
        except OSError as e:
            raise UserError(f"{path}: cannot write it ({e.strerror})") from None
        lines.append(f"wrote {path}")
    if skipped:
        lines.append("not carried by this format (faceswap-kohya settings): " + ", ".join(skipped))
    return lines


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise UserError(f"{path} already exists; choose another name with -o (nothing was overwritten)")
        if not path.parent.is_dir():
            raise UserError(f"{path}: the folder {path.parent} does not exist")


def dump_yaml_data(data: dict) -> str:  # pragma: no cover - convenience for debugging
    return yaml.safe_dump(data, sort_keys=False)
