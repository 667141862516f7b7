"""Regularization ("prior preservation") images of the class, generated with the base model itself.

Images are cached outside the run folder, one file per image, keyed by everything that shapes it
(base model identity, prompt, negative prompt, seed, size, steps, CFG, scheduler; FLUX: T5 tokens): a second run with the
same settings reuses them at once, a changed setting regenerates only what differs, and an interrupted
generation resumes image by image.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from faceswap_kohya.config.flux import t5_tokens
from faceswap_kohya.config.paths import home
from faceswap_kohya.config.schema import CHECK_MODEL, Preset
from faceswap_kohya.config.texts import fill
from faceswap_kohya.diffusion.images import generate_images
from faceswap_kohya.diffusion.pipeline import free_memory, pick_device
from faceswap_kohya.diffusion.prompts import set_sampler
from faceswap_kohya.errors import UserError
from faceswap_kohya.models.base import generation_files
from faceswap_kohya.models.checkmodel import check_model_path
from faceswap_kohya.runs.layout import RunLayout, reg_dir

CONFIRM_ABOVE_SECONDS = 15 * 60  # larger CPU jobs need `--yes` (or regularization.confirmed: true)


@dataclass(frozen=True)
class RegImage:
    prompt: str
    seed: int
    key: str

    def path(self, cache: Path) -> Path:
        return cache / f"{self.key}.png"


def cache_dir() -> Path:
    return home() / "regularization"


def model_identity(base_model: str) -> str:
    """What identifies the base model: a file by path, size and mtime; a folder by its configs; else the id."""
    if base_model == CHECK_MODEL:
        base_model = str(check_model_path())
    p = Path(base_model).expanduser()
    if p.is_file():
        st = p.stat()
        return f"file:{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if p.is_dir():
        stamps = sorted(f"{f.relative_to(p)}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in p.rglob("*") if f.is_file())
        return f"dir:{p.resolve()}|" + hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:16]
    return f"hub:{base_model}"


def plan(preset: Preset) -> list[RegImage]:
    """The N images to have: class prompts in turn, one seed each."""
    r = preset.regularization
    size = preset.dataset.resolution
    model = model_identity(preset.base_model.path)
    images = []
    for i in range(r.generate):
        prompt = fill(r.prompts[i % len(r.prompts)], preset)
        seed = r.seed + i
        recipe = [model, preset.base_model.vae, prompt, r.negative_prompt, seed, size, r.steps, r.cfg, r.scheduler]
        recipe = json.dumps(recipe + ([tokens] if (tokens := t5_tokens(preset)) else []))  # FLUX: its T5 token count
        images.append(RegImage(prompt, seed, hashlib.sha256(recipe.encode()).hexdigest()[:20]))
    return images


def estimate_seconds(n_images: int, steps: int, size: int, device: str) -> float:
    """A rough time for n images: measured SDXL step times (CPU fp32: ~4.5 s at 64 px, growing with pixels;
    a recent GPU: ~0.1 s at 1024 px), plus the one-off model load."""
    pixels = (size / 1024) ** 2
    per_step = 0.12 * max(pixels, 0.25) if device == "cuda" else 4.5 + 600 * pixels
    load = 30 if device != "cuda" else 15
    return load + n_images * steps * per_step


def describe_seconds(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"


def missing(preset: Preset) -> list[RegImage]:
    return [img for img in plan(preset) if not img.path(cache_dir()).is_file()]


def check_cost(preset: Preset, confirmed: bool, echo=print) -> None:
    """Before anything starts: check the base model can be found, say how long the missing images take on the
    device this machine has (detected here); large CPU jobs need confirmation."""
    r, todo = preset.regularization, missing(preset)
    echo(f"regularization: {r.generate} class images, {r.generate - len(todo)} cached, {len(todo)} to generate")
    if not todo:
        return
    generation_files(preset.base_model, preset.base_model.path)  # the base model (a FLUX preset: each file) checked
    device = pick_device(None)
    eta = estimate_seconds(len(todo), r.steps, preset.dataset.resolution, device)
    echo(f"  estimated time on {device}: ~{describe_seconds(eta)} ({r.steps} steps at {preset.dataset.resolution} px)")
    if device != "cuda" and eta > CONFIRM_ABOVE_SECONDS and not confirmed:
        raise UserError(f"regularization.generate={r.generate}: ~{describe_seconds(eta)} on this CPU; "
                        "rerun with --yes to go ahead, or lower the number / use regularization.images")


def generate_missing(preset: Preset, todo: list[RegImage], echo=print,
                     progress: Optional[Callable[[int, int], None]] = None) -> None:
    """Load the base model once and write each missing image to the cache as soon as it is made."""
    from faceswap_kohya.diffusion.pipeline import load_pipeline

    r, cache, size = preset.regularization, cache_dir(), preset.dataset.resolution
    pipe = load_pipeline(preset.base_model.path, flux=generation_files(preset.base_model, preset.base_model.path),
                         t5_tokens=t5_tokens(preset))
    set_sampler(pipe, r.scheduler)
    for done, img in enumerate(todo, 1):
        image = generate_images(pipe, [img.prompt], [img.seed], r.steps, r.cfg, size, size, r.negative_prompt)[0]
        tmp = img.path(cache).with_suffix(".part.png")
        image.save(tmp)
        os.replace(tmp, img.path(cache))  # an interrupted image is never taken for a finished one
        img.path(cache).with_suffix(".json").write_text(json.dumps(
            {"prompt": img.prompt, "seed": img.seed, "negative_prompt": r.negative_prompt, "steps": r.steps,
             "cfg": r.cfg, "scheduler": r.scheduler, "size": size, "base_model": preset.base_model.path}))
        if progress:
            progress(done, len(todo))
        else:
            echo(f"  {done}/{len(todo)} generated")


def ensure_cached(preset: Preset, echo=print, progress: Optional[Callable[[int, int], None]] = None) -> tuple[list[Path], int]:
    """Generate the images missing from the cache; returns (all N cached files, how many were generated)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    todo = missing(preset)
    if todo:
        generate_missing(preset, todo, echo, progress)
        free_memory()  # the trainer, started next, needs all of it
    return [img.path(cache_dir()) for img in plan(preset)], len(todo)


def balance_advice(preset: Preset, n_train: int, n_reg: int) -> Optional[str]:
    """sd-scripts pairs each training image step with a class image step: advise when the sides differ a lot."""
    d, r = preset.dataset, preset.regularization
    train_steps, reg_steps = n_train * d.repeats, n_reg * r.repeats
    if not train_steps or not reg_steps:
        return None
    if reg_steps < train_steps:
        return (f"fewer regularization images ({n_reg}×{r.repeats}) than training images ({n_train}×{d.repeats}): "
                f"sd-scripts repeats them; set regularization.repeats={-(-train_steps // n_reg)} "
                f"or use about {-(-train_steps // r.repeats)} class images")
    if reg_steps > 4 * train_steps:
        return (f"{n_reg}×{r.repeats} regularization images for {n_train}×{d.repeats} training images: each epoch "
                f"uses only {train_steps} of them, so the rest are never seen; fewer suffice")
    return None


def ensure_regularization(preset: Preset, run: RunLayout, echo=print, progress=None) -> Path:
    """Cached (or freshly generated) class images → `reg/<repeats>_<class>/` with class-only captions."""
    files, _ = ensure_cached(preset, echo, progress)
    dest = reg_dir(preset, run)
    dest.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(files):
        out = dest / f"{i:04d}_{src.name}"
        shutil.copyfile(src, out)
        out.with_suffix(".txt").write_text(preset.subject.class_word + "\n", encoding="utf-8")
    return dest
