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
    return check_many([(trainer, config_toml, dataset_toml)])[0]


def check_many(items: list[tuple[Trainer, Path, Path]]) -> list[dict]:
    """check_files for each (trainer, config TOML, dataset TOML), in one process of the first trainer's python
    (they share one sd-scripts: only the training script differs), so sd-scripts is imported once."""
    trainer = items[0][0]
    if not trainer.python.is_file() or not all(t.script.is_file() for t, _, _ in items):
        raise UserError(f"sd-scripts or its python is missing ({trainer.sd_scripts}, {trainer.python}): run scripts/setup.sh")
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "check.json"
        listing.write_text(json.dumps([[str(c), str(d), t.script.stem] for t, c, d in items]))
        try:
            proc = subprocess.run([str(trainer.python), str(SCRIPT), "--many", str(listing)],
                                  cwd=trainer.sd_scripts, capture_output=True, text=True, timeout=CHECK_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise UserError(f"sd-scripts' checker ({trainer.python}) did not finish within {CHECK_TIMEOUT // 60} min") from None
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    try:
        results = json.loads(last)
    except json.JSONDecodeError:
        results = None
    if not isinstance(results, list) or len(results) != len(items):
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise UserError(f"sd-scripts' checker did not run:\n{tail}") from None
    return results


def check_rendered(preset: Preset, base_model: str | None = None) -> dict:
    """Render into a temporary folder and check both files."""
    with tempfile.TemporaryDirectory() as tmp:
        run = RunLayout(Path(tmp))
        render.write_all(preset, run, base_model or render.base_model_arg(preset), tokenizer_cache=str(Path(tmp) / "tok"))
        return check_files(Trainer.of(preset), run.config_toml, run.dataset_toml)
