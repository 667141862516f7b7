"""The pipeline-check base model: a random-init, full-size SDXL single file (it generates noise).

sd-scripts' SDXL UNet is fixed-size, so no tiny model can be trained; this one is built locally with
sd-scripts' own model classes (~6.9 GB fp16, ~2 min, ~14 GB RAM) and cached outside the project.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from faceswap_kohya.config.paths import home
from faceswap_kohya.errors import UserError

SIDE = Path(__file__).parent / "side"
BUILD_TIMEOUT = 60 * 60  # seconds; it takes ~2 min


class BuildTimeout(UserError, TimeoutError):
    """Building the check model took too long (a message for the user, and a TimeoutError for callers)."""


def check_model_path() -> Path:
    return home() / "pipeline-check" / "sdxl-random-fp16.safetensors"


def build_check_model(trainer, force: bool = False, echo=print, device: str = "cpu", timeout: float | None = None) -> Path:
    """Build (once) and return the check model, using the trainer's python and sd-scripts.

    device: where the random weights are made ("cuda" is much faster); timeout: seconds (default BUILD_TIMEOUT),
    then BuildTimeout, a TimeoutError."""
    out = check_model_path()
    if out.is_file() and not force:
        return out
    if not trainer.python.is_file():
        raise UserError(f"the trainer's python {trainer.python} does not exist: run scripts/setup.sh")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.safetensors")
    echo(f"building the pipeline-check model (random SDXL weights, ~6.9 GB, a few minutes) → {out}")
    try:
        proc = subprocess.run([str(trainer.python), str(SIDE / "make_check_model.py"), str(partial), device],
                              cwd=trainer.sd_scripts, capture_output=True, text=True, timeout=timeout or BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise BuildTimeout(f"building the pipeline-check model did not finish within {timeout or BUILD_TIMEOUT:.0f} s "
                           "(it takes ~2 min and ~14 GB RAM on a CPU): is the machine short of memory?") from None
    if proc.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise UserError(f"building the pipeline-check model failed:\n{tail}")
    partial.rename(out)
    return out
