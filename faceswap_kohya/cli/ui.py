"""`faceswap-kohya ui`: the local web app."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from faceswap_kohya.cli.main import cli, friendly
from faceswap_kohya.errors import UserError
from faceswap_kohya.web.app import parse_auth


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than loopback needs --auth.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--auth", envvar="FACESWAP_KOHYA_UI_AUTH", metavar="USER:PASSWORD",
              help="Require this login (env FACESWAP_KOHYA_UI_AUTH keeps it out of the process list).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("output"),
              show_default=True, help="Workspace: run folders and uploads; the app serves files from here only.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option("--keep-model/--no-keep-model", default=True, show_default=True,
              help="Keep the base model loaded between Generate/Compare/Evaluate/Swap (let go when a training starts).")
@friendly
def ui(host, port, auth, output, open_browser, keep_model):
    """Start the web app (photos → LoRA → pictures, identity report, swaps) on this machine."""
    parse_auth(host, auth)  # refused before anything starts
    if importlib.util.find_spec("gradio") is None:
        raise UserError("the web app needs gradio: pip install -e '.[ui]' (scripts/setup.sh installs it)")
    from faceswap_kohya.web.app import serve

    serve(output, host=host, port=port, auth=auth, open_browser=open_browser, keep_model=keep_model)
