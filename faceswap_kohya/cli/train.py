"""`validate`, `render`, `schema`, `prepare`, `regularize`, `train` (and `--resume`) and `check-model` on the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from faceswap_kohya.cli.main import cli, friendly, load_preset, overrides_arg
from faceswap_kohya.cli.progress import Printer
from faceswap_kohya.config import presets as preset_files
from faceswap_kohya.config.schema import CHECK_MODEL, Preset
from faceswap_kohya.errors import UserError
from faceswap_kohya.jobs import train as runner
from faceswap_kohya.jobs.prepare import dry_run as show
from faceswap_kohya.jobs.prepare import prepare as run_prepare
from faceswap_kohya.jobs.regularize import regularize as run_regularize
from faceswap_kohya.runs.artifacts import resumable_state
from faceswap_kohya.runs.artifacts import samples as sample_images
from faceswap_kohya.trainer.check import check_rendered
from faceswap_kohya.trainer.install import Trainer, check_flux_model


# ---------------------------------------------------------------- checking and rendering
@cli.command()
@click.argument("preset")
@overrides_arg
@click.option("--kohya", "with_kohya", is_flag=True, help="Also check the rendered files with sd-scripts' own parser.")
@friendly
def validate(preset, overrides, with_kohya):
    """Check a preset (or a Kohya .json/.toml); print "valid" or every error. A FLUX preset's model files are
    checked as `train` checks them."""
    p, path = load_preset(preset, overrides)
    check_flux_model(p)
    if with_kohya:
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
    from faceswap_kohya.jobs.render import render, rendered_lines

    result = render(load_preset(preset, overrides)[0], out_dir, overrides, Printer(bar=False))
    for line in rendered_lines(result):
        click.echo(line)


@cli.command()
@friendly
def schema():
    """Print the JSON schema of a preset."""
    click.echo(json.dumps(Preset.model_json_schema(), indent=2))


# ---------------------------------------------------------------- training
def report_result(result) -> None:
    if result.interrupted:
        saved = ", ".join(p.name for p in result.loras) or "nothing"
        click.secho(f"interrupted: the trainer was stopped; kept {saved} in {result.run.model}", fg="yellow", err=True)
        if resumable_state(result.run.root).state is not None:
            click.echo(f"resume with: faceswap-kohya train --resume {result.run.root}", err=True)
        else:
            click.echo("no training state was saved yet (training.save_state, saved each epoch): train again to start over",
                       err=True)
        sys.exit(130)
    if result.diagnosis:
        d = result.diagnosis
        click.secho(f"training failed: {d.reason} (exit code {result.returncode})", fg="red", err=True)
        for line in d.lines:
            click.echo(f"  | {line[:200]}", err=True)
        click.echo(f"hint: {d.hint}\nfull log: {result.run.log}", err=True)
        if resumable_state(result.run.root).state is not None:
            click.echo(f"resume with: faceswap-kohya train --resume {result.run.root}", err=True)
        sys.exit(1)
    click.secho(f"done in {result.seconds / 60:.1f} min: {result.final}", fg="green")
    for lora in result.loras:
        if lora != result.final:
            click.echo(f"  checkpoint {lora.name} ({lora.stat().st_size / 1e6:.1f} MB)")
    samples = sample_images(result.run)
    if samples:
        click.echo(f"  {len(samples)} sample images in {result.run.samples}")
    click.echo(f"run folder: {result.run.root}\nnext: faceswap-kohya generate {result.run.root} \"{_instance_tokens(result.run)}, portrait photo\"")


def _instance_tokens(run) -> str:
    """"<trigger> <class>" of the run's own preset, for the hint printed after training."""
    try:
        return preset_files.read_run_preset(run.root).instance_tokens
    except UserError:
        return "<trigger> <class>"


@cli.command()
@click.argument("preset", required=False)
@overrides_arg
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="Continue RUN_DIR from its last saved state, in a new run folder (PRESET is then omitted).")
@click.option("--prepared", "prepared_dir", type=click.Path(path_type=Path),
              help="Train on the photos a `prepare` run folder laid out (captions as edited there).")
@click.option("-v", "--verbose", is_flag=True, help="Echo the trainer's log lines.")
@click.option("-y", "--yes", is_flag=True, help="Go ahead with long steps (e.g. generating many class images on a CPU).")
@friendly
def train(preset, overrides, resume_dir, prepared_dir, verbose, yes):
    """Train a LoRA with sd-scripts (a new run folder each time); PRESET may be a Kohya .json/.toml."""
    printer = Printer()
    on_line = (lambda s: click.echo(s, err=True)) if verbose else (lambda s: None)
    try:
        if resume_dir and prepared_dir:
            raise UserError("give --resume RUN_DIR or --prepared RUN_DIR, not both")
        if resume_dir:
            extra = ((preset,) if preset else ()) + tuple(overrides)
            if bad := [x for x in extra if "=" not in x]:
                raise UserError(f"--resume uses the run's own preset; give only key=value overrides (got {bad[0]!r})")
            result = runner.resume(resume_dir, extra, printer, on_line)
        else:
            if not preset:
                raise UserError("give a preset (a file or a name from `faceswap-kohya presets ls`), or --resume RUN_DIR")
            p, path = load_preset(preset, overrides, for_training=True)
            result = runner.train(p, path, printer, on_line, confirmed=yes, overrides=overrides, prepared=prepared_dir)
    finally:
        printer.close()
    report_result(result)


@cli.command()
@click.argument("preset")
@overrides_arg
@click.option("-y", "--yes", is_flag=True, help="Go ahead even when it will take long on this machine.")
@friendly
def regularize(preset, overrides, yes):
    """Generate the preset's class images with the base model into the cache (reused by `train`)."""
    p, _ = load_preset(preset, overrides)
    printer = Printer()
    try:
        run_regularize(p, printer, confirmed=yes)
    finally:
        printer.close()


@cli.command("check-model")
@click.option("--force", is_flag=True, help="Rebuild even if it exists.")
@click.option("--family", type=click.Choice(["sdxl", "flux"]), default="sdxl", show_default=True,
              help="sdxl: the check model of cpu-check; flux: that of flux-check (DiT, AE, CLIP-L, T5-XXL).")
@friendly
def check_model(force, family):
    """Build the pipeline-check base model (random weights: noise, for checking an install)."""
    from faceswap_kohya.models.checkmodel import build_check_model, build_flux_check_model

    trainer = Trainer.of(Preset(base_model=CHECK_MODEL))
    if family == "flux":
        for path in build_flux_check_model(trainer, force=force, echo=click.echo).values():
            click.echo(str(path))
        return
    click.echo(str(build_check_model(trainer, force=force, echo=click.echo)))


# ---------------------------------------------------------------- photos and faces
@cli.command()
@click.argument("preset")
@overrides_arg
@click.option("--dry-run", is_flag=True, help="Only show what would be trained on (Kohya folders: beside how "
              "sd-scripts would read them); no run folder is made.")
@friendly
def prepare(preset, overrides, dry_run):
    """Check, crop and caption the photos into a new run folder, to look at before training."""
    p, _ = load_preset(preset, overrides)
    if dry_run:
        for line in show(p, overrides):
            click.echo(line)
        return
    run_prepare(p, Printer(bar=False), overrides)
