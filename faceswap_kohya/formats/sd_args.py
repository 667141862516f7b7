"""sd-scripts arguments → preset fields (`sd_args_to_preset`): mapped, transformed, or ignored with the reason;
settings the schema has no field for go to network.args, optimizer.args or kohya.extra_args (passed to the
trainer's command line, which wins over its TOML); settings the preset's cross-field rules refuse are changed
as sd-scripts would accept them, and the report says so."""

from __future__ import annotations

import math

from faceswap_kohya.errors import UserError
from faceswap_kohya.formats.report import (
    DEFAULT_BASE_MODEL,
    PATH_KEYS,
    Report,
    SdArgs,
    check_family_sd,
    check_not_options,
    check_numbers,
    gui_unset,
    loose_float,
    loose_int,
    loose_number,
    lycoris_status,
    split_args,
    to_cli_args,
    toml_value,
)
from faceswap_kohya.formats.sd_keys import (
    DIRECT_KEYS,
    EXTRA_OPTIONS,
    FLUX_DIRECT,
    FLUX_EXTRA,
    FLUX_IGNORED,
    SD_DEFAULTS,
    SD_IGNORED,
)


# ---------------------------------------------------------------- sd-scripts arguments → preset
def put_setting(data: dict, section: str, key: str, value) -> None:
    node = data
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = value


def put_direct(data: dict, field: tuple, key: str, raw, report: Report, label, mapped, keep_unset: bool = False,
               drop_zero: bool = False) -> None:
    """One sd-scripts option that is a preset field (`field`: section, name, type), typed and set; an unset value
    (kohya_ss' empty string, ...) is reported as ignored unless `keep_unset`, a zero one left out with `drop_zero`."""
    section, name, typ = field
    if gui_unset(raw) and typ is not bool and not keep_unset:
        report.add(label(key), "ignored", f"unset ({toml_value(raw)})")
        return
    value = bool(raw) if typ is bool else typ(loose_number(raw)) if typ in (int, float) else str(raw)
    if drop_zero and not value:
        return
    put_setting(data, section, name, value)
    mapped(key, f"{section}.{name}", value)


def _get(data: dict, section: str, key: str, default=None):
    node = data
    for part in section.split("."):
        node = node.get(part, {})
    return node.get(key, default)


