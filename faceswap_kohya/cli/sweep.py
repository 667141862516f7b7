"""The command line: `sweep` and `batch` (thin: parse, call the job, show one live line per trial)."""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path

import click

from faceswap_kohya import events as ev
from faceswap_kohya.cli.main import cli, friendly
from faceswap_kohya.jobs.batch import batch as run_batch
from faceswap_kohya.jobs.sweep import sweep as run_sweep

STATE_COLOR = {"finished": "green", "skipped": "green", "failed": "red", "interrupted": "yellow"}


class TrialBoard:
    """One line per trial, redrawn in place on a terminal; elsewhere a line each time a trial's state changes."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.lines: dict[str, str] = {}
        self.states: dict[str, str] = {}
        self.drawn = 0

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.TrialProgress):
            self._trial(event)
        elif isinstance(event, ev.Message):
            self._say(event.text)
        elif isinstance(event, ev.Warning):
            self._say(click.style(f"warning: {event.text}", fg="yellow"))

    def _trial(self, e: ev.TrialProgress) -> None:
        label = e.label if len(e.label) <= 38 else e.label[:37] + "…"
        text = f"{e.trial[:22]:<22} {label:<38} {e.state:<11} {e.detail}"
        if self.tty:  # one screen line each, or the redraw goes wrong
            text = text[: shutil.get_terminal_size((120, 20)).columns - 1]
            self.lines[e.trial] = click.style(text, fg=STATE_COLOR[e.state]) if e.state in STATE_COLOR else text
            self._redraw()
        elif self.states.get(e.trial) != e.state:
            self.states[e.trial] = e.state
            click.echo(text, file=self.stream)

    def _say(self, text: str) -> None:
        if self.tty and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0
        click.echo(text, file=self.stream)
        if self.tty:
            self._redraw()

    def _redraw(self) -> None:
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F")
        for line in self.lines.values():
            self.stream.write("\x1b[2K" + line + "\n")
        self.stream.flush()
        self.drawn = len(self.lines)


def _report(result) -> None:
    doc = result.leaderboard
    basis = doc["basis"]
    click.echo(f"\n{'#':>2}  {'trial':<22} {'settings':<40} {'state':<11} {doc['basis_name']:>17}  best checkpoint")
    for r in doc["rows"]:
        score = r.get(basis)
        shown = f"{score:.3f}" if score is not None else ("no face" if r.get("scores") else "–")
        label = r["label"] if len(r["label"]) <= 40 else r["label"][:39] + "…"
        click.echo(f"{r['rank'] or '':>2}  {r['id'][:22]:<22} {label:<40} {r.get('state', ''):<11} {shown:>17}  "
                   f"{r.get('best_checkpoint') or '–'}")
    for r in result.failed:
        click.secho(f"failed: {r['id']} ({r['label']}): {(r.get('error') or '').strip()}", fg="red", err=True)
    if result.winner:
        w = result.winner
        click.secho(f"winner: {w['label']} ({doc['basis_name']} {w['score']:.3f})\n  LoRA: {w['lora']}", fg="green")
    click.echo(f"leaderboard: {result.html}")
    if result.interrupted:
        click.secho("interrupted: every trial was stopped; run the same command again to go on", fg="yellow", err=True)
        sys.exit(130)
    if result.failed:
        sys.exit(1)


@contextlib.contextmanager
def _stopped_cleanly():
    """Ctrl-C before the trials run (while Ray starts): no traceback, exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        click.secho("interrupted before any trial started", fg="yellow", err=True)
        sys.exit(130)


ray_option = click.option("--ray-address", envvar="RAY_ADDRESS",
                          help="Ray cluster to run on (host:port of its head; default: RAY_ADDRESS, else a local Ray instance).")
name_option = click.option("--name", help="Folder name under <output.dir>/sweeps (batches) (default: the preset's / folder's name).")
out_option = click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                          help="The sweep folder itself (default: <output.dir>/sweeps/<name>).")
yes_option = click.option("-y", "--yes", is_flag=True, help="Go ahead with long steps (e.g. class images generated on a CPU).")


@cli.command()
@click.argument("preset")
@click.argument("settings", nargs=-1, metavar="[KEY=V1,V2 | KEY=VALUE]...")
@click.option("--variants", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML list of variants, e.g. `- {network.dim: 16}`; combined with every KEY=V1,V2 value.")
@name_option
@out_option
@ray_option
@yes_option
@friendly
def sweep(preset, settings, variants, name, out_dir, ray_address, yes):
    """Train every combination of settings as Ray tasks, evaluate each, rank them on a leaderboard."""
    board = TrialBoard()
    with _stopped_cleanly():
        result = run_sweep(preset, settings, variants, name, out_dir, ray_address, yes, on_event=board)
    _report(result)


@cli.command()
@click.argument("preset")
@click.argument("subjects_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--no-evaluate", is_flag=True, help="Train only (no identity evaluation per subject).")
@name_option
@out_option
@ray_option
@yes_option
@friendly
def batch(preset, subjects_dir, overrides, no_evaluate, name, out_dir, ray_address, yes):
    """Train one LoRA per subfolder of SUBJECTS_DIR (trigger and class from its subject.yaml, else the preset)."""
    board = TrialBoard()
    with _stopped_cleanly():
        result = run_batch(preset, subjects_dir, overrides, name, out_dir, ray_address, not no_evaluate, yes, on_event=board)
    _report(result)
