"""FLUX.1 on diffusers: a FluxPipeline (or FluxInpaintPipeline) built offline from the four files sd-scripts
trains with (DiT, AE, CLIP-L, T5-XXL; BFL layout, any block count), and which Kohya FLUX LoRA module names
the attached peft adapters stand for (so that lora.py can prove every module of a LoRA attached).

On a CPU the pipeline runs in fp32 but T5-XXL is held in bf16 (~9.5 GB instead of ~19 GB): it carries no LoRA,
and its output is cast back to the DiT's dtype where the DiT reads it.
"""

from __future__ import annotations

from pathlib import Path

from faceswap_kohya.errors import UserError
from faceswap_kohya.models.tokenizers import T5_TOKENIZER_NAME, check_tokenizer_cache, ensure_flux_check_tokenizers

CLIP_L_TOKENIZER = "openai_clip-vit-large-patch14"
T5_MAX_LENGTH = 512


def block_counts(header_keys) -> tuple[int, int]:
    """(double, single) block counts of a BFL-layout DiT, from its tensor names."""
    keys = [k.removeprefix("model.diffusion_model.") for k in header_keys]
    double = {int(k.split(".")[1]) for k in keys if k.startswith("double_blocks.")}
    single = {int(k.split(".")[1]) for k in keys if k.startswith("single_blocks.")}
    return (max(double) + 1 if double else 0), (max(single) + 1 if single else 0)


def _load(path: str, dtype, keys_to=None) -> dict:
    """A safetensors file as a state dict in `dtype`, one tensor at a time (an fp8 file never doubles in memory)."""
    from safetensors import safe_open

    out = {}
    with safe_open(path, framework="pt") as f:
        for key in f.keys():
            out[keys_to(key) if keys_to else key] = f.get_tensor(key).to(dtype)
    return out


def init_empty_weights():
    """Parameters on the meta device (buffers such as position ids stay real): nothing allocated until loaded."""
    from accelerate import init_empty_weights as empty

    return empty()


def _fill(model, state: dict, what: str, path: str) -> None:
    """Assign a state dict to a model built with empty weights; every parameter must be set."""
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("position_ids")]
    missing += [n for n, p in model.named_parameters() if p.is_meta and n not in missing]
    if missing:
        raise UserError(f"{path}: not {what} for diffusers ({len(missing)} weights missing, e.g. {missing[0]})")


def load_transformer(path: str, dtype):
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from faceswap_kohya.models.base import safetensors_keys

    keys = safetensors_keys(Path(path))
    n_double, n_single = block_counts(keys)
    guidance = any("guidance_in." in k for k in keys)
    with init_empty_weights():
        model = FluxTransformer2DModel(num_layers=n_double, num_single_layers=n_single, guidance_embeds=guidance)
    state = convert_flux_transformer_checkpoint_to_diffusers(_load(path, dtype, lambda k: k.removeprefix("model.diffusion_model.")))
    _fill(model, state, "a FLUX DiT", path)
    return model


def load_ae(path: str, dtype):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    config = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                  up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
                  latent_channels=16, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
                  use_quant_conv=False, use_post_quant_conv=False)
    with init_empty_weights():
        vae = AutoencoderKL(**config)
    _fill(vae, convert_ldm_vae_checkpoint(_load(path, dtype), vae.config), "the FLUX autoencoder", path)
    return vae


def load_clip_l(path: str, dtype):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                            layer_norm_eps=1e-5, projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    with init_empty_weights():
        model = CLIPTextModel(config)
    names = {n for n, _ in model.named_parameters()}
    rename = (lambda k: k) if any(n.startswith("text_model.") for n in names) else (lambda k: k.removeprefix("text_model."))
    _fill(model, _load(path, dtype, rename), "a CLIP-L text encoder", path)  # transformers 5 drops `text_model.`
    return model.eval()


def load_t5xxl(path: str, dtype):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                      relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
                      layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
                      tie_word_embeddings=False, pad_token_id=0, eos_token_id=1)
    with init_empty_weights():
        model = T5EncoderModel(config)
    state = _load(path, dtype)
    if "encoder.embed_tokens.weight" not in state and "shared.weight" in state:
        state["encoder.embed_tokens.weight"] = state["shared.weight"]
    state.setdefault("shared.weight", state.get("encoder.embed_tokens.weight"))
    _fill(model, state, "a T5-XXL text encoder", path)
    return model.eval()


def tokenizers(check_model: bool, cache: Path | None):
    """CLIP-L's (open_clip's vocabulary, as for SDXL) and T5's: the check model's stand-in, or Google's from the
    tokenizer cache (sd-scripts saves it there once it has downloaded it) or the hub."""
    from transformers import CLIPTokenizer, T5TokenizerFast

    from faceswap_kohya.models.tokenizers import ensure_tokenizers

    folder = ensure_flux_check_tokenizers() if check_model else ensure_tokenizers(cache)
    clip = CLIPTokenizer.from_pretrained(str(folder / CLIP_L_TOKENIZER))
    t5_folder = folder / T5_TOKENIZER_NAME.replace("/", "_")
    try:
        t5 = T5TokenizerFast.from_pretrained(str(t5_folder) if t5_folder.is_dir() else T5_TOKENIZER_NAME)
    except OSError:
        raise UserError(f"FLUX needs the T5 tokenizer of {T5_TOKENIZER_NAME}: copy its files to {t5_folder} "
                        "(the hub can't be reached)") from None
    return clip, t5


