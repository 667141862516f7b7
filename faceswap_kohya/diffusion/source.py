"""What `generate` / `compare` / `swap` generate with: a run folder, a LoRA file or the base model alone
(`resolve_source`), and their settings, checked before any model is loaded (`image_settings`; the guidance a source
is generated with unless told otherwise: `default_cfg`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from faceswap_kohya.config.flux import FLUX_GUIDANCE
from faceswap_kohya.config.presets import read_run_preset
from faceswap_kohya.config.samplers import check_sampler
from faceswap_kohya.config.schema import Preset
from faceswap_kohya.diffusion.lora import read_lora_modules
from faceswap_kohya.diffusion.prompts import check_size
from faceswap_kohya.errors import UserError
from faceswap_kohya.models.base import generation_files
from faceswap_kohya.runs.artifacts import COMPARE, LORA_SUFFIX, checkpoints, lora_path, run_of_lora


# ---------------------------------------------------------------- what to generate with
@dataclass
class Source:
    """The base model and the LoRAs a `generate` / `compare` call can use."""

    base_model: str
    flux: Optional[dict] = None  # a FLUX run's files (models.base.flux_files), for load_pipeline(flux=...)
    lora: Optional[Path] = None  # the default LoRA (the run's final one, or the file given)
    lora_dirs: list = field(default_factory=list)  # where `<lora:NAME:w>` tags look for NAME.safetensors
    run_dir: Optional[Path] = None
    trigger: Optional[str] = None
    class_word: Optional[str] = None
    modules: dict = field(default_factory=dict)  # LoRA path → its module names, its header read once
    preset: Optional[Preset] = None  # the run's preset (preset.yaml), read once here; None without a run

    def find_lora(self, name: str) -> Path:
        if self.lora is not None and name in (self.lora.stem, self.lora.name):
            return self.lora
        for d in self.lora_dirs:
            candidate = Path(d) / (name if name.endswith(".safetensors") else f"{name}.safetensors")
            if candidate.is_file():
                return candidate
        known = sorted({p.stem for d in self.lora_dirs if Path(d).is_dir() for p in Path(d).glob("*.safetensors")})
        where = ", ".join(str(d) for d in self.lora_dirs) or "(no LoRA folder: give --lora-dir)"
        raise UserError(f"<lora:{name}:..>: no {name}.safetensors in {where}" +
                        (f"; available: {', '.join(known)}" if known else ""))

    def fill(self, prompt: str) -> str:
        if self.trigger:
            prompt = prompt.replace("{trigger}", self.trigger)
        if self.class_word:
            prompt = prompt.replace("{class}", self.class_word)
        return prompt


def run_preset(run_dir: Path):
    return read_run_preset(run_dir)


SDXL_CFG = 6.0  # classifier-free guidance for SDXL (a preset's evaluate.cfg default)


def default_cfg(source: Source, given: Optional[float] = None) -> float:
    """The guidance to generate with: `given`, else what the run's evaluation scored with (its preset's
    `evaluate.cfg`), else the family's usual value (a FLUX LoRA or base model with no run: 3.5)."""
    if given is not None:
        return given
    if source.preset is not None:
        return source.preset.evaluate.cfg
    return FLUX_GUIDANCE if source.flux else SDXL_CFG


