"""The `sampling` section of a preset: the sample images sd-scripts renders during training."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from faceswap_kohya.config.samplers import SD_SCRIPTS_SAMPLERS
from faceswap_kohya.config.sections import Section
from faceswap_kohya.config.texts import PromptLine, SamplePrompt, sd_scripts_sampler


class Sampling(Section):
    prompts: list[SamplePrompt] = Field(
        default_factory=list, description="prompts rendered during training; {trigger}/{class} filled in")
    negative_prompt: PromptLine = "lowres, blurry, deformed"
    every_n_epochs: Optional[int] = Field(None, ge=1)
    every_n_steps: Optional[int] = Field(None, ge=1)
    sampler: Literal[SD_SCRIPTS_SAMPLERS] = Field(  # type: ignore[valid-type]
        "euler_a", description="sampler sd-scripts renders the samples with (the names generate --sampler uses)")
    steps: int = Field(28, ge=1, le=200)
    cfg: float = Field(7.0, ge=0)
    seed: int = 1
    size: Optional[int] = Field(None, ge=64, description="sample width/height; default: the training resolution")

    _sampler_alias = field_validator("sampler", mode="before")(sd_scripts_sampler)

    @field_validator("size")
    @classmethod
    def check_size(cls, v):
        if v is not None and v % 8:
            raise ValueError("must be a multiple of 8")
        return v
