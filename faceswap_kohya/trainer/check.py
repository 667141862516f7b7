"""Check rendered TOMLs with sd-scripts' own validator and argument parser (in the trainer's venv)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from faceswap_kohya.config.schema import Preset
from faceswap_kohya.errors import UserError
from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.trainer import render
from faceswap_kohya.trainer.install import Trainer

SCRIPT = Path(__file__).parent / "side" / "check_config.py"
CHECK_TIMEOUT = 600  # seconds; it takes a few


def check_files(trainer: Trainer, config_toml: Path, dataset_toml: Path) -> dict:
    """{"ok", "errors", "checked"} from sd-scripts' code; UserError when the trainer is unavailable."""
    if not trainer.python.is_file() or not trainer.script.is_file():
        raise UserError(f"sd-scripts or its python is missing ({trainer.sd_scripts}, {trainer.python}): run scripts/setup.sh")
    try:
        proc = subprocess.run([str(trainer.python), str(SCRIPT), str(config_toml), str(dataset_toml),
                               trainer.script.stem],
                              cwd=trainer.sd_scripts, capture_output=True, text=True, timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise UserError(f"sd-scripts' checker ({trainer.python}) did not finish within {CHECK_TIMEOUT // 60} min") from None
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    try:
        return json.loads(last)
    except json.JSONDecodeError:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise UserError(f"sd-scripts' checker did not run:\n{tail}") from None


def check_rendered(preset: Preset, base_model: str | None = None) -> dict:
    """Render into a temporary folder and check both files."""
    with tempfile.TemporaryDirectory() as tmp:
        run = RunLayout(Path(tmp))
        render.write_all(preset, run, base_model or render.base_model_arg(preset), tokenizer_cache=str(Path(tmp) / "tok"))
        return check_files(Trainer.of(preset), run.config_toml, run.dataset_toml)