def load_flux_pipeline(files: dict, torch_dtype, check_model: bool = False, inpaint: bool = False):
    """FluxPipeline (FluxInpaintPipeline with inpaint) from {"dit", "ae", "clip_l", "t5xxl"} files."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxInpaintPipeline, FluxPipeline

    t5_dtype = torch.bfloat16 if torch_dtype == torch.float32 else torch_dtype
    transformer = load_transformer(files["dit"], torch_dtype)
    # T5's bf16 output (and the latents the pipeline makes in its dtype) meet the DiT: cast them to the DiT's dtype
    dit_dtype = transformer.x_embedder.weight.dtype

    def cast(value):
        return value.to(dit_dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    transformer.register_forward_pre_hook(lambda m, args, kwargs: (tuple(cast(a) for a in args),
                                                                   {k: cast(v) for k, v in kwargs.items()}), with_kwargs=True)
    # FluxInpaintPipeline hands the photo to the AE in the prompt's dtype (T5's bf16): cast it to the AE's own
    vae = load_ae(files["ae"], torch_dtype)
    vae_dtype = vae.encoder.conv_in.weight.dtype

    def to_vae(m, args, kwargs):
        cast_vae = lambda v: v.to(vae_dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v  # noqa: E731
        return tuple(cast_vae(a) for a in args), {k: cast_vae(v) for k, v in kwargs.items()}

    vae.encoder.register_forward_pre_hook(to_vae, with_kwargs=True)
    vae.decoder.register_forward_pre_hook(to_vae, with_kwargs=True)
    clip_tok, t5_tok = tokenizers(check_model, check_tokenizer_cache() if check_model else None)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    cls = FluxInpaintPipeline if inpaint else FluxPipeline
    pipe = cls(scheduler=scheduler, vae=vae, text_encoder=load_clip_l(files["clip_l"], torch_dtype),
               tokenizer=clip_tok, text_encoder_2=load_t5xxl(files["t5xxl"], t5_dtype), tokenizer_2=t5_tok,
               transformer=transformer)
    return pipe


# ---------------------------------------------------------------- Kohya FLUX LoRA names
_DOUBLE = {"img_attn_qkv": ["attn.to_q", "attn.to_k", "attn.to_v"], "img_attn_proj": ["attn.to_out.0"],
           "img_mlp_0": ["ff.net.0.proj"], "img_mlp_2": ["ff.net.2"], "img_mod_lin": ["norm1.linear"],
           "txt_attn_qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"], "txt_attn_proj": ["attn.to_add_out"],
           "txt_mlp_0": ["ff_context.net.0.proj"], "txt_mlp_2": ["ff_context.net.2"], "txt_mod_lin": ["norm1_context.linear"]}
_SINGLE = {"linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"], "linear2": ["proj_out"],
           "modulation_lin": ["norm.linear"]}
_TOP = {"img_in": "x_embedder", "txt_in": "context_embedder",
        "time_in_in_layer": "time_text_embed.timestep_embedder.linear_1",
        "time_in_out_layer": "time_text_embed.timestep_embedder.linear_2",
        "vector_in_in_layer": "time_text_embed.text_embedder.linear_1",
        "vector_in_out_layer": "time_text_embed.text_embedder.linear_2",
        "guidance_in_in_layer": "time_text_embed.guidance_embedder.linear_1",
        "guidance_in_out_layer": "time_text_embed.guidance_embedder.linear_2",
        "final_layer_linear": "proj_out", "final_layer_adaLN_modulation_1": "norm_out.linear"}


def kohya_targets(transformer) -> dict[str, list[str]]:
    """Kohya module name (`lora_unet_double_blocks_0_img_attn_qkv`) → the diffusers transformer modules it becomes."""
    out = {f"lora_unet_{k}": [v] for k, v in _TOP.items()}
    for i in range(len(transformer.transformer_blocks)):
        out |= {f"lora_unet_double_blocks_{i}_{k}": [f"transformer_blocks.{i}.{m}" for m in v] for k, v in _DOUBLE.items()}
    for i in range(len(transformer.single_transformer_blocks)):
        out |= {f"lora_unet_single_blocks_{i}_{k}": [f"single_transformer_blocks.{i}.{m}" for m in v] for k, v in _SINGLE.items()}
    return out


def attached_kohya_names(transformer, attached: set[str]) -> set[str]:
    """The Kohya module names all of whose diffusers modules carry the adapter (`attached`: module paths)."""
    return {kohya for kohya, targets in kohya_targets(transformer).items() if all(t in attached for t in targets)}
