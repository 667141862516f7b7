"""Kohya presets in and out: kohya_ss GUI JSON, flat sd-scripts TOML, kohya-colab sectioned TOML."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from faceswap_kohya.cli.main import cli
from faceswap_kohya.config.presets import validate
from faceswap_kohya.errors import UserError
from faceswap_kohya.formats.export import PREPARE_ONLY, export_gui, write_export
from faceswap_kohya.formats.importer import import_file, import_preset, load_any
from faceswap_kohya.formats.report import Refused, parse_cli_args
from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.trainer.install import Trainer
from faceswap_kohya.trainer.render import dataset_config, train_config

DATA = Path(__file__).parent / "data" / "kohya"
SHARED = DATA / "kohya_ss"  # kohya_ss' own presets (tests/data/kohya/kohya_ss/README.md)
SHARED_FILES = sorted(SHARED.glob("*.json"))
SDXL_SHARED = [p for p in SHARED_FILES if p.name.startswith("SDXL")]
OWN_GUI = [DATA / "face_gui.json", DATA / "loha_gui.json"]


def test_the_kohya_ss_presets_are_all_here():
    assert len(SDXL_SHARED) == 15 and SHARED / "sd15 - EDG_LoraOptiSettings.json" in SHARED_FILES
    assert SHARED / "flux1D - adamw8bit fp8.json" in SHARED_FILES


# ---------------------------------------------------------------- what kohya_ss would produce
def kohya_ss_args(gui: dict) -> dict:
    """The sd-scripts arguments kohya_ss writes for an SDXL LoRA preset, for the keys that change
    training. Transcribed from bmaltais/kohya_ss kohya_gui/lora_gui.py `train_model`
    (`config_toml_data`, the `LoRA_type` branches, the "" / False / None / 0 filter) and
    common_gui.py (`resolve_lr_warmup_steps`, `run_cmd_advanced_training`), independently of the
    importer. Defaults are the GUI widget values for keys an older preset lacks."""
    g = {"noise_offset_type": "Original", "LyCORIS_preset": "full", "use_tucker": False, "rank_dropout": 0,
         "module_dropout": 0, "bypass_mode": False, "dora_wd": False, "use_scalar": False,
         "rank_dropout_scale": False, "train_norm": False, "factor": -1, "use_cp": False,
         "decompose_both": False, "lr_warmup_steps": 0, "max_train_epochs": 0, "max_train_steps": 0} | gui
    f = lambda v: float(v) if v not in ("", None) else 0.0  # noqa: E731
    te, unet, lr = f(g.get("text_encoder_lr")), f(g.get("unet_lr")), f(g.get("learning_rate"))
    lt = g["LoRA_type"]
    if lt == "Standard":
        module = "networks.lora"
        net = ""
        for k in ["down_lr_weight", "mid_lr_weight", "up_lr_weight", "block_lr_zero_threshold", "block_dims",
                  "block_alphas", "conv_block_dims", "conv_block_alphas", "rank_dropout", "module_dropout"]:
            if g.get(k):
                net += f" {k}={g[k]}"
    elif lt == "LyCORIS/LoHa":
        module = "lycoris.kohya"
        net = (f" preset={g['LyCORIS_preset']} conv_dim={g['conv_dim']} conv_alpha={g['conv_alpha']} "
               f"use_tucker={g['use_tucker']} rank_dropout={g['rank_dropout']} bypass_mode={g['bypass_mode']} "
               f"dora_wd={g['dora_wd']} module_dropout={g['module_dropout']} use_tucker={g['use_tucker']} "
               f"use_scalar={g['use_scalar']} rank_dropout_scale={g['rank_dropout_scale']} algo=loha "
               f"train_norm={g['train_norm']}")
    elif lt == "LyCORIS/LoKr":
        module = "lycoris.kohya"
        net = (f" preset={g['LyCORIS_preset']} conv_dim={g['conv_dim']} conv_alpha={g['conv_alpha']} "
               f"use_tucker={g['use_tucker']} rank_dropout={g['rank_dropout']} bypass_mode={g['bypass_mode']} "
               f"dora_wd={g['dora_wd']} module_dropout={g['module_dropout']} factor={g['factor']} "
               f"use_cp={g['use_cp']} use_scalar={g['use_scalar']} decompose_both={g['decompose_both']} "
               f"rank_dropout_scale={g['rank_dropout_scale']} algo=lokr train_norm={g['train_norm']}")
    else:
        raise AssertionError(lt)
    warm_pct, warm_steps = f(g.get("lr_warmup")), f(g.get("lr_warmup_steps"))
    nt = g["noise_offset_type"]
    x = g.get("xformers")
    d = {
        "adaptive_noise_scale": f(g.get("adaptive_noise_scale")) if f(g.get("adaptive_noise_scale")) != 0 and nt == "Original" else None,
        "cache_latents": g.get("cache_latents"), "cache_latents_to_disk": g.get("cache_latents_to_disk"),
        "cache_text_encoder_outputs": True if g.get("sdxl_cache_text_encoder_outputs") else None,
        "caption_dropout_every_n_epochs": int(f(g.get("caption_dropout_every_n_epochs"))),
        "caption_dropout_rate": f(g.get("caption_dropout_rate")), "debiased_estimation_loss": g.get("debiased_estimation_loss"),
        "full_bf16": g.get("full_bf16"), "gradient_accumulation_steps": int(f(g.get("gradient_accumulation_steps", 1))),
        "gradient_checkpointing": g.get("gradient_checkpointing"), "keep_tokens": int(f(g.get("keep_tokens"))),
        "learning_rate": lr, "lr_scheduler": g.get("lr_scheduler"),
        "lr_scheduler_args": str(g.get("lr_scheduler_args", "")).replace('"', "").split(),
        "lr_scheduler_num_cycles": int(g["lr_scheduler_num_cycles"]) if g.get("lr_scheduler_num_cycles", "") != "" else int(f(g.get("epoch", 1))),
        "lr_warmup_steps": int(warm_steps) if warm_steps > 0 else warm_pct / 100 if warm_pct else 0,
        "max_grad_norm": g.get("max_grad_norm", 1.0), "max_timestep": f(g.get("max_timestep")) or None,
        "max_token_length": int(f(g.get("max_token_length", 75))),
        "max_train_epochs": int(f(g["max_train_epochs"])) or None, "max_train_steps": int(f(g["max_train_steps"])) or None,
        "min_snr_gamma": f(g.get("min_snr_gamma")) or None, "min_timestep": f(g.get("min_timestep")) or None,
        "mixed_precision": g.get("mixed_precision"),
        "multires_noise_discount": f(g.get("multires_noise_discount")) if nt == "Multires" else None,
        "multires_noise_iterations": f(g.get("multires_noise_iterations")) if nt == "Multires" and f(g.get("multires_noise_iterations")) else None,
        "network_alpha": f(g["network_alpha"]), "network_args": net.replace('"', "").split(),
        "network_dim": f(g["network_dim"]), "network_dropout": f(g.get("network_dropout")), "network_module": module,
        "network_train_unet_only": te == 0 and unet != 0,
        "no_half_vae": True if g.get("sdxl_no_half_vae") else None,
        "noise_offset": f(g.get("noise_offset")) if f(g.get("noise_offset")) != 0 and nt == "Original" else None,
        "optimizer_type": g["optimizer"], "optimizer_args": str(g.get("optimizer_args", "")).replace('"', "").split(),
        "prior_loss_weight": f(g.get("prior_loss_weight", 1.0)), "resolution": g["max_resolution"],
        "scale_weight_norms": f(g.get("scale_weight_norms")), "sdpa": True if x == "sdpa" else None,
        "shuffle_caption": g.get("shuffle_caption"), "text_encoder_lr": [te, te] if te > 0 else None,
        "train_batch_size": int(f(g.get("train_batch_size", 1))), "unet_lr": unet if unet != 0.0 else None,
        "xformers": True if x == "xformers" or x is True else None,
        "bucket_reso_steps": f(g.get("bucket_reso_steps")), "enable_bucket": g.get("enable_bucket"),
        "min_bucket_reso": f(g.get("min_bucket_reso")), "max_bucket_reso": f(g.get("max_bucket_reso")),
        "bucket_no_upscale": g.get("bucket_no_upscale"),
    }
    # the GUI turns `epoch` into max_train_steps for its folder; sd-scripts' max_train_epochs gives the same count
    if not d["max_train_steps"] and not d["max_train_epochs"]:
        d["max_train_epochs"] = int(f(g.get("epoch", 1)))
    d = {k: v for k, v in d.items() if v not in ["", False, None]}
    d |= {k: v for k, v in parse_cli_args(str(g.get("additional_parameters", "")).replace('"', "").split()).items()}
    return d


def ours(preset) -> dict:
    """The rendered TOMLs flattened as sd-scripts reads them, then the command-line extra args."""
    run = RunLayout(Path("/run"))
    args = {}
    for section in train_config(preset, run, "model").values():
        args |= section
    ds = dataset_config(preset, run)
    args |= ds["general"] | {k: v for k, v in ds["datasets"][0].items() if k != "subsets"}
    args |= {k: v for k, v in ds["datasets"][0]["subsets"][0].items() if k not in ("image_dir", "class_tokens", "num_repeats")}
    args["train_batch_size"] = args.pop("batch_size")
    args |= parse_cli_args(list(preset.kohya.extra_args))
    return args


def effective(a: dict) -> dict:
    """sd-scripts' meaning of the training-relevant arguments, normalised for comparison."""
    num = lambda v: float(v) if v not in (None, "", False) else 0.0  # noqa: E731
    unet = num(a.get("unet_lr")) or num(a.get("learning_rate"))
    te_only_unet = a.get("network_train_unet_only", False)
    te = a.get("text_encoder_lr")
    te = [] if te_only_unet else [float(x) for x in (te if isinstance(te, list) else [te])] if te else [num(a.get("learning_rate"))] * 2
    net_args = {}
    for item in a.get("network_args", []):
        k, _, v = item.partition("=")
        try:
            net_args[k] = float(v)
        except ValueError:
            net_args[k] = v
    w = num(a.get("lr_warmup_steps"))
    steps = ("epochs", int(a["max_train_epochs"])) if a.get("max_train_epochs") else ("steps", int(a.get("max_train_steps") or 1600))
    attention = "sdpa" if a.get("sdpa") else "xformers" if a.get("xformers") else "none"
    res = a["resolution"]
    res = tuple(int(x) for x in (res.split(",") if isinstance(res, str) else [res, res]))
    e = {
        "network_module": a.get("network_module"), "network_dim": num(a.get("network_dim")),
        "network_alpha": num(a.get("network_alpha")), "network_args": net_args,
        "network_dropout": num(a.get("network_dropout")),
        "optimizer_type": a.get("optimizer_type"), "optimizer_args": sorted(a.get("optimizer_args") or []),
        "unet_lr": unet, "text_encoder_lr": te, "lr_scheduler": a.get("lr_scheduler"), "lr_warmup": w,
        "lr_scheduler_type": a.get("lr_scheduler_type") or "",
        "lr_scheduler_args": a.get("lr_scheduler_args") or [],
        "max_grad_norm": num(a.get("max_grad_norm", 1.0)), "resolution": res, "train_batch_size": int(a.get("train_batch_size", 1)),
        "gradient_accumulation_steps": int(a.get("gradient_accumulation_steps", 1)), "length": steps,
        "mixed_precision": a.get("mixed_precision", "no"), "full_bf16": bool(a.get("full_bf16")),
        "no_half_vae": bool(a.get("no_half_vae")), "cache_latents": bool(a.get("cache_latents")),
        "cache_latents_to_disk": bool(a.get("cache_latents_to_disk")),
        "cache_text_encoder_outputs": bool(a.get("cache_text_encoder_outputs")), "attention": attention,
        "noise_offset": num(a.get("noise_offset")), "adaptive_noise_scale": num(a.get("adaptive_noise_scale")),
        "multires_noise_iterations": num(a.get("multires_noise_iterations")),
        "multires_noise_discount": num(a.get("multires_noise_discount")) if a.get("multires_noise_iterations") else 0.0,
        "min_snr_gamma": num(a.get("min_snr_gamma")), "scale_weight_norms": num(a.get("scale_weight_norms")),
        "debiased_estimation_loss": bool(a.get("debiased_estimation_loss")),
        "min_timestep": num(a.get("min_timestep")), "max_timestep": num(a.get("max_timestep")) or 1000.0,
        "prior_loss_weight": num(a.get("prior_loss_weight", 1.0)),
        "max_token_length": int(a.get("max_token_length") or 75),
        "shuffle_caption": bool(a.get("shuffle_caption")), "keep_tokens": int(a.get("keep_tokens") or 0),
        "caption_dropout_rate": num(a.get("caption_dropout_rate")),
        "caption_dropout_every_n_epochs": int(num(a.get("caption_dropout_every_n_epochs"))),
        "enable_bucket": bool(a.get("enable_bucket")),
    }
    if e["enable_bucket"]:
        e |= {k: num(a.get(k)) for k in ("min_bucket_reso", "max_bucket_reso", "bucket_reso_steps")}
        e["bucket_no_upscale"] = bool(a.get("bucket_no_upscale"))
    if a.get("lr_scheduler") == "cosine_with_restarts":
        e["num_cycles"] = int(a.get("lr_scheduler_num_cycles") or 1)
    return e


