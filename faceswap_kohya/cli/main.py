"""The command line: parse, call, print. Every user-facing problem is a UserError → one message, exit 2.

Anything else is a bug or an environment problem: one line naming what failed, exit 1; `--debug`
(or FACESWAP_KOHYA_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path

import click

from faceswap_kohya.config.torchenv import use_torch_env
from faceswap_kohya.errors import Terminated, UserError, is_no_space, no_space_message
from faceswap_kohya.formats.importer import load_any

overrides_arg = click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
DEBUG_ENV = "FACESWAP_KOHYA_DEBUG"
INTERRUPTED = 130  # the exit code after Ctrl-C, and after SIGTERM, which stops everything the same way
_terminated: list[int] = []  # set when SIGTERM arrived (a library may swallow the KeyboardInterrupt it raises)


def stop_on_sigterm() -> None:
    """SIGTERM behaves as Ctrl-C: a Terminated (a KeyboardInterrupt) is raised in the main thread."""
    def stop(signum, frame):
        _terminated.append(signum)
        raise Terminated()

    signal.signal(signal.SIGTERM, stop)


def _interrupted(e: BaseException) -> None:
    terminated = isinstance(e, Terminated) or bool(_terminated)
    click.secho("stopped (SIGTERM)" if terminated else "interrupted", fg="yellow", err=True)
    sys.exit(INTERRUPTED)


def debugging() -> bool:
    """--debug on the command line, or FACESWAP_KOHYA_DEBUG=1."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    if root is not None and isinstance(root.obj, dict) and root.obj.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")


def _what(fn) -> str:
    ctx = click.get_current_context(silent=True)
    return ctx.command_path if ctx else fn.__name__


def friendly(fn):
    """UserError → its message, exit 2; Ctrl-C → "interrupted", exit 130 (SIGTERM too); any other exception → one line
    naming the command and the error, exit 1 (the traceback with --debug); a full disk (ENOSPC) is the user's: the
    folder and what to do, exit 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            if _terminated:  # e.g. the web server caught it and closed: still a stop, not a success
                _interrupted(Terminated())
            return result
        except UserError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(2)
        except KeyboardInterrupt as e:
            if debugging():
                raise
            _interrupted(e)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:  # noqa: BLE001 - the one place that turns a crash into a message
            if debugging():
                raise
            if is_no_space(e):  # a full disk is the user's to fix: where, and what to do
                where = Path(e.filename).parent if getattr(e, "filename", None) else Path.cwd()
                click.secho(f"error: {no_space_message(where)}", fg="red", err=True)
                sys.exit(2)
            text = " ".join(str(e).split())[:300]
            click.secho(f"error: {_what(fn)} failed unexpectedly ({type(e).__name__}{': ' + text if text else ''}); "
                        f"run with --debug (or {DEBUG_ENV}=1) for the traceback", fg="red", err=True)
            sys.exit(1)

    return wrapper


def load_preset(preset: str, overrides=(), for_training: bool = False):
    """A preset name or YAML file, or a Kohya .json/.toml imported on the fly (its report on stderr): (Preset, Path)."""
    p, path, imported = load_any(preset, overrides, for_training=for_training)
    if imported:
        click.echo(imported.text(), err=True)
    return p, path


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="faceswap_kohya")
@click.option("--debug", is_flag=True, help=f"Show the traceback of an unexpected error (or set {DEBUG_ENV}=1).")
@click.pass_context
def cli(ctx, debug):
    """Photos of one person → an SDXL (or FLUX.1) identity LoRA with Kohya's sd-scripts, then generate and score."""
    ctx.ensure_object(dict)["debug"] = debug


def main():
    use_torch_env()  # before any command imports torch (nothing above does)
    stop_on_sigterm()
    cli(prog_name="faceswap-kohya")


if __name__ == "__main__":
    main()
