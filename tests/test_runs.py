"""The run folder's own package on real files: a run laid out as the trainer leaves it (epoch, step and final
LoRAs, saved states, samples, evaluations), its record written by RunRecorder and read back, and torn files
(status.json or events.jsonl cut mid-write) that read as unknown, never as a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from faceswap_kohya import events as ev
from faceswap_kohya.config import presets
from faceswap_kohya.config.schema import Preset
from faceswap_kohya.runs import artifacts
from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.runs.read import UNKNOWN, read_run, validation_losses
from faceswap_kohya.runs.status import RunRecorder, append_event, list_runs, read_events, read_status

NAME = "myface"


def lora(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"lora_unet_x.lora_down.weight": np.zeros((2, 4), dtype=np.float16)}, str(path), {"ss_network_dim": "2"})
    return path


def touch_later(path: Path, seconds: float) -> None:
    """Set a file's times `seconds` after now (file times order epoch and step checkpoints, states and samples)."""
    t = time.time() + seconds
    os.utime(path, (t, t))


@pytest.fixture
def run(tmp_path) -> RunLayout:
    """A run folder as `train` leaves it with sd-scripts' names: two epochs, a step checkpoint between them, the
    final LoRA, two saved states, samples, the photos, and two evaluations (the newer one the latest)."""
    run = RunLayout(tmp_path / "out" / NAME / "20260101-120000")
    run.root.mkdir(parents=True)
    preset = Preset.model_validate({"base_model": "x", "subject": {"trigger": NAME, "class_word": "woman"},
                                    "output": {"name": NAME, "dir": str(tmp_path / "out")}})
    run.preset.write_text(presets.dump(preset))
    for i, stem in enumerate([f"{NAME}-000001", f"{NAME}-step00000050", f"{NAME}-000002", NAME]):
        touch_later(lora(run.model / f"{stem}.safetensors"), i)
    lora(run.model / "someone-000001.safetensors")  # another LoRA's file in the folder is not this run's
    for i, state in enumerate([f"{NAME}-000002-state", f"{NAME}-000001-state"]):  # the newest by time, not name
        (run.model / state).mkdir()
        (run.model / state / "train_state.json").write_text("{}")
        touch_later(run.model / state, 10 + i)
    run.samples.mkdir()
    for i, name in enumerate(["b_e000002.png", "a_e000001.png"]):
        Image.new("RGB", (8, 8), "gray").save(run.samples / name)
        touch_later(run.samples / name, 20 + i)
    (run.img / f"10_{NAME} woman").mkdir(parents=True)
    (run.img / "notes").mkdir()  # not a Kohya photo folder
    for stamp, best in (("20260101-130000", "epoch 1"), ("20260101-140000", "final")):
        (run.eval / stamp).mkdir(parents=True)
        (run.eval / stamp / artifacts.SCORES).write_text(json.dumps({"best": {"label": best}}))
    (run.eval / "20260101-150000").mkdir()  # an evaluation that stopped before its scores
    return run


def test_checkpoints_in_training_order_and_the_final_lora(run):
    found = artifacts.checkpoints(run.root)  # the name comes from preset.yaml (no status yet)
    assert [c.label for c in found] == ["epoch 1", "step 50", "epoch 2", "final"]
    assert [c.path.name for c in found][-1] == f"{NAME}.safetensors" and found[1].step == 50 and found[2].epoch == 2
    assert [c.slug for c in found] == ["e000001", "s00000050", "e000002", "final"]
    assert artifacts.final_lora(run) == run.model / f"{NAME}.safetensors"
    assert artifacts.lora_path(run.root, NAME, 2) == run.model / f"{NAME}-000002.safetensors"
    assert artifacts.lora_path(run, NAME, 7).is_file() is False
    assert artifacts.is_checkpoint(f"{NAME}-000002") and artifacts.is_checkpoint(f"{NAME}-step00000050")
    assert not artifacts.is_checkpoint(NAME)
    (run.model / f"{NAME}.safetensors").unlink()
    assert artifacts.final_lora(run) is None and artifacts.checkpoints(run)[-1].label == "epoch 2"


