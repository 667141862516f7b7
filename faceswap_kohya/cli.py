"""The command line: parse, call, print. Every user-facing problem is a UserError → one message, exit 2."""

from __future__ import annotations

import functools
import json
import shutil
import sys
from pathlib import Path

import click

from . import presets as preset_files
from . import render
from .errors import UserError

overrides_arg = click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")


def friendly(fn):
    """Turn UserError into a clean message and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="faceswap_kohya")
def cli():
    """Photos of one person → an SDXL identity LoRA with Kohya's sd-scripts, then generate and score."""


# ---------------------------------------------------------------- presets
@cli.group()
def presets():
    """List, copy, show, import and export presets."""


@presets.command("ls")
def presets_ls():
    """List the shipped presets."""
    infos = preset_files.discover()
    width = max((len(i.name) for i in infos), default=4)
    click.echo(f"{'NAME':<{width}}  {'VRAM':<8}  DESCRIPTION")
    for i in infos:
        click.echo(f"{i.name:<{width}}  {i.vram:<8}  {i.description}")


@presets.command("cp")
@click.argument("name")
@click.argument("dest", type=click.Path(path_type=Path))
@friendly
def presets_cp(name, dest):
    """Copy a shipped preset to DEST to edit it."""
    src = preset_files.resolve(name)
    target = dest / src.name if dest.is_dir() else dest
    if target.exists():
        raise UserError(f"{target} already exists; choose another name (nothing was overwritten)")
    shutil.copyfile(src, target)
    click.echo(f"copied {src.name} → {target}")


@presets.command("show")
@click.argument("name")
@friendly
def presets_show(name):
    """Print a preset file."""
    click.echo(preset_files.resolve(name).read_text(encoding="utf-8"), nl=False)


@presets.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the preset YAML here (default: print it).")
@click.option("--dataset", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The dataset TOML of an sd-scripts config.")
@friendly
def presets_import(file, out, dataset):
    """Import a kohya_ss GUI JSON or sd-scripts/kohya-colab TOML; print what was kept."""
    from .kohya_import import import_preset, to_yaml

    p, report = import_preset(file, dataset)
    click.echo(report.text(), err=bool(not out))
    text = to_yaml(p, report)
    if out:
        if out.exists():
            raise UserError(f"{out} already exists; choose another name (nothing was overwritten)")
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)