def assert_same_training(gui: dict, preset) -> None:
    want, got = effective(kohya_ss_args(gui)), effective(ours(preset))
    diff = {k: (want[k], got.get(k)) for k in want if want[k] != got.get(k)}
    assert not diff, f"kohya_ss vs imported (want, got): {diff}"


# ---------------------------------------------------------------- the shared kohya_ss presets
@pytest.mark.parametrize("path", SDXL_SHARED, ids=lambda p: p.stem)
def test_shared_sdxl_presets_import_with_complete_report(path):
    gui = json.loads(path.read_text())
    preset, report = import_preset(path)
    assert set(gui) == report.keys(), "every key of the file is in the report, and nothing else"
    assert all(e.detail for e in report.entries)
    assert train_config(preset, RunLayout(Path("/run")), "m")["network"]["network_dim"] == int(gui["network_dim"])
    assert_same_training(gui, preset)


def test_shared_sd15_preset_is_refused_naming_the_family():
    path = SHARED / "sd15 - EDG_LoraOptiSettings.json"
    with pytest.raises(Refused, match="SD 1.5"):
        import_preset(path)


def test_face_preset_values():
    """design.md §5: dim 92 / alpha 46, AdamW8bit, lr 1e-4 cosine, 10 epochs, noise_offset 0.0357."""
    p, report = import_preset(SHARED / "SDXL - LoRA face dogu_cat v1.0.json")
    assert (p.network.module, p.network.dim, p.network.alpha, p.network.conv_dim) == ("networks.lora", 92, 46, None)
    assert (p.optimizer.type, p.optimizer.unet_lr, p.optimizer.text_encoder_lr, p.optimizer.scheduler) == ("AdamW8bit", 1e-4, 1e-4, "cosine")
    assert (p.training.epochs, p.training.max_steps, p.training.noise_offset) == (10, None, 0.0357)
    assert p.training.attention == "xformers" and p.training.no_half_vae
    assert "--scale_weight_norms=1" in p.kohya.extra_args and "--adaptive_noise_scale=0.00357" in p.kohya.extra_args
    conv = report.by_key("conv_dim")[0]
    assert conv.status == "ignored" and "Standard" in conv.detail  # kohya_ss passes conv_dim only for LoCon types


