"""API keys and their webhook secrets: a key is shown once and stored as its SHA-256; each key has a Standard Webhooks
signing secret (`whsec_<base64>`) that signs the webhooks of the jobs it made."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

from faceswap_kohya.errors import UserError
from faceswap_kohya.service.store import Store

KEY_PREFIX = "fsk_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(store: Store, name: str) -> tuple[str, str]:
    """A new key named `name`: (key, webhook secret), each shown to the person once."""
    if not NAME.match(name):
        raise UserError(f"key name {name!r}: use letters, digits, '.', '_' and '-' (up to 100), starting with a letter "
                        "or digit")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    store.add_key(name, hash_key(key), secret)
    return key, secret


def check_key(store: Store, header: str | None) -> tuple[int, str] | dict:
    """The key's row for an `Authorization: Bearer KEY` header, else (status, message)."""
    if not header:
        return 401, "no API key: send the header Authorization: Bearer KEY (create one with `faceswap-kohya keys create NAME`)"
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return 401, "the Authorization header must be `Bearer KEY`"
    row = store.key_by_hash(hash_key(key.strip()))
    if row is None:
        return 403, "this API key is not known"
    if row["revoked_at"] is not None:
        return 403, f"this API key ({row['name']}) was revoked"
    return row
