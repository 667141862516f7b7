"""Helpers for tests/test_sweep.py: a stand-in for sdxl_train_network.py, subject folders, leaderboard rows built
from real evaluations (real face photos scored as `evaluate` scores them)."""

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
    pytest.importorskip("ray", reason="sweeps need Ray: pip install 'faceswap_kohya[sweep]'")
    pytest.importorskip("dlib", reason="the evaluation needs the faces extra")
    return make_fake_kohya(tmp_path_factory.mktemp("fake"))


def make_fake_kohya(root: Path) -> tuple[Path, Path]:
    """(sd-scripts stand-in folder, tiny SDXL folder) made in `root` (see fake_kohya)."""
    import shutil

    from tiny_sdxl import build_tiny_pipeline, save_tiny_pipeline, write_kohya_lora

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


# Evaluations of real face photos (tests/scores_data.py) standing in for what a trial's checkpoints generated.
EVALUATIONS = {
    "good": {"checkpoints": {"base": ["biden.jpg", None], "final": ["obama_partial_face2.jpg", "obama_partial_face.jpg"]}},
    "weaker": {"checkpoints": {"base": ["biden.jpg", None], "final": ["biden.jpg", "obama_partial_face.jpg"]}},
    "faceless": {"checkpoints": {"base": [None], "final": [None, None]}},
    # the person's face in prompts without the trigger: its only checkpoint is overtrained
    "overtrained": {"checkpoints": {"base": ["biden.jpg", None], "final": ["obama_partial_face2.jpg", "obama2.jpg"]},
                    "bleed": {"base": ["biden.jpg"], "final": ["obama.jpg"]}},
}
_made: dict = {}


def real_scores_of(kind: str, held_out: bool = True) -> dict:
    """scores.json's data of one of EVALUATIONS, scored by dlib from real photos (made once per session)."""
    import tempfile

    from scores_data import real_scores

    key = (kind, held_out)
    if key not in _made:
        _made[key] = real_scores(Path(tempfile.mkdtemp(prefix=f"scores-{kind}-")) / "eval", held_out=held_out,
                                 **EVALUATIONS[kind])
    return _made[key]


def fake_plan(tmp_path, n, kind="sweep"):
    from faceswap_kohya.sweeps.grid import Trial

    trials = [Trial(f"t{i}", f"network.dim={2 ** i}", {"network.dim": 2 ** i}, {}) for i in range(n)]
    return SweepPlan(kind, "demo", tmp_path / "demo", tmp_path / "p.yaml", trials)


def fake_row(trial, state="finished", kind=None, held_out=True):
    """A trial's summary as the sweep returns it; finished ones with the numbers of a real evaluation (`kind`)."""
    return {"id": trial, "state": state, "run": f"/runs/{trial}", "seconds": 90.0,
            **(score_summary(real_scores_of(kind, held_out)) if kind else {})}


def alive_with(text: str) -> str:
    return subprocess.run(["pgrep", "-af", text], capture_output=True, text=True, check=False).stdout.strip()


def real_settings(photos: Path, out: Path) -> list[str]:
    """cpu-check with the evaluation kept tiny: one prompt, one seed, two steps at the training size (64 px), no bleed."""
    return [f"dataset.images={photos}", f"output.dir={out}", "sampling.prompts=[]", "sampling.every_n_epochs=null",
            "evaluate.prompts=['{trigger} {class}, portrait']", "evaluate.seeds=[1]", "evaluate.steps=2",
            "evaluate.bleed_prompts=[]"]
