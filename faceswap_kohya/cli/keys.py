"""`faceswap-kohya keys create / ls / revoke`: the training service's API keys, in the same store as `serve`."""

from __future__ import annotations

import click

from faceswap_kohya.cli.main import cli, friendly
from faceswap_kohya.cli.serve import database_option, output_option
from faceswap_kohya.errors import UserError


@cli.group()
def keys():
    """API keys of the training service (`serve`): create, list, revoke."""


def _store(output, database):
    from faceswap_kohya.service.server import check_installed, open_store

    check_installed()
    return open_store(output, database)


@keys.command("create")
@click.argument("name")
@output_option
@database_option
@friendly
def keys_create(name, output, database):
    """A new key NAME; prints the key and its webhook signing secret once (only their hash and the secret are kept)."""
    from faceswap_kohya.service.keys import create_key

    key, secret = create_key(_store(output, database), name)
    click.echo(f"key: {key}\nwebhook secret: {secret}")


@keys.command("ls")
@output_option
@database_option
@friendly
def keys_ls(output, database):
    """Every key: name, created, revoked."""
    from faceswap_kohya.service.store import iso

    found = _store(output, database).list_keys()
    if not found:
        click.echo("no keys (faceswap-kohya keys create NAME)")
    for k in found:
        state = f"revoked {iso(k['revoked_at'])}" if k["revoked_at"] else "active"
        click.echo(f"{k['name']}\tcreated {iso(k['created_at'])}\t{state}")


@keys.command("revoke")
@click.argument("name")
@output_option
@database_option
@friendly
def keys_revoke(name, output, database):
    """Revoke key NAME: its requests get 403 from now on (its jobs are kept)."""
    if not name:
        raise UserError("give the key's name (faceswap-kohya keys ls)")
    _store(output, database).revoke_key(name)
    click.echo(f"revoked {name}")
