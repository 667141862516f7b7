"""The pipeline-check base models, random-init and built locally (they generate noise): a full-size SDXL
single file, and a FLUX.1 model (a DiT with one double and one single block, the AE, CLIP-L and T5-XXL).

sd-scripts' SDXL UNet is fixed-size, so no tiny model can be trained; that one is built with sd-scripts' own
model classes (~6.9 GB fp16, ~2 min, ~14 GB RAM). FLUX's loaders read the DiT's block count from the file but
build the AE, CLIP-L and T5-XXL at full size, so those are full size (T5-XXL in fp8: ~4.8 GB). Both are
cached outside the project (`check_model_path`, `flux_check_files`). `build_flux_model(full=True)` builds FLUX.1-dev's
whole DiT with random weights instead, for the GPU check.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from faceswap_kohya.config.paths import home
from faceswap_kohya.errors import UserError

SIDE = Path(__file__).parent / "side"
BUILD_TIMEOUT = 60 * 60  # seconds; it takes ~2 min
FLUX_FILES = {"dit": "flux1-check-dit.safetensors", "ae": "ae.safetensors", "clip_l": "clip_l.safetensors",
              "t5xxl": "t5xxl_fp8_e4m3fn.safetensors"}  # as models/side/make_flux_check_model.py writes them


class BuildTimeout(UserError, TimeoutError):
    """Building the check model took too long (a message for the user, and a TimeoutError for callers)."""


def check_model_path() -> Path:
    return home() / "pipeline-check" / "sdxl-random-fp16.safetensors"


def flux_check_folder() -> Path:
    return home() / "flux-check"


def flux_check_files() -> dict[str, Path]:
    """{"dit", "ae", "clip_l", "t5xxl"} → the FLUX check model's files."""
    return {key: flux_check_folder() / name for key, name in FLUX_FILES.items()}


def flux_check_built() -> bool:
    return all(p.is_file() for p in flux_check_files().values())


def _run_side(trainer, script: str, args: list[str], what: str, timeout: float | None) -> None:
    if not trainer.python.is_file():
        raise UserError(f"the trainer's python {trainer.python} does not exist: run scripts/setup.sh")
    limit = timeout or BUILD_TIMEOUT
    try:
        proc = subprocess.run([str(trainer.python), str(SIDE / script), *args],
                              cwd=trainer.sd_scripts, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        raise BuildTimeout(f"building the {what} did not finish within {limit:.0f} s "
                           "(it takes a few minutes on a CPU): is the machine short of memory?") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise UserError(f"building the {what} failed:\n{tail}")


def build_check_model(trainer, force: bool = False, echo=print, device: str = "cpu", timeout: float | None = None) -> Path:
    """Build (once) and return the SDXL check model, using the trainer's python and sd-scripts.

    device: where the random weights are made ("cuda" is much faster); timeout: seconds (default BUILD_TIMEOUT),
    then BuildTimeout, a TimeoutError."""
    out = check_model_path()
    if out.is_file() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.safetensors")
    echo(f"building the pipeline-check model (random SDXL weights, ~6.9 GB, a few minutes) → {out}")
    try:
        _run_side(trainer, "make_check_model.py", [str(partial), device], "pipeline-check model", timeout)
        if not partial.is_file():
            raise UserError("building the pipeline-check model failed: it wrote no file")
    except UserError:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(out)
    return out


def build_flux_check_model(trainer, force: bool = False, echo=print, timeout: float | None = None) -> dict[str, Path]:
    """Build (once) and return the FLUX check model's files (see `flux_check_files`)."""
    if flux_check_built() and not force:
        return flux_check_files()
    echo(f"building the FLUX check model (random FLUX.1 weights, ~6.5 GB, a few minutes) → {flux_check_folder()}")
    return build_flux_model(trainer, flux_check_folder(), timeout=timeout)


def build_flux_model(trainer, folder: Path, full: bool = False, device: str = "cpu",
                     timeout: float | None = None) -> dict[str, Path]:
    """Random FLUX.1 weights in `folder` (FLUX_FILES' names), replacing what is there: the check model's one double
    and one single block, or with `full` FLUX.1-dev's whole DiT (~22 GiB bf16: what the GPU check trains the flux
    presets on). device: where the random values are drawn ("cuda" is much faster)."""
    folder = Path(folder)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    what = "full-size random FLUX.1 model" if full else "FLUX check model"
    try:
        _run_side(trainer, "make_flux_check_model.py", [str(partial), device, "full" if full else "check"], what, timeout)
        missing = [name for name in FLUX_FILES.values() if not (partial / name).is_file()]
        if missing:
            raise UserError(f"building the {what} failed: it did not write {', '.join(missing)}")
    except UserError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return {key: folder / name for key, name in FLUX_FILES.items()}
