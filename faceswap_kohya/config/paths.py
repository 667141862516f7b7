"""Where things are: the checkout, the presets, sd-scripts and its python, the user's cache folder
(FACESWAP_KOHYA_HOME: check model, tokenizers, regularization images), and new never-reused folders."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Optional

from faceswap_kohya.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout, when the package runs from one


def presets_dir() -> Path:
    """FACESWAP_KOHYA_PRESETS, else the checkout's presets/, else the presets installed with the package."""
    if env := os.environ.get("FACESWAP_KOHYA_PRESETS"):
        return Path(env).expanduser()
    checkout = PROJECT_ROOT / "presets"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parents[1] / "presets"


def default_sd_scripts() -> Path:
    """FACESWAP_KOHYA_SD_SCRIPTS, else the checkout's vendor/sd-scripts (the preset's kohya.sd_scripts wins over both)."""
    return Path(os.environ.get("FACESWAP_KOHYA_SD_SCRIPTS") or PROJECT_ROOT / "vendor" / "sd-scripts").expanduser()


def default_trainer_python() -> Path:
    """FACESWAP_KOHYA_PYTHON, else the checkout's .venv-kohya (the preset's kohya.python wins over both)."""
    return Path(os.environ.get("FACESWAP_KOHYA_PYTHON") or PROJECT_ROOT / ".venv-kohya" / "bin" / "python").expanduser()


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
