"""The whole chain on real parts: sd-scripts trains a LoRA (UNet + both text encoders + LoCon convs) on the
pipeline-check model, and the diffusers loader attaches every module of it to the full-size SDXL loaded from
the single file, offline, and generation changes with it.

Runs when sd-scripts is set up; ~22 GB RAM (the trainer, then the pipeline: never both at once). The LoRA is
the session's shared run (`trained_run`, tests/trained.py: text encoders at 1e-5, conv_dim 2, UNet at 0.01).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_kohya
from PIL import Image
from safetensors import safe_open

from faceswap_kohya.diffusion.images import generate_images
from faceswap_kohya.diffusion.lora import attach_lora, attached_names, read_lora_modules
from faceswap_kohya.diffusion.pipeline import free_memory, load_pipeline

pytestmark = [pytest.mark.trainer, needs_kohya]


def test_real_lora_attaches_fully_and_changes_the_images(trained_run):
    result = trained_run.result
    assert result.ok, result.diagnosis
    assert trained_run.preset.network.conv_dim == 2 and trained_run.preset.optimizer.unet_lr == 0.01
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
