"""Parsing sd-scripts' output, recorded from real runs of sdxl_train_network.py (tests/data/trainer_*.log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceswap_kohya.errors import NO_SPACE, SPACE_FIELD_ENV
from faceswap_kohya.events import CheckpointWritten, Epoch, ModelSaved, Step, ValidationLoss
from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.trainer.launch import judge
from faceswap_kohya.trainer.progress import LineSplitter, TrainerOutput, bar_clock, diagnose, log_events, parse_line

DATA = Path(__file__).parent / "data"


def events_of(name: str, chunk: int = 97):
    """Feed the recorded output in odd-sized chunks, as a pipe delivers it."""
    text = (DATA / name).read_text()
    splitter, events = LineSplitter(), []
    for i in range(0, len(text), chunk):
        for line in splitter.feed(text[i:i + chunk]):
            if (e := parse_line(line)) is not None:
                events.append(e)
    for line in splitter.flush():
        if (e := parse_line(line)) is not None:
            events.append(e)
    return events


def test_successful_run_events():
    events = events_of("trainer_ok.log")
    steps = [e for e in events if isinstance(e, Step)]
    assert steps[0].step == 0 and steps[-1].step == steps[-1].total == 2
    assert steps[-1].loss == pytest.approx(1.18)
    assert 3.0 < steps[-1].sec_per_it < 6.0
    assert Epoch(1, 1) in events
    saved = [e for e in events if isinstance(e, CheckpointWritten)]
    assert saved and saved[-1].path.endswith("model/myface-check.safetensors")
    saved_at = events.index(ModelSaved())
    assert events.index(saved[-1]) < saved_at  # the checkpoint, then "model saved."
    after = events[saved_at + 1:]  # only the step bar's last redraw, at 2/2, follows it
    assert after and all(isinstance(e, Step) and e.step == e.total == 2 for e in after), after
    assert diagnose((DATA / "trainer_ok.log").read_text()).reason == "the trainer failed"  # nothing known matched


@pytest.mark.parametrize("line,expected", [
    ("steps:  50%|█████     | 2/4 [01:44<01:44, 52.22s/it, avr_loss=0.917]", Step(2, 4, "01:44", "01:44", 52.22, 0.917)),
    ("steps:  10%|█         | 10/100 [00:05<00:45,  2.00it/s, avr_loss=0.1]", Step(10, 100, "00:05", "00:45", 0.5, 0.1)),
    ("steps:   0%|          | 0/1600 [00:00<?, ?it/s]", Step(0, 1600, "00:00", "?", None, None)),
    ("epoch 3/10", Epoch(3, 10)),
    ("saving checkpoint: /runs/a b/model/me-000002.safetensors", CheckpointWritten("/runs/a b/model/me-000002.safetensors")),
    ("2026-11-26 14:36:29 INFO     model saved.                  train_network.py:1729", ModelSaved()),
    ("INFO     prepare tokenizers", None),
])
def test_single_lines(line, expected):
    assert parse_line(line) == expected


def test_splitter_handles_carriage_returns_across_chunks():
    s = LineSplitter()
    assert s.feed("steps:  50%|x| 1/2 [00:01<00:01") == []
    assert s.feed(", 1.0s/it]\rsteps: 100%|x| 2/2 [00:02<00:00, 1.0s/it]\r\nepo") == [
        "steps:  50%|x| 1/2 [00:01<00:01, 1.0s/it]", "steps: 100%|x| 2/2 [00:02<00:00, 1.0s/it]"]
    assert s.flush() == ["epo"]


def test_no_data_found_is_a_failure_despite_exit_code_0(tmp_path):
    run = RunLayout(tmp_path)
    run.log.write_text((DATA / "trainer_nodata.log").read_text())
    result = judge(run, "myface", code=0, interrupted=False)
    assert not result.ok
    assert result.diagnosis.reason == "sd-scripts found no training images"
    assert any("No data found" in ln for ln in result.diagnosis.lines)


WHOLE = (2).to_bytes(8, "little") + b"{}"  # a whole (empty) .safetensors file


def test_nan_loss_is_a_failure_even_with_a_lora_written(tmp_path):
    run = RunLayout(tmp_path)
    run.log.write_text((DATA / "trainer_nan.log").read_text())
    run.model.mkdir()
    (run.model / "myface-check.safetensors").write_bytes(WHOLE)
    result = judge(run, "myface-check", code=0, interrupted=False)
    assert result.final is not None and not result.ok
    assert result.diagnosis.reason == "the loss became NaN"
    assert "no_half_vae" in result.diagnosis.hint
    assert any("avr_loss=nan" in ln for ln in result.diagnosis.lines)


def test_crash_shows_the_script_error_not_the_launcher(tmp_path):
    d = diagnose((DATA / "trainer_missing_model.log").read_text())
    assert d.reason == "the base model could not be found"
    assert any(ln.startswith("ValueError: The provided pretrained_model_name_or_path") for ln in d.lines)
    assert not any("CalledProcessError" in ln for ln in d.lines)


def test_ok_run_judged_ok(tmp_path):
    run = RunLayout(tmp_path)
    run.log.write_text((DATA / "trainer_ok.log").read_text())
    run.model.mkdir()
    (run.model / "myface-check.safetensors").write_bytes(WHOLE)
    result = judge(run, "myface-check", code=0, interrupted=False)
    assert result.ok and result.final.name == "myface-check.safetensors"
    assert judge(run, "myface-check", code=1, interrupted=False).diagnosis is not None


def test_a_lora_cut_short_is_never_listed_and_is_removed_after_a_failure(tmp_path):
    run = RunLayout(tmp_path)
    run.log.write_text("steps: 100%|#| 2/2 [00:01<00:00, 1.00s/it, avr_loss=0.1]\nOSError: [Errno 28] No space left on device\n")
    run.model.mkdir()
    (run.model / "myface-check-000001.safetensors").write_bytes(WHOLE)
    torn = run.model / "myface-check.safetensors"
    header = b'{"w": {"dtype": "F16", "shape": [8], "data_offsets": [0, 16]}}'
    torn.write_bytes(len(header).to_bytes(8, "little") + header + bytes(6))  # 6 of its 16 data bytes
    result = judge(run, "myface-check", code=1, interrupted=False)
    assert result.final is None and [p.name for p in result.loras] == ["myface-check-000001.safetensors"]
    assert result.diagnosis.reason.startswith(f"no space left on device in {tmp_path}") and not torn.exists()
    assert "removed the half-written model/myface-check.safetensors" in result.diagnosis.hint


@pytest.mark.parametrize("log,reason", [
    ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", "the GPU ran out of memory"),
    ("ModuleNotFoundError: No module named 'bitsandbytes'", "bitsandbytes (8-bit optimizers) failed to load"),
    ("ModuleNotFoundError: No module named 'lycoris'", "a Python module is missing in the trainer's environment"),
])
def test_known_causes_get_hints(log, reason):
    d = diagnose("INFO start\n" + log + "\n")
    assert d.reason == reason and d.hint and log in d.lines


# ---------------------------------------------------------------- validation loss on held-out photos
def test_validation_loss_is_one_event_per_validation_from_a_real_run():
    """trainer_validation.log: cpu-check with head masks and one held-out photo (one validation after the
    epoch, 4 timesteps). The bar's final state is drawn twice (the first with the previous loss)."""
    text = (DATA / "trainer_validation.log").read_text()
    assert text.count("val_epoch_avg_loss=0.669") >= 1 and text.count("4/4 [") >= 2
    events = log_events(text)
    (val,) = [e for e in events if isinstance(e, ValidationLoss)]
    assert val == ValidationLoss(2, 0.669, 1, "epoch")
    # reported after the last training step and before the model is saved; the bar's late redraw when it is
    # closed (at the end, with another elapsed time) is not a second validation
    last_step = next(i for i, e in enumerate(events) if isinstance(e, Step) and e.step == e.total)
    assert last_step < events.index(val) < events.index(ModelSaved())
    assert text.count("4/4 [02:58<00:00") == 1
    assert not [e for e in events if isinstance(e, Step) and e.total == 4], "validation bars are not training steps"
    assert "alpha_mask: True" in text  # sd-scripts says the masked loss is on


