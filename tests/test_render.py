"""Rendering: golden TOMLs for every shipped preset, the exact trainer argv, and sd-scripts' own checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tomllib
from conftest import needs_kohya

from faceswap_kohya.config import presets
from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.trainer import render
from faceswap_kohya.trainer.check import check_files, check_many
from faceswap_kohya.trainer.install import Trainer

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("FACESWAP_KOHYA_UPDATE_GOLDEN") == "1"  # refresh on purpose: FACESWAP_KOHYA_UPDATE_GOLDEN=1 pytest
RUN = RunLayout(Path("/RUN"))


def rendered(preset, tmp: Path) -> dict[str, str]:
    from faceswap_kohya.config.paths import home

    render.write_all(preset, RunLayout(tmp), "BASE_MODEL", "/TOKENIZERS")
    out = {}
    for name in ("dataset.toml", "config.toml", "sample_prompts.txt"):
        if (tmp / name).is_file():  # the FLUX check model's files are in the user's cache: /HOME
            out[name] = (tmp / name).read_text().replace(str(tmp), "/RUN").replace(str(home()), "/HOME")
    return out


@pytest.mark.parametrize("info", presets.discover(), ids=lambda i: i.name)
def test_golden_toml(info, tmp_path):
    preset, _ = presets.load(str(info.path))
    files = rendered(preset, tmp_path)
    for name, text in files.items():
        golden = GOLDEN / f"{info.name}.{name}"
        if UPDATE:
            golden.write_text(text)
        assert golden.is_file(), f"no golden file {golden.name}: write it on purpose with FACESWAP_KOHYA_UPDATE_GOLDEN=1"
        assert text == golden.read_text(), f"{golden.name} changed; refresh with FACESWAP_KOHYA_UPDATE_GOLDEN=1 if intended"
    # every golden file of this preset is still rendered (a file that is no longer written fails too)
    assert {p.name.removeprefix(f"{info.name}.") for p in GOLDEN.glob(f"{info.name}.*")} == set(files)


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


@pytest.mark.parametrize("name,sd_scripts", [("euler_a", "euler_a"), ("dpmpp_2m", "dpmsolver++"), ("k_euler", "euler"),
                                             ("dpmsolver++", "dpmsolver++"), ("dpmsingle", "dpmsingle")])
def test_samplers_reach_sd_scripts_by_its_own_names(name, sd_scripts):
    from faceswap_kohya.config.samplers import SAMPLERS

    p = presets.validate({"base_model": "m", "sampling": {"prompts": ["x"], "sampler": name}}, "p")
    assert render.train_config(p, RUN, "m")["sampling"]["sample_sampler"] == sd_scripts
    assert all(s.sd_scripts is None or s.sd_scripts in SD_SCRIPTS_CHOICES for s in SAMPLERS.values())


# sample_sampler choices of sdxl_train_network.py's parser (library/train_util.py, add_training_arguments)
SD_SCRIPTS_CHOICES = ("ddim", "pndm", "lms", "euler", "euler_a", "heun", "dpm_2", "dpm_2_a", "dpmsolver", "dpmsolver++",
                      "dpmsingle", "k_lms", "k_euler", "k_euler_a", "k_dpm_2", "k_dpm_2_a")


def test_sample_prompt_file_format():
    p = presets.validate({"base_model": "m", "dataset": {"resolution": 512},
                          "sampling": {"prompts": ["{trigger} {class}, portrait"], "every_n_epochs": 1, "seed": 5}}, "p")
    assert render.sample_prompts(p) == (
        "myface woman, portrait --n lowres, blurry, deformed --w 512 --h 512 --s 28 --d 5 --l 7\n")


@needs_kohya
def test_every_shipped_preset_passes_sd_scripts_checks(tmp_path):
    items, names = [], []
    for info in presets.discover():
        preset, _ = presets.load(str(info.path))
        run = RunLayout(tmp_path / info.name)
        render.write_all(preset, run, "/models/base.safetensors", "/tokenizers")
        items.append((Trainer.of(preset), run.config_toml, run.dataset_toml))
        names.append(info.name)
    assert {"cpu-check", "face-12gb", "flux-16gb", "flux-check"} <= set(names)
    results = check_many(items)  # one process: sd-scripts imported once for all of them
    for name, (trainer, _, _), result in zip(names, items, results):
        assert result == {"ok": True, "errors": [], "checked": result["checked"]}, name
        assert result["checked"] >= 25, name
        assert trainer.script.stem == ("flux_train_network" if name.startswith("flux") else "sdxl_train_network"), name


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


# ---------------------------------------------------------------- loss masks and held-out photos
def prepared_run(root: Path, preset, held_out: bool = True) -> RunLayout:
    """A run folder as preparation leaves it: masked training images (alpha 0.2, 0.4, 0.6), class images and,
    optionally, one held-out photo."""
    import numpy as np
    from PIL import Image

    from faceswap_kohya.runs.layout import instance_dir, reg_dir, validation_dir

    run = RunLayout(root)
    folders = [(instance_dir(preset, run), (51, 102, 153)), (reg_dir(preset, run), (None, None))]
    if held_out:
        folders.append((validation_dir(preset, run), (204,)))
    for folder, alphas in folders:
        folder.mkdir(parents=True)
        for i, alpha in enumerate(alphas):
            image = Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8))
            if alpha is not None:
                image.putalpha(alpha)
            image.save(folder / f"{i:03d}.png")
            (folder / f"{i:03d}.txt").write_text("myface woman, photo\n" if alpha is not None else "woman\n")
    return run


def test_masks_held_out_photos_and_class_image_weight_are_rendered(tmp_path):
    preset, _ = presets.load("cpu-check", ["regularization.images=/class-images"])
    run = prepared_run(tmp_path / "run", preset)
    render.write_all(preset, run, "/m.safetensors", None)
    train, val = tomllib.loads(run.dataset_toml.read_text())["datasets"]
    instance, reg = train["subsets"]
    assert instance["alpha_mask"] is True and reg["is_reg"] is True and "alpha_mask" not in reg
    assert "validation_split" not in train and val["validation_split"] == 1.0
    (held,) = val["subsets"]
    assert held == {"image_dir": str(run.val / "1_myface woman"), "class_tokens": "myface woman", "num_repeats": 1,
                    "alpha_mask": True}
    assert val["resolution"] == train["resolution"] and val["batch_size"] == train["batch_size"]
    training = tomllib.loads(run.config_toml.read_text())["training"]
    assert training["masked_loss"] is True
    assert training["prior_loss_weight"] == 0.4  # the training images' mean mask weight (0.2, 0.4, 0.6)
    # set by hand, it wins; no class images, no weight
    fixed, _ = presets.load("cpu-check", ["regularization.images=/class-images", "regularization.prior_loss_weight=0.7"])
    assert render.train_config(fixed, run, "m")["training"]["prior_loss_weight"] == 0.7
    assert "prior_loss_weight" not in render.train_config(presets.load("cpu-check")[0], run, "m")["training"]


def test_no_validation_dataset_without_held_out_photos(tmp_path):
    preset, _ = presets.load("cpu-check", ["training.validate_every_n_steps=5"])
    run = prepared_run(tmp_path / "run", preset, held_out=False)  # holdout: 1 asked, too few photos to hold one out
    assert len(render.dataset_config(preset, run)["datasets"]) == 1
    assert "validate_every_n_steps" not in render.train_config(preset, run, "m")["training"]
    with_held = prepared_run(tmp_path / "run2", preset)
    assert render.train_config(preset, with_held, "m")["training"]["validate_every_n_steps"] == 5
    # before preparation (a dry run) the preset decides; unset, the photos will
    unset, _ = presets.load("cpu-check", ["dataset.holdout=null", "dataset.mask=none"])
    assert len(render.dataset_config(unset, RUN)["datasets"]) == 1
    assert "alpha_mask" not in render.dataset_config(unset, RUN)["datasets"][0]["subsets"][0]
    assert "masked_loss" not in render.train_config(unset, RUN, "m")["training"]


@needs_kohya
def test_sd_scripts_trains_on_the_photos_and_validates_on_the_held_out_one(tmp_path, user_home):
    """sd-scripts' own checks accept the TOMLs, and its dataset code splits them as meant: the training images
    (with alpha masks) and class images to train on, only the held-out photo to validate on."""
    import json
    import subprocess

    from conftest import KOHYA_PYTHON, SD_SCRIPTS

    preset, _ = presets.load("cpu-check", ["regularization.images=/class-images"])
    run = prepared_run(tmp_path / "run", preset)
    render.write_all(preset, run, "/m.safetensors", str(user_home / "tokenizers"))
    result = check_files(Trainer.of(preset), run.config_toml, run.dataset_toml)
    assert result == {"ok": True, "errors": [], "checked": result["checked"]}
    script = (
        "import json, sys\n"
        "from library import config_util, train_util, strategy_base, strategy_sdxl\n"
        "import sdxl_train_network\n"
        "sys.argv = ['train', '--config_file', sys.argv[1], '--dataset_config', sys.argv[2]]  # read again below\n"
        "args = sdxl_train_network.setup_parser().parse_args()\n"
        "args = train_util.read_config_from_file(args, sdxl_train_network.setup_parser())\n"
        "train_util.prepare_dataset_args(args, True)\n"
        "strategy_base.TokenizeStrategy.set_strategy(strategy_sdxl.SdxlTokenizeStrategy(args.max_token_length, args.tokenizer_cache_dir))\n"
        "gen = config_util.BlueprintGenerator(config_util.ConfigSanitizer(True, True, args.masked_loss, True))\n"
        "bp = gen.generate(config_util.load_user_config(args.dataset_config), args)\n"
        "train, val = config_util.generate_dataset_group_by_blueprint(bp.dataset_group)\n"
        "train.set_current_strategies(); val.set_current_strategies()\n"
        "def info(group):\n"
        "    return [{'images': sorted(i.absolute_path.rsplit('/', 2)[1] for i in d.image_data.values()), 'regs': d.num_reg_images,\n"
        "             'masks': [round(float(group[k]['alpha_masks'].mean()), 3) if group[k]['alpha_masks'] is not None else None\n"
        "                       for k in range(len(group))]} for d in group.datasets]\n"
        "print(json.dumps({'train': info(train), 'val': info(val)}))\n")
    proc = subprocess.run([str(KOHYA_PYTHON), "-c", script, str(run.config_toml), str(run.dataset_toml)], cwd=SD_SCRIPTS,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    (val,) = out["val"]
    assert val["images"] == ["1_myface woman"] and val["masks"] == [0.8]  # the held-out photo, its mask
    assert out["train"][1]["images"] == []  # the held-out dataset trains on nothing
    trained = out["train"][0]
    assert sorted(set(trained["images"])) == ["1_myface woman", "1_woman"] and trained["regs"] == 2
    assert "val" not in " ".join(trained["images"])