@presets.command("export")
@click.argument("preset")
@overrides_arg
@click.option("--format", "fmt", type=click.Choice(["sd-scripts", "kohya-gui"]), required=True, help="Target format.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), help="Output file (default: <output.name>.toml/.json).")
@friendly
def presets_export(preset, overrides, fmt, out):
    """Write a preset as an sd-scripts config TOML (+ dataset TOML) or a kohya_ss GUI JSON."""
    from .kohya_import import write_export

    p, _ = preset_files.load(preset, overrides)
    for line in write_export(p, fmt, out):
        click.echo(line)


# ---------------------------------------------------------------- checking and rendering
@cli.command()
@click.argument("preset")
@overrides_arg
@click.option("--kohya", "with_kohya", is_flag=True, help="Also check the rendered files with sd-scripts' own parser.")
@friendly
def validate(preset, overrides, with_kohya):
    """Check a preset; print "valid" or every error."""
    p, path = preset_files.load(preset, overrides)
    if with_kohya:
        from .kohya_check import check_rendered

        result = check_rendered(p)
        if not result["ok"]:
            raise UserError(f"{path}: sd-scripts rejects the rendered files:\n  " + "\n  ".join(result["errors"]))
    click.echo(f"{path}: valid")


@cli.command("render")
@click.argument("preset")
@overrides_arg
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder for the TOML files.")
@friendly
def render_cmd(preset, overrides, out_dir):
    """Write dataset.toml and config.toml and print the exact trainer command (dry run)."""
    p, _ = preset_files.load(preset, overrides)
    run = render.RunLayout(out_dir.absolute())
    from .runner import tokenizer_cache

    render.write_all(p, run, render.base_model_arg(p), tokenizer_cache(p))
    trainer = render.Trainer.of(p)
    click.echo(f"wrote {run.dataset_toml}\nwrote {run.config_toml}")
    if p.sampling.prompts:
        click.echo(f"wrote {run.sample_prompts}")
    click.echo("the photos go to " + str(render.instance_dir(p, run)) + " (faceswap-kohya prepare lays them out)")
    click.echo("\n" + render.shell_command(render.trainer_argv(p, trainer, run), trainer.sd_scripts))


@cli.command()
def schema():
    """Print the JSON schema of a preset."""
    from .schema import Preset

    click.echo(json.dumps(Preset.model_json_schema(), indent=2))


# ---------------------------------------------------------------- training
def _progress_printer():
    """A live bar for the trainer's steps; checkpoints and epochs printed above it."""
    from tqdm import tqdm

    from .progress import Epoch, Finished, Saved, Step

    state = {"bar": None, "epoch": "", "done": False}

    def on_event(event):
        bar = state["bar"]
        if isinstance(event, Step) and not state["done"]:
            if bar is None or bar.total != event.total:
                if bar:
                    bar.close()
                bar = state["bar"] = tqdm(total=event.total, unit="step", dynamic_ncols=True, file=sys.stderr)
            bar.n = event.step
            post = {}
            if state["epoch"]:
                post["epoch"] = state["epoch"]
            if event.loss is not None:
                post["loss"] = f"{event.loss:.4f}"
            if event.sec_per_it is not None:
                post["s/step"] = f"{event.sec_per_it:.1f}"
            post["eta"] = event.eta
            bar.set_postfix(post, refresh=False)
            bar.refresh()
        elif isinstance(event, Epoch):
            state["epoch"] = f"{event.epoch}/{event.total}"
        elif isinstance(event, Saved):
            (bar.write if bar else click.echo)(f"checkpoint: {event.path}")
        elif isinstance(event, Finished):
            state["done"] = True
            if bar:
                bar.close()
                state["bar"] = None

    def close():
        if state["bar"]:
            state["bar"].close()

    return on_event, close


def _report(result) -> None:
    if result.interrupted:
        saved = ", ".join(p.name for p in result.loras) or "nothing"
        click.secho(f"interrupted: the trainer was stopped; kept {saved} in {result.run.model}", fg="yellow", err=True)
        sys.exit(130)
    if result.diagnosis:
        d = result.diagnosis
        click.secho(f"training failed: {d.reason} (exit code {result.returncode})", fg="red", err=True)
        for line in d.lines:
            click.echo(f"  | {line[:200]}", err=True)
        click.echo(f"hint: {d.hint}\nfull log: {result.run.log}", err=True)
        sys.exit(1)
    click.secho(f"done in {result.seconds / 60:.1f} min: {result.final}", fg="green")
    for lora in result.loras:
        if lora != result.final:
            click.echo(f"  checkpoint {lora.name} ({lora.stat().st_size / 1e6:.1f} MB)")
    samples = sorted(result.run.samples.glob("*.png")) if result.run.samples.is_dir() else []
    if samples:
        click.echo(f"  {len(samples)} sample images in {result.run.samples}")
    click.echo(f"run folder: {result.run.root}\nnext: faceswap-kohya generate {result.run.root} \"<trigger> <class>, portrait photo\"")


@cli.command()
@click.argument("preset", required=False)
@overrides_arg
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="Continue RUN_DIR from its last saved state, in a new run folder (PRESET is then omitted).")
@click.option("-v", "--verbose", is_flag=True, help="Echo the trainer's log lines.")
@click.option("-y", "--yes", is_flag=True, help="Go ahead with long steps (e.g. generating many class images on a CPU).")
@friendly
def train(preset, overrides, resume_dir, verbose, yes):
    """Train a LoRA with sd-scripts (a new run folder each time); PRESET may be a Kohya .json/.toml."""
    from . import runner

    on_event, close = _progress_printer()
    on_line = (lambda s: click.echo(s, err=True)) if verbose else (lambda s: None)
    try:
        if resume_dir:
            extra = ((preset,) if preset else ()) + tuple(overrides)
            if bad := [x for x in extra if "=" not in x]:
                raise UserError(f"--resume uses the run's own preset; give only key=value overrides (got {bad[0]!r})")
            result = runner.resume(resume_dir, extra, on_event, on_line, echo=click.echo)
        else:
            if not preset:
                raise UserError("give a preset (a file or a name from `faceswap-kohya presets ls`), or --resume RUN_DIR")
            from .kohya_import import load_any

            p, path, imported = load_any(preset, overrides)
            if imported:
                click.echo(imported.text(), err=True)
            result = runner.train(p, path, on_event, on_line, echo=click.echo, confirmed=yes)
    finally:
        close()
    _report(result)
    if result.ok:  # scores every checkpoint when the run's preset has evaluate.enabled: true
        from .evaluate import evaluate_after_training
        evaluate_after_training(result.run.root, echo=click.echo)


@cli.command()
@click.argument("preset")
@overrides_arg
@click.option("-y", "--yes", is_flag=True, help="Go ahead even when it will take long on this machine.")
@friendly
def regularize(preset, overrides, yes):
    """Generate the preset's class images with the base model into the cache (reused by `train`)."""
    from tqdm import tqdm

    from .regularization import cache_dir, check_cost, ensure_cached

    p, _ = preset_files.load(preset, overrides)
    if not p.regularization.generate:
        raise UserError("regularization.generate is 0: set how many class images to make, e.g. regularization.generate=100")
    check_cost(p, yes, click.echo)
    with tqdm(total=None, unit="image", file=sys.stderr, disable=None) as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        files, made = ensure_cached(p, echo=click.echo, progress=progress)
    click.echo(f"{len(files)} class images ready ({made} generated, {len(files) - made} from the cache) in {cache_dir()}")


