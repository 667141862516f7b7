"""Every command, given a bad input, answers with one short message that names the file or field.

Each case runs the real command (click's CliRunner) in an empty working directory and asserts: a non-zero
exit (2: a message, not a crash), the expected words (the file or field named), no traceback, a short
message, nothing created in the output folder or the working directory, every input file unchanged, and
no model loaded and no trainer started (those functions are replaced by ones that only record a call).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from face_data import FACES
from PIL import Image

pytest.importorskip("diffusers", reason="the matrix builds a tiny SDXL pipeline (diffusers)")
pytest.importorskip("dlib", reason="the photo, swap and identity cases detect faces (dlib)")
pytestmark = pytest.mark.usefixtures("user_home")  # a private FACESWAP_KOHYA_HOME

DATA = Path(__file__).parent / "data" / "kohya"
MAX_LINES, MAX_CHARS = 5, 700  # "short": the message from "error:" on


# ---------------------------------------------------------------- the inputs, made once
def _json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def _photos(folder: Path, names) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(FACES / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Every input the cases point at: presets, Kohya files, photo folders, models, LoRAs, run folders."""
    from tiny_sdxl import build_tiny_pipeline, write_kohya_lora

    from faceswap_kohya.config import presets
    from faceswap_kohya.config.schema import Preset

    w = tmp_path_factory.mktemp("world")
    pipe = build_tiny_pipeline()
    pipe.save_pretrained(w / "tiny")
    # presets
    (w / "empty.yaml").write_text("")
    (w / "broken.yaml").write_text("base_model: [unclosed\n")
    (w / "unknown_key.yaml").write_text("base_model: m.safetensors\ntraining:\n  learning_rate: 1\n")
    (w / "binary.yaml").write_bytes(b"\x00\xff\xfe binary")
    fake_sd = w / "fake-sd-scripts"  # a stand-in trainer: checks pass, and the launch is guarded anyway
    fake_sd.mkdir()
    (fake_sd / "sdxl_train_network.py").write_text("raise SystemExit('never run')\n")
    (fake_sd / "flux_train_network.py").write_text("raise SystemExit('never run')\n")
    (w / "train.yaml").write_text(
        f"base_model: {w / 'tiny'}\nsubject: {{trigger: myface, class_word: man}}\n"
        f"dataset: {{images: {w / 'photos'}, resolution: 64, repeats: 1}}\n"
        f"kohya: {{sd_scripts: {fake_sd}, python: {sys.executable}, tokenizer_cache: null}}\n")
    # Kohya files
    gui = {"sdxl": True, "LoRA_type": "Standard", "network_dim": 8, "network_alpha": 4, "learning_rate": "1e-4"}
    (w / "bad.json").write_text('{"sdxl": true,\n "network_dim": 8,,}\n')
    _json(w / "sched_args.json", gui | {"lr_scheduler_args": "--output_dir=/x"})
    _json(w / "fast.json", gui | {"learning_rate": "fast"})
    _json(w / "many.json", gui | {"network_dim": "many"})
    _json(w / "big.json", gui | {"max_resolution": "big"})
    _json(w / "flux_oft_gui.json", {"LoRA_type": "Flux1 OFT", "flux1_checkbox": True, "unet_lr": 1e-4})
    for name in ("sd15_gui.json", "flux_gui.json", "colab_dataset.toml"):
        shutil.copy(DATA / name, w / name)
    (w / "existing.toml").write_text("# mine\n")
    # photo folders and files
    _photos(w / "photos", ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg"])
    _photos(w / "two_photos", ["obama.jpg", "obama3.jpg"])
    _photos(w / "two_people", ["obama.jpg", "obama3.jpg", "biden.jpg"])  # with a mirrored biden: 2 + 2, no majority
    Image.open(FACES / "biden.jpg").transpose(Image.FLIP_LEFT_RIGHT).save(w / "two_people" / "biden-mirrored.jpg", quality=90)
    (w / "faceless").mkdir()  # one photo: each one costs all of face detection's passes
    Image.new("RGB", (200, 160), "gray").save(w / "faceless" / "wall.png")
    (w / "empty").mkdir()
    (w / "a_file.txt").write_text("not a folder\n")
    shutil.copy(FACES / "obama2.jpg", w / "face.jpg")
    Image.new("RGB", (300, 300), "gray").save(w / "grey.png")
    (w / "notimage.jpg").write_text("not an image\n")
    (w / "prompts_empty.txt").write_text("# nothing but comments\n\n")
    _photos(w / "subjects" / "alice", ["obama.jpg", "obama2.jpg", "obama3.jpg"])  # batch: a broken subject.yaml
    (w / "subjects" / "alice" / "subject.yaml").write_text("trigger: [x\n")
    # models and LoRAs
    (w / "no_index").mkdir()
    (w / "text.safetensors").write_text("not a model at all, just text\n")
    write_kohya_lora(pipe, w / "lora_as_base.safetensors")
    (w / "loose").mkdir()
    write_kohya_lora(pipe, w / "loose" / "lora.safetensors")
    (w / "lora.bin").write_bytes(b"\x00" * 64)
    (w / "truncated.safetensors").write_bytes((w / "lora_as_base.safetensors").read_bytes()[:3000])
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"foo.weight": np.zeros((2, 2), np.float32)}, str(w / "not_lora.safetensors"))
    # FLUX files: headers as the real ones (the tensors sd-scripts' loaders need, first dimensions as theirs), tiny
    tiny = lambda *shape: np.zeros(shape, np.float16)  # noqa: E731
    save_file({"double_blocks.0.img_attn.proj.bias": tiny(8), "single_blocks.0.modulation.lin.bias": tiny(8)},
              str(w / "flux_dit.safetensors"))
    save_file({"encoder.conv_out.weight": tiny(32, 1), "decoder.conv_in.weight": tiny(512, 16)}, str(w / "flux_ae.safetensors"))
    save_file({"text_model.encoder.layers.0.self_attn.q_proj.weight": tiny(768, 1)}, str(w / "clip_l.safetensors"))
    save_file({"encoder.block.0.layer.0.SelfAttention.q.weight": tiny(4096, 1)}, str(w / "t5xxl.safetensors"))
    save_file({"model.diffusion_model.input_blocks.0.0.weight": tiny(4, 1)}, str(w / "sdxl_single.safetensors"))
    (w / "flux.yaml").write_text(
        f"base_model: {{family: flux, path: {w / 'flux_dit.safetensors'}, ae: {w / 'flux_ae.safetensors'}, "
        f"clip_l: {w / 'clip_l.safetensors'}, t5xxl: {w / 't5xxl.safetensors'}}}\n"
        f"subject: {{trigger: myface, class_word: man}}\n"
        f"dataset: {{images: {w / 'photos'}, resolution: 64, repeats: 1}}\n"
        f"kohya: {{sd_scripts: {fake_sd}, python: {sys.executable}, tokenizer_cache: null}}\n")
    (w / "loras").mkdir()
    (w / "loras" / "bad.safetensors").write_bytes(b"garbage")
    # run folders
    run = w / "run"
    preset = Preset.model_validate({"base_model": str(w / "tiny"), "output": {"name": "myface", "dir": str(w / "runs")},
                                    "subject": {"trigger": "myface", "class_word": "man"}, "dataset": {"resolution": 64}})
    (run / "model").mkdir(parents=True)
    (run / "preset.yaml").write_text(presets.dump(preset))
    (run / "config.toml").write_text("")
    (run / "img" / "1_myface man").mkdir(parents=True)
    shutil.copy(FACES / "obama.jpg", run / "img" / "1_myface man" / "001.jpg")
    write_kohya_lora(pipe, run / "model" / "myface.safetensors")
    (w / "empty_run").mkdir()
    (w / "empty_run" / "preset.yaml").write_text(presets.dump(preset))
    (w / "broken_run").mkdir()
    (w / "broken_run" / "preset.yaml").write_text("base_model: [unclosed\n")
    return w


