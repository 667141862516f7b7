"""`presets ls/cp/show/import/export` on the command line: the shipped presets, and Kohya files imported and exported."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from faceswap_kohya.cli.main import cli, friendly, overrides_arg
from faceswap_kohya.cli.progress import Printer
from faceswap_kohya.config import presets as preset_files
from faceswap_kohya.errors import UserError
from faceswap_kohya.jobs.kohya_presets import export_kohya, import_kohya


# ---------------------------------------------------------------- presets
@cli.group()
def presets():
    """List, copy, show, import and export presets."""


@presets.command("ls")
@friendly
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
    if not target.parent.is_dir():
        raise UserError(f"{target}: the folder {target.parent} does not exist")
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
    text, report = import_kohya(file, dataset, out)
    click.echo(report.text(), err=bool(not out))
    if out:
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
    """Write a preset (or a Kohya .json/.toml) as an sd-scripts config TOML (+ dataset TOML) or a kohya_ss GUI JSON;
    never over an existing file."""
    export_kohya(preset, overrides, fmt, out, on_event=Printer())
