"""Training: bad inputs fail before launch; the real sd-scripts trainer end to end; interrupt leaves no orphans.

The end-to-end tests run the real `sdxl_train_network.py` on the pipeline-check model (random full-size
SDXL, 64 px, 2 steps). They need vendor/sd-scripts and .venv-kohya and most of the machine's RAM. Those that
only read a finished run read the session's shared one (`trained_run`, tests/trained.py); resume trains on
from its saved state; the SIGINT and SIGKILL tests start runs of their own and stop them as soon as the
trainer runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import needs_kohya
from safetensors import safe_open

from faceswap_kohya import events as ev
from faceswap_kohya.cli.main import cli
from faceswap_kohya.config import presets
from faceswap_kohya.errors import UserError
from faceswap_kohya.events import CheckpointWritten, Finished, ModelSaved, StageStarted, Step, ValidationLoss
from faceswap_kohya.jobs.train import preflight, resume
from faceswap_kohya.runs.artifacts import latest_state, samples
from faceswap_kohya.runs.layout import new_run
from faceswap_kohya.runs.status import read_events, read_status
from faceswap_kohya.trainer.install import Trainer


@pytest.mark.parametrize("override,expected", [
    ("dataset.images=/no/such/folder", "dataset.images: folder /no/such/folder does not exist"),
    ("base_model.path=/no/model.safetensors", "base_model.path: /no/model.safetensors does not exist"),
    ("kohya.sd_scripts=/no/sd-scripts", "kohya.sd_scripts: /no/sd-scripts has no sdxl_train_network.py"),
    ("kohya.python=/no/python", "kohya.python: /no/python does not exist"),
])
def test_bad_inputs_fail_before_launch(tmp_path, photos, override, expected):
    fake = tmp_path / "sd-scripts"  # a stand-in trainer, so that each case fails on its own bad input
    fake.mkdir()
    (fake / "sdxl_train_network.py").write_text("raise SystemExit('never run')\n")
    trainer = [f"kohya.sd_scripts={fake}", f"kohya.python={sys.executable}"]
    r = CliRunner().invoke(cli, ["train", "cpu-check", f"dataset.images={photos}", f"output.dir={tmp_path}", *trainer, override])
    assert r.exit_code == 2
    assert expected in r.output
    assert not any(tmp_path.rglob("config.toml")), "nothing may be launched or laid out"


def test_empty_photo_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a photo")
    preset, _ = presets.load("cpu-check", [f"dataset.images={tmp_path / 'empty'}"])
    with pytest.raises(UserError, match="dataset.images: .*empty has no photos"):
        preflight(preset, Trainer.of(preset))


def test_unset_photo_folder():
    preset, _ = presets.load("face-8gb")
    with pytest.raises(UserError, match=r"dataset.images is not set.*dataset.images=~/photos"):
        preflight(preset, Trainer.of(preset))


def test_run_folders_never_reuse_a_name(tmp_path):
    preset, _ = presets.load("face-8gb", [f"output.dir={tmp_path}"])
    import datetime as dt

    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    a, b = new_run(preset, now), new_run(preset, now)
    assert a.root != b.root and a.root.name == "20260102-030405" and b.root.name == "20260102-030405-2"


@pytest.mark.trainer
@needs_kohya
def test_real_training_end_to_end(trained_run):
    preset, result, events, photos = trained_run.preset, trained_run.result, trained_run.events, trained_run.photos
    assert result.ok, result.diagnosis
    assert result.returncode == 0
    assert result.final == result.run.model / "myface-check.safetensors"
    with safe_open(result.final, "pt") as f:
        keys = list(f.keys())
        meta = f.metadata()
    assert preset.optimizer.text_encoder_lr > 0 and preset.network.conv_dim == 2  # the shared run's settings
    assert {k.split("_")[1] for k in keys} == {"unet", "te1", "te2"}  # the UNet and both text encoders
    assert meta["ss_network_dim"] == str(preset.network.dim)
    assert float(meta["ss_network_alpha"]) == preset.network.alpha
    assert str(json.loads(meta["ss_network_args"])["conv_dim"]) == "2"  # LoCon convs
    steps = [e for e in events if isinstance(e, Step)]
    assert steps and steps[-1].step == steps[-1].total == 2
    assert any(isinstance(e, CheckpointWritten) for e in events) and any(isinstance(e, ModelSaved) for e in events)
    log = result.run.log.read_text()
    assert "sdxl_train_network.py" in log.splitlines()[0] and "model saved." in log
    for name in ("preset.yaml", "config.toml", "dataset.toml", "command.sh"):
        assert (result.run.root / name).is_file()
    assert sorted(p.name for p in (result.run.root / "img" / "1_myface woman").glob("*.txt"))
    assert {p: p.read_bytes() for p in photos.iterdir()} == trained_run.photo_bytes, "the user's photos are untouched"
    # the run folder tells its own story: every event, step events up to N/N, and how it ended
    recorded, _ = read_events(result.run.root)
    recorded_steps = [e for e in recorded if isinstance(e, Step)]
    assert recorded_steps[-1].step == recorded_steps[-1].total == 2 and recorded_steps[-1].lr is not None
    assert [type(e).__name__ for e in recorded if isinstance(e, (StageStarted, Finished))][:2] == ["StageStarted"] * 2
    assert isinstance(recorded[-1], Finished) and recorded[-1].paths[0] == str(result.final)
    status = read_status(result.run.root)
    assert (status["state"], status["step"], status["total"]) == ("finished", 2, 2)
    assert status["trainer_pid"] and status["ended"] and str(result.final) in status["loras"]
    # a second run in a new folder, the first untouched: test_resume_continues_from_saved_state_in_a_new_run


@pytest.mark.trainer
@needs_kohya
def test_masked_training_with_a_held_out_photo(trained_run):
    """cpu-check on its six sample photos, with head masks and one photo held out: sd-scripts says masked loss
    is on, computes the validation loss on the held-out photo (one event, recorded in the run folder) and
    writes the LoRA."""
    preset, result, events = trained_run.preset, trained_run.result, trained_run.events
    assert (preset.dataset.mask, preset.dataset.holdout) == ("head", 1)
    assert len(list(trained_run.photos.glob("*.jpg"))) == 6
    assert result.ok, result.diagnosis
    assert result.final == result.run.model / "myface-check.safetensors" and result.final.stat().st_size > 10_000
    log = result.run.log.read_text()
    assert log.count("alpha_mask: True") == 2  # the training subset and the held-out one: masked loss is on
    assert "num validation images * repeats / 学習画像の数×繰り返し回数: 1" in log
    (held,) = (result.run.val / "1_myface woman").glob("*.png")
    assert not (result.run.img / "1_myface woman" / held.name).exists()
    (val,) = [e for e in events if isinstance(e, ValidationLoss)]
    assert val.kind == "epoch" and val.epoch == 1 and val.step == 2 and 0 < val.loss < 10
    recorded, _ = read_events(result.run.root)
    assert val in recorded and read_status(result.run.root)["val_loss"] == val.loss


@pytest.mark.trainer
@needs_kohya
def test_the_real_trainers_sample_is_scored_live_and_has_no_face(trained_run):
    """sd-scripts renders cpu-check's sample at the end of its epoch; the random-weight model draws no face, and
    the run says so (an event, a line, status.json's latest) instead of failing or scoring noise."""
    result, events = trained_run.result, trained_run.events
    assert result.ok, result.diagnosis
    (sample,) = samples(result.run)
    likeness = [e for e in events if isinstance(e, ev.SampleLikeness)]
    assert likeness == [ev.SampleLikeness(str(sample), 1, 2, None, None, 0, "dlib-resnet-128",
                                       f"no face found in sample {sample.name}")], likeness
    assert likeness[0].text == f"no face found in sample {sample.name} (epoch 1, step 2)"
    assert not [e for e in events if isinstance(e, ev.Warning) and "likeness" in e.text]
    recorded, _ = read_events(result.run.root)
    assert likeness[0] in recorded
    assert read_status(result.run.root)["sample_likeness"]["note"] == likeness[0].note
    # scored before the run was judged: the event comes before the training stage's end
    ended = next(i for i, e in enumerate(recorded) if isinstance(e, ev.StageFinished) and e.stage == "training")
    assert recorded.index(likeness[0]) < ended


@pytest.mark.trainer
@needs_kohya
def test_interrupt_stops_the_whole_trainer(tmp_path, photos):
    """SIGINT to `faceswap-kohya train` stops sd-scripts and its accelerate launcher; nothing is left running."""
    env = dict(os.environ, FACESWAP_KOHYA_PRESETS=str(presets.PRESETS_DIR))
    proc = subprocess.Popen([sys.executable, "-m", "faceswap_kohya", "train", "cpu-check", f"dataset.images={photos}",
                             f"output.dir={tmp_path}", "training.max_steps=50"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    deadline = time.monotonic() + 300
    log = None
    while time.monotonic() < deadline:
        logs = list(tmp_path.rglob("train.log"))
        if logs and "loading model" in logs[0].read_text(errors="replace"):
            log = logs[0]
            break
        time.sleep(1)
    assert log is not None, "the trainer never started"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    leftover = subprocess.run(["pgrep", "-f", str(log.parent / "config.toml")], capture_output=True, text=True).stdout
    assert leftover.strip() == "", f"trainer processes left: {leftover}"


@pytest.mark.trainer
@needs_kohya
def test_resume_continues_from_saved_state_in_a_new_run(trained_run):
    first = trained_run.result
    assert first.ok, first.diagnosis
    assert trained_run.preset.training.save_state
    state = latest_state(first.run)
    assert state is not None and (state / "train_state.json").is_file()
    before = {p: p.stat().st_mtime_ns for p in first.run.root.rglob("*") if p.is_file()}

    events = []
    second = resume(first.run.root, ["training.max_steps=3"], on_event=events.append)
    assert second.ok, second.diagnosis
    assert second.run.root != first.run.root
    log = second.run.log.read_text()
    assert f"--resume {state}" in log.splitlines()[0]
    assert "resume training from local state" in log
    steps = [e for e in events if isinstance(e, Step)]
    assert steps[-1].total == 1, "only the step after the saved state is trained"
    assert {p: p.stat().st_mtime_ns for p in first.run.root.rglob("*") if p.is_file()} == before


def test_resume_needs_a_saved_state(tmp_path):
    from faceswap_kohya.runs.layout import RunLayout

    run = RunLayout(tmp_path / "run")
    run.root.mkdir()
    preset, _ = presets.load("cpu-check")
    run.preset.write_text(presets.dump(preset))
    run.config_toml.write_text("")
    with pytest.raises(UserError, match="no saved training state.*save_state: false"):
        resume(run.root)
    with pytest.raises(UserError, match="not a run folder"):
        resume(tmp_path)


@pytest.mark.trainer
@needs_kohya
def test_a_killed_wrapper_leaves_an_interrupted_run_and_no_trainer(tmp_path, photos):
    """SIGKILL of `faceswap-kohya train` while its trainer runs (sd-scripts has started loading the model): its
    status reads `interrupted`, and the watchdog stops the trainer it left behind."""
    env = dict(os.environ, FACESWAP_KOHYA_PRESETS=str(presets.PRESETS_DIR))
    proc = subprocess.Popen([sys.executable, "-m", "faceswap_kohya", "train", "cpu-check", f"dataset.images={photos}",
                             f"output.dir={tmp_path}", "training.max_steps=50"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    run = None
    while time.monotonic() < deadline and run is None:
        for status_file in tmp_path.rglob("status.json"):
            status = read_status(status_file.parent)
            log = status_file.parent / "train.log"
            if status["state"] == "training" and status["trainer_pid"] and log.is_file() \
                    and "loading model" in log.read_text(errors="replace"):
                run = status_file.parent
        time.sleep(0.5)
    assert run is not None, "the trainer never started"
    assert read_status(run)["state"] == "training"
    assert subprocess.run(["pgrep", "-f", str(run / "config.toml")], capture_output=True).returncode == 0, "a trainer runs"
    proc.kill()
    proc.wait()
    assert read_status(run)["state"] == "interrupted"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-f", str(run / "config.toml")], capture_output=True, text=True).stdout.strip()
        if not left:
            break
        time.sleep(1)
    assert not left, f"trainer processes left: {left}"
