"""FLUX.1, the second model family: the preset's FLUX files checked from their headers, the stand-in T5 tokenizer
of the check model, the rendering for flux_train_network.py, and (marked `trainer`) the real flux_train_network.py
training the FLUX check model through `train`, its LoRA loaded into a diffusers FluxPipeline with every module
attached and changing the image.

The trainer test builds the FLUX check model once (cached in the user's FACESWAP_KOHYA_HOME, ~6 GB, ~1 min) and
trains it at 64 px for 2 steps: ~3 min and ~12 GB RAM at most, then the pipeline (~13 GB): never both at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import needs_kohya
from safetensors.numpy import save_file

from faceswap_kohya.config import presets
from faceswap_kohya.errors import UserError
from faceswap_kohya.models.base import check_checkpoint, check_flux_file
from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.trainer import render

RUN = RunLayout(Path("/RUN"))


def _file(path: Path, **tensors) -> Path:
    save_file({k: np.zeros(v, np.float16) for k, v in tensors.items()}, str(path))
    return path


# ---------------------------------------------------------------- the preset
def test_flux_presets_validate_and_sdxl_stays_the_default():
    assert presets.validate({"base_model": "m.safetensors"}, "p").base_model.family == "sdxl"
    for name in ("flux-24gb", "flux-16gb", "flux-12gb", "flux-check"):
        preset, _ = presets.load(name)
        assert preset.base_model.family == "flux", name
        assert "unmeasured" in presets.describe(preset_path(name)).vram or name == "flux-check"


def preset_path(name: str) -> Path:
    return next(i.path for i in presets.discover() if i.name == name)


def test_flux_files_are_required_and_belong_to_flux():
    with pytest.raises(UserError) as e:
        presets.validate({"base_model": {"family": "flux", "path": "dit.safetensors", "ae": "ae.safetensors"}}, "p")
    assert "base_model.clip_l: is required" in str(e.value) and "base_model.t5xxl: is required" in str(e.value)
    with pytest.raises(UserError, match="base_model.t5xxl: is a FLUX file"):
        presets.validate({"base_model": {"path": "sdxl.safetensors", "t5xxl": "t5.safetensors"}}, "p")
    with pytest.raises(UserError, match="network.conv_dim: FLUX's DiT has no 3x3 convolutions"):
        presets.load("flux-check", ["network.conv_dim=4"])
    chroma = presets.validate({"base_model": {"family": "flux", "path": "c.safetensors", "ae": "a.safetensors",
                                              "t5xxl": "t.safetensors"}, "flux": {"model_type": "chroma"}}, "p")
    assert chroma.base_model.clip_l is None  # Chroma has no CLIP-L


def test_flux_files_are_recognised_from_their_headers(tmp_path):
    dit = _file(tmp_path / "dit.safetensors", **{"double_blocks.0.img_attn.proj.bias": (8,)})
    ae = _file(tmp_path / "ae.safetensors", **{"encoder.conv_out.weight": (32, 1)})
    sdxl_vae = _file(tmp_path / "vae.safetensors", **{"encoder.conv_out.weight": (8, 1)})
    clip = _file(tmp_path / "clip.safetensors", **{"text_model.encoder.layers.0.self_attn.q_proj.weight": (768, 1)})
    t5 = _file(tmp_path / "t5.safetensors", **{"encoder.block.0.layer.0.SelfAttention.q.weight": (4096, 1)})
    sdxl = _file(tmp_path / "sdxl.safetensors", **{"model.diffusion_model.input_blocks.0.0.weight": (4, 1)})
    for path, kind in ((dit, "dit"), (ae, "ae"), (clip, "clip_l"), (t5, "t5xxl")):
        check_flux_file(str(path), kind, kind)
    with pytest.raises(UserError, match="base_model.path: .* is not a FLUX DiT .it looks like an SDXL checkpoint"):
        check_flux_file(str(sdxl), "dit", "base_model.path")
    with pytest.raises(UserError, match="is not the FLUX autoencoder"):
        check_flux_file(str(sdxl_vae), "ae", "base_model.ae")
    with pytest.raises(UserError, match="base_model.t5xxl: .* is not a T5-XXL text encoder .it looks like a CLIP-L"):
        check_flux_file(str(clip), "t5xxl", "base_model.t5xxl")
    with pytest.raises(UserError, match="base_model.t5xxl: .*missing.safetensors does not exist"):
        check_flux_file(str(tmp_path / "missing.safetensors"), "t5xxl", "base_model.t5xxl")
    with pytest.raises(UserError, match="a FLUX DiT, not an SDXL checkpoint"):
        check_checkpoint(dit, "base_model.path:")


# ---------------------------------------------------------------- the stand-in T5 tokenizer
def test_the_check_models_t5_tokenizer_is_shaped_as_t5s(tmp_path):
    pytest.importorskip("transformers", reason="the tokenizer is read with transformers' T5TokenizerFast")
    from transformers import T5TokenizerFast

    from faceswap_kohya.models.tokenizers import ensure_flux_check_tokenizers

    cache = ensure_flux_check_tokenizers(tmp_path / "tok")
    assert (cache / "openai_clip-vit-large-patch14" / "vocab.json").is_file()  # CLIP-L as for SDXL
    tok = T5TokenizerFast.from_pretrained(str(cache / "google_t5-v1_1-xxl"))
    assert len(tok) == 32100 and (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == 32099
    enc = tok("myface woman, portrait photo", max_length=16, padding="max_length", truncation=True)
    ids = enc.input_ids
    n = sum(enc.attention_mask)
    assert ids[n - 1] == 1 and set(ids[n:]) == {0} and all(2 < i < 32000 for i in ids[:n - 1])
    assert tok.convert_ids_to_tokens(ids[0]).startswith("\u2581")  # sentencepiece's word-start mark


# ---------------------------------------------------------------- rendering
def test_flux_config_is_flux_train_networks():
    preset, _ = presets.load("flux-12gb")
    cfg = render.train_config(preset, RUN, "/m/flux1-dev.safetensors")
    assert cfg["model"] == {"pretrained_model_name_or_path": "/m/flux1-dev.safetensors", "ae": "models/ae.safetensors",
                            "clip_l": "models/clip_l.safetensors", "t5xxl": "models/t5xxl_fp16.safetensors"}
    assert cfg["network"]["network_module"] == "networks.lora_flux"
    t = cfg["training"]
    assert (t["guidance_scale"], t["timestep_sampling"], t["model_prediction_type"], t["blocks_to_swap"]) == \
        (1.0, "flux_shift", "raw", 16)
    assert t["fp8_base"] and t["cache_text_encoder_outputs"] and "no_half_vae" not in t
    check, _ = presets.load("flux-check")
    assert render.sample_prompts(check).rstrip().endswith("--l 1 --g 3.5")  # cfg is FLUX.1's embedded guidance
    from faceswap_kohya.trainer.install import Trainer

    trainer = Trainer.of(preset)
    assert trainer.script.name == "flux_train_network.py"
    assert render.trainer_argv(preset, trainer, RUN)[-5].endswith("flux_train_network.py")


def test_the_dataset_toml_is_the_same_for_both_families():
    sdxl, _ = presets.load("face-12gb")
    flux, _ = presets.load("flux-12gb", ["dataset.repeats=10", "training.batch_size=1"])
    assert render.dataset_config(sdxl, RUN) == render.dataset_config(flux, RUN)


# ---------------------------------------------------------------- the real trainer
@pytest.mark.trainer
@needs_kohya
def test_train_flux_check_trains_a_flux_lora_that_attaches_fully_and_changes_the_image(tmp_path):
    from safetensors import safe_open

    from faceswap_kohya.data.samples import sample_photos
    from faceswap_kohya.diffusion.images import generate_images
    from faceswap_kohya.diffusion.lora import attach_lora, attached_names, read_lora_modules
    from faceswap_kohya.diffusion.pipeline import free_memory, load_pipeline
    from faceswap_kohya.jobs.train import train
    from faceswap_kohya.runs.status import read_status

    photos = sample_photos(tmp_path / "photos")
    preset, path = presets.load("flux-check", [f"dataset.images={photos}", f"output.dir={tmp_path / 'out'}",
                                               "sampling.prompts=[]", "sampling.every_n_epochs=null",
                                               "optimizer.unet_lr=0.01"])
    events = []
    result = train(preset, path, on_event=events.append)
    assert result.ok, result.diagnosis
    assert read_status(result.run.root)["state"] == "finished"
    with safe_open(str(result.final), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    modules = read_lora_modules(result.final)
    assert any(m.startswith("lora_unet_double_blocks_0_") for m in modules)
    assert any(m.startswith("lora_unet_single_blocks_0_") for m in modules)
    assert all(k.startswith("lora_unet_") for k in keys)  # network_train_unet_only
    assert meta["ss_network_module"] == "networks.lora_flux" and meta["ss_network_dim"] == "4"
    assert "ss_base_model_version" in meta and meta["ss_base_model_version"].startswith("flux")

    pipe = load_pipeline("builtin:flux-check", device="cpu", dtype="fp32")
    try:
        base = generate_images(pipe, ["myface woman, portrait photo"], [3], steps=2, cfg=3.5, width=64, height=64)[0]
        assert attach_lora(pipe, result.final, weight=1.0) == len(modules)
        assert set(modules) <= attached_names(pipe, next(iter(pipe.fsk_loras)))
        after = generate_images(pipe, ["myface woman, portrait photo"], [3], steps=2, cfg=3.5, width=64, height=64)[0]
    finally:
        del pipe
        free_memory()
    assert after.size == (64, 64)
    assert np.abs(np.asarray(after, dtype=int) - np.asarray(base, dtype=int)).max() > 0
