"""Build a random-init, full-size SDXL single-file checkpoint with sd-scripts' own model classes.

It produces noise, by design: it exists to check an installation end to end with no download.
Usage (cwd = sd-scripts): python make_check_model.py OUT.safetensors [DEVICE]   (cpu, cuda: where the
weights are made; the file is the same kind either way)
"""

import os
import sys

sys.path.insert(0, os.getcwd())  # sd-scripts (the cwd) provides `library`

import torch
from diffusers import AutoencoderKL
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from library import model_util, sdxl_model_util, sdxl_original_unet


def text_config(hidden, inter, layers, heads, act, proj):
    return CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                          num_attention_heads=heads, max_position_embeddings=77, hidden_act=act, layer_norm_eps=1e-05,
                          pad_token_id=1, bos_token_id=0, eos_token_id=2, projection_dim=proj)


def main(out: str, device: str = "cpu") -> None:
    torch.manual_seed(0)
    half = torch.float16
    with torch.device(device):
        unet = sdxl_original_unet.SdxlUNet2DConditionModel().to(half)
        te1 = CLIPTextModel(text_config(768, 3072, 12, 12, "quick_gelu", 768)).to(half)
        te2 = CLIPTextModelWithProjection(text_config(1280, 5120, 32, 20, "gelu", 1280)).to(half)
        vae = AutoencoderKL(**model_util.create_vae_diffusers_config()).to(half)
    logit_scale = torch.tensor(4.6052, dtype=half)
    metadata = {"faceswap_kohya.kind": "pipeline-check (random weights: generates noise)"}
    n = sdxl_model_util.save_stable_diffusion_checkpoint(out, te1, te2, unet, 0, 0, None, vae, logit_scale, metadata)
    print(f"saved {n} tensors to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