def test_shared_lokr_and_additional_parameters():
    p, report = import_preset(SHARED / "SDXL - 1 image LoRA v1.0.json")
    assert p.network.module == "lycoris.kohya" and "algo=lokr" in p.network.args and "factor=6" in p.network.args
    assert p.training.max_steps == 160
    assert p.kohya.extra_args[-4:] == ["--lr_scheduler_type=CosineAnnealingLR", "--lr_scheduler_args", "T_max=1000", "eta_min=0e-0"]
    assert {e.status for e in report.by_key("additional_parameters")} == {"transformed"}
    assert any("lycoris-lora" in w for w in report.warnings)
    p2, _ = import_preset(SHARED / "SDXL - LoRA kudou-reira dadaptadam v1.1.json")
    assert p2.optimizer.text_encoder_lr == 0 and p2.optimizer.warmup_steps == 0.05  # --network_train_unet_only; lr_warmup 5 %


# ---------------------------------------------------------------- own presets, each format
def test_own_gui_face_preset():
    gui = json.loads((DATA / "face_gui.json").read_text())
    p, report = import_preset(DATA / "face_gui.json")
    assert set(gui) == report.keys()
    assert p.network.args == ["rank_dropout=0.1"] and p.network.conv_dim is None  # Standard: conv ignored
    assert p.optimizer.warmup_steps == 0.1 and p.optimizer.num_cycles == 8  # 10 % ; "" cycles → epoch
    assert p.optimizer.max_grad_norm == 0.5  # from additional_parameters (command line wins)
    assert p.optimizer.args == ["weight_decay=0.01", "betas=0.9,0.99"]
    assert p.training.attention == "sdpa" and p.dataset.bucket_reso_steps == 64
    assert "--caption_dropout_every_n_epochs=3" in p.kohya.extra_args
    assert "--max_timestep=900" in p.kohya.extra_args
    assert [e.status for e in report.by_key("some_future_key")] == ["unsupported"]
    assert {e.status for e in report.by_key("multires_noise_iterations")} == {"ignored"}
    assert {e.status for e in report.by_key("train_data_dir")} == {"ignored"}
    assert_same_training(gui, p)


