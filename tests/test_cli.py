"""The CLI through click's CliRunner: exit codes and output."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from faceswap_kohya import events as ev
from faceswap_kohya.cli.main import cli
from faceswap_kohya.cli.progress import Printer


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_presets_ls_lists_every_file_with_vram(run):
    r = run("presets", "ls")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].split() == ["NAME", "VRAM", "DESCRIPTION"]
    by_name = {ln.split()[0]: ln for ln in lines[1:]}
    assert "8 GB" in by_name["face-8gb"] and "UNet only" in by_name["face-8gb"]
    assert "24 GB" in by_name["face-24gb"]


def test_presets_cp_and_show_never_overwrite(run, tmp_path):
    dest = tmp_path / "mine.yaml"
    r = run("presets", "cp", "face-12gb", dest)
    assert r.exit_code == 0 and dest.read_text().startswith("# face-12gb:")
    dest.write_text("# my edits\n")
    r = run("presets", "cp", "face-12gb", dest)
    assert r.exit_code == 2 and "already exists" in r.output
    assert dest.read_text() == "# my edits\n"
    assert run("presets", "show", "face-8gb").output.startswith("# face-8gb:")


def test_validate_ok_and_errors(run, tmp_path):
    r = run("validate", "face-8gb", "training.epochs=4")
    assert r.exit_code == 0 and "valid" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_model: m.safetensors\ntraining:\n  epochs: -2\n  learning_rate: 1\n")
    r = run("validate", bad)
    assert r.exit_code == 2
    assert f"{bad}: 2 errors" in r.output
    assert "training.epochs" in r.output and "training.learning_rate: unknown key" in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("content,expected", [
    ("", "empty"), ("just a string", "expected a mapping"), ("a: [", "invalid YAML"),
    ("base_model: m\ntraining: {epochs: many}\n", "training.epochs"),
])
def test_bad_files_give_one_clean_error(run, tmp_path, content, expected):
    f = tmp_path / "p.yaml"
    f.write_text(content)
    r = run("validate", f)
    assert r.exit_code == 2 and expected in r.output and "Traceback" not in r.output
    assert r.output.startswith("error: ")


def test_validate_missing_file(run):
    r = run("validate", "no/such/preset.yaml")
    assert r.exit_code == 2 and "no/such/preset.yaml: no such preset file" in r.output


def test_render_writes_tomls_and_prints_command(run, tmp_path):
    r = run("render", "face-24gb", "dataset.repeats=12", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "dataset.toml").is_file() and (tmp_path / "out" / "config.toml").is_file()
    assert "12_myface woman" in (tmp_path / "out" / "dataset.toml").read_text()
    assert "sdxl_train_network.py --config_file" in r.output
    assert "accelerate.commands.launch" in r.output


def test_schema_is_json(run):
    schema = json.loads(run("schema").output)
    assert "training" in schema["properties"]
    assert schema["additionalProperties"] is False


def test_train_without_preset(run):
    r = run("train")
    assert r.exit_code == 2 and "give a preset" in r.output


# ---------------------------------------------------------------- Kohya files everywhere, crashes, --debug
KOHYA_GUI = Path(__file__).parent / "data" / "kohya" / "face_gui.json"


def test_every_preset_command_takes_a_kohya_file(run, tmp_path):
    r = run("validate", KOHYA_GUI)
    assert r.exit_code == 0 and f"{KOHYA_GUI}: valid" in r.output and "transformed:" in r.output
    r = run("render", KOHYA_GUI, "training.epochs=3", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert "max_train_epochs = 3" in (tmp_path / "out" / "config.toml").read_text()
    r = run("presets", "export", KOHYA_GUI, "--format", "sd-scripts", "-o", tmp_path / "back.toml")
    assert r.exit_code == 0 and (tmp_path / "back.toml").is_file() and (tmp_path / "back.dataset.toml").is_file()


def test_export_never_overwrites(run, tmp_path):
    (tmp_path / "mine.dataset.toml").write_text("# mine\n")
    r = run("presets", "export", "face-8gb", "--format", "sd-scripts", "-o", tmp_path / "mine.toml")
    assert r.exit_code == 2 and "mine.dataset.toml already exists" in r.output
    assert not (tmp_path / "mine.toml").exists() and (tmp_path / "mine.dataset.toml").read_text() == "# mine\n"


@pytest.fixture
def crash(monkeypatch):
    """`render` crashes with an error no check foresaw."""
    from faceswap_kohya.trainer import render

    def boom(*args, **kwargs):
        raise KeyError("clas")

    monkeypatch.setattr(render, "write_all", boom)  # the render job (jobs/render.py) calls it through the module


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(crash, tmp_path, monkeypatch):
    runner = CliRunner()
    r = runner.invoke(cli, ["render", "face-8gb", "-o", str(tmp_path / "out")])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output == ("error: cli render failed unexpectedly (KeyError: 'clas'); "
                        "run with --debug (or FACESWAP_KOHYA_DEBUG=1) for the traceback\n")
    r = runner.invoke(cli, ["--debug", "render", "face-8gb", "-o", str(tmp_path / "out")])
    assert isinstance(r.exception, KeyError)  # the traceback is the user's to see
    monkeypatch.setenv("FACESWAP_KOHYA_DEBUG", "1")
    r = runner.invoke(cli, ["render", "face-8gb", "-o", str(tmp_path / "out")])
    assert isinstance(r.exception, KeyError)


def test_a_helper_that_times_out_is_a_message(tmp_path, monkeypatch):
    import subprocess
    import sys

    from faceswap_kohya.trainer import check

    def slow(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(check.subprocess, "run", slow)
    fake = tmp_path / "sd"
    fake.mkdir()
    (fake / "sdxl_train_network.py").write_text("")
    r = CliRunner().invoke(cli, ["validate", "face-8gb", "--kohya", f"kohya.sd_scripts={fake}", f"kohya.python={sys.executable}"])
    assert r.exit_code == 2 and r.output.startswith("error: sd-scripts' checker") and "did not finish within 10 min" in r.output


def test_after_training_the_hint_names_the_runs_own_trigger_and_class(tmp_path, capsys):
    from faceswap_kohya.cli.train import report_result
    from faceswap_kohya.config import presets
    from faceswap_kohya.runs.layout import RunLayout
    from faceswap_kohya.trainer.launch import RunResult

    run = RunLayout(tmp_path / "run")
    run.model.mkdir(parents=True)
    preset, _ = presets.load("face-8gb", ["subject.trigger=sks", "subject.class_word=old man"])
    run.preset.write_text(presets.dump(preset))
    final = run.model / "myface.safetensors"
    final.write_bytes(b"x")
    report_result(RunResult(run, 0, [final], final, seconds=60))
    out = capsys.readouterr().out
    assert f'next: faceswap-kohya generate {run.root} "sks old man, portrait photo"' in out and "<trigger>" not in out


def test_the_printer_says_the_validation_loss_when_it_arrives(capsys):
    """Validation comes after an epoch's last step, when no bar update would show it: it gets its own line."""
    printer = Printer(bar=False)
    printer(ev.Step(step=2, total=2, loss=0.79))
    printer(ev.ValidationLoss(step=2, loss=0.669, epoch=1))
    printer(ev.ValidationLoss(step=4, loss=0.5, kind="step"))
    out = capsys.readouterr().out
    assert "validation loss on the held-out photos (epoch 1): 0.6690" in out
    assert "(step 4): 0.5000" in out


def test_the_bar_is_redrawn_a_few_times_a_second_and_ends_on_the_latest_step(capsys):
    """200 trainer redraws within a few milliseconds: a handful of bar redraws, and the last numbers are drawn
    once the redraw interval is up, without another event."""
    from faceswap_kohya.cli import progress

    printer = Printer()
    for i in range(1, 201):
        printer(ev.Step(step=i // 2, total=1000, loss=i / 1000))
    time.sleep(progress.REDRAW_S * 3)
    err = capsys.readouterr().err
    printer.close()
    redraws = err.count("\r")
    assert 1 <= redraws <= 4, f"{redraws} redraws"
    assert err.rstrip().endswith("loss=0.2000]") and "100/1000" in err.rsplit("\r", 1)[-1]
