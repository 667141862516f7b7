"""The preset schema: defaults, shipped presets, and a table of bad presets with the field path in each message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from faceswap_kohya.config import presets
from faceswap_kohya.config.schema import Preset
from faceswap_kohya.errors import UserError


def test_defaults_are_a_face_lora():
    p = Preset(base_model="stabilityai/stable-diffusion-xl-base-1.0")
    assert p.instance_tokens == "myface woman"
    assert p.dataset.repeats == 10 and p.regularization.repeats == 1
    assert p.optimizer.type == "AdamW8bit"
    assert p.base_model.path.startswith("stabilityai/")


@pytest.mark.parametrize("info", presets.discover(), ids=lambda i: i.name)
def test_every_shipped_preset_validates_and_says_how_to_run(info):
    preset, _ = presets.load(str(info.path))
    text = info.path.read_text()
    assert text.startswith(f"# {info.name}:"), "a preset opens with a comment naming what it is for"
    assert "Run: faceswap-kohya train" in text
    assert info.vram != "?"
    assert preset.dataset.resolution % 64 == 0


def test_shipped_presets_are_found_by_scanning():
    names = {i.name for i in presets.discover()}
    assert {"face-24gb", "face-12gb", "face-8gb"} <= names
    assert "cpu-check" in names


BAD = [
    ({"training": {"epochs": 0}}, "training.epochs", "greater than or equal to 1"),
    ({"training": {"epoch": 3}}, "training.epoch", "unknown key"),
    ({"dataset": {"resolution": 1000}}, "dataset.resolution", "multiple of 64"),
    ({"dataset": {"bucket_reso_steps": 48}}, "dataset.bucket_reso_steps", "multiple of 32"),
    ({"subject": {"trigger": "my_face"}}, "subject.trigger", "no spaces, commas or underscores"),
    ({"subject": {"trigger": "my face"}}, "subject.trigger", "one word"),
    ({"training": {"max_token_length": 100}}, "training.max_token_length", "75"),
    ({"optimizer": {"type": "AdamW9bit"}}, "optimizer.type", "unknown optimizer"),
    ({"optimizer": {"unet_lr": "fast"}}, "optimizer.unet_lr", "valid number"),
    ({"training": {"cache_text_encoder_outputs": True}, "optimizer": {"text_encoder_lr": 1e-5}},
     "optimizer.text_encoder_lr", "must be 0 (UNet-only training) while training.cache_text_encoder_outputs is true"),
    ({"training": {"cache_text_encoder_outputs": True}, "dataset": {"captions": {"shuffle": True}}},
     "dataset.captions.shuffle", "must be false while training.cache_text_encoder_outputs"),
    ({"training": {"cache_text_encoder_outputs": True}, "dataset": {"captions": {"dropout_rate": 0.1}}},
     "dataset.captions.dropout_rate", "must be 0 while training.cache_text_encoder_outputs"),
    ({"dataset": {"color_aug": True}}, "dataset.color_aug", "set training.cache_latents to false (got True)"),
    ({"dataset": {"random_crop": True}}, "dataset.random_crop", "latents can't be cached"),
    ({"dataset": {"min_bucket_reso": 1024, "max_bucket_reso": 768}}, "dataset.min_bucket_reso",
     "larger than dataset.max_bucket_reso (768) (got 1024)"),
    ({"training": {"full_bf16": True, "mixed_precision": "fp16"}}, "training.mixed_precision", "must be bf16 for training.full_bf16"),
    ({"network": {"conv_alpha": 4}}, "network.conv_alpha", "set conv_dim too (got 4.0)"),
    ({"dataset": {"captions": {"template": "{name} photo"}}}, "dataset.captions.template", "{trigger}"),
    ({"sampling": {"every_n_epochs": 1}}, "sampling.prompts", "is empty but sampling.every_n_epochs/every_n_steps is set"),
    ({"sampling": {"prompts": ["ok", "{trigger} {clas}"]}}, "sampling.prompts.1", "unknown placeholder {clas}"),
    ({"sampling": {"prompts": ["a {b"]}}, "sampling.prompts.0", "unbalanced braces"),
    ({"sampling": {"prompts": ["{trigger} --w 4096"]}}, "sampling.prompts.0", "' --' would start a sampler option"),
    ({"sampling": {"prompts": ["line one\nline two"]}}, "sampling.prompts.0", "must be one line"),
    ({"sampling": {"prompts": ["# not a prompt"]}}, "sampling.prompts.0", "not start with '#'"),
    ({"sampling": {"negative_prompt": "blurry --n x"}}, "sampling.negative_prompt", "' --'"),
    ({"sampling": {"sampler": "dpmpp_2m_karras"}}, "sampling.sampler", "sd-scripts has no dpmpp_2m_karras"),
    ({"regularization": {"scheduler": "dpm_fast"}}, "regularization.scheduler", "'dpmpp_2m'"),
    ({"regularization": {"prompts": ["photo of a {cls}"]}}, "regularization.prompts.0", "{cls}"),
    ({"regularization": {"generate": 3, "prompts": []}}, "regularization.prompts", "is empty but regularization.generate is set"),
    ({"regularization": {"generate": 3, "images": "class"}}, "regularization.generate", "not both (got 3)"),
    ({"evaluate": {"prompts": ["{trigger} {class!r}"]}}, "evaluate.prompts.0", "{class!r}"),
    ({"evaluate": {"seeds": []}}, "evaluate.seeds", "at least 1"),
    ({"kohya": {"extra_args": ["--output_dir", "/x"]}}, "kohya.extra_args", "--output_dir is set by faceswap-kohya"),
    ({"kohya": {"extra_args": ["--output_n=x"]}}, "kohya.extra_args", "--output_name is set"),
    ({"network": {"args": ["--output_dir=/x"]}}, "network.args.0", "plain key"),
    ({"kohya": {"stall_minutes": 0}}, "kohya.stall_minutes", "greater than 0"),
    ({"dataset": {"mask": "body"}}, "dataset.mask", "'none', 'face', 'head' or 'person'"),
    ({"dataset": {"mask_floor": 1.5}}, "dataset.mask_floor", "less than or equal to 1"),
    ({"dataset": {"holdout": -1}}, "dataset.holdout", "greater than or equal to 0"),
    ({"evaluate": {"bleed_prompts": ["{trigger} {class} at a cafe"]}}, "evaluate.bleed_prompts", "must not contain {trigger}"),
    ({"evaluate": {"bleed_prompts": ["photo of myface"]}}, "evaluate.bleed_prompts.0", "contains the trigger 'myface'"),
    ({"evaluate": {"embedder": "insightface"}}, "evaluate", "now embedder: arcface"),
    ({"evaluate": {"insightface_root": "~/.insightface"}}, "evaluate", "replaced by arcface_models"),
]


def test_sd_scripts_sampler_names_are_aliases_of_the_one_vocabulary():
    p = presets.validate({"base_model": "m", "sampling": {"sampler": "dpmsolver++"},
                          "regularization": {"scheduler": "k_euler_a"}}, "p")
    assert (p.sampling.sampler, p.regularization.scheduler) == ("dpmpp_2m", "euler_a")
    assert presets.validate({"base_model": "m", "regularization": {"scheduler": "dpmpp_2m_karras"}}, "p")


@pytest.mark.parametrize("patch,where,text", BAD, ids=[b[1] + ":" + b[2][:12] for b in BAD])
def test_bad_presets_name_the_field(patch, where, text):
    data = {"base_model": "model.safetensors", **patch}
    with pytest.raises(UserError) as e:
        presets.validate(data, "p.yaml")
    msg = str(e.value)
    assert msg.startswith("p.yaml: ")
    assert f"  {where}: " in msg
    assert text in msg
    assert "(top level)" not in msg, "every error names its field"


def test_all_errors_reported_at_once_with_the_value():
    data = {"base_model": "m.safetensors", "training": {"epochs": -1, "batch_size": 0}, "network": {"dimm": 8}}
    with pytest.raises(UserError) as e:
        presets.validate(data, "p.yaml")
    msg = str(e.value)
    assert msg.startswith("p.yaml: 3 errors")
    assert "training.epochs" in msg and "(got -1)" in msg
    assert "training.batch_size" in msg and "network.dimm: unknown key" in msg


# Two field errors and two broken cross-field rules: all four at once, each as `field.path: message (got VALUE)`.
MIXED = "base_model: m.safetensors\ntraining: {epochs: 0}\ndataset: {resolution: 1000, color_aug: true}\n" \
        "network: {conv_alpha: 4}\n"
MIXED_LINES = [
    "  training.epochs: Input should be greater than or equal to 1 (got 0)",
    "  dataset.resolution: must be a multiple of 64 for SDXL (try 1024) (got 1000)",
    "  dataset.color_aug: changes images every step, so latents can't be cached: turn it off or set "
    "training.cache_latents to false (got True)",
    "  network.conv_alpha: is set but network.conv_dim is not: set conv_dim too (got 4.0)",
]


def test_field_and_cross_field_errors_are_reported_together(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(MIXED)
    with pytest.raises(UserError) as e:
        presets.load(str(f))
    msg = str(e.value)
    assert msg.splitlines()[0] == f"{f}: 4 errors"
    assert sorted(msg.splitlines()[1:]) == sorted(MIXED_LINES)


def test_the_validate_command_shows_every_error_at_once(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(MIXED)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "faceswap_kohya", "validate", str(f)], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"error: {f}: 4 errors" in r.stderr
    for line in MIXED_LINES:
        assert line in r.stderr.splitlines(), f"{line!r} not in:\n{r.stderr}"


def test_a_rule_steps_aside_when_a_field_it_needs_is_invalid():
    with pytest.raises(UserError) as e:  # caching's own value is bad: only that, no rule about text_encoder_lr
        presets.validate({"base_model": "m", "training": {"cache_text_encoder_outputs": "maybe"},
                          "optimizer": {"text_encoder_lr": 1e-5}}, "p.yaml")
    assert str(e.value).startswith("p.yaml: 1 error\n  training.cache_text_encoder_outputs: Input should be a valid boolean")
    with pytest.raises(UserError) as e:  # text_encoder_lr is bad: its own error, and the shuffle rule still applies
        presets.validate({"base_model": "m", "training": {"cache_text_encoder_outputs": True},
                          "optimizer": {"text_encoder_lr": "x"}, "dataset": {"captions": {"shuffle": True}}}, "p.yaml")
    lines = str(e.value).splitlines()
    assert lines[0] == "p.yaml: 2 errors"
    assert lines[1].startswith("  optimizer.text_encoder_lr: Input should be a valid number") and "(got 'x')" in lines[1]
    assert lines[2].startswith("  dataset.captions.shuffle: must be false while training.cache_text_encoder_outputs")
    with pytest.raises(UserError) as e:  # a section that is not a mapping: its error only
        presets.validate({"base_model": "m", "dataset": 5, "training": {"cache_latents": True}}, "p.yaml")
    assert str(e.value).count("\n") == 1 and "  dataset: Input should be a valid dictionary" in str(e.value)


def test_the_model_itself_still_refuses_a_broken_rule():
    Preset.model_validate({"base_model": "m", "dataset": {"color_aug": True}, "training": {"cache_latents": False}})
    with pytest.raises(ValueError, match="dataset.color_aug: changes images every step"):
        Preset.model_validate({"base_model": "m", "dataset": {"color_aug": True}})
    p = Preset(base_model="m")
    p.training.mixed_precision, p.training.full_bf16 = "fp16", True  # assignments check the field alone
    with pytest.raises(UserError, match="training.mixed_precision: must be bf16 for training.full_bf16 .*got 'fp16'"):
        presets.validate(p.model_dump(), "p")


def test_missing_base_model_is_named():
    with pytest.raises(UserError, match=r"base_model: Field required"):
        presets.validate({}, "p.yaml")


def test_overrides_are_typed_and_validated():
    data = presets.apply_overrides({"base_model": "m.safetensors"},
                                   ["training.epochs=12", "dataset.images=~/photos", "optimizer.text_encoder_lr=[1e-5, 2e-5]"])
    p = presets.validate(data, "p")
    assert p.training.epochs == 12
    assert not p.dataset.images.startswith("~")
    assert p.optimizer.text_encoder_lr == (1e-5, 2e-5)
    with pytest.raises(UserError, match="training.epochs"):
        presets.validate(presets.apply_overrides({"base_model": "m"}, ["training.epochs=many"]), "p")
    with pytest.raises(UserError, match="expected key=value"):
        presets.apply_overrides({}, ["training.epochs"])
    with pytest.raises(UserError, match="is a value, not a section"):
        presets.apply_overrides({"training": {"epochs": 3}}, ["training.epochs.x=1"])


@pytest.mark.parametrize("content,expected", [
    ("", "the file is empty"),
    ("- a\n- b\n", "expected a mapping"),
    ("base_model: [unclosed\n", "invalid YAML at line"),
    ("\x00\xff binary", "not a text file"),
])
def test_unreadable_preset_files(tmp_path, content, expected):
    f = tmp_path / "bad.yaml"
    f.write_text(content, encoding="latin-1")
    with pytest.raises(UserError) as e:
        presets.load(str(f))
    assert str(f) in str(e.value) and expected in str(e.value)


def test_missing_preset_lists_shipped_ones():
    with pytest.raises(UserError, match="no such preset file.*face-24gb"):
        presets.resolve("nope.yaml")


def test_union_fields_give_one_line_without_type_names():
    with pytest.raises(UserError) as e:
        presets.validate({"base_model": "m", "optimizer": {"text_encoder_lr": "abc", "warmup_steps": "x"}}, "p.yaml")
    msg = str(e.value)
    assert msg.startswith("p.yaml: 2 errors")
    assert ".float" not in msg and ".int" not in msg and ".tuple" not in msg
    assert "  optimizer.text_encoder_lr: Input should be a valid number" in msg and msg.count("(got 'abc')") == 1


def test_likeness_defaults_and_face_presets():
    p = Preset(base_model="m.safetensors")
    assert (p.dataset.mask, p.dataset.mask_floor, p.dataset.holdout) == ("none", 0.1, None)  # holdout: decided from the photos
    assert p.evaluate.embedder == "dlib" and all("{trigger}" not in b for b in p.evaluate.bleed_prompts)
    assert p.evaluate.bleed_prompts and all("{class}" in b for b in p.evaluate.bleed_prompts)
    for name in ("face-24gb", "face-12gb", "face-8gb", "cpu-check"):
        preset, _ = presets.load(name)
        assert (preset.dataset.mask, preset.dataset.holdout) == ("head", 1), name


def test_run_folders_written_before_the_arcface_option_still_load():
    p = presets.validate({"base_model": "m", "evaluate": {"embedder": "dlib", "insightface_root": None}}, "old run")
    assert p.evaluate.embedder == "dlib" and p.evaluate.arcface_models is None