def test_own_gui_loha_preset_and_rejected_bucket_steps():
    gui = json.loads((DATA / "loha_gui.json").read_text())
    p, report = import_preset(DATA / "loha_gui.json")
    assert p.network.module == "lycoris.kohya" and "algo=loha" in p.network.args and "preset=attn-mlp" in p.network.args
    assert (p.network.conv_dim, p.network.conv_alpha) == (8, 4)
    assert p.training.cache_text_encoder_outputs and p.optimizer.text_encoder_lr == 0
    assert p.training.no_half_vae is False and p.training.max_steps == 400
    assert "--multires_noise_iterations=6" in p.kohya.extra_args and p.training.noise_offset == 0
    bucket = report.by_key("bucket_reso_steps")
    assert bucket[0].status == "unsupported" and "multiple of 32" in bucket[0].detail and p.dataset.bucket_reso_steps == 64
    gui_ok = dict(gui, bucket_reso_steps=64)
    assert_same_training(gui_ok, p)


def test_own_flat_sd_scripts_toml():
    p, report = import_preset(DATA / "flat_sd.toml")
    assert report.kind.startswith("sd-scripts TOML")
    assert (p.network.conv_dim, p.network.conv_alpha, p.network.args) == (8, 4, [])
    assert p.training.max_steps == 2000 and p.optimizer.text_encoder_lr == 5e-5 and p.training.attention == "sdpa"
    assert report.by_key("epoch")[0].status == "ignored"
    assert report.by_key("train_data_dir")[0].status == "ignored"
    import tomllib

    raw = tomllib.loads((DATA / "flat_sd.toml").read_text())
    assert set(raw) == report.keys()
    want = effective(raw | {"bucket_reso_steps": 64})
    assert want == effective(ours(p))


