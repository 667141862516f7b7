"""`generate`, `compare` and `swap` on the command line: options parsed and checked, the image jobs called, their events shown."""

from __future__ import annotations

from pathlib import Path

import click

from faceswap_kohya.cli.main import cli, friendly
from faceswap_kohya.cli.progress import Printer
from faceswap_kohya.config.samplers import SAMPLERS, check_sampler
from faceswap_kohya.diffusion.prompts import read_prompts_file
from faceswap_kohya.diffusion.source import Settings, default_cfg, default_out_dir, image_settings, resolve_source
from faceswap_kohya.errors import UserError
from faceswap_kohya.jobs.compare import run_compare
from faceswap_kohya.jobs.generate import run_generate

SAMPLER_HELP = ", ".join(SAMPLERS) + " (sd-scripts' names such as dpmsolver++ work too)."
CFG_HELP = ("Guidance scale (default: the run's evaluate.cfg, what its evaluation scored with; with no run 6 for SDXL, "
            "3.5 for FLUX.1, whose cfg is its embedded guidance).")


# ---------------------------------------------------------------- generating images
def _image_options(fn):
    """Options shared by `generate` and `compare`."""
    opts = [
        click.argument("target", required=False),
        click.argument("prompts", nargs=-1),
        click.option("-f", "--prompts-file", type=click.Path(path_type=Path), help="Prompts, one a line."),
        click.option("--negative", default="", help="Negative prompt."),
        click.option("--seed", type=int, help="First seed (default: random, written into every image)."),
        click.option("--steps", type=int, default=30, show_default=True),
        click.option("--cfg", type=float, help=CFG_HELP),
        click.option("--size", help="Square size, or WIDTHxHEIGHT (multiples of 8); default: the run's training "
                                    "resolution, else 1024."),
        click.option("--sampler", default="euler", show_default=True, help=SAMPLER_HELP),
        click.option("--base", help="Base model (hub id, diffusers folder, .safetensors); default: the run's preset."),
        click.option("--epoch", type=int, help="Use the run's checkpoint of this epoch instead of the final LoRA."),
        click.option("--lora-dir", "lora_dirs", multiple=True, help="Folder for <lora:NAME:W> tags (repeatable)."),
        click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path),
                     help="Parent folder for the new output folder (default: RUN/images, RUN/compare or ./generated)."),
        click.option("--device", help="cuda, cuda:1, mps or cpu (default: the best available)."),
        click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), help="Default: bf16/fp16 on GPUs, fp32 on CPU."),
        click.option("--offload", type=click.Choice(["model", "sequential"]), help="CPU offload for small GPUs."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _prompt_list(prompts, prompts_file) -> list[str]:
    found = list(prompts) + (read_prompts_file(prompts_file) if prompts_file else [])
    if not found:
        raise UserError('no prompt: give one or more prompts, e.g. "myface woman, portrait photo", or --prompts-file')
    return found


def _seed(seed):
    import random

    return seed if seed is not None else random.randrange(2**31)


@cli.command()
@_image_options
@click.option("-n", "--images", "n_images", type=int, default=1, show_default=True, help="Images per prompt (seeds SEED, SEED+1, ...).")
@click.option("-w", "--weight", type=float, default=1.0, show_default=True, help="LoRA weight.")
@click.option("--no-lora", is_flag=True, help="The base model alone (same seeds, for comparison).")
@friendly
def generate(target, prompts, prompts_file, negative, seed, steps, cfg, size, sampler, base, epoch, lora_dirs, out_dir,
             device, dtype, offload, quiet, n_images, weight, no_lora):
    """Generate images with a trained LoRA: TARGET is a run folder or a .safetensors LoRA."""
    if n_images < 1:
        raise UserError(f"--images {n_images}: must be at least 1")
    if target and base and (no_lora or "<lora:" in target) and not target.endswith(".safetensors") \
            and not Path(target).expanduser().exists():  # `generate --base M --no-lora "prompt"`: no TARGET
        target, prompts = None, (target, *prompts)
    source = resolve_source(target, base, epoch, lora_dirs, no_lora=no_lora)
    settings = image_settings(negative, steps, cfg, size, sampler, source)
    first = _seed(seed)
    paths = run_generate(source, _prompt_list(prompts, prompts_file), list(range(first, first + n_images)), settings,
                             out_dir or default_out_dir(source, "generate"), weight=weight, no_lora=no_lora,
                             device=device, dtype=dtype, offload=offload, on_event=Printer(err=True, bar=not quiet))
    for p in paths:
        click.echo(str(p))
    click.echo(f"{len(paths)} image{'s' if len(paths) != 1 else ''} in {paths[0].parent}" if paths else "no images")


@cli.command()
@_image_options
@click.option("-n", "--images", "n_images", type=int, default=2, show_default=True, help="Seeds per prompt (grid rows).")
@click.option("--weights", default="0,0.7,1.0", show_default=True, help="LoRA weights (grid columns); 0 = base model.")
@friendly
def compare(target, prompts, prompts_file, negative, seed, steps, cfg, size, sampler, base, epoch, lora_dirs, out_dir,
            device, dtype, offload, quiet, n_images, weights):
    """Before/after grids: the base model and the LoRA at several weights, same prompts and seeds."""
    try:
        ws = [float(w) for w in weights.split(",") if w.strip()]
    except ValueError:
        raise UserError(f"--weights {weights!r}: give numbers separated by commas, e.g. 0,0.7,1") from None
    if n_images < 1:
        raise UserError(f"--images {n_images}: must be at least 1")
    source = resolve_source(target, base, epoch, lora_dirs)
    settings = image_settings(negative, steps, cfg, size, sampler, source)
    first = _seed(seed)
    grids = run_compare(source, _prompt_list(prompts, prompts_file), list(range(first, first + n_images)), settings,
                            out_dir or default_out_dir(source, "compare"), weights=ws, device=device, dtype=dtype,
                            offload=offload, on_event=Printer(err=True, bar=not quiet))
    for g in grids:
        click.echo(str(g))
    if grids:
        click.echo(f"{len(grids)} grid{'s' if len(grids) != 1 else ''} and their images in {grids[0].parent}")


@cli.command("swap")
@click.argument("target")
@click.option("--photo", type=click.Path(path_type=Path), required=True, help="The photo to put the face into (only read).")
@click.option("--prompt", help='Prompt for the face (default: "{trigger} {class}, photo" from the run\'s preset).')
@click.option("--negative", default="", help="Negative prompt.")
@click.option("--seed", type=int, help="Seed (default: random, written into the image).")
@click.option("--steps", type=int, default=30, show_default=True)
@click.option("--cfg", type=float, help=CFG_HELP)
@click.option("--strength", type=float, default=0.75, show_default=True, help="How much of the face is redrawn (0-1).")
@click.option("-w", "--weight", type=float, default=1.0, show_default=True, help="LoRA weight.")
@click.option("--face", "face_index", type=int, default=1, show_default=True, help="Which face when there are several: 1 = the largest.")
@click.option("--padding", type=float, default=0.6, show_default=True,
              help="Context around the face box the model redraws, as a fraction of the face's size on each side.")
@click.option("--size", type=int, help="Working size, a multiple of 8 (default: the run's training resolution, else 1024).")
@click.option("--sampler", default="euler", show_default=True, help=SAMPLER_HELP)
@click.option("--refs", type=click.Path(path_type=Path), help="Reference photos for the identity score (default: the run's img/).")
@click.option("--base", help="Base model (hub id, diffusers folder, .safetensors); default: the run's preset.")
@click.option("--epoch", type=int, help="Use the run's checkpoint of this epoch instead of the final LoRA.")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), help="Output folder (default: RUN/swaps or ./swaps).")
@click.option("--device", help="cuda, cuda:1, mps or cpu (default: the best available).")
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), help="Default: bf16/fp16 on GPUs, fp32 on CPU.")
@click.option("--offload", type=click.Choice(["model", "sequential"]), help="CPU offload for small GPUs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly
def swap_cmd(target, photo, prompt, negative, seed, steps, cfg, strength, weight, face_index, padding, size, sampler, refs,
             base, epoch, out_dir, device, dtype, offload, quiet):
    """Put the trained face into PHOTO: TARGET is a run folder or a .safetensors LoRA; writes a new PNG."""
    from faceswap_kohya.jobs import swap as sw

    source = resolve_source(target, base, epoch)
    settings = Settings(steps=steps, cfg=default_cfg(source, cfg), negative_prompt=negative,
                        sampler=check_sampler(sampler, "--sampler"))
    result = sw.run_swap(source, photo, settings, out_dir or sw.default_out_dir(source), prompt=prompt, seed=_seed(seed),
                         strength=strength, weight=weight, face=face_index, padding=padding, size=size, refs=refs,
                         device=device, dtype=dtype, offload=offload, on_event=Printer(err=True, bar=not quiet))
    click.echo(str(result.path))
    for line in result.lines():
        click.echo(line)
