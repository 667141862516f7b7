"""The `generate` job: an image for every (prompt, seed) from a run's LoRA, a LoRA file or the base model
(`<lora:name:w>` tags add or reweight LoRAs), into a new folder of PNGs that carry their parameters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

from faceswap_kohya.config.flux import t5_tokens
from faceswap_kohya.config.paths import new_folder
from faceswap_kohya.diffusion.images import ImageInfo, file_sha256, generate_images, save_image
from faceswap_kohya.diffusion.lora import attach_loras, fuse
from faceswap_kohya.diffusion.pipeline import keeping, load_pipeline
from faceswap_kohya.diffusion.prompts import check_size, parse_tags, set_sampler
from faceswap_kohya.diffusion.source import Settings, Source, check_lora_files
from faceswap_kohya.errors import UserError
from faceswap_kohya.events import Finished, ImageWritten, OnEvent, Step, echo_to, ignore


def plan_prompts(prompts: Sequence[str], source: Source, weight: float, no_lora: bool):
    """Per prompt: (clean prompt, {lora path: weight}); the default LoRA at `weight`, tags add or override."""
    plans = []
    for i, raw in enumerate(prompts):
        if not raw or not raw.strip():
            raise UserError(f"prompt {i + 1} is empty")
        clean, tags = parse_tags(source.fill(raw))
        if not clean:
            raise UserError(f"prompt {i + 1} ({raw!r}) is empty once its <lora:..> tags are removed")
        loras = {}
        if not no_lora:
            if source.lora is not None:
                loras[source.lora] = weight
            for name, w in tags:
                loras[source.find_lora(name)] = w
        plans.append((clean, loras))
    return plans


def image_progress(total: int, on_event: OnEvent):
    """`update(done, _)` for generate_images' progress callback: a Step event (unit image) for each image."""
    started = time.monotonic()

    def update(done, _total):
        spent = time.monotonic() - started
        rate = spent / done if done else None
        eta = f"{int(rate * (total - done))}s" if rate else "?"
        on_event(Step(done, total, f"{int(spent)}s", eta, rate, unit="image"))

    return update


def load_for_generation(source: Source, paths: list[Path], device, dtype, offload, modules: Optional[dict] = None):
    """The base pipeline with `paths` attached (`modules`: their module names, as check_lora_files read them)."""
    pipe = load_pipeline(source.base_model, device=device, dtype=dtype, offload=offload, flux=source.flux,
                         t5_tokens=t5_tokens(source.preset))
    return pipe, attach_loras(pipe, paths, modules=modules)


def image_info(pipe, prompt: str, seed: int, s: Settings, sampler_label: str, loras: dict, names: dict) -> ImageInfo:
    base = pipe.fsk_base
    model_hash = file_sha256(Path(base["path"])) if base.get("path") and Path(base["path"]).is_file() else None
    return ImageInfo(prompt=prompt, negative_prompt=s.negative_prompt, seed=int(seed), steps=s.steps, cfg=s.cfg,
                     width=s.width, height=s.height, sampler=sampler_label, model=base["label"], model_hash=model_hash,
                     loras=[{"name": p.stem, "adapter": names[p], "path": str(p), "weight": w, "sha256": file_sha256(p)}
                            for p, w in loras.items()], t5_tokens=getattr(pipe, "fsk_t5_tokens", None))


def run_generate(source: Source, prompts: Sequence[str], seeds: Sequence[int], settings: Settings, out_dir: Path,
                 weight: float = 1.0, no_lora: bool = False, device=None, dtype=None, offload=None,
                 on_event: OnEvent = ignore) -> list[Path]:
    """Generate every (prompt, seed) into a new folder under out_dir; returns the PNG paths.

    One LoRA set at one weight for all images is fused (base-model speed), unless the pipeline is kept between jobs
    (diffusion.pipeline.keep_between_jobs); otherwise adapters switch per prompt."""
    echo = echo_to(on_event)
    check_size(settings.width, settings.height)
    plans = plan_prompts(prompts, source, weight, no_lora)
    paths = list(dict.fromkeys(p for _, loras in plans for p in loras))
    modules = check_lora_files(paths, source.modules)
    if all(w == 0 for _, loras in plans for w in loras.values()):
        paths = []  # weight 0 everywhere: the plain base model (attaching and disabling is only ~1e-6 close)
    pipe, names = load_for_generation(source, paths, device, dtype, offload, modules)
    sampler_label = set_sampler(pipe, settings.sampler)
    for path, name in names.items():
        echo(f"LoRA {path.name}: all {pipe.fsk_loras[name].modules} modules attached")
    names = {p: names.get(p, p.stem) for _, loras in plans for p in loras}
    distinct = {tuple(sorted((names[p], w) for p, w in loras.items())) for _, loras in plans}
    fused = len(distinct) == 1 and paths and not keeping()  # a kept pipeline must stay the base model
    if fused:
        fuse(pipe, dict(next(iter(distinct))))
    folder = new_folder(out_dir)
    update = image_progress(len(plans) * len(seeds), on_event)
    written = []
    for pi, (prompt, loras) in enumerate(plans):
        weights = None if fused or not paths else {names[p]: w for p, w in loras.items()} | {
            n: 0.0 for n in names.values() if n not in {names[p] for p in loras}}
        images = generate_images(pipe, [prompt], seeds, settings.steps, settings.cfg, settings.width, settings.height,
                                 settings.negative_prompt, lora_weights=[weights],
                                 progress=lambda d, t, base=len(written): update(base + d, None))
        for seed, image in zip(seeds, images):
            info = image_info(pipe, prompt, seed, settings, sampler_label, loras, names)
            written.append(save_image(image, folder / f"{len(written) + 1:04d}-p{pi + 1}-s{seed}.png", info))
            on_event(ImageWritten(str(written[-1])))
    on_event(Finished(f"{len(written)} images in {folder}", [str(p) for p in written]))
    return written