def test_own_colab_sectioned_toml_with_dataset():
    p, report = import_preset(DATA / "colab_config.toml", dataset=DATA / "colab_dataset.toml")
    assert (p.network.dim, p.network.alpha, p.optimizer.unet_lr, p.optimizer.text_encoder_lr) == (8, 4, 3e-4, 6e-5)
    assert p.optimizer.scheduler == "cosine_with_restarts" and p.optimizer.num_cycles == 3
    assert p.training.min_snr_gamma == 8 and p.training.epochs == 10 and p.training.batch_size == 4
    assert (p.dataset.repeats, p.subject.trigger, p.subject.class_word) == (10, "myface", "woman")
    assert p.dataset.max_bucket_reso == 4096 and p.dataset.captions.shuffle and p.training.max_token_length == 225
    assert "--persistent_data_loader_workers" in p.kohya.extra_args
    import tomllib

    raw = tomllib.loads((DATA / "colab_config.toml").read_text())
    assert {f"{section}.{key}" for section, values in raw.items() for key in values} <= report.keys()
    assert any(k.startswith("colab_dataset.toml: subsets[instance].image_dir") for k in report.keys())


@pytest.mark.parametrize("name,family", [("sd15_gui.json", "SD 1.5")])
def test_other_families_are_refused(name, family):
    with pytest.raises(Refused, match=family):
        import_file(DATA / name)


