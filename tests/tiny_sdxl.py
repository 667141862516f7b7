"""Tiny real SDXL pipelines and Kohya-format LoRAs for tests (no hub, a fraction of a second per image).

`build_tiny_pipeline()` has SDXL's block structure (3 down blocks, 2 layers each, the first without
attention) at tiny widths, with two text encoders of different widths; `write_kohya_lora()` writes a
LoRA with sd-scripts' key names (UNet in the original SDXL layout by default).
"""

from __future__ import annotations

from pathlib import Path

TE1_WIDTH, TE2_WIDTH, TIME_DIM = 32, 64, 8
TE_TARGETS = ("CLIPAttention", "CLIPSdpaAttention", "CLIPMLP")
UNET_TARGETS = ("Transformer2DModel",)
UNET_CONV_TARGETS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")


def build_tiny_pipeline(seed: int = 0):
    """A StableDiffusionXLPipeline with random tiny weights and the real offline CLIP tokenizers."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from faceswap_kohya.diffusion.pipeline import SDXL_CONFIG
    from faceswap_kohya.models.tokenizers import ensure_tokenizers

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 4), transformer_layers_per_block=(1, 1, 2), use_linear_projection=True,
        cross_attention_dim=TE1_WIDTH + TE2_WIDTH, addition_embed_type="text_time",
        addition_time_embed_dim=TIME_DIM, projection_class_embeddings_input_dim=6 * TIME_DIM + TE2_WIDTH,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=64, scaling_factor=0.13025,
    )
    common = dict(vocab_size=49408, max_position_embeddings=77, num_hidden_layers=2, bos_token_id=0, eos_token_id=2,
                  pad_token_id=1)
    te1 = CLIPTextModel(CLIPTextConfig(hidden_size=TE1_WIDTH, intermediate_size=64, num_attention_heads=4,
                                       projection_dim=TE1_WIDTH, hidden_act="quick_gelu", **common))
    te2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=TE2_WIDTH, intermediate_size=128, num_attention_heads=4,
                                                     projection_dim=TE2_WIDTH, hidden_act="gelu", **common))
    tok_dir = ensure_tokenizers()
    tok1 = CLIPTokenizer.from_pretrained(tok_dir / "openai_clip-vit-large-patch14")
    tok2 = CLIPTokenizer.from_pretrained(tok_dir / "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k")
    scheduler = EulerDiscreteScheduler.from_pretrained(SDXL_CONFIG, subfolder="scheduler")
    return StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok1, tokenizer_2=tok2,
                                     unet=unet, scheduler=scheduler)


def save_tiny_pipeline(folder: Path, seed: int = 0) -> Path:
    """Build and save a tiny pipeline as a diffusers folder; returns the folder."""
    folder = Path(folder)
    build_tiny_pipeline(seed).save_pretrained(folder)
    return folder


def kohya_modules(pipe, conv: bool = False, text_encoders: bool = True, layout: str = "original") -> dict:
    """{kohya module name: torch module} for what sd-scripts' networks.lora would train on this pipeline."""
    from faceswap_kohya.diffusion.lora import sgm_name

    out = {}
    unet = pipe.unet
    up_types = unet.config.up_block_types
    targets = UNET_TARGETS + (UNET_CONV_TARGETS if conv else ())
    for parent_name, parent in unet.named_modules():
        if type(parent).__name__ not in targets:
            continue
        for child_name, child in parent.named_modules():
            kind = type(child).__name__
            if kind not in ("Linear", "Conv2d"):
                continue
            if kind == "Conv2d" and child.kernel_size != (1, 1) and not conv:
                continue
            name = f"{parent_name}.{child_name}" if child_name else parent_name
            if layout == "original":
                name = sgm_name(name, unet.config.layers_per_block, lambda b: "CrossAttn" in up_types[b])
            out["lora_unet_" + name.replace(".", "_")] = child
    if text_encoders:
        for prefix, te in (("lora_te1_", pipe.text_encoder), ("lora_te2_", pipe.text_encoder_2)):
            for parent_name, parent in te.named_modules():
                if type(parent).__name__ not in TE_TARGETS:
                    continue
                for child_name, child in parent.named_modules():
                    if type(child).__name__ == "Linear":  # sd-scripts' transformers 4 names: text_model.encoder...
                        name = "text_model." + f"{parent_name}.{child_name}".removeprefix("text_model.")
                        out[prefix + name.replace(".", "_")] = child
    return out


def write_kohya_lora(pipe, path: Path, rank: int = 4, alpha: float = 2.0, seed: int = 1, scale: float = 0.3,
                     conv: bool = False, text_encoders: bool = True, layout: str = "original", only=None) -> dict:
    """Write a random LoRA in Kohya's SDXL key layout; returns its tensors. `only` filters module names."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in kohya_modules(pipe, conv, text_encoders, layout).items():
        if only and not only(name):
            continue
        if type(module).__name__ == "Linear":
            down = torch.randn(rank, module.in_features, generator=gen) * scale
            up = torch.randn(module.out_features, rank, generator=gen) * scale
        else:
            k = module.kernel_size
            down = torch.randn(rank, module.in_channels, *k, generator=gen) * scale
            up = torch.randn(module.out_channels, rank, 1, 1, generator=gen) * scale
        tensors[f"{name}.lora_down.weight"] = down.contiguous()
        tensors[f"{name}.lora_up.weight"] = up.contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(float(alpha))
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora", "ss_network_dim": str(rank),
                                            "ss_network_alpha": str(alpha)})
    return tensors
