"""`faceswap-kohya serve`: the training service for apps (the options shared with `keys` are defined here)."""

from __future__ import annotations

from pathlib import Path

import click

from faceswap_kohya.cli.main import INTERRUPTED, cli, friendly

output_option = click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("output"),
                             show_default=True, help="Jobs, their run folders and (without --database) the SQLite store.")
database_option = click.option("--database", metavar="URL", envvar="FACESWAP_KOHYA_DATABASE",
                               help="postgresql://USER@HOST:PORT/NAME instead of SQLite under --output.")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than loopback needs an API key (keys create).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@output_option
@database_option
@click.option("--ray-address", help="Run the jobs on this Ray cluster (default: a local Ray instance).")
@click.option("--max-upload-mb", type=click.IntRange(1, 100_000), default=200, show_default=True,
              help="Largest request (and unpacked zip) accepted.")
@click.option("--max-queued-per-key", type=click.IntRange(1, 100_000), default=10, show_default=True,
              help="Queued jobs one key may have; past it 429 with Retry-After.")
@click.option("--hold", is_flag=True, help="Accept and queue jobs but start none (maintenance; serve again without it).")
@friendly
def serve(host, port, output, database, ray_address, max_upload_mb, max_queued_per_key, hold):
    """The training service for apps: a REST API (OpenAPI at /openapi.json) with a durable queue, webhooks and keys."""
    from faceswap_kohya.service.server import serve as run

    if run(output, host, port, database, ray_address, max_upload_mb, max_queued_per_key, hold, echo=click.echo):
        raise SystemExit(INTERRUPTED)  # SIGTERM: non-zero, as every command that SIGTERM stops