def test_flux_oft_and_sd3_are_refused(tmp_path):
    (tmp_path / "oft.json").write_text(json.dumps({"LoRA_type": "Flux1 OFT", "flux1_checkbox": True, "unet_lr": 1e-4}))
    (tmp_path / "sd3.toml").write_text('clip_g = "/m/clip_g.safetensors"\nlearning_rate = 1e-4\n')
    with pytest.raises(Refused, match="Flux.1 OFT"):
        import_file(tmp_path / "oft.json")
    with pytest.raises(Refused, match="SD3"):
        import_file(tmp_path / "sd3.toml")


# ---------------------------------------------------------------- FLUX.1
FLUX_SHARED = SHARED / "flux1D - adamw8bit fp8.json"


def test_shared_flux_preset_imports_key_by_key():
    """kohya_ss' FLUX.1 preset: the model files, flux_train_network.py's options and networks.lora_flux, every key
    of the file in the report; rendered, it is what kohya_ss writes for flux_train_network.py."""
    gui = json.loads(FLUX_SHARED.read_text())
    preset, report = import_preset(FLUX_SHARED)
    assert set(gui) == report.keys(), "every key of the file is in the report, and nothing else"
    assert all(e.detail for e in report.entries)
    b = preset.base_model
    assert (b.family, b.path, b.ae, b.clip_l, b.t5xxl) == ("flux", gui["pretrained_model_name_or_path"], gui["ae"],
                                                           gui["clip_l"], gui["t5xxl"])
    f = preset.flux
    assert (f.guidance_scale, f.timestep_sampling, f.model_prediction_type, f.discrete_flow_shift) == (3.5, "sigma", "raw", 1.0)
    assert f.t5xxl_max_token_length == 512 and f.cache_text_encoder_outputs_to_disk
    assert preset.training.cache_text_encoder_outputs and preset.training.fp8_base
    assert (preset.network.module, preset.network.dim, preset.network.alpha, preset.network.conv_dim) == \
        ("networks.lora_flux", 8, 8.0, None)
    assert preset.network.args == [] and report.by_key("train_blocks")[0].status == "mapped"  # "all": the default
    assert (preset.optimizer.type, preset.optimizer.unet_lr, preset.optimizer.text_encoder_lr) == ("AdamW8bit", 1e-4, 0)
    assert (preset.training.epochs, preset.dataset.resolution) == (25, 512)
    for key in ("sdxl_no_half_vae", "sdxl_cache_text_encoder_outputs", "max_token_length", "conv_dim"):
        assert report.by_key(key)[0].status == "ignored", key
    cfg = train_config(preset, RunLayout(Path("/run")), preset.base_model.path)
    assert cfg["model"]["ae"] == gui["ae"] and cfg["model"]["t5xxl"] == gui["t5xxl"] and cfg["model"]["clip_l"] == gui["clip_l"]
    assert cfg["network"]["network_module"] == "networks.lora_flux" and cfg["network"]["network_train_unet_only"]
    t = cfg["training"]
    assert (t["guidance_scale"], t["timestep_sampling"], t["model_prediction_type"], t["t5xxl_max_token_length"]) == \
        (3.5, "sigma", "raw", 512)
    assert t["cache_text_encoder_outputs"] and t["cache_text_encoder_outputs_to_disk"] and t["fp8_base"]
    assert "no_half_vae" not in t and "max_token_length" not in t