def snapshot(folder: Path) -> dict:
    """Every file's hash and every folder under `folder`: any file written, added or removed shows."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


# ---------------------------------------------------------------- the cases
# (id, command line, words the message must contain); @name is a path in the world, @out the output folder.
CASES = [
    # presets
    ("preset-missing", "validate @w/missing.yaml", ["missing.yaml: no such preset file"]),
    ("preset-empty", "validate @w/empty.yaml", ["empty.yaml: the file is empty"]),
    ("preset-bad-yaml", "validate @w/broken.yaml", ["broken.yaml: invalid YAML at line"]),
    ("preset-unknown-key", "validate @w/unknown_key.yaml", ["training.learning_rate: unknown key"]),
    ("preset-binary", "render @w/binary.yaml -o @out", ["binary.yaml: not a text file"]),
    ("preset-show-missing", "presets show nope", ["nope: no such preset file"]),
    ("preset-cp-no-folder", "presets cp face-8gb @w/nowhere/mine.yaml", ["mine.yaml: the folder", "does not exist"]),
    # prompt templates
    ("template-typo", "render face-8gb \"sampling.prompts=['{trigger} {clas}']\" -o @out", ["sampling.prompts.0", "{clas}"]),
    ("template-open-brace", "render face-8gb \"sampling.prompts=['a {b']\" -o @out", ["sampling.prompts.0", "unbalanced braces"]),
    ("template-option", "render face-8gb \"sampling.prompts=['{trigger} man --w 4096']\" -o @out",
     ["sampling.prompts.0", "' --'"]),
    ("template-newline", "validate face-8gb 'sampling.prompts=[\"a\\nb\"]'", ["sampling.prompts.0", "one line"]),
    ("template-negative", "render face-8gb 'sampling.negative_prompt=blurry --n x' -o @out", ["sampling.negative_prompt"]),
    ("template-evaluate", "validate face-8gb \"evaluate.prompts=['{trigger} {cls}, photo']\"", ["evaluate.prompts.0", "{cls}"]),
    ("template-regularization", "regularize face-8gb regularization.generate=2 \"regularization.prompts=['a {clas}']\"",
     ["regularization.prompts.0", "{clas}"]),
    ("template-caption", "prepare face-8gb dataset.images=@w/photos output.dir=@out dataset.captions.template='{trigger}}'",
     ["dataset.captions.template"]),
    # overrides
    ("override-no-value", "validate face-8gb training.epochs", ["override 'training.epochs': expected key=value"]),
    ("override-not-a-number", "validate face-8gb training.epochs=many", ["training.epochs", "(got 'many')"]),
    ("override-into-a-value", "validate face-8gb training.epochs.x=1", ["training.epochs is a value, not a section"]),
    ("override-bad-list", "validate face-8gb 'sampling.prompts=[a, {b'", ["override 'sampling.prompts=[a, {b'",
                                                                        "not a valid YAML list"]),
    ("override-resolution", "render face-8gb dataset.resolution=1000 -o @out", ["dataset.resolution", "multiple of 64"]),
    ("override-extra-args", "render face-8gb kohya.extra_args=['--output_dir=/tmp/x'] -o @out",
     ["kohya.extra_args", "--output_dir is set by faceswap-kohya"]),
    ("override-optimizer-args", "validate face-8gb optimizer.args=['--lr=1']", ["optimizer.args", "plain key"]),
    # samplers
    ("sampler-regularization", "validate face-8gb regularization.scheduler=dpm_fast", ["regularization.scheduler", "dpm_fast"]),
    ("sampler-sd-scripts", "render face-8gb sampling.sampler=dpmpp_2m_karras -o @out", ["sampling.sampler", "sd-scripts has no"]),
    ("sampler-generate", "generate @w/run 'myface man' --sampler dpm_fast", ["--sampler 'dpm_fast': use one of"]),
    ("sampler-compare", "compare @w/run 'myface man' --sampler dpm_fast -o @out", ["--sampler 'dpm_fast'"]),
    ("sampler-swap", "swap @w/run --photo @w/face.jpg --sampler dpm_fast -o @out", ["--sampler 'dpm_fast'"]),
    # Kohya files
    ("kohya-bad-json", "presets import @w/bad.json", ["bad.json: invalid JSON at line 2"]),
    ("kohya-option-value", "presets import @w/sched_args.json -o @out/p.yaml",
     ["sched_args.json: lr_scheduler_args", "--output_dir=/x"]),
    ("kohya-not-a-number", "presets import @w/fast.json", ["fast.json: learning_rate: 'fast' is not a number"]),
    ("kohya-validate", "validate @w/many.json", ["many.json: network_dim: 'many' is not a number"]),
    ("kohya-resolution", "render @w/big.json -o @out", ["big.json: max_resolution: 'big' is not a resolution"]),
    ("kohya-sd15", "render @w/sd15_gui.json -o @out", ["sd15_gui.json", "SD 1.5"]),
    ("kohya-flux-oft-train", "train @w/flux_oft_gui.json output.dir=@out", ["flux_oft_gui.json", "Flux.1 OFT"]),
    ("kohya-dataset-toml", "presets import @w/colab_dataset.toml", ["colab_dataset.toml: this is a dataset TOML"]),
    ("kohya-train-option-value", "train @w/sched_args.json output.dir=@out", ["lr_scheduler_args", "--output_dir=/x"]),
    ("export-existing", "presets export face-8gb --format sd-scripts -o @w/existing.toml", ["existing.toml already exists"]),
    ("export-kohya-input", "presets export @w/sched_args.json --format kohya-gui -o @out/p.json", ["lr_scheduler_args"]),
    # photo folders
    ("photos-missing", "prepare face-8gb dataset.images=@w/nowhere output.dir=@out",
     ["dataset.images: folder", "nowhere does not exist"]),
    ("photos-a-file", "prepare face-8gb dataset.images=@w/a_file.txt output.dir=@out",
     ["dataset.images:", "a_file.txt is a file"]),
    ("photos-empty", "prepare face-8gb dataset.images=@w/empty output.dir=@out", ["dataset.images:", "empty has no photos"]),
    ("photos-too-few", "prepare face-8gb dataset.images=@w/two_photos output.dir=@out", ["dataset.images: only 2 usable photos"]),
    ("photos-no-faces", "prepare face-8gb dataset.images=@w/faceless output.dir=@out", ["dataset.images: only 0 usable photos",
                                                                                         "wall.png: no face found"]),
    ("identity-check-unknown", "prepare face-8gb dataset.images=@w/photos dataset.identity_check=maybe output.dir=@out",
     ["dataset.identity_check", "exclude", "warn", "off"]),
    ("identity-check-not-a-word", "render face-8gb dataset.identity_check=1 -o @out", ["dataset.identity_check"]),
    ("identity-no-majority", "prepare face-8gb dataset.images=@w/two_people output.dir=@out",
     ["dataset.identity_check: no clear majority identity", "biden"]),
    ("identity-no-majority-train", "train @w/train.yaml dataset.images=@w/two_people output.dir=@out",
     ["dataset.identity_check: no clear majority identity"]),
    ("photos-unset", "train face-8gb output.dir=@out", ["dataset.images is not set"]),
    ("photos-too-few-train", "train @w/train.yaml dataset.images=@w/two_photos output.dir=@out", ["only 2 usable photos"]),
    ("photos-reg-missing", "prepare @w/train.yaml regularization.images=@w/nowhere output.dir=@out",
     ["regularization.images: folder", "nowhere does not exist"]),
    # base models
    ("base-missing-train", "train @w/train.yaml base_model.path=@w/none.safetensors output.dir=@out",
     ["base_model.path:", "none.safetensors does not exist"]),
    ("base-is-a-lora-train", "train @w/train.yaml base_model.path=@w/lora_as_base.safetensors output.dir=@out",
     ["base_model.path:", "a LoRA file, not a base model"]),
    ("base-folder-train", "train @w/train.yaml base_model.path=@w/no_index output.dir=@out",
     ["base_model.path:", "no model_index.json"]),
    ("base-missing-generate", "generate --base @w/none.safetensors --no-lora 'myface man' -o @out",
     ["none.safetensors: does not exist"]),
    ("base-not-safetensors", "generate --base @w/text.safetensors --no-lora 'myface man' -o @out",
     ["text.safetensors: not a readable .safetensors file"]),
    ("base-folder-compare", "compare @w/run/model/myface.safetensors 'myface man' --base @w/no_index -o @out",
     ["no_index: a folder but not a diffusers pipeline"]),
    ("base-is-a-lora-evaluate", "evaluate @w/run --base @w/lora_as_base.safetensors -o @out",
     ["lora_as_base.safetensors: a LoRA file"]),
    ("base-missing-swap", "swap @w/run --photo @w/face.jpg --base @w/none.safetensors -o @out",
     ["none.safetensors: does not exist"]),
    ("base-missing-regularize", "regularize @w/train.yaml regularization.generate=2 base_model.path=@w/none.safetensors",
     ["none.safetensors: does not exist"]),
    # FLUX base models: each file checked from its header before anything starts
    ("base-flux-t5xxl-unset", "validate @w/flux.yaml base_model.t5xxl=null",
     ["base_model.t5xxl: is required for base_model.family flux"]),
    ("base-flux-t5xxl-missing", "train @w/flux.yaml base_model.t5xxl=@w/none.safetensors output.dir=@out",
     ["base_model.t5xxl:", "none.safetensors does not exist"]),
    ("base-flux-t5xxl-missing-validate", "validate @w/flux.yaml base_model.t5xxl=@w/none.safetensors",
     ["base_model.t5xxl:", "none.safetensors does not exist"]),
    ("base-flux-t5xxl-not-safetensors", "validate @w/flux.yaml base_model.t5xxl=@w/text.safetensors",
     ["base_model.t5xxl:", "text.safetensors: not a readable .safetensors file"]),
    ("base-flux-sdxl-as-dit", "train @w/flux.yaml base_model.path=@w/sdxl_single.safetensors output.dir=@out",
     ["base_model.path:", "is not a FLUX DiT", "looks like an SDXL checkpoint"]),
    ("base-flux-swapped-encoders", "train @w/flux.yaml base_model.clip_l=@w/t5xxl.safetensors output.dir=@out",
     ["base_model.clip_l:", "is not a CLIP-L text encoder", "looks like a T5-XXL"]),
    ("base-flux-file-for-sdxl", "train @w/train.yaml base_model.path=@w/flux_dit.safetensors output.dir=@out",
     ["base_model.path:", "a FLUX DiT, not an SDXL checkpoint", "family: flux"]),
    ("base-flux-check-family", "validate face-8gb base_model.path=builtin:flux-check",
     ["base_model.family: must be flux for builtin:flux-check"]),
    # LoRA files
    ("lora-not-safetensors", "generate @w/lora.bin 'myface man' --base @w/tiny -o @out", ["lora.bin: not a LoRA file"]),
    ("lora-truncated", "generate @w/truncated.safetensors 'myface man' --base @w/tiny -o @out",
     ["truncated.safetensors: not a readable .safetensors file"]),
    ("lora-not-a-lora", "generate @w/not_lora.safetensors 'myface man' --base @w/tiny -o @out",
     ["not_lora.safetensors: not a LoRA"]),
    # the LoRA is named before any base model is opened, whatever the base model is
    ("lora-not-a-lora-before-a-missing-base", "generate @w/not_lora.safetensors 'myface man' --base @w/none.safetensors -o @out",
     ["not_lora.safetensors: not a LoRA"]),
    ("lora-truncated-before-a-wrong-base", "compare @w/truncated.safetensors 'myface man' --base @w/lora_as_base.safetensors -o @out",
     ["truncated.safetensors: not a readable"]),
    ("lora-not-a-lora-before-a-hub-base", "generate @w/not_lora.safetensors 'myface man' --base someone/some-model -o @out",
     ["not_lora.safetensors: not a LoRA"]),
    ("lora-not-a-lora-evaluate-before-the-base",
     "evaluate --lora @w/not_lora.safetensors --refs @w/photos --base @w/none.safetensors --trigger x --class man -o @out",
     ["not_lora.safetensors: not a LoRA"]),
    ("lora-not-a-lora-swap-before-the-base", "swap @w/not_lora.safetensors --photo @w/face.jpg --base @w/none.safetensors --prompt 'x man' -o @out",
     ["not_lora.safetensors: not a LoRA"]),
    ("lora-missing", "compare @w/missing.safetensors 'myface man' -o @out",
     ["missing.safetensors: no such run folder or LoRA file"]),

        ("lora-truncated-evaluate",
     "evaluate --lora @w/truncated.safetensors --refs @w/photos --base @w/tiny --trigger x --class man -o @out",
     ["truncated.safetensors: not a readable .safetensors file"]),
    ("lora-not-a-lora-swap", "swap @w/not_lora.safetensors --photo @w/face.jpg --base @w/tiny --prompt 'x man' -o @out",
     ["not_lora.safetensors: not a LoRA"]),
    # <lora:> tags
    ("tag-unknown", "generate @w/run 'myface man <lora:nothere:0.5>' -o @out", ["<lora:nothere:..>: no nothere.safetensors"]),
    ("tag-weight", "generate @w/run 'myface man <lora:myface:strong>' -o @out",
     ["<lora:myface:strong>", "weight must be a number"]),
    ("tag-only", "generate @w/run '<lora:myface:1>' -o @out", ["prompt 1", "empty once its <lora:..> tags are removed"]),
    ("tag-folder-missing", "compare @w/run 'p <lora:style:0.5>' --lora-dir @w/nowhere -o @out",
     ["LoRA folder", "nowhere: does not exist"]),
    ("tag-broken-file", "generate @w/run 'x <lora:bad:1>' --lora-dir @w/loras -o @out", ["bad.safetensors: not a readable"]),
    # run folders
    ("run-not-a-run", "generate @w/photos 'myface man' -o @out", ["photos: not a run folder (no preset.yaml)"]),
    ("run-no-lora", "generate @w/empty_run 'myface man' -o @out", ["empty_run: no myface.safetensors", "saved no LoRA yet"]),
    ("run-no-such-epoch", "generate @w/run 'myface man' --epoch 7 -o @out", ["no myface-000007.safetensors"]),
    ("run-broken-preset", "generate @w/broken_run 'myface man' -o @out", ["preset.yaml: invalid YAML"]),
    ("run-evaluate-not-a-run", "evaluate @w/empty -o @out", ["empty: not a run folder (no preset.yaml)"]),
    ("run-evaluate-no-checkpoints", "evaluate @w/empty_run -o @out", ["no LoRA checkpoints in"]),
    ("run-resume-not-a-run", "train --resume @w/empty", ["empty: not a run folder"]),
    ("run-resume-no-state", "train --resume @w/run", ["no saved training state", "save_state: false"]),
    ("run-swap-no-lora", "swap @w/empty_run --photo @w/face.jpg -o @out", ["saved no LoRA yet"]),
    # prompts
    ("prompt-empty", "generate @w/run '' -o @out", ["prompt 1 is empty"]),
    ("prompt-file-empty", "generate @w/run -f @w/prompts_empty.txt -o @out", ["prompts_empty.txt: no prompts in it"]),
    ("prompt-file-missing", "generate @w/run -f @w/nowhere.txt -o @out", ["nowhere.txt: cannot read it"]),
    ("prompt-none", "generate @w/run -o @out", ["no prompt"]),
    ("prompt-no-trigger", "swap @w/loose/lora.safetensors --photo @w/face.jpg --base @w/tiny -o @out",
     ["no trigger/class to fill in"]),
    # sizes and numbers
    ("size-not-multiple", "generate @w/run 'myface man' --size 100 -o @out", ["width 100: must be a multiple of 8"]),
    ("size-not-a-number", "generate @w/run 'myface man' --size big -o @out", ["--size 'big'"]),
    ("size-zero-compare", "compare @w/run 'myface man' --size 0x64 -o @out", ["width 0"]),
    ("size-swap", "swap @w/run --photo @w/face.jpg --size 100 -o @out", ["--size 100: must be a multiple of 8"]),
    ("size-evaluate", "evaluate @w/run --size 36 -o @out", ["width 36"]),
    ("steps-zero", "generate @w/run 'myface man' --steps 0 -o @out", ["--steps 0"]),
    ("cfg-negative", "generate @w/run 'myface man' --cfg -1 -o @out", ["--cfg -1: the guidance scale must be 0 or more"]),
    ("cfg-negative-swap", "swap @w/run --photo @w/face.jpg --cfg -2 -o @out", ["--cfg -2: the guidance scale must be 0 or more"]),
    # swap photos
    ("swap-photo-missing", "swap @w/run --photo @w/none.jpg -o @out", ["none.jpg: no such file"]),
    ("swap-photo-folder", "swap @w/run --photo @w/empty -o @out", ["empty: a folder; give one photo file"]),
    ("swap-photo-not-image", "swap @w/run --photo @w/notimage.jpg -o @out", ["notimage.jpg: not a readable image"]),
    ("swap-photo-no-face", "swap @w/run --photo @w/grey.png -o @out", ["grey.png: no face found"]),
    ("swap-face-number", "swap @w/run --photo @w/face.jpg --face 3 -o @out", ["--face 3", "has 1 face"]),
    ("swap-strength", "swap @w/run --photo @w/face.jpg --strength 0 -o @out", ["--strength 0"]),
    ("swap-padding", "swap @w/run --photo @w/face.jpg --padding -1 -o @out", ["--padding -1"]),
    # sweeps, batches and the web app
    ("sweep-one-trial", "sweep face-8gb network.dim=16 -o @out", ["a sweep needs at least two trials"]),
    ("sweep-bad-value", "sweep face-8gb network.dim=16,many -o @out", ["1 of 2 trials would have an invalid preset",
                                                                        "network.dim", "(got 'many')"]),
    ("sweep-kohya-file", "sweep @w/sched_args.json network.dim=8,16 -o @out", ["sched_args.json: lr_scheduler_args"]),
    ("batch-no-subjects", "batch face-8gb @w/empty -o @out", ["SUBJECTS_DIR", "no subfolder with photos"]),
    ("batch-bad-subject-file", "batch face-8gb @w/subjects -o @out", ["alice/subject.yaml: invalid YAML"]),
    ("ui-bad-auth", "ui --auth nopassword -o @out", ["--auth: expected USER:PASSWORD"]),
    ("ui-bad-port", "ui --port 99999 -o @out", ["'--port'", "99999"]),
    # identity references
    ("refs-missing", "identity --refs @w/nowhere @w/face.jpg", ["'--refs'", "nowhere"]),
    ("refs-faceless", "identity --refs @w/faceless @w/face.jpg", ["faceless: no face found in any of its 1 photos"]),
    ("refs-empty", "identity --refs @w/empty @w/face.jpg", ["empty: no photos"]),
    ("refs-faceless-evaluate", "evaluate @w/run --refs @w/faceless -o @out", ["faceless: no face found in any"]),
    ("refs-empty-swap", "swap @w/run --photo @w/face.jpg --refs @w/empty -o @out", ["empty: no photos"]),
]


def test_the_matrix_covers_every_command_and_kind_of_input():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
    commands = {c[1].split()[0] if c[1].split()[0] != "presets" else " ".join(c[1].split()[:2]) for c in CASES}
    assert commands >= {"validate", "render", "prepare", "train", "regularize", "generate", "compare", "swap", "identity",
                        "evaluate", "presets import", "presets export", "presets show", "presets cp", "sweep", "batch", "ui"}
    kinds = {c[0].split("-")[0] for c in CASES}
    assert kinds >= {"preset", "template", "override", "kohya", "photos", "base", "lora", "tag", "run", "prompt", "size",
                     "sampler", "swap", "refs"}


@pytest.fixture
def guarded(monkeypatch):
    """Loading a model or starting the trainer only records the call (and fails, should it happen)."""
    from faceswap_kohya.diffusion import pipeline
    from faceswap_kohya.jobs import generate, train
    from faceswap_kohya.models import checkmodel
    from faceswap_kohya.sweeps import runner
    from faceswap_kohya.trainer import launch
    from faceswap_kohya.web import app

    calls = []

    def forbidden(name):
        def record(*args, **kwargs):
            calls.append(name)
            raise RuntimeError(f"{name} was called")
        return record

    monkeypatch.setattr(pipeline, "load_pipeline", forbidden("load_pipeline"))
    monkeypatch.setattr(generate, "load_pipeline", forbidden("load_pipeline"))  # bound at its import: patched there too
    monkeypatch.setattr(train, "launch", forbidden("launch"))
    monkeypatch.setattr(launch, "launch", forbidden("launch"))
    monkeypatch.setattr(checkmodel, "build_check_model", forbidden("build_check_model"))
    monkeypatch.setattr(runner, "run_specs", forbidden("run_specs"))  # Ray trials of sweep and batch
    monkeypatch.setattr(app, "serve", forbidden("serve"))  # the web app
    return calls


def _argv(line: str, paths: dict[str, Path]) -> list[str]:
    import shlex

    return [re.sub(r"@(\w+)", lambda m: str(paths[m.group(1)]), tok) for tok in shlex.split(line)]


@pytest.mark.parametrize("line,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_message(world, tmp_path, monkeypatch, guarded, line, expected):
    from faceswap_kohya.cli.main import cli

    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    paths = {"w": world, "out": out}
    before = snapshot(world)

    r = CliRunner().invoke(cli, _argv(line, paths))

    text = r.output
    assert r.exit_code == 2, f"exit {r.exit_code}:\n{text}"
    assert "Traceback" not in text and not (r.exception and not isinstance(r.exception, SystemExit)), text
    for words in expected:
        words = re.sub(r"@(\w+)", lambda m: str(paths[m.group(1)]), words)
        assert words in text, f"{words!r} not in:\n{text}"
    start = max(text.rfind("\nerror: "), text.rfind("\nError: "), 0 if text.lower().startswith("error: ") else -1)
    assert start >= 0, text
    message = text[start:].strip()
    assert len(message.splitlines()) <= MAX_LINES and len(message) <= MAX_CHARS, message
    assert not out.exists() or not any(out.iterdir()), f"created in the output folder: {list(out.rglob('*'))}"
    assert not any(cwd.iterdir()), f"created in the working directory: {list(cwd.rglob('*'))}"
    assert snapshot(world) == before, "an input was changed"
    assert guarded == [], f"{guarded} ran although the input could be checked first"
