"""The whole chain on real parts: sd-scripts trains a LoRA (UNet + both text encoders + LoCon convs) on the
pipeline-check model, and the diffusers loader attaches every module of it to the full-size SDXL loaded from
the single file, offline, and generation changes with it.

Runs when sd-scripts is set up; ~4 min and ~22 GB RAM (the trainer, then the pipeline: never both at once).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_kohya
from PIL import Image
from safetensors import safe_open

from faceswap_kohya.config import presets
from faceswap_kohya.diffusion.images import generate_images
from faceswap_kohya.diffusion.lora import attach_lora, attached_names, read_lora_modules
from faceswap_kohya.diffusion.pipeline import free_memory, load_pipeline
from faceswap_kohya.jobs import train as runner

pytestmark = [pytest.mark.trainer, needs_kohya]


def test_real_lora_attaches_fully_and_changes_the_images(tmp_path, photos):
    preset, path = presets.load("cpu-check", [
        f"dataset.images={photos}", f"output.dir={tmp_path}", "optimizer.text_encoder_lr=1e-5", "network.conv_dim=2",
        "sampling.prompts=[]", "sampling.every_n_epochs=null", "optimizer.unet_lr=0.01"])
    result = runner.train(preset, path)
    assert result.ok, result.diagnosis
    with safe_open(result.final, "pt") as f:
        prefixes = {k.split("_")[1] for k in f.keys()}
    assert prefixes == {"unet", "te1", "te2"}

    pipe = load_pipeline("builtin:pipeline-check", device="cpu", dtype="fp32")
    try:
        base = generate_images(pipe, ["myface woman, portrait"], [3], steps=2, cfg=5.0, width=64, height=64)[0]
        modules = read_lora_modules(result.final)
        assert len(modules) > 900
        assert attach_lora(pipe, result.final, weight=1.0) == len(modules)
        attached = attached_names(pipe, next(iter(pipe.fsk_loras)))
        assert set(modules) <= attached
        with_lora = generate_images(pipe, ["myface woman, portrait"], [3], steps=2, cfg=5.0, width=64, height=64)[0]
    finally:
        del pipe
        free_memory()  # the trainer tests after this one need the memory
    assert isinstance(with_lora, Image.Image) and with_lora.size == (64, 64)
    assert np.abs(np.asarray(with_lora, dtype=int) - np.asarray(base, dtype=int)).max() > 0
