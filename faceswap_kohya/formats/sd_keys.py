"""The tables of sd-scripts options the importer knows (`formats.sd_args` reads them; `sd_toml` reads DIRECT_KEYS):
which are preset fields (`DIRECT_KEYS`, FLUX.1's `FLUX_DIRECT`), which are kept for the trainer's command line
(`EXTRA_OPTIONS`, `FLUX_EXTRA`), which are ignored and why (`SD_IGNORED`, `FLUX_IGNORED`), and sd-scripts'
defaults (`SD_DEFAULTS`: a value equal to one changes nothing)."""

from __future__ import annotations

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
SD_IGNORED = {
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
# flux_train_network.py's own options → the preset's `flux` section / FLUX model files (base_model).
FLUX_DIRECT = {
    "ae": ("base_model", "ae", str), "clip_l": ("base_model", "clip_l", str), "t5xxl": ("base_model", "t5xxl", str),
    "guidance_scale": ("flux", "guidance_scale", float), "timestep_sampling": ("flux", "timestep_sampling", str),
    "model_prediction_type": ("flux", "model_prediction_type", str),
    "discrete_flow_shift": ("flux", "discrete_flow_shift", float), "sigmoid_scale": ("flux", "sigmoid_scale", float),
    "blocks_to_swap": ("flux", "blocks_to_swap", int), "t5xxl_max_token_length": ("flux", "t5xxl_max_token_length", int),
    "apply_t5_attn_mask": ("flux", "apply_t5_attn_mask", bool), "model_type": ("flux", "model_type", str),
    "cache_text_encoder_outputs_to_disk": ("flux", "cache_text_encoder_outputs_to_disk", bool),
}
FLUX_EXTRA = {"mem_eff_save", "cpu_offload_checkpointing", "fused_backward_pass", "fp8_base_unet", "weighting_scheme",
              "logit_mean", "logit_std", "mode_scale", "text_encoder_batch_size"}
FLUX_IGNORED = {"max_token_length": "an SD option; FLUX.1 reads flux.t5xxl_max_token_length",
                "no_half_vae": "an SDXL option (FLUX.1's autoencoder runs as it is)",
                "clip_skip": "an SD option; flux_train_network.py does not use it",
                "split_mode": "deprecated in sd-scripts (use flux.blocks_to_swap)"}
# sd-scripts key → preset field (same meaning, maybe another name).
DIRECT_KEYS = {
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