def test_validation_bars_stale_redraws_and_late_close_are_not_reported_twice():
    lines = ["steps:  50%|█| 1/2 [00:01<00:01, 1.0s/it, avr_loss=0.5]",
             "validation steps:   0%|          | 0/2 [00:00<?, ?it/s]",
             "validation steps:  50%|█| 1/2 [00:01<00:01, 1.0s/it]",
             "validation steps:  50%|█| 1/2 [00:01<00:01, 1.0s/it, val_avg_loss=0.3, timestep=333]",
             "validation steps: 100%|█| 2/2 [00:02<00:00, 1.0s/it, val_avg_loss=0.3, timestep=333]\x1b[A",
             "validation steps: 100%|█| 2/2 [00:02<00:00, 1.0s/it, val_avg_loss=0.35, timestep=666]\x1b[A",
             "steps: 100%|█| 2/2 [00:02<00:00, 1.0s/it, avr_loss=0.4]",
             "validation steps: 100%|█| 2/2 [00:09<00:00, 1.0s/it, val_avg_loss=0.35, timestep=666]",  # closed later
             "epoch validation steps:   0%|          | 0/2 [00:00<?, ?it/s]",
             "epoch validation steps: 100%|█| 2/2 [00:02<00:00, 1.0s/it, val_epoch_avg_loss=0.31, timestep=666]"]
    output = TrainerOutput()
    events = [e for line in lines for e in output.feed(line)] + output.flush()
    assert [e for e in events if isinstance(e, ValidationLoss)] == [ValidationLoss(1, 0.35, None, "step"),
                                                                      ValidationLoss(2, 0.31, None, "epoch")]
    assert [e.step for e in events if isinstance(e, Step)] == [1, 2]
    assert parse_line(lines[3]) is None  # a redraw alone says nothing final


