"""The user's cache folder (check model, tokenizers, regularization images): FACESWAP_KOHYA_HOME."""

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("FACESWAP_KOHYA_HOME", "~/.cache/faceswap_kohya")).expanduser()
