"""The `evaluate` section of a preset: prompts, face model, bleed check."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from faceswap_kohya.config.sections import Section, expand_home
from faceswap_kohya.config.texts import PromptTemplate, check_template


class Evaluation(Section):
    enabled: bool = Field(False, description="score every checkpoint against the photos at the end of `train`")
    prompts: list[PromptTemplate] = Field(
        default_factory=lambda: [
            "{trigger} {class}, professional portrait photo, soft light",
            "{trigger} {class}, close-up photo, outdoors",
            "{trigger} {class}, smiling, photo in a cafe",
        ], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [1, 2], min_length=1)
    steps: int = Field(25, ge=1, le=200)
    cfg: float = Field(6.0, ge=0)
    embedder: Literal["dlib", "arcface"] = Field(
        "dlib", description="face model for identity scores: dlib (built in) or arcface (optional extra "
                            "faceswap_kohya[arcface]; InsightFace's weights, non-commercial research only)")
    arcface_models: Optional[str] = Field(
        None, description="your own InsightFace model folder (e.g. ~/.insightface/models/buffalo_l) instead of the bundled files")
    bleed_prompts: list[str] = Field(
        default_factory=lambda: ["photo of a {class}", "photo of a {class} and a friend at a cafe"],
        description="prompts WITHOUT the trigger: faces in them should not look like the person; empty: no bleed check")
    bleed_margin: float = Field(
        0.1, gt=0, le=1, description="a checkpoint whose mean bleed score exceeds the base model's by more than this is overtrained")

    _expand_paths = field_validator("arcface_models", mode="before")(expand_home)

    @model_validator(mode="before")
    @classmethod
    def check_renamed(cls, data):
        if isinstance(data, dict):
            if "insightface_root" in data and data["insightface_root"] is None:  # written into older run folders
                data = {k: v for k, v in data.items() if k != "insightface_root"}
            if "insightface_root" in data:
                raise ValueError("insightface_root was replaced by arcface_models: the folder holding the .onnx files "
                                 "(e.g. ~/.insightface/models/buffalo_l), with embedder: arcface")
            if data.get("embedder") == "insightface":
                raise ValueError("embedder insightface is now embedder: arcface (set arcface_models to use your own model folder)")
        return data

    @field_validator("bleed_prompts")
    @classmethod
    def check_bleed_prompts(cls, v: list[str]) -> list[str]:
        for prompt in v:
            if "{trigger}" in prompt:
                raise ValueError(f"bleed prompts must not contain {{trigger}} (got {prompt!r}): they test faces the LoRA should leave alone")
            check_template(prompt, ("class",))
        return v