def resolve_source(target: Optional[str], base: Optional[str] = None, epoch: Optional[int] = None,
                   lora_dirs: Sequence[str] = (), no_lora: bool = False) -> Source:
    """A run folder (its model/ LoRAs and preset.yaml), a LoRA file, or nothing (--base with --no-lora)."""
    preset, run_dir, lora = None, None, None
    if target:
        t = Path(target).expanduser()
        if t.is_dir():
            if not (t / "preset.yaml").is_file():
                raise UserError(f"{t}: not a run folder (no preset.yaml); give a run folder or a .safetensors LoRA")
            run_dir, preset = t, run_preset(t)
            lora = lora_path(t, preset.output.name, epoch)
            if not lora.is_file() and not no_lora:
                saved = [c.path.name for c in checkpoints(t, preset.output.name)]
                hint = f"saved: {', '.join(saved)} (pick one with --epoch N)" if saved else "the run saved no LoRA yet"
                raise UserError(f"{t}: no {lora.name} in {lora.parent}; {hint}")
        elif t.is_file():
            if t.suffix != LORA_SUFFIX:
                raise UserError(f"{t}: not a LoRA file (expected {LORA_SUFFIX}) or a run folder")
            lora = t
            run_dir = run_of_lora(t)
            preset = run_preset(run_dir) if run_dir is not None else None
        else:
            raise UserError(f"{target}: no such run folder or LoRA file")
    base_model = base or (preset.base_model.path if preset else None)
    if not base_model:
        raise UserError("no base model: give --base (a hub id, a diffusers folder or an SDXL .safetensors file)")

    modules = {}
    if lora is not None and not no_lora:
        modules[lora] = read_lora_modules(lora)  # the LoRA first: a file that is not a LoRA is named before any base model is opened
    if preset is not None and preset.base_model.is_flux and preset.flux.model_type == "chroma":
        raise UserError(f"{target}: a Chroma run (flux.model_type chroma): generate, compare, evaluate and swap load "
                        "FLUX.1 pipelines only (Chroma's diffusers pipeline is not wired in yet); its LoRA is for "
                        "ComfyUI or sd-scripts' own chroma sampling")
    # a missing or wrong base model fails here, not after minutes of loading (a FLUX run: each of its files)
    flux = generation_files(preset.base_model if preset else None, base_model)
    dirs = [Path(d).expanduser() for d in lora_dirs]
    if lora is not None:
        dirs.insert(0, lora.parent)
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"LoRA folder {d}: does not exist")
    return Source(base_model=base_model, flux=flux, lora=None if no_lora else lora, lora_dirs=dirs, run_dir=run_dir,
                  trigger=preset.subject.trigger if preset else None,
                  class_word=preset.subject.class_word if preset else None, modules=modules, preset=preset)


# ---------------------------------------------------------------- the commands
@dataclass
class Settings:
    """How to sample; checked when made, before any model is loaded."""

    steps: int = 30
    cfg: float = SDXL_CFG  # callers pass default_cfg(source) where the user gave none
    width: int = 1024
    height: int = 1024
    negative_prompt: str = ""
    sampler: str = "euler"

    def __post_init__(self):
        self.sampler = check_sampler(self.sampler, "sampler")
        if self.steps < 1:
            raise UserError(f"steps {self.steps}: must be at least 1")
        if self.cfg < 0:
            raise UserError(f"--cfg {self.cfg:g}: the guidance scale must be 0 or more (e.g. 6 for SDXL, 3.5 for FLUX.1)")


def parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("*", "x").split("x")
    try:
        w, h = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        raise UserError(f"--size {text!r}: give one number (1024) or WIDTHxHEIGHT (832x1216)") from None
    return w, h


def image_settings(negative: str, steps: int, cfg: Optional[float], size: Optional[str], sampler: str,
                   source: Source) -> Settings:
    """The settings of `generate` / `compare`, checked (size default: the run's training resolution, else 1024; cfg
    default: `default_cfg`)."""
    if size is None:
        size = str(source.preset.dataset.resolution) if source.preset is not None else "1024"
    w, h = parse_size(size)
    check_size(w, h)
    sampler = check_sampler(sampler, "--sampler")
    if steps < 1:
        raise UserError(f"--steps {steps}: must be at least 1")
    return Settings(steps=steps, cfg=default_cfg(source, cfg), width=w, height=h, negative_prompt=negative, sampler=sampler)


def check_lora_files(paths, known: Optional[dict] = None) -> dict:
    """Refuse missing or broken LoRA files before the (slow) base model is loaded; returns {path: its module
    names} for `attach_loras`, each header read once (`known`: those already read, e.g. `Source.modules`)."""
    modules = {}
    for p in paths:
        if known and p in known:
            modules[p] = known[p]
            continue
        if not Path(p).is_file():
            raise UserError(f"LoRA {p}: no such file")
        modules[p] = read_lora_modules(Path(p))
    return modules


def default_out_dir(source: Source, kind: str) -> Path:
    """`<run>/images` (or `<run>/compare`) for a run; else `./generated`."""
    if source.run_dir is not None:
        return source.run_dir / ("images" if kind == "generate" else COMPARE)
    return Path(os.getcwd()) / "generated"