@cli.command("check-model")
@click.option("--force", is_flag=True, help="Rebuild even if it exists.")
@friendly
def check_model(force):
    """Build the pipeline-check base model (random SDXL weights: noise, for checking an install)."""
    from .checkmodel import build_check_model
    from .schema import CHECK_MODEL, Preset

    trainer = render.Trainer.of(Preset(base_model=CHECK_MODEL))
    click.echo(str(build_check_model(trainer, force=force, echo=click.echo)))


# ---------------------------------------------------------------- photos and faces
@cli.command()
@click.argument("preset")
@overrides_arg
@friendly
def prepare(preset, overrides):
    """Check, crop and caption the photos into a new run folder, to look at before training."""
    from .dataset import layout
    from .runner import new_run

    p, _ = preset_files.load(preset, overrides)
    run = new_run(p)
    try:
        summary = layout(p, run, echo=click.echo)
    except UserError:
        shutil.rmtree(run.root, ignore_errors=True)  # only what this command just made
        raise
    for line in summary.brief(run.root):
        click.echo(line)


@cli.command()
@click.option("--refs", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of reference photos of the person.")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--embedder", type=click.Choice(["dlib", "insightface"]), default="dlib", show_default=True,
              help="Face embedder (insightface needs its model files in --insightface-root).")
