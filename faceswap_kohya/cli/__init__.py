"""The command line: thin commands over the jobs, one file per command group."""

from faceswap_kohya.cli import images, keys, presets, scores, serve, sweep, train, ui  # noqa: F401  (register the commands)
from faceswap_kohya.cli.main import cli, main

__all__ = ["cli", "main"]
