"""The CLI through click's CliRunner: exit codes and output."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from faceswap_kohya.cli.main import cli


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
