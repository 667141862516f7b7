"""The user's cache folder (check model, tokenizers, regularization images): FACESWAP_KOHYA_HOME."""

import datetime as dt
import os
from pathlib import Path
from typing import Optional

from faceswap_kohya.errors import UserError


def home() -> Path:
    return Path(os.environ.get("FACESWAP_KOHYA_HOME", "~/.cache/faceswap_kohya")).expanduser()


def new_folder(parent: Path, what: str = "output folder", now: Optional[dt.datetime] = None) -> Path:
    """`parent/<YYYYmmdd-HHMMSS>` (then `-2`, `-3`, ...); `what` names the setting in error messages."""
    parent = Path(parent).expanduser().absolute()
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{what}: cannot create {parent} ({e.strerror})") from None
    for n in range(1, 1000):
        folder = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
        except OSError as e:
            raise UserError(f"{what}: cannot write in {parent} ({e.strerror})") from None
    raise UserError(f"{what}: too many folders named {stamp} in {parent}")
