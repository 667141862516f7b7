"""Rendering: golden TOMLs for every shipped preset, the exact trainer argv, and sd-scripts' own checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tomllib
from conftest import needs_kohya

from faceswap_kohya.config import presets
from faceswap_kohya.config.layout import RunLayout
from faceswap_kohya.kohya import render
from faceswap_kohya.kohya.check import check_files
from faceswap_kohya.kohya.trainer import Trainer

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("FACESWAP_KOHYA_UPDATE_GOLDEN") == "1"  # refresh on purpose: FACESWAP_KOHYA_UPDATE_GOLDEN=1 pytest
RUN = RunLayout(Path("/RUN"))


def rendered(preset, tmp: Path) -> dict[str, str]:
    render.write_all(preset, RunLayout(tmp), "BASE_MODEL", "/TOKENIZERS")
    out = {}
    for name in ("dataset.toml", "config.toml", "sample_prompts.txt"):
        if (tmp / name).is_file():
            out[name] = (tmp / name).read_text().replace(str(tmp), "/RUN")
    return out


@pytest.mark.parametrize("info", presets.discover(), ids=lambda i: i.name)
def test_golden_toml(info, tmp_path):
    preset, _ = presets.load(str(info.path))
    files = rendered(preset, tmp_path)
    for name, text in files.items():
        golden = GOLDEN / f"{info.name}.{name}"
        if UPDATE or not golden.exists():
            golden.write_text(text)
        assert text == golden.read_text(), f"{golden.name} changed; refresh with FACESWAP_KOHYA_UPDATE_GOLDEN=1 if intended"


def test_kohya_folder_names_and_subsets():
    p = presets.validate({"base_model": "m.safetensors", "dataset": {"repeats": 10},
                          "regularization": {"images": "/reg", "repeats": 2}}, "p")
    ds = render.dataset_config(p, RUN)
    inst, reg = ds["datasets"][0]["subsets"]
    assert inst["image_dir"] == "/RUN/img/10_myface woman"
    assert inst["class_tokens"] == "myface woman" and inst["num_repeats"] == 10
    assert reg == {"image_dir": "/RUN/reg/2_woman", "class_tokens": "woman", "num_repeats": 2, "is_reg": True}
    assert ds["general"]["caption_extension"] == ".txt"


def test_config_types_match_sd_scripts():
    p = presets.validate({"base_model": "m.safetensors", "optimizer": {"text_encoder_lr": 5e-5},
                          "network": {"conv_dim": 8}}, "p")
    cfg = render.train_config(p, RUN, "m.safetensors")
    flat = {k: v for section in cfg.values() for k, v in section.items()}
    assert flat["resolution"] == "1024,1024"  # sd-scripts splits a string; an int crashes it later
    assert flat["text_encoder_lr"] == [5e-5, 5e-5]  # one per text encoder
    assert flat["network_args"] == ["conv_dim=8", "conv_alpha=8"]
    assert "network_train_unet_only" not in flat
    assert isinstance(flat["learning_rate"], float)
    unet_only = render.train_config(presets.validate({"base_model": "m"}, "p"), RUN, "m")
    assert unet_only["network"]["network_train_unet_only"] is True
    assert "text_encoder_lr" not in unet_only["optimizer"]


def test_max_steps_replaces_epochs():
    cfg = render.train_config(presets.validate({"base_model": "m", "training": {"max_steps": 7}}, "p"), RUN, "m")
    assert cfg["training"]["max_train_steps"] == 7 and "max_train_epochs" not in cfg["training"]


def test_exact_launcher_argv():
    p = presets.validate({"base_model": "m", "kohya": {"python": "/k/bin/python", "sd_scripts": "/sd",
                                                         "extra_args": ["--debug_dataset"]}}, "p")
    argv = render.trainer_argv(p, Trainer.of(p), RUN)
    assert argv == ["/k/bin/python", "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
                    "--num_cpu_threads_per_process", "2", "--mixed_precision", "bf16", "--dynamo_backend", "no",
                    "/sd/sdxl_train_network.py", "--config_file", "/RUN/config.toml",
                    "--dataset_config", "/RUN/dataset.toml", "--debug_dataset"]
    p.kohya.launcher = "python"
    assert render.trainer_argv(p, Trainer.of(p), RUN)[:2] == ["/k/bin/python", "/sd/sdxl_train_network.py"]


def test_sample_prompt_file_format():
    p = presets.validate({"base_model": "m", "dataset": {"resolution": 512},
                          "sampling": {"prompts": ["{trigger} {class}, portrait"], "every_n_epochs": 1, "seed": 5}}, "p")
    assert render.sample_prompts(p) == (
        "myface woman, portrait --n lowres, blurry, deformed --w 512 --h 512 --s 28 --d 5 --l 7\n")


@needs_kohya
def test_every_shipped_preset_passes_sd_scripts_checks(tmp_path):
    for info in presets.discover():
        preset, _ = presets.load(str(info.path))
        run = RunLayout(tmp_path / info.name)
        render.write_all(preset, run, "/models/base.safetensors", "/tokenizers")
        result = check_files(Trainer.of(preset), run.config_toml, run.dataset_toml)
        assert result == {"ok": True, "errors": [], "checked": result["checked"]}, info.name
        assert result["checked"] >= 25


@needs_kohya
def test_sd_scripts_checker_catches_what_sd_scripts_would_accept_silently(tmp_path):
    preset, _ = presets.load("cpu-check")
    run = RunLayout(tmp_path)
    render.write_all(preset, run, "/m.safetensors", None)
    cfg = tomllib.loads(run.config_toml.read_text())
    cfg["training"]["resolutoin"] = "64,64"
    cfg["optimizer"]["learning_rate"] = "1e-4"
    cfg["training"]["gradient_checkpointing"] = "yes"
    import tomli_w

    run.config_toml.write_text(tomli_w.dumps(cfg))
    run.dataset_toml.write_text(run.dataset_toml.read_text().replace("num_repeats", "num_repeat"))
    result = check_files(Trainer.of(preset), run.config_toml, run.dataset_toml)
    errors = "\n".join(result["errors"])
    assert not result["ok"]
    assert "resolutoin: not an option" in errors
    assert "learning_rate: sd-scripts would keep '1e-4' as a string" in errors
    assert "gradient_checkpointing: flag expects true/false" in errors
    assert "num_repeat" in errors