def test_the_lora_name_comes_from_the_status_first(run):
    assert artifacts.lora_name(run) == NAME  # preset.yaml's output.name
    recorder = RunRecorder(run.root, "other")
    recorder.close()
    assert artifacts.lora_name(run) == "other" and artifacts.checkpoints(run) == []
    assert [c.label for c in artifacts.checkpoints(run, NAME)][-1] == "final"
    assert artifacts.lora_name(RunLayout(run.root.parent / "nothing")) is None
    assert artifacts.checkpoints(run.root.parent / "nothing") == [] and artifacts.final_lora(run.root.parent / "nothing") is None


def test_samples_states_photos_and_the_lora_s_run(run):
    assert [p.name for p in artifacts.samples(run)] == ["b_e000002.png", "a_e000001.png"]  # oldest first
    assert artifacts.latest_state(run.root) == run.model / f"{NAME}-000001-state"
    assert artifacts.photo_folders(run) == [run.img / f"10_{NAME} woman"]
    assert artifacts.run_of_lora(run.model / f"{NAME}.safetensors") == run.root
    loose = lora(run.root.parent / "loose" / f"{NAME}.safetensors")
    assert artifacts.run_of_lora(loose) is None
    empty = RunLayout(run.root.parent / "empty")
    empty.root.mkdir()
    assert artifacts.samples(empty) == [] and artifacts.latest_state(empty) is None and artifacts.photo_folders(empty) == []