def sd_args_to_preset(sd: SdArgs, report: Report, from_gui: bool) -> dict:
    """sd-scripts arguments → a preset dict (validated by the caller)."""
    # long: one rule per sd-scripts argument, grouped by preset section; a table in code
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
        report.add(src, status, note(key, f"{target} = {toml_value(value)}"))

    # model family switches that slipped through (TOML); values that are not what their key needs
    family = check_family_sd(v, report.source)
    check_numbers(v, report.source, label)
    check_not_options(v, report.source, label)
    if family == "flux":
        _flux_args(v, data, report, label, mapped)
    # network
    module = v.pop("network_module", "networks.lora_flux" if family == "flux" else "networks.lora")
    if "network_module" in sd.origin or not from_gui:
        if module not in ("networks.lora", "lycoris.kohya", "networks.lora_flux"):
            raise UserError(f"{report.source}: network module {module!r} ({label('network_module')}) is not supported; "
                            "use LoRA_type Standard, Kohya LoCon or a LyCORIS type")
        put_setting(data, "network", "module", module)
        if "network_module" in sd.origin:
            mapped("network_module", "network.module", module)
    net_args = [str(a) for a in v.pop("network_args", [])]
    conv = {}
    rest = []
    for a in net_args:
        k, _, val = a.partition("=")
        if k in ("conv_dim", "conv_alpha") and loose_number(val) is not None and not isinstance(loose_number(val), str):
            conv[k] = loose_number(val)
        else:
            rest.append(a)
    if conv and family == "flux":
        report.add(label("network_args"), "ignored", f"{', '.join(f'{k}={x}' for k, x in conv.items())}: FLUX's DiT has "
                                                     "no 3x3 convolutions (networks.lora_flux ignores them)")
    elif conv.get("conv_dim"):
        put_setting(data, "network", "conv_dim", int(conv["conv_dim"]))
        if "conv_alpha" in conv:
            put_setting(data, "network", "conv_alpha", float(conv["conv_alpha"]))
    elif conv:
        rest += [f"{k}={val}" for k, val in conv.items()]
    if rest:
        put_setting(data, "network", "args", rest)
    if net_args:
        mapped("network_args", "network.args/conv_dim", net_args)
    if module == "lycoris.kohya":
        report.warnings.append(lycoris_status())
    # learning rates → unet_lr / text_encoder_lr, as sd-scripts resolves them
    lr = loose_float(v.pop("learning_rate", None))
    unet = loose_float(v.pop("unet_lr", None))
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
    put_setting(data, "optimizer", "unet_lr", eff_unet)
    if "unet_lr" in sd.origin and unet:
        mapped("unet_lr", "optimizer.unet_lr", eff_unet)
    if "learning_rate" in sd.origin:
        if unet:
            if unet_only or te_vals:
                report.add(label("learning_rate"), "ignored" if lr != unet else "mapped",
                           f"{toml_value(lr)}: " + ("same as unet_lr" if lr == unet else "unet_lr and text_encoder_lr are set, so it has no effect"))
            else:
                report.add(label("learning_rate"), "transformed", f"{toml_value(lr)} → optimizer.text_encoder_lr (text_encoder_lr unset)")
        else:
            report.add(label("learning_rate"), "transformed", note("learning_rate", f"optimizer.unet_lr = {toml_value(lr)} (unet_lr unset)"))
    if unet_only:
        te_value = 0.0
        src = label("network_train_unet_only")
        report.add(src, "transformed", note("network_train_unet_only", "optimizer.text_encoder_lr = 0 (UNet only)"))
        if te_vals and label("text_encoder_lr") != src:
            report.add(label("text_encoder_lr"), "ignored", f"{toml_value(te_vals[0])}: network_train_unet_only, so the text encoders are not trained")
    elif te_vals:
        te_value = te_vals[0] if len(te_vals) == 1 or len(set(te_vals)) == 1 else (te_vals[0], te_vals[1])
        mapped("text_encoder_lr", "optimizer.text_encoder_lr", te_value if not isinstance(te_value, tuple) else list(te_value))
    else:
        te_value = lr if lr else eff_unet  # sd-scripts trains the text encoders at learning_rate
    put_setting(data, "optimizer", "text_encoder_lr", list(te_value) if isinstance(te_value, tuple) else te_value)
    opt_args = v.pop("optimizer_args", None)
    if opt_args:
        put_setting(data, "optimizer", "args", split_args(opt_args))
        mapped("optimizer_args", "optimizer.args", split_args(opt_args))
    # warmup
    if "lr_warmup_steps" in v:
        w = loose_number(v.pop("lr_warmup_steps"))
        put_setting(data, "optimizer", "warmup_steps", w)
        mapped("lr_warmup_steps", "optimizer.warmup_steps", w)
    # epochs vs steps: max_train_epochs wins in sd-scripts; neither → 1600 steps
    mte, mts = loose_int(v.pop("max_train_epochs", None)), loose_int(v.pop("max_train_steps", None))
    if mte:
        put_setting(data, "training", "epochs", mte)
        mapped("max_train_epochs", "training.epochs", mte)
        if mts:
            report.add(label("max_train_steps"), "ignored", f"{mts}: max_train_epochs overrides it in sd-scripts")
    elif mts:
        put_setting(data, "training", "max_steps", mts)
        mapped("max_train_steps", "training.max_steps", mts)
    else:
        put_setting(data, "training", "max_steps", 1600)
        report.warnings.append("neither max_train_epochs nor max_train_steps is set: sd-scripts trains 1600 steps "
                               "(training.max_steps=1600); set training.epochs instead if you prefer")
    # resolution "W,H"
    if "resolution" in v:
        raw = v.pop("resolution")
        try:
            parts = [int(float(x)) for x in (raw if isinstance(raw, list) else str(raw).replace("x", ",").split(","))]
        except (TypeError, ValueError):
            raise UserError(f"{report.source}: {label('resolution')}: {raw!r} is not a resolution (e.g. \"1024,1024\")") from None
        w, h = (parts * 2)[:2]
        side = w if w == h else max(64, round(math.sqrt(w * h) / 64) * 64)
        if w == h and w % 64 == 0:
            put_setting(data, "dataset", "resolution", w)
            mapped("resolution", "dataset.resolution", w)
        else:
            put_setting(data, "dataset", "resolution", side)
            report.add(label("resolution"), "transformed",
                       f"{toml_value(raw)} → dataset.resolution = {side} (square, a multiple of 64, about the same area)")
    # attention
    flags = {k: v.pop(k) for k in ("sdpa", "xformers") if k in v}
    attention = "sdpa" if flags.get("sdpa") else "xformers" if flags.get("xformers") else None
    for k, on in flags.items():
        if k != attention and k in sd.origin and label(k) != label(attention or ""):
            report.add(label(k), "ignored", f"{toml_value(on)}" + (f": {attention} is used" if attention else ""))
    if attention:
        put_setting(data, "training", "attention", attention)
        src_key = "sdpa" if "sdpa" in sd.origin else "xformers"
        mapped(src_key, "training.attention", attention)
    elif from_gui and v.pop("_attention_none", False) or (not from_gui and "sdpa" not in sd.origin and "xformers" not in sd.origin):
        put_setting(data, "training", "attention", "none")
        if not from_gui:
            report.warnings.append("no sdpa/xformers option: sd-scripts uses its plain attention (training.attention=none)")
    if from_gui:
        for k in ("no_half_vae", "cache_latents", "cache_latents_to_disk", "gradient_checkpointing",
                  "cache_text_encoder_outputs", "bucket_no_upscale", "enable_bucket", "shuffle_caption"):
            # the GUI leaves false out, so its absence means false for sd-scripts
            if k not in v:
                put_setting(data, *DIRECT_KEYS[k][:2], False)
        v.pop("_no_half_vae_off", None)
        if "keep_tokens" not in v:
            put_setting(data, "dataset.captions", "keep_tokens", 0)
        for k in ("num_cpu_threads_per_process", "num_processes"):
            val = v.pop(f"_accelerate_{k}", None)
            if val is not None:
                put_setting(data, "kohya", k, max(1, val))
                report.add(k, "mapped", f"kohya.{k} = {val}")
    else:
        for k in ("cache_latents", "gradient_checkpointing", "no_half_vae", "enable_bucket", "bucket_no_upscale"):
            if k not in v:
                put_setting(data, *DIRECT_KEYS[k][:2], False)
        if "keep_tokens" not in v:
            put_setting(data, "dataset.captions", "keep_tokens", 0)
    # seed: unset means random in sd-scripts; a preset always fixes one
    if "seed" in v:
        s = loose_int(v.pop("seed"))
        put_setting(data, "training", "seed", s)
        mapped("seed", "training.seed", s)
    elif from_gui and "seed" not in sd.origin:
        pass
    # bucket steps: SDXL needs multiples of 32
    if "bucket_reso_steps" in v:
        b = loose_int(v["bucket_reso_steps"])
        if b is None or b % 32:
            v.pop("bucket_reso_steps")
            report.add(label("bucket_reso_steps"), "unsupported",
                       f"{toml_value(b)}: sd-scripts rejects SDXL bucket steps that are not a multiple of 32; kept 64")
    if "max_token_length" in v and loose_int(v["max_token_length"]) not in (75, 150, 225):
        bad = v.pop("max_token_length")
        report.add(label("max_token_length"), "unsupported", f"{toml_value(bad)}: sd-scripts accepts only 75, 150 or 225; kept 75")
    # direct fields
    for key in [k for k in v if k in DIRECT_KEYS]:
        put_direct(data, DIRECT_KEYS[key], key, v.pop(key), report, label, mapped,
                   keep_unset=key in ("max_data_loader_n_workers", "max_grad_norm"), drop_zero=key == "min_snr_gamma")
    # options kept for the command line
    for key in list(v):
        if key in EXTRA_OPTIONS:
            raw = v.pop(key)
            if gui_unset(raw) or SD_DEFAULTS.get(key, object()) == loose_number(raw):
                report.add(label(key), "ignored", f"{toml_value(raw)}: sd-scripts' default")
                continue
            value = loose_int(raw) if key == "persistent_data_loader_workers" else raw
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
        if key in SD_IGNORED and SD_IGNORED[key]:
            report.add(src, "ignored", SD_IGNORED[key])
        elif key in PATH_KEYS or key in ("train_data_dir", "reg_data_dir"):
            report.add(src, "ignored", "a path on the machine that wrote the preset")
        elif key == "" and raw:
            report.add(src, "unsupported", f"{raw}: stray values without an option name; not applied")
        elif gui_unset(raw):
            report.add(src, "ignored", f"unset ({toml_value(raw)})")
        else:
            report.add(src, "unsupported", f"{toml_value(raw)}: not a setting this importer knows; not applied")
    if extra:
        data.setdefault("kohya", {}).setdefault("extra_args", []).extend(extra)
    if family == "flux" and "pretrained_model_name_or_path" not in sd.origin:
        report.warnings.append("no FLUX.1 DiT in the file: set base_model.path (and ae, clip_l, t5xxl) to your files")
        data.setdefault("base_model", {}).setdefault("path", "models/flux1-dev.safetensors")
    data.setdefault("base_model", {}).setdefault("path", DEFAULT_BASE_MODEL)
    if family == "flux":
        data["base_model"]["family"] = "flux"
    if _get(data, "base_model", "path") == DEFAULT_BASE_MODEL and "pretrained_model_name_or_path" not in sd.origin:
        report.warnings.append(f"no base model in the file: using {DEFAULT_BASE_MODEL} (override with base_model.path=...)")
    _fix_cross_rules(data, report)
    return data


def _flux_args(v: dict, data: dict, report: Report, label, mapped) -> None:
    """flux_train_network.py's own options: the model files into base_model, the rest into the `flux` section;
    SD-only options ignored with the reason, FLUX options without a field kept for the command line."""
    for key in list(v):
        if key in FLUX_DIRECT:
            put_direct(data, FLUX_DIRECT[key], key, v.pop(key), report, label, mapped)
        elif key in FLUX_IGNORED:
            raw = v.pop(key)
            report.add(label(key), "ignored", f"{toml_value(raw)}: {FLUX_IGNORED[key]}")
        elif key in FLUX_EXTRA:
            raw = v.pop(key)
            if gui_unset(raw):
                report.add(label(key), "ignored", f"unset ({toml_value(raw)})")
                continue
            args = to_cli_args(key, raw)
            data.setdefault("kohya", {}).setdefault("extra_args", []).extend(args)
            report.add(label(key), "transformed", f"kohya.extra_args += {' '.join(args)}")


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
