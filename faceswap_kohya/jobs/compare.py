"""The `compare` job: per prompt, the base model and the LoRA at several weights with the same seeds → every
image plus one labelled before/after grid."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from faceswap_kohya.config.paths import new_folder
from faceswap_kohya.diffusion.images import generate_images, make_grid, save_image
from faceswap_kohya.diffusion.lora import attach_loras
from faceswap_kohya.diffusion.prompts import check_size, set_sampler
from faceswap_kohya.diffusion.source import Settings, Source, check_lora_files
from faceswap_kohya.errors import UserError
from faceswap_kohya.events import Finished, ImageWritten, OnEvent, echo_to, ignore
from faceswap_kohya.jobs.generate import image_info, image_progress, load_for_generation, plan_prompts

DEFAULT_WEIGHTS = (0.0, 0.7, 1.0)


def run_compare(source: Source, prompts: Sequence[str], seeds: Sequence[int], settings: Settings, out_dir: Path,
                weights: Sequence[float] = DEFAULT_WEIGHTS, device=None, dtype=None, offload=None,
                on_event: OnEvent = ignore) -> list[Path]:
    """Per prompt: the base model and the LoRA at each weight, same seeds → every image plus one grid
    (columns: weights, rows: seeds). Returns the grid paths.

    Weight 0 is the plain base model (rendered before any LoRA is attached, so it is bit-identical to
    `generate --no-lora`); other `<lora:..>` tags in a prompt apply to the non-zero columns."""
    from PIL.PngImagePlugin import PngInfo

    echo = echo_to(on_event)


    if source.lora is None:
        raise UserError("compare needs a LoRA: give a run folder or a .safetensors file")
    weights = [float(w) for w in weights]
    if not weights:
        raise UserError("--weights: give at least one weight, e.g. 0,0.7,1")
    check_size(settings.width, settings.height)
    plans = plan_prompts(prompts, source, 1.0, no_lora=False)
    paths = list(dict.fromkeys(p for _, loras in plans for p in loras))
    modules = check_lora_files(paths, source.modules)
    pipe, names = load_for_generation(source, [], device, dtype, offload)
    sampler_label = set_sampler(pipe, settings.sampler)
    folder = new_folder(out_dir)
    update = image_progress(len(plans) * len(weights) * len(seeds), on_event)
    results: dict = {}
    done = 0

    def render(pi, w, prompt, active):
        nonlocal done
        results[pi, w] = generate_images(pipe, [prompt], seeds, settings.steps, settings.cfg, settings.width,
                                         settings.height, settings.negative_prompt, lora_weights=[active],
                                         progress=lambda d, t, base=done: update(base + d, None))
        done += len(seeds)

    if 0.0 in weights:
        for pi, (prompt, _) in enumerate(plans):
            render(pi, 0.0, prompt, None)
    if any(w != 0 for w in weights):
        names.update(attach_loras(pipe, paths, modules=modules))
        main = names[source.lora]
        echo(f"LoRA {source.lora.name}: all {pipe.fsk_loras[main].modules} modules attached")
        for w in weights:
            if w == 0:
                continue
            for pi, (prompt, loras) in enumerate(plans):
                render(pi, w, prompt, {names[p]: pw for p, pw in loras.items() if p != source.lora} | {main: w})
    grids = []
    for pi, (prompt, loras) in enumerate(plans):
        for w in weights:
            used = {} if w == 0 else {p: (w if p == source.lora else pw) for p, pw in loras.items()}
            for seed, image in zip(seeds, results[pi, w]):
                save_image(image, folder / f"p{pi + 1}-s{seed}-w{w:g}.png",
                           image_info(pipe, prompt, seed, settings, sampler_label, used, names))
        cells = [results[pi, w][r] for r in range(len(seeds)) for w in weights]
        columns = ["base" if w == 0 else f"{source.lora.stem} {w:g}" for w in weights]
        grid = make_grid(cells, columns, [f"seed {s}" for s in seeds], prompt)
        meta = PngInfo()
        meta.add_text("parameters", f"{prompt}\nComparison grid: weights {', '.join(f'{w:g}' for w in weights)}; "
                                    f"seeds {', '.join(str(s) for s in seeds)}; Steps: {settings.steps}, "
                                    f"Sampler: {sampler_label}, CFG scale: {settings.cfg:g}, "
                                    f"Size: {settings.width}x{settings.height}, Model: {pipe.fsk_base['label']}")
        path = folder / f"grid-p{pi + 1}.png"
        grid.save(path, pnginfo=meta)
        grids.append(path)
        on_event(ImageWritten(str(path), "grid"))
    on_event(Finished(f"{len(grids)} grids and their images in {folder}", [str(g) for g in grids]))
    return grids