def test_evaluations_and_the_latest_scores(run):
    assert [p.name for p in artifacts.evaluations(run)] == ["20260101-130000", "20260101-140000"]
    latest = artifacts.latest_scores(run.root)
    assert latest == run.eval / "20260101-140000" / artifacts.SCORES
    assert artifacts.read_scores(latest) == {"best": {"label": "final"}}
    text = latest.read_text()
    latest.write_text(text[: len(text) // 2])  # torn mid-write
    assert artifacts.read_scores(latest) is None
    latest.write_text("[1, 2]")
    assert artifacts.read_scores(latest) is None and artifacts.read_scores(None) is None
    assert artifacts.latest_scores(run.root.parent / "nothing") is None


def record_a_run(root: Path) -> RunRecorder:
    recorder = RunRecorder(root, NAME)
    for event in (ev.StageStarted("preparing"), ev.StageFinished("preparing", 1.5), ev.StageStarted("training"),
                  ev.Step(1, 4, loss=0.5), ev.Step(2, 4, loss=0.25), ev.ValidationLoss(2, 0.3, 1, "epoch"),
                  ev.Epoch(1, 2), ev.CheckpointWritten(str(root / "model" / f"{NAME}-000001.safetensors")),
                  ev.Step(3, 4), ev.Step(4, 4, loss=0.125), ev.ValidationLoss(4, 0.2, 2, "epoch"),
                  ev.StageFinished("training", 12.0), ev.EvaluationFailed("out of memory", str(root)),
                  ev.Finished("LoRA written", [])):
        recorder.record(event)
    recorder.set(state="finished")
    return recorder


def test_a_run_is_read_back_from_its_record(tmp_path):
    recorder = record_a_run(tmp_path)
    recorder.close()
    r = read_run(tmp_path)
    assert (r.state, r.steps, r.total, r.active) == ("finished", 4, 4, False)
    assert r.losses == {1: 0.5, 2: 0.25, 4: 0.125} and r.val_losses == {2: 0.3, 4: 0.2}
    assert [(v.epoch, v.loss) for v in validation_losses(tmp_path)] == [(1, 0.3), (2, 0.2)]
    assert r.stages == {"preparing": 1.5, "training": 12.0} and r.stage == "training"
    assert r.evaluation_error == "out of memory" and r.error is None and r.summary == "LoRA written"
    assert r.loras == [str(tmp_path / "model" / f"{NAME}-000001.safetensors")] and r.epoch == ev.Epoch(1, 2)
    assert validation_losses(None) == []


def test_evaluation_failed_is_an_event_like_the_others():
    event = ev.EvaluationFailed("CUDA out of memory", "/runs/a")
    data = json.loads(json.dumps(ev.to_dict(event)))
    assert data["type"] == "EvaluationFailed" and ev.from_dict(data) == event
    assert event.text.splitlines()[0] == "evaluation failed: CUDA out of memory"
    assert "retry with: faceswap-kohya evaluate /runs/a" in event.text


def test_following_reads_only_what_is_new(tmp_path):
    recorder = RunRecorder(tmp_path, NAME)
    recorder.record(ev.Step(1, 2, loss=0.5))
    r = read_run(tmp_path)
    offset = r.offset
    assert r.steps == 1 and r.state == "preparing" and r.active  # this process is alive
    recorder.record(ev.Step(2, 2, loss=0.25))
    r.refresh()
    assert r.offset > offset and r.losses == {1: 0.5, 2: 0.25}
    recorder.record(ev.Error("trainer said no"))
    recorder.set(state="failed")
    recorder.close()
    assert r.refresh().errors == ["trainer said no"] and r.error == "trainer said no" and r.state == "failed"


def test_a_torn_status_reads_as_unknown_never_a_crash(tmp_path):
    from faceswap_kohya.sweeps.trials import summarize_run

    root = tmp_path / NAME / "20260101-000000"
    root.mkdir(parents=True)
    record_a_run(root).close()
    status = root / "status.json"
    text = status.read_text()
    status.write_text(text[: len(text) // 2])  # the writer died mid-write
    assert read_status(root) is None
    ((listed, unknown),) = list_runs(tmp_path)  # listed, as unknown, saying why
    assert listed == root and unknown["state"] == UNKNOWN and "status.json can't be read" in unknown["error"]
    r = read_run(root)
    assert r.state == UNKNOWN and not r.active and r.steps == 4 and r.losses[4] == 0.125  # the events still tell
    summary = summarize_run(root)
    assert summary["state"] == "interrupted" and summary["train_seconds"] == 12.0
    for broken in ("", "[1, 2]", '"training"', '{"state": "training", "pid": "not a pid"}'):
        status.write_text(broken)
        assert read_run(root).state in (UNKNOWN, "interrupted")
    status.write_text(json.dumps({"state": "training", "pid": dead_pid()}))
    assert read_status(root)["state"] == "interrupted"  # its writer is gone


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_torn_events_are_skipped_until_whole(tmp_path):
    record_a_run(tmp_path).close()
    events = tmp_path / "events.jsonl"
    data = events.read_bytes()
    lines = data.splitlines(keepends=True)
    cut = sum(len(line) for line in lines[:5]) + len(lines[5]) // 2  # in the middle of the sixth line
    events.write_bytes(data[:cut])
    found, offset = read_events(tmp_path)
    assert len(found) == 5 and offset == sum(len(line) for line in lines[:5])  # only whole lines
    r = read_run(tmp_path)
    assert r.losses == {1: 0.5, 2: 0.25} and r.val_losses == {}
    with open(events, "ab") as f:  # the writer finishes the line
        f.write(data[cut:])
    assert r.refresh().val_losses == {2: 0.3, 4: 0.2} and r.evaluation_error == "out of memory"

    events.write_bytes(data[:cut])  # a writer that died mid-line, then a later evaluation's failure is added
    append_event(tmp_path, ev.EvaluationFailed("again", str(tmp_path)))
    found, _ = read_events(tmp_path)
    assert len(found) == 6 and found[-1] == ev.EvaluationFailed("again", str(tmp_path))  # the torn line is skipped
    events.write_bytes(b'{"type": "Step", "step": 1}\n["not", "an", "event"]\n12\n{"type": "Nope"}\n\xff\xfe\n')
    assert read_events(tmp_path)[0] == [] and read_run(tmp_path).losses == {}  # the status still says step 4
