"""Helpers for tests/test_sweep.py: a stand-in for sdxl_train_network.py, subject folders, leaderboard rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from faceswap_kohya.sweeps.plan import SweepPlan
from faceswap_kohya.sweeps.trials import score_summary

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")  # as sdxl_train_network.py: a LoRA as its settings say


VARIANTS = "- {network.dim: 2}\n- {network.dim: 4}\n- {network.dim: 4, base_model.path: /nonexistent.safetensors}\n"


@pytest.fixture(scope="module")
def fake_kohya(tmp_path_factory):
    """(sd-scripts stand-in folder, tiny SDXL folder): trials train in seconds (tests/fake_trainer.py) and evaluate
    on the tiny model."""
    import shutil

    pytest.importorskip("ray", reason="sweeps need Ray: pip install 'faceswap_kohya[sweep]'")
    pytest.importorskip("dlib", reason="the evaluation needs the faces extra")
    from tiny_sdxl import build_tiny_pipeline, save_tiny_pipeline, write_kohya_lora

    root = tmp_path_factory.mktemp("fake")
    tiny = save_tiny_pipeline(root / "tiny-sdxl")
    scripts = root / "sd-scripts"
    scripts.mkdir()
    write_kohya_lora(build_tiny_pipeline(), scripts / "lora.safetensors")
    shutil.copy(FAKE_TRAINER, scripts / "sdxl_train_network.py")
    return scripts, tiny


def fast_settings(fake, photos: Path, out: Path, *extra: str) -> list[str]:
    scripts, tiny = fake
    return [f"base_model.path={tiny}", f"kohya.sd_scripts={scripts}", f"kohya.python={sys.executable}",
            "kohya.launcher=python", "kohya.tokenizer_cache=null", f"dataset.images={photos}", f"output.dir={out}",
            "sampling.prompts=[]", "sampling.every_n_epochs=null", "evaluate.prompts=['{trigger} {class}, portrait']",
            "evaluate.seeds=[1]", "evaluate.steps=2", "resources.cpus=1", "resources.memory_gb=1", *extra]


def make_subjects(root: Path, photos: Path, **subject_files) -> Path:
    import shutil

    for name in ("alice", "bob"):
        shutil.copytree(photos, root / name)
        if name in subject_files:
            (root / name / "subject.yaml").write_text(subject_files[name])
    (root / "empty").mkdir()
    return root


def fake_scores(mean, held=None, bleed=None, overtrained=False, basis="mean"):
    """A scores.json as the evaluation writes it (held-out identity and bleed only when given)."""
    best = None if mean is None else {"label": "myface", "file": "/runs/x/model/myface.safetensors", "mean": mean,
                                      "above_base": round(mean - 0.2, 4)}
    if best and held is not None:
        best |= {"held_out_mean": held, "bleed": bleed, "bleed_rise": 0.05, "reason": "highest held-out identity"}
    summary = {"faces": 2 if mean is not None else 0, "images": 2, "mean": mean}
    return {"embedder": "dlib", "identity_basis": basis, "base": {"mean": 0.2, "held_out_mean": 0.1},
            "checkpoints": [{"label": "base", "file": None, "summary": summary},
                            {"label": "myface", "file": "/m.safetensors", "summary": summary, "overtrained": overtrained}],
            "best": best}


def fake_plan(tmp_path, n, kind="sweep"):
    from faceswap_kohya.sweeps.grid import Trial

    trials = [Trial(f"t{i}", f"network.dim={2 ** i}", {"network.dim": 2 ** i}, {}) for i in range(n)]
    return SweepPlan(kind, "demo", tmp_path / "demo", tmp_path / "p.yaml", trials)


def fake_row(trial, state="finished", **scores):
    return {"id": trial, "state": state, "run": f"/runs/{trial}", "seconds": 90.0,
            **(score_summary(fake_scores(**scores)) if scores else {})}


def alive_with(text: str) -> str:
    return subprocess.run(["pgrep", "-af", text], capture_output=True, text=True, check=False).stdout.strip()


def real_settings(photos: Path, out: Path) -> list[str]:
    """cpu-check with the evaluation kept tiny: one prompt, one seed, two steps at the training size (64 px), no bleed."""
    return [f"dataset.images={photos}", f"output.dir={out}", "sampling.prompts=[]", "sampling.every_n_epochs=null",
            "evaluate.prompts=['{trigger} {class}, portrait']", "evaluate.seeds=[1]", "evaluate.steps=2",
            "evaluate.bleed_prompts=[]"]