@click.option("--insightface-root", type=click.Path(path_type=Path), help="Folder holding models/<pack>/*.onnx.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def identity(refs, images, embedder, insightface_root, as_json):
    """Score IMAGE... (files or folders) against reference photos: identity score 0-1, higher = more alike."""
    from .faces import get_embedder, score_files

    result = score_files(refs, images, get_embedder(embedder, str(insightface_root) if insightface_root else None))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    refs_ok = [r for r in result["references"] if "face_box" in r]
    skipped = [f"{Path(r['file']).name} ({r['error']})" for r in result["references"] if "error" in r]
    click.echo(f"{result['embedder']}: {len(refs_ok)} reference faces from {refs}"
               + (f"; not used: {', '.join(skipped)}" if skipped else ""))
    click.echo(f"{'SCORE':>5}  {'FACE (l,t,r,b)':<24}  {'NEAREST':<20}  IMAGE")
    for r in result["images"]:
        if "score" in r:
            click.echo(f"{r['score']:>5.2f}  {str(tuple(r['face_box'])):<24}  {r['nearest']:<20}  {r['file']}")
        else:
            click.echo(f"{'-':>5}  {r['error']:<24}  {'':<20}  {r['file']}")
    click.echo("(a similarity, not a yes/no: with dlib, photos of one person usually score above 0.4)")


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
        click.option("--cfg", type=float, default=6.0, show_default=True, help="Guidance scale."),
        click.option("--size", help="Square size, or WIDTHxHEIGHT (multiples of 8); default: the run's training "
                                    "resolution, else 1024."),
        click.option("--sampler", default="euler", show_default=True, help="euler, euler_a, dpmpp_2m, dpmpp_2m_karras, ddim."),
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


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("*", "x").split("x")
    try:
        w, h = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        raise UserError(f"--size {text!r}: give one number (1024) or WIDTHxHEIGHT (832x1216)") from None
    return w, h


def _prompt_list(prompts, prompts_file) -> list[str]:
    from .generate import read_prompts_file

    found = list(prompts) + (read_prompts_file(prompts_file) if prompts_file else [])
    if not found:
        raise UserError('no prompt: give one or more prompts, e.g. "myface woman, portrait photo", or --prompts-file')
    return found


def _settings(negative, steps, cfg, size, sampler, source):
    from .generate import SAMPLERS, Settings, check_size, run_preset

    if size is None:
        size = str(run_preset(source.run_dir).dataset.resolution) if source.run_dir else "1024"
    w, h = _size(size)
    check_size(w, h)
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
    if steps < 1:
        raise UserError(f"--steps {steps}: must be at least 1")
    return Settings(steps=steps, cfg=cfg, width=w, height=h, negative_prompt=negative, sampler=sampler)


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
    from . import generate as gen

    if n_images < 1:
        raise UserError(f"--images {n_images}: must be at least 1")
    if target and base and (no_lora or "<lora:" in target) and not target.endswith(".safetensors") \
            and not Path(target).expanduser().exists():  # `generate --base M --no-lora "prompt"`: no TARGET
        target, prompts = None, (target, *prompts)
    source = gen.resolve_source(target, base, epoch, lora_dirs, no_lora=no_lora)
    settings = _settings(negative, steps, cfg, size, sampler, source)
    first = _seed(seed)
    paths = gen.run_generate(source, _prompt_list(prompts, prompts_file), list(range(first, first + n_images)), settings,
                             out_dir or gen.default_out_dir(source, "generate"), weight=weight, no_lora=no_lora,
                             device=device, dtype=dtype, offload=offload, show_progress=not quiet, echo=lambda m: click.echo(m, err=True))
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
    from . import generate as gen

    try:
        ws = [float(w) for w in weights.split(",") if w.strip()]
    except ValueError:
        raise UserError(f"--weights {weights!r}: give numbers separated by commas, e.g. 0,0.7,1") from None
    if n_images < 1:
        raise UserError(f"--images {n_images}: must be at least 1")
    source = gen.resolve_source(target, base, epoch, lora_dirs)
    settings = _settings(negative, steps, cfg, size, sampler, source)
    first = _seed(seed)
    grids = gen.run_compare(source, _prompt_list(prompts, prompts_file), list(range(first, first + n_images)), settings,
                            out_dir or gen.default_out_dir(source, "compare"), weights=ws, device=device, dtype=dtype,
                            offload=offload, show_progress=not quiet, echo=lambda m: click.echo(m, err=True))
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
@click.option("--cfg", type=float, default=6.0, show_default=True, help="Guidance scale.")
@click.option("--strength", type=float, default=0.75, show_default=True, help="How much of the face is redrawn (0-1).")
@click.option("-w", "--weight", type=float, default=1.0, show_default=True, help="LoRA weight.")
@click.option("--face", "face_index", type=int, default=1, show_default=True, help="Which face when there are several: 1 = the largest.")
@click.option("--padding", type=float, default=0.6, show_default=True,
              help="Context around the face box the model redraws, as a fraction of the face's size on each side.")
@click.option("--size", type=int, help="Working size, a multiple of 8 (default: the run's training resolution, else 1024).")
@click.option("--sampler", default="euler", show_default=True, help="euler, euler_a, dpmpp_2m, dpmpp_2m_karras, ddim.")
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
    from . import generate as gen
    from . import swap as sw

    source = gen.resolve_source(target, base, epoch)
    settings = gen.Settings(steps=steps, cfg=cfg, negative_prompt=negative, sampler=sampler)
    result = sw.run_swap(source, photo, settings, out_dir or sw.default_out_dir(source), prompt=prompt, seed=_seed(seed),
                         strength=strength, weight=weight, face=face_index, padding=padding, size=size, refs=refs,
                         device=device, dtype=dtype, offload=offload, show_progress=not quiet,
                         echo=lambda m: click.echo(m, err=True))
    click.echo(str(result.path))
    for line in result.lines():
        click.echo(line)


# ---------------------------------------------------------------- scoring a run
@cli.command()
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--lora", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Evaluate one LoRA file (instead of every checkpoint of RUN_DIR).")
@click.option("--refs", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Reference photos of the person (default: the run's training photos).")
@click.option("--base", help="Base model (default: the run's preset).")
@click.option("--trigger", help="Trigger word, for a LoRA file outside a run folder.")
@click.option("--class", "class_word", help="Class word (woman, man, ...), for a LoRA file outside a run folder.")
@click.option("--size", type=int, help="Image size (default: the preset's training resolution).")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), help="Parent of the new report folder (default: RUN/eval).")
@click.option("--device", help="cuda, cuda:1, mps or cpu (default: the best available).")
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), help="Default: bf16/fp16 on GPUs, fp32 on CPU.")
@click.option("--offload", type=click.Choice(["model", "sequential"]), help="CPU offload for small GPUs.")
@friendly
def evaluate(run_dir, lora, refs, base, trigger, class_word, size, out_dir, device, dtype, offload):
    """Score identity per checkpoint vs the base model; pick the best checkpoint and the top-3 images."""
    from . import evaluate as ev

    if bool(run_dir) == bool(lora):
        raise UserError("give a run folder (evaluate RUN_DIR) or one LoRA file (evaluate --lora FILE --refs PHOTOS)")
    if run_dir:
        plan = ev.plan_run(run_dir, refs, base, size, out_dir)
    else:
        plan = ev.plan_lora(lora, refs, base, trigger, class_word, size, out_dir)
    result = ev.evaluate(plan, echo=lambda m: click.echo(m, err=True), device=device, dtype=dtype, offload=offload)
    for line in ev.summary_lines(result):
        click.echo(line)


def main():
    cli(prog_name="faceswap-kohya")


if __name__ == "__main__":
    main()
