"""The command line: parse, call, print. Every user-facing problem is a UserError → one message, exit 2."""

from __future__ import annotations

import functools
import sys

import click

from faceswap_kohya.errors import UserError

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


def main():
    cli(prog_name="faceswap-kohya")


if __name__ == "__main__":
    main()
