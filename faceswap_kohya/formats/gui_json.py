"""kohya_ss GUI JSON → the sd-scripts arguments kohya_ss itself would write (`gui_to_sd_args`, following
`train_model` in bmaltais/kohya_ss kohya_gui/lora_gui.py (SDXL, and FLUX.1 with flux1_checkbox / LoRA_type
Flux1: its flux1_* and FLUX option keys, networks.lora_flux with train_blocks): its `config_toml_data` dict, the filter that drops
""/False/None/0, the `LoRA_type` → network_module/network_args branches, `resolve_lr_warmup_steps` in
common_gui.py (percent → ratio) and `run_cmd_advanced_training` (additional_parameters: quotes removed, split
on spaces, appended to the command line)); the LyCORIS and LoRA network tables export uses too."""

from __future__ import annotations

from faceswap_kohya.formats.report import (
    PATH_KEYS,
    Report,
    SdArgs,
    check_numbers,
    gui_unset,
    loose_float,
    loose_int,
    loose_number,
    network_arg_text,
    parse_cli_args,
    split_args,
    toml_value,
)

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
LYCORIS_ARGS = {
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
LYCORIS_ARGS["LoCon"] = LYCORIS_ARGS["LyCORIS/LoCon"]
LYCORIS_ARG_NAMES = {"LyCORIS_preset": "preset", "unit": "block_size", "constrain": "constraint"}
# Standard / Kohya LoCon: these GUI keys become network_args when truthy.
KOHYA_LORA_VARS = ["down_lr_weight", "mid_lr_weight", "up_lr_weight", "block_lr_zero_threshold", "block_dims",
                    "block_alphas", "conv_block_dims", "conv_block_alphas", "rank_dropout", "module_dropout"]
_NETWORK_KEYS = set().union(*(set(v[1]) for v in LYCORIS_ARGS.values()), KOHYA_LORA_VARS,
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


# FLUX.1 (flux1_checkbox): GUI keys that reach flux_train_network.py under the same name, and the renamed ones
FLUX_GUI_SAME = ["ae", "clip_l", "t5xxl", "guidance_scale", "timestep_sampling", "model_prediction_type",
                 "discrete_flow_shift", "sigmoid_scale", "t5xxl_max_token_length", "apply_t5_attn_mask", "blocks_to_swap",
                 "mem_eff_save", "cpu_offload_checkpointing", "fused_backward_pass", "split_mode"]
FLUX_GUI_RENAMED = {"flux1_cache_text_encoder_outputs": "cache_text_encoder_outputs",
                    "flux1_cache_text_encoder_outputs_to_disk": "cache_text_encoder_outputs_to_disk"}
FLUX_GUI_SDXL_ONLY = ("sdxl_cache_text_encoder_outputs", "sdxl_no_half_vae", "max_token_length", "clip_skip")


def gui_to_sd_args(gui: dict, report: Report) -> SdArgs:
    """What kohya_ss' train_model writes for an SDXL or FLUX.1 LoRA (config TOML + additional_parameters)."""
    # long: one line per kohya_ss GUI key (a table in code); each key's rule sits where it is read
    check_numbers(gui, report.source)
    g = dict(GUI_DEFAULTS)
    g.update(gui)
    out = SdArgs()
    done: set[str] = set()

    def use(key, sd_key=None, value=None, note=""):
        done.add(key)
        v = g.get(key) if value is None else value
        if gui_unset(v):
            if key in gui:
                report.add(key, "ignored", f"unset ({toml_value(gui[key])}); kohya_ss leaves it out")
            return
        out.set(sd_key or key, v, key, note)

    flux = gui.get("flux1_checkbox") is True or gui.get("LoRA_type") == "Flux1"
    if flux:
        _gui_flux(gui, out, report, done)
    for key in _GUI_SAME:
        if key in done:
            continue
        if key in gui:
            sd_key = {"optimizer_type": "optimizer"}.get(key, key)
            done.add(sd_key)
            use(sd_key, key, loose_number(gui[sd_key]) if not isinstance(gui[sd_key], (bool, list)) else gui[sd_key])
    for key in _GUI_INT:
        if key in gui and key not in done:
            use(key, value=loose_int(gui[key], 0))
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
            out.set(choice, True, "xformers", f"{toml_value(x)} means --{choice}")
        else:
            report.add("xformers", "transformed", f"{toml_value(x)} → no xformers/sdpa flag (attention: none)")
            out.set("_attention_none", True, "xformers")
    if "sdxl_no_half_vae" in gui and not flux:
        use("sdxl_no_half_vae", "no_half_vae", value=True if gui["sdxl_no_half_vae"] else None, note="sdxl_no_half_vae")
        if not gui["sdxl_no_half_vae"]:
            out.set("_no_half_vae_off", True, "sdxl_no_half_vae")
    if "sdxl_cache_text_encoder_outputs" in gui and not flux:
        use("sdxl_cache_text_encoder_outputs", "cache_text_encoder_outputs",
            value=True if gui["sdxl_cache_text_encoder_outputs"] else None)
    # seed: `int(seed) if int(seed) != 0 else None`
    if "seed" in gui:
        done.add("seed")
        if loose_int(gui["seed"], 0):
            out.set("seed", loose_int(gui["seed"]), "seed")
        else:
            report.add("seed", "transformed", f"unset ({toml_value(gui['seed'])}: sd-scripts picks a random seed) → "
                       "training.seed = 42 (a preset always fixes one)")
    # noise: Original → noise_offset (+ adaptive_noise_scale, random strength); Multires → multires_*
    nt = g.get("noise_offset_type")
    noise_keys = {"Original": ("noise_offset", "adaptive_noise_scale", "noise_offset_random_strength"),
                  "Multires": ("multires_noise_iterations", "multires_noise_discount")}
    for kind, keys in noise_keys.items():
        for key in (k for k in keys if k in gui):
            if nt == kind:
                use(key, value=loose_number(gui[key]))
            else:
                done.add(key)
                report.add(key, "ignored", f"noise_offset_type is {nt!r}: kohya_ss leaves it out")
    if "noise_offset_type" in gui:
        done.add("noise_offset_type")
        report.add("noise_offset_type", "mapped", f"{toml_value(nt)} selects which noise keys apply")
    # learning rates: text_encoder_lr → [te, te]; unet_lr 0 → unset; UNet-only when te == 0 < unet
    te = loose_float(g.get("text_encoder_lr"), 0.0) or 0.0
    unet = loose_float(g.get("unet_lr"), 0.0) or 0.0
    if "text_encoder_lr" in gui:
        done.add("text_encoder_lr")
        if te > 0:
            out.set("text_encoder_lr", [te, te], "text_encoder_lr", "one value per text encoder")
        else:
            report.add("text_encoder_lr", "ignored", f"unset ({toml_value(gui['text_encoder_lr'])}); kohya_ss leaves it out")
    if te == 0 and unet != 0:
        out.set("network_train_unet_only", True, "text_encoder_lr", "0 with unet_lr set means UNet only")
    if unet == 0 and te != 0:
        out.set("network_train_text_encoder_only", True, "unet_lr", "0 with text_encoder_lr set")
    # epochs and steps: with a folder dataset kohya_ss computes max_train_steps from `epoch`
    # (images × repeats ÷ batch ÷ accumulation × epoch × reg factor), which is what sd-scripts
    # computes itself from max_train_epochs for the same folder.
    mte, mts, ep = loose_int(g.get("max_train_epochs"), 0), loose_int(g.get("max_train_steps"), 0), loose_int(g.get("epoch"), 1)
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
                report.add(key, "ignored", f"unset ({toml_value(gui[key])}): the step count follows from the epochs")
    if mte and "epoch" in gui:
        report.add("epoch", "ignored", f"max_train_epochs={mte} overrides it")
    elif mts and "epoch" in gui:
        report.add("epoch", "ignored", f"max_train_steps={mts} is set, so kohya_ss does not use it")
    if not mte and "max_train_epochs" in gui:
        report.add("max_train_epochs", "ignored", f"unset ({toml_value(gui['max_train_epochs'])})")
    # lr_warmup (percent) / lr_warmup_steps (absolute override): resolve_lr_warmup_steps
    done.update({"lr_warmup", "lr_warmup_steps"})
    pct, steps = loose_float(g.get("lr_warmup"), 0.0) or 0.0, loose_float(g.get("lr_warmup_steps"), 0.0) or 0.0
    if steps > 0:
        out.set("lr_warmup_steps", int(steps), "lr_warmup_steps")
        if "lr_warmup" in gui:
            report.add("lr_warmup", "ignored", "lr_warmup_steps overrides it")
    elif pct:
        out.set("lr_warmup_steps", pct / 100, "lr_warmup", f"{toml_value(pct)} % → ratio {pct / 100:g} of all steps")
    else:
        for key in ("lr_warmup", "lr_warmup_steps"):
            if key in gui:
                report.add(key, "ignored", f"unset ({toml_value(gui[key])}); no warmup")
    # lr_scheduler_num_cycles: "" → epoch
    if "lr_scheduler_num_cycles" in gui:
        done.add("lr_scheduler_num_cycles")
        cyc = loose_int(gui["lr_scheduler_num_cycles"])
        note = "" if cyc is not None else f"empty → epoch ({ep}), as kohya_ss does"
        out.set("lr_scheduler_num_cycles", cyc if cyc is not None else ep, "lr_scheduler_num_cycles", note)
    for key, sd_key in (("optimizer_args", "optimizer_args"), ("lr_scheduler_args", "lr_scheduler_args")):
        if key in gui:
            use(key, sd_key, value=split_args(gui[key]))
    if "max_data_loader_n_workers" in gui:  # re-added after the filter, 0 included
        done.add("max_data_loader_n_workers")
        out.set("max_data_loader_n_workers", loose_int(gui["max_data_loader_n_workers"], 0), "max_data_loader_n_workers")
    for key in ("num_cpu_threads_per_process", "num_processes"):
        if key in gui:
            done.add(key)
            out.set(f"_accelerate_{key}", loose_int(gui[key], 1), key)
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
        if key in PATH_KEYS:
            report.add(key, "ignored", "a path on the machine that wrote the preset" if not gui_unset(value) else "empty path")
        elif key in _GUI_IGNORED:
            report.add(key, "ignored", _GUI_IGNORED[key])
        elif key.startswith(("metadata_", "huggingface_", "resume_from_huggingface", "save_state_to_huggingface",
                             "async_upload")):
            report.add(key, "ignored", "metadata / upload setting" if not gui_unset(value) else "unset")
        elif gui_unset(value):
            report.add(key, "ignored", f"unset ({toml_value(value)}); kohya_ss leaves it out")
        else:
            report.add(key, "unsupported", f"{toml_value(value)}: not a setting this importer knows; not applied")
    return out


def _gui_flux(gui: dict, out: SdArgs, report: Report, done: set) -> None:
    """A FLUX.1 preset's own keys: its model files and flux_train_network.py options; the SDXL-only ones ignored."""
    done.add("flux1_checkbox")
    report.add("flux1_checkbox", "mapped", "FLUX.1: base_model.family = flux (flux_train_network.py)")
    for key in FLUX_GUI_SAME:
        if key not in gui:
            continue
        done.add(key)
        value = gui[key]
        if gui_unset(value):
            report.add(key, "ignored", f"unset ({toml_value(value)}); kohya_ss leaves it out")
        else:
            out.set(key, loose_number(value) if not isinstance(value, (bool, list)) and key not in FLUX_PATHS else value, key)
    for key, sd_key in FLUX_GUI_RENAMED.items():
        if key in gui:
            done.add(key)
            if gui[key]:
                out.set(sd_key, True, key, f"kohya_ss passes it as {sd_key}")
            else:
                report.add(key, "ignored", "false; kohya_ss leaves it out")
    for key in FLUX_GUI_SDXL_ONLY:
        if key in gui:
            done.add(key)
            report.add(key, "ignored", f"{toml_value(gui[key])}: an SDXL setting; kohya_ss leaves it out for FLUX.1")
    if "sdxl" in gui:
        done.add("sdxl")
        report.add("sdxl", "ignored", f"{toml_value(gui['sdxl'])}: this is a FLUX.1 preset")


FLUX_PATHS = ("ae", "clip_l", "t5xxl")


def _gui_network(g: dict, gui: dict, out: SdArgs, report: Report, done: set) -> None:
    lora_type = g.get("LoRA_type", "Standard")
    done.add("LoRA_type")
    used: list[str] = []
    args: list[str] = []
    if lora_type in LYCORIS_ARGS:
        algo, keys = LYCORIS_ARGS[lora_type]
        module = "lycoris.kohya"
        for k in keys:
            args.append(f"{LYCORIS_ARG_NAMES.get(k, k)}={network_arg_text(g.get(k))}")
            used.append(k)
        args.append(f"algo={algo}")
    elif lora_type in ("Standard", "Kohya LoCon"):
        module = "networks.lora"
        if lora_type == "Kohya LoCon":
            args += [f"conv_dim={network_arg_text(g.get('conv_dim'))}", f"conv_alpha={network_arg_text(g.get('conv_alpha'))}"]
            used += ["conv_dim", "conv_alpha"]
        for k in KOHYA_LORA_VARS:
            if not gui_unset(loose_number(g.get(k))):
                args.append(f"{k}={network_arg_text(g.get(k))}")
                used.append(k)
    elif lora_type == "Flux1":
        module = "networks.lora_flux"
        blocks = g.get("train_blocks", "all")
        done.add("train_blocks")
        if blocks == "all" and "train_blocks" in gui:
            report.add("train_blocks", "mapped", "all: networks.lora_flux's default (every block)")
        elif not gui_unset(blocks):
            args.append(f"train_blocks={network_arg_text(blocks)}")
            used.append("train_blocks")
            report.add("train_blocks", "transformed", f"{toml_value(blocks)} → network.args (Flux1)")
    else:
        module = {"LoRA-FA": "networks.lora_fa", "Kohya DyLoRA": "networks.dylora", "Kohya LoHa": "networks.loha",
                  "Kohya LoKr": "networks.lokr"}.get(lora_type, f"? ({lora_type})")
    for k in ("loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio"):
        if not gui_unset(loose_number(g.get(k))):
            args.append(f"{k}={network_arg_text(g.get(k))}")
            used.append(k)
    out.set("network_module", module, "LoRA_type", f"{lora_type!r} → {module}")
    if args:
        out.set("network_args", args, "LoRA_type", "network_args built from " + ", ".join(dict.fromkeys(used)))
    for k in _NETWORK_KEYS | {"loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio"}:
        if k in gui and k != "LoRA_type":
            done.add(k)
            if k in used:
                report.add(k, "transformed", f"{toml_value(gui[k])} → network.args ({lora_type})")
            elif gui_unset(loose_number(gui[k])):
                report.add(k, "ignored", f"unset ({toml_value(gui[k])})")
            else:
                report.add(k, "ignored", f"{toml_value(gui[k])}: LoRA_type {lora_type!r} does not use it (kohya_ss leaves it out)")
    if "dim_from_weights" in gui:
        done.add("dim_from_weights")
        if gui["dim_from_weights"]:
            report.add("dim_from_weights", "unsupported",
                       "true: needs the LoRA file it was taken from (a path on the preset's machine); network.dim is used")
        else:
            report.add("dim_from_weights", "ignored", "unset (false)")
