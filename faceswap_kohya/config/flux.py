"""The `flux` section of a preset: what `flux_train_network.py` needs beyond the SDXL settings (read only
when `base_model.family` is flux). Defaults are sd-scripts' LoRA recipe in docs/flux_train_network.md.

For FLUX.1 the `cfg` of sampling, evaluate and generate is the DiT's embedded guidance (FLUX_GUIDANCE, 3.5, FLUX.1
dev's usual value and a FLUX.1 preset's default for each `cfg` it leaves unset), run without a negative pass; for
Chroma it is a true classifier-free guidance scale."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from faceswap_kohya.config.sections import Section

FLUX_GUIDANCE = 3.5  # FLUX.1 dev's embedded guidance: FluxPipeline's default, and sd-scripts' for FLUX samples


def t5_tokens(preset) -> Optional[int]:
    """The T5 tokens a FLUX run's captions were encoded to (`flux.t5xxl_max_token_length`), for generating with its
    LoRA as it was trained (sd-scripts' own samples do so); None for SDXL or when unset (diffusers' 512)."""
    if preset is None or not preset.base_model.is_flux:
        return None
    return preset.flux.t5xxl_max_token_length


class FluxSettings(Section):
    model_type: Literal["flux", "chroma"] = Field("flux", description="flux: FLUX.1 dev/schnell; chroma: Chroma (no CLIP-L)")
    guidance_scale: float = Field(1.0, ge=0, description="the DiT's embedded guidance while training (1.0 for FLUX.1 "
                                                         "dev, 0.0 for Chroma: sd-scripts' LoRA recipe)")
    timestep_sampling: Literal["sigma", "uniform", "sigmoid", "shift", "flux_shift"] = Field(
        "flux_shift", description="how training timesteps are drawn (sd-scripts' --timestep_sampling)")
    model_prediction_type: Literal["raw", "additive", "sigma_scaled"] = "raw"
    discrete_flow_shift: float = Field(3.0, gt=0, description="the shift of timestep_sampling=shift (ignored otherwise)")
    sigmoid_scale: float = Field(1.0, gt=0)
    blocks_to_swap: Optional[int] = Field(None, ge=1, le=35, description="DiT blocks kept in CPU memory and swapped in "
                                                                         "(saves VRAM, slower)")
    t5xxl_max_token_length: Optional[int] = Field(None, ge=8, le=512, description="T5 tokens per caption (unset: 512 "
                                                                                  "for dev, 256 for schnell)")
    apply_t5_attn_mask: bool = Field(False, description="mask T5's padding tokens (Chroma needs it)")
    cache_text_encoder_outputs_to_disk: bool = False