def test_sd_scripts_flux_toml_imports(tmp_path):
    """An sd-scripts FLUX TOML (docs/flux_train_network.md's LoRA command as a config file) → a flux preset."""
    toml = (DATA / "flux_sd.toml").read_text() + (
        't5xxl = "/models/t5xxl_fp16.safetensors"\nclip_l = "/models/clip_l.safetensors"\nlearning_rate = 1e-4\n'
        'optimizer_type = "AdamW8bit"\nguidance_scale = 1.0\ntimestep_sampling = "flux_shift"\n'
        'model_prediction_type = "raw"\nblocks_to_swap = 18\ncache_text_encoder_outputs = true\n'
        'network_train_unet_only = true\nmax_train_epochs = 10\nsdpa = true\n')
    (tmp_path / "flux.toml").write_text(toml)
    preset, report = import_preset(tmp_path / "flux.toml")
    assert (preset.base_model.family, preset.base_model.path, preset.base_model.ae) == \
        ("flux", "/models/flux1-dev.safetensors", "/models/ae.safetensors")
    assert (preset.flux.guidance_scale, preset.flux.timestep_sampling, preset.flux.blocks_to_swap) == (1.0, "flux_shift", 18)
    assert preset.network.module == "networks.lora_flux" and preset.optimizer.text_encoder_lr == 0
    assert {e.status for e in report.entries} <= {"mapped", "transformed", "ignored"}
    cfg = train_config(preset, RunLayout(Path("/run")), preset.base_model.path)
    assert cfg["training"]["blocks_to_swap"] == 18 and cfg["model"]["t5xxl"] == "/models/t5xxl_fp16.safetensors"


def test_flux_preset_without_learning_rate_says_so():
    with pytest.raises(UserError, match="no learning rate"):
        import_file(DATA / "flux_gui.json")


def test_dataset_toml_alone_is_explained():
    with pytest.raises(UserError, match="--dataset"):
        import_file(DATA / "colab_dataset.toml")


# ---------------------------------------------------------------- export → import
def _roundtrip(preset, fmt, tmp_path):
    out = tmp_path / ("p.json" if fmt == "kohya-gui" else "p.toml")
    write_export(preset, fmt, out)
    back, report = import_preset(out)
    return back, report


def _comparable(p):
    d = p.model_dump(mode="json")
    for section in ("sampling", "evaluate", "regularization", "subject"):
        d.pop(section)
    for name in ("images",) + PREPARE_ONLY:  # set when this tool prepares the photos: neither format carries them
        d["dataset"].pop(name)
    d["dataset"]["captions"] = {k: d["dataset"]["captions"][k] for k in ("shuffle", "keep_tokens", "dropout_rate")}
    d["kohya"] = {k: d["kohya"][k] for k in ("extra_args",)}
    d["kohya"]["extra_args"] = sorted(parse_cli_args(d["kohya"]["extra_args"]).items())
    d["network"]["args"] = sorted(d["network"]["args"])
    d.pop("output")
    return d


@pytest.mark.parametrize("fmt", ["sd-scripts", "kohya-gui"])
@pytest.mark.parametrize("src", OWN_GUI + SDXL_SHARED, ids=lambda p: p.stem)
def test_export_then_import_gives_the_same_preset(src, fmt, tmp_path):
    preset, _ = import_preset(src)
    back, _ = _roundtrip(preset, fmt, tmp_path)
    assert _comparable(back) == _comparable(preset)


def test_export_of_a_shipped_preset_round_trips(tmp_path):
    from faceswap_kohya.config.presets import load

    preset, _ = load("face-24gb")
    assert preset.dataset.mask != "none"
    for fmt in ("sd-scripts", "kohya-gui"):
        out = tmp_path / ("p.json" if fmt == "kohya-gui" else "p.toml")
        lines = write_export(preset, fmt, out)
        assert "dataset.mask" in lines[-1], lines  # said, not silently dropped
        back, _ = import_preset(out)
        assert _comparable(back) == _comparable(preset)
    assert "masked_loss" not in (tmp_path / "p.toml").read_text()
    assert "alpha_mask" not in (tmp_path / "p.dataset.toml").read_text()
    gui, skipped = export_gui(preset.model_copy(update={"sampling": preset.sampling}))
    assert gui["xformers"] == "sdpa" and gui["lr_warmup"] == 5.0 and "sampling.prompts" in skipped