def test_a_cut_validation_redraw_is_no_training_step():
    """A validation bar's redraw read before its closing bracket still names "validation steps:", never a step."""
    assert parse_line("validation steps:  50%|█    | 2/4 [00:01<00:01,  1.20it/s") is None


def test_bar_clock_is_the_trainer_s_own_elapsed_time_per_step():
    """step × the bar's mean s/it (tqdm smoothing=0), from the first redraw of each step: trainer_ok.log shows
    1/2 at 4.33 s/it, then 2/2 at 4.25 s/it and again at 4.34 s/it when the bar is closed later."""
    clock = bar_clock(log_events((DATA / "trainer_ok.log").read_text()))
    assert clock == [(1, pytest.approx(4.33)), (2, pytest.approx(8.5))]
    fast = bar_clock([parse_line("steps:  10%|█         | 10/100 [00:05<00:45,  2.00it/s, avr_loss=0.1]")])
    assert fast == [(10, pytest.approx(5.0))]


SERVER_FOLDER = "the server's output folder (--output)"


@pytest.mark.parametrize("env, field", [(None, "output.dir"), (SERVER_FOLDER, SERVER_FOLDER)])
def test_a_full_disk_in_the_log_names_the_folder_setting_of_the_front_end(monkeypatch, env, field):
    if env is None:
        monkeypatch.delenv(SPACE_FIELD_ENV, raising=False)
    else:
        monkeypatch.setenv(SPACE_FIELD_ENV, env)
    d = diagnose("steps:  50%|#| 1/2\nOSError: [Errno 28] No space left on device\n")
    assert d.reason == NO_SPACE
    assert f"set {field} to a folder on another disk" in d.hint and "{space_field}" not in d.hint