# ---------------------------------------------------------------- CLI and train
def test_cli_import_and_export(tmp_path):
    runner = CliRunner()
    out = tmp_path / "face.yaml"
    r = runner.invoke(cli, ["presets", "import", str(DATA / "face_gui.json"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "transformed:" in r.output and "some_future_key" in r.output and out.is_file()
    r = runner.invoke(cli, ["presets", "import", str(DATA / "face_gui.json"), "-o", str(out)])
    assert r.exit_code == 2 and "already exists" in r.output
    r = runner.invoke(cli, ["presets", "export", str(out), "--format", "sd-scripts", "-o", str(tmp_path / "c.toml")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c.toml").is_file() and (tmp_path / "c.dataset.toml").is_file()
    r = runner.invoke(cli, ["presets", "export", str(out), "--format", "kohya-gui", "-o", str(tmp_path / "c.json")])
    assert r.exit_code == 0 and json.loads((tmp_path / "c.json").read_text())["LoRA_type"] == "Standard"
    r = runner.invoke(cli, ["presets", "import", str(DATA / "sd15_gui.json")])
    assert r.exit_code == 2 and "SD 1.5" in r.output


def test_load_any_imports_kohya_files_on_the_fly():
    p, path, report = load_any(str(DATA / "face_gui.json"), ["training.epochs=3"])
    assert p.training.epochs == 3 and report is not None and path.name == "face_gui.json"
    p, path, report = load_any("face-24gb")
    assert report is None and p.network.dim == 64


def test_train_refuses_lycoris_when_the_trainer_lacks_it():
    from faceswap_kohya.formats.report import lycoris_available

    if lycoris_available() is not False:
        pytest.skip("needs a trainer venv without lycoris-lora")
    r = CliRunner().invoke(cli, ["train", str(DATA / "loha_gui.json")])
    assert r.exit_code == 2 and "lycoris-lora" in r.output


# ---------------------------------------------------------------- sd-scripts' own checks
TRAINER = Trainer.of(validate({"base_model": "x"}, "t"))
needs_sd_scripts = pytest.mark.skipif(not (TRAINER.script.is_file() and TRAINER.python.is_file()),
                                      reason="needs vendor/sd-scripts and .venv-kohya")


@needs_sd_scripts
@pytest.mark.parametrize("src", [DATA / "face_gui.json", DATA / "loha_gui.json", DATA / "colab_config.toml"]
                         + [p for p in SDXL_SHARED if "1 image" in p.name or "dogu_cat" in p.name], ids=lambda p: p.stem)
def test_rendered_imports_pass_sd_scripts_checks(src):
    from faceswap_kohya.trainer.check import check_rendered

    preset, _ = import_preset(src, DATA / "colab_dataset.toml" if src.name == "colab_config.toml" else None)
    result = check_rendered(preset)
    assert result["ok"], result["errors"]


@needs_sd_scripts
def test_extra_args_of_every_import_parse_in_sd_scripts():
    """One trainer-venv call: every kohya.extra_args list through sdxl_train_network's parser."""
    sources = OWN_GUI + [DATA / "flat_sd.toml"] + SDXL_SHARED
    lists = [import_preset(s)[0].kohya.extra_args for s in sources]
    code = ("import json,sys,sdxl_train_network as s\np=s.setup_parser()\nfor a in json.loads(sys.argv[1]):\n"
            "    p.parse_args(a)\nprint('parsed', len(json.loads(sys.argv[1])))")
    proc = subprocess.run([str(TRAINER.python), "-c", code, json.dumps(lists)], cwd=TRAINER.sd_scripts,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and f"parsed {len(lists)}" in proc.stdout, proc.stderr[-2000:]
