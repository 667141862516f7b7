"""FLUX.1, the second model family: the preset's FLUX files checked from their headers (by `validate` as by `train`),
the stand-in T5 tokenizer of the check model, the rendering for flux_train_network.py, and (marked `trainer`) the
FLUX LoRA the real flux_train_network.py trained once per session (`trained_flux_run`, tests/trained_flux.py):
loaded into a diffusers FluxPipeline with every module attached and changing the image, and swapping a face with
FluxInpaintPipeline.

The session's FLUX run builds the FLUX check model once (cached in the user's FACESWAP_KOHYA_HOME, ~6 GB, ~2 min)
and trains it at 64 px for 2 steps (~1 min, ~15 GB RAM); each test then loads its pipeline (~40 s, ~17 GB): never
two at once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_kohya
from safetensors.numpy import save_file

from faceswap_kohya.config import presets
from faceswap_kohya.errors import UserError
from faceswap_kohya.models.base import check_checkpoint, check_flux_file
from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.trainer import render

RUN = RunLayout(Path("/RUN"))


def _file(path: Path, **tensors) -> Path:
    save_file({k: np.zeros(v, np.float16) for k, v in tensors.items()}, str(path))
    return path


# ---------------------------------------------------------------- the preset
def test_flux_presets_validate_and_sdxl_stays_the_default():
    assert presets.validate({"base_model": "m.safetensors"}, "p").base_model.family == "sdxl"
    for name in ("flux-24gb", "flux-16gb", "flux-12gb", "flux-check"):
        preset, _ = presets.load(name)
        assert preset.base_model.family == "flux", name
    vram = {name: presets.describe(preset_path(name)).vram for name in ("flux-24gb", "flux-16gb", "flux-12gb", "flux-check")}
    assert vram["flux-24gb"].startswith("24 GB (measured: ")  # by the GPU check (benchmarks/gpu-runs)
    assert all("(unmeasured: " in vram[n] for n in ("flux-16gb", "flux-12gb")), vram  # each says it is a claim
    assert vram["flux-check"] == "none (CPU)"


def preset_path(name: str) -> Path:
    return next(i.path for i in presets.discover() if i.name == name)


def test_flux_files_are_required_and_belong_to_flux():
    with pytest.raises(UserError) as e:
        presets.validate({"base_model": {"family": "flux", "path": "dit.safetensors", "ae": "ae.safetensors"}}, "p")
    assert "base_model.clip_l: is required" in str(e.value) and "base_model.t5xxl: is required" in str(e.value)
    with pytest.raises(UserError, match="base_model.t5xxl: is a FLUX file"):
        presets.validate({"base_model": {"path": "sdxl.safetensors", "t5xxl": "t5.safetensors"}}, "p")
    with pytest.raises(UserError, match="network.conv_dim: FLUX's DiT has no 3x3 convolutions"):
        presets.load("flux-check", ["network.conv_dim=4"])
    chroma = presets.validate({"base_model": {"family": "flux", "path": "c.safetensors", "ae": "a.safetensors",
                                              "t5xxl": "t.safetensors"}, "flux": {"model_type": "chroma"}}, "p")
    assert chroma.base_model.clip_l is None  # Chroma has no CLIP-L


def test_flux_files_are_recognised_from_their_headers(tmp_path):
    dit = _file(tmp_path / "dit.safetensors", **{"double_blocks.0.img_attn.proj.bias": (8,)})
    ae = _file(tmp_path / "ae.safetensors", **{"encoder.conv_out.weight": (32, 1)})
    sdxl_vae = _file(tmp_path / "vae.safetensors", **{"encoder.conv_out.weight": (8, 1)})
    clip = _file(tmp_path / "clip.safetensors", **{"text_model.encoder.layers.0.self_attn.q_proj.weight": (768, 1)})
    t5 = _file(tmp_path / "t5.safetensors", **{"encoder.block.0.layer.0.SelfAttention.q.weight": (4096, 1)})
    sdxl = _file(tmp_path / "sdxl.safetensors", **{"model.diffusion_model.input_blocks.0.0.weight": (4, 1)})
    for path, kind in ((dit, "dit"), (ae, "ae"), (clip, "clip_l"), (t5, "t5xxl")):
        check_flux_file(str(path), kind, kind)
    with pytest.raises(UserError, match="base_model.path: .* is not a FLUX DiT .it looks like an SDXL checkpoint"):
        check_flux_file(str(sdxl), "dit", "base_model.path")
    with pytest.raises(UserError, match="is not the FLUX autoencoder"):
        check_flux_file(str(sdxl_vae), "ae", "base_model.ae")
    with pytest.raises(UserError, match="base_model.t5xxl: .* is not a T5-XXL text encoder .it looks like a CLIP-L"):
        check_flux_file(str(clip), "t5xxl", "base_model.t5xxl")
    with pytest.raises(UserError, match="base_model.t5xxl: .*missing.safetensors does not exist"):
        check_flux_file(str(tmp_path / "missing.safetensors"), "t5xxl", "base_model.t5xxl")
    with pytest.raises(UserError, match="a FLUX DiT, not an SDXL checkpoint"):
        check_checkpoint(dit, "base_model.path:")


def flux_model_files(folder: Path) -> dict[str, Path]:
    """The four FLUX files with headers as the real ones (the tensors the checks read, first dimensions as theirs), tiny,
    and beside them a tokenizer cache with a folder for T5's (offline, a real FLUX model needs one)."""
    (folder / "tokenizers" / "google_t5-v1_1-xxl").mkdir(parents=True, exist_ok=True)
    return {"path": _file(folder / "dit.safetensors", **{"double_blocks.0.img_attn.proj.bias": (8,)}),
            "ae": _file(folder / "ae.safetensors", **{"encoder.conv_out.weight": (32, 1)}),
            "clip_l": _file(folder / "clip_l.safetensors", **{"text_model.encoder.layers.0.self_attn.q_proj.weight": (768, 1)}),
            "t5xxl": _file(folder / "t5xxl.safetensors", **{"encoder.block.0.layer.0.SelfAttention.q.weight": (4096, 1)})}


def file_overrides(files: dict) -> list[str]:
    return [f"base_model.{k}={v}" for k, v in files.items()] + [f"kohya.tokenizer_cache={files['path'].parent / 'tokenizers'}"]


def test_validate_checks_the_flux_files_as_train_does(tmp_path):
    from click.testing import CliRunner

    from faceswap_kohya.cli.main import cli
    from faceswap_kohya.trainer.install import check_base_model

    files = flux_model_files(tmp_path / "models")
    good = CliRunner().invoke(cli, ["validate", "flux-16gb", *file_overrides(files)])
    assert good.exit_code == 0 and good.output.strip().endswith(": valid"), good.output
    for bad, message in ((f"base_model.t5xxl={tmp_path / 'no' / 'such.safetensors'}", "does not exist"),
                         (f"base_model.t5xxl={files['clip_l']}", "is not a T5-XXL text encoder (it looks like a CLIP-L"),
                         (f"base_model.ae={tmp_path / 'models' / 'x.txt'}", "does not exist")):
        r = CliRunner().invoke(cli, ["validate", "flux-16gb", *file_overrides(files), bad])
        assert r.exit_code == 2 and message in r.output, (bad, r.output)
        with pytest.raises(UserError) as train_says:  # what `train` says before it starts: the same message
            check_base_model(presets.load("flux-16gb", [*file_overrides(files), bad])[0])
        assert str(train_says.value) in r.output and str(train_says.value).startswith(bad.split("=")[0] + ": ")
    (tmp_path / "torn.safetensors").write_bytes(b"\x10\x00")
    torn = f"base_model.t5xxl={tmp_path / 'torn.safetensors'}"
    r = CliRunner().invoke(cli, ["validate", "flux-16gb", *file_overrides(files), torn])
    assert r.exit_code == 2 and "base_model.t5xxl: " in r.output and "not a readable .safetensors file" in r.output
    # the shipped preset as it is: its placeholder DiT path names the first file that is missing
    r = CliRunner().invoke(cli, ["validate", "flux-16gb", "base_model.t5xxl=/no/such/file"])
    assert r.exit_code == 2 and "base_model.path: models/flux1-dev.safetensors does not exist" in r.output, r.output
    assert CliRunner().invoke(cli, ["validate", "flux-check"]).exit_code == 0  # built when a run is prepared


def test_a_chroma_preset_needs_no_clip_l_and_is_not_evaluated(tmp_path):
    from faceswap_kohya.trainer.install import check_flux_model

    files = flux_model_files(tmp_path / "models")
    chroma = [f"base_model.{k}={files[k]}" for k in ("path", "ae", "t5xxl")] + ["flux.model_type=chroma",
                                                                                "flux.guidance_scale=0.0"]
    chroma.append(file_overrides(files)[-1])  # the tokenizer cache
    preset, _ = presets.load("flux-16gb", [*chroma, "base_model.clip_l=null"])
    check_flux_model(preset)  # the three files it has, checked; no CLIP-L asked for
    cfg = render.train_config(preset, RUN, preset.base_model.path)
    assert cfg["model"]["model_type"] == "chroma" and "clip_l" not in cfg["model"]
    with pytest.raises(UserError, match="evaluate.enabled: must be false for flux.model_type chroma"):
        presets.load("flux-16gb", [*chroma, "base_model.clip_l=null", "evaluate.enabled=true"])


def test_the_web_train_page_checks_and_renders_a_flux_preset(tmp_path):
    from faceswap_kohya.trainer.install import Trainer
    from faceswap_kohya.web import train as page
    from faceswap_kohya.web.common import Workspace

    files = flux_model_files(tmp_path / "models")
    ws = Workspace(tmp_path / "ws").make()
    good = tmp_path / "my-flux.yaml"
    good.write_text(presets.dump(presets.load("flux-16gb", file_overrides(files))[0]))
    knobs = page.Knobs("flux-16gb", str(good), "bob", "man", "steps", 30, 8, 4, 2e-4, 512, False)
    text = page.check_text(knobs, ws, str(tmp_path / "photos"), "")
    assert text.startswith("**valid**: my-flux.yaml") and "faceswap-kohya train" in text, text
    preset, _, _, args = page.load(knobs, ws, str(tmp_path / "photos"))
    assert args[:2] == ["train", str(good)]
    assert Trainer.of(preset).script.name == "flux_train_network.py"
    cfg = render.train_config(preset, RUN, preset.base_model.path)
    assert cfg["model"] == {"pretrained_model_name_or_path": str(files["path"]), "ae": str(files["ae"]),
                            "clip_l": str(files["clip_l"]), "t5xxl": str(files["t5xxl"])}
    assert (cfg["network"]["network_module"], cfg["network"]["network_dim"], cfg["training"]["max_train_steps"]) == \
        ("networks.lora_flux", 8, 30)
    bad = tmp_path / "bad-flux.yaml"
    bad.write_text(presets.dump(presets.load("flux-16gb", [*file_overrides(files), f"base_model.t5xxl={files['clip_l']}"])[0]))
    text = page.check_text(page.Knobs("flux-16gb", str(bad), "bob", "man", "steps", 30, 8, 4, 2e-4, 512, False), ws, "", "")
    assert "**valid**" not in text and "base_model.t5xxl: " in text and "is not a T5-XXL text encoder" in text, text


def test_sweeps_and_batches_plan_flux_trials_that_render_for_flux_train_network(tmp_path, monkeypatch):
    from faceswap_kohya.sweeps.plan import plan_batch, plan_sweep
    from faceswap_kohya.trainer.install import Trainer

    monkeypatch.chdir(tmp_path)
    flux_model_files(tmp_path / "models")
    relative = [f"base_model.{k}=models/{n}" for k, n in (("path", "dit.safetensors"), ("ae", "ae.safetensors"),
                                                          ("clip_l", "clip_l.safetensors"), ("t5xxl", "t5xxl.safetensors"))]
    relative.append(f"kohya.tokenizer_cache={tmp_path / 'models' / 'tokenizers'}")
    plan = plan_sweep("flux-16gb", [*relative, "network.dim=8,16", "dataset.images=photos"], out=tmp_path / "sweeps")
    assert len(plan.trials) == 2
    dims = []
    for trial in plan.trials:
        preset = presets.validate(plan.trial_preset(trial), trial.label)
        b = preset.base_model
        # a Ray worker may run elsewhere: every FLUX file is absolute, as base_model.path
        names = ("dit.safetensors", "ae.safetensors", "clip_l.safetensors", "t5xxl.safetensors")
        assert (b.path, b.ae, b.clip_l, b.t5xxl) == tuple(str(tmp_path / "models" / n) for n in names)
        assert Trainer.of(preset).script.name == "flux_train_network.py"
        cfg = render.train_config(preset, RUN, b.path)
        assert cfg["network"]["network_module"] == "networks.lora_flux" and cfg["model"]["t5xxl"] == b.t5xxl
        assert cfg["training"]["timestep_sampling"] == "flux_shift"
        dims.append(cfg["network"]["network_dim"])
    assert sorted(dims) == [8, 16]
    with pytest.raises(UserError) as e:
        plan_sweep("flux-16gb", [*[o for o in relative if not o.startswith("base_model.t5xxl=")],
                                 "base_model.t5xxl=models/none.safetensors", "network.dim=8,16"],
                   out=tmp_path / "sweeps2")
    assert "2 of 2 trials would have an invalid preset" in str(e.value) and "base_model.t5xxl: " in str(e.value)
    assert "[every trial]" in str(e.value)
    from PIL import Image

    for person in ("alice", "bob"):
        (tmp_path / "subjects" / person).mkdir(parents=True)
        Image.new("RGB", (64, 64), "gray").save(tmp_path / "subjects" / person / "1.jpg")
    batch = plan_batch("flux-16gb", tmp_path / "subjects", relative, out=tmp_path / "batches")
    assert [t.settings["output.name"] for t in batch.trials] == ["alice", "bob"]
    for trial in batch.trials:
        preset = presets.validate(batch.trial_preset(trial), trial.label)
        assert render.train_config(preset, RUN, preset.base_model.path)["network"]["network_module"] == "networks.lora_flux"


def test_the_service_takes_a_flux_preset_and_names_a_bad_flux_file(tmp_path, monkeypatch):
    """The service's presets are the server's (clients may not set base_model.*): a FLUX preset of its presets folder
    with the server's files is queued; one whose file is missing or not what it claims is a 422 naming the field."""
    pytest.importorskip("fastapi", reason="the service needs fastapi: pip install 'faceswap_kohya[service]'")
    import shutil

    from face_data import FACES
    from service_server import Server, create_key

    files = flux_model_files(tmp_path / "models")
    folder = tmp_path / "server-presets"
    folder.mkdir()
    shutil.copy(preset_path("flux-16gb"), folder)  # as shipped: its placeholder models/flux1-dev.safetensors
    for name, bad in (("my-flux", []), ("flux-no-t5", [f"base_model.t5xxl={tmp_path / 'none.safetensors'}"]),
                      ("flux-ae-as-dit", [f"base_model.path={files['ae']}"])):
        (folder / f"{name}.yaml").write_text(presets.dump(presets.load("flux-16gb", [*file_overrides(files), *bad])[0]))
    monkeypatch.setenv("FACESWAP_KOHYA_PRESETS", str(folder))
    out = tmp_path / "service"
    out.mkdir()
    key = create_key(out, None, "a")[0]
    server = Server(out, None, "--hold")
    photos = [("photos", (n, (FACES / n).read_bytes(), "image/jpeg")) for n in ("obama.jpg", "obama2.jpg", "obama3.jpg")]
    try:
        with server.client(key) as c:
            r = c.post("/v1/trainings", files=photos, data={"preset": "my-flux", "overrides": '{"network.dim": 8}'})
            assert r.status_code == 201, r.text
            assert r.json()["status"] == "queued"
            for preset, field, message in (
                    ("flux-no-t5", "base_model.t5xxl",
                     f"base_model.t5xxl: {tmp_path / 'none.safetensors'} does not exist "
                     "(a T5-XXL text encoder .safetensors file)"),
                    ("flux-ae-as-dit", "base_model.path", "is not a FLUX DiT (it looks like the FLUX autoencoder"),
                    ("flux-16gb", "base_model.path", "base_model.path: models/flux1-dev.safetensors does not exist")):
                r = c.post("/v1/trainings", files=photos, data={"preset": preset})
                assert r.status_code == 422, (preset, r.text)
                error = r.json()["error"]
                assert error["field"] == field and message in error["message"], (preset, error)
            r = c.post("/v1/trainings", files=photos, data={"preset": "my-flux",
                                                           "overrides": json.dumps({"base_model.t5xxl": "/x.safetensors"})})
            assert r.status_code == 422 and "set by the service" in r.json()["error"]["message"], r.text
            assert len(c.get("/v1/trainings").json()["data"]) == 1  # the refused ones left no job
    finally:
        assert server.stop() == 130, server.log()  # SIGTERM: non-zero, the jobs left queued


# ---------------------------------------------------------------- the stand-in T5 tokenizer
def test_the_check_models_t5_tokenizer_is_shaped_as_t5s(tmp_path):
    pytest.importorskip("transformers", reason="the tokenizer is read with transformers' T5TokenizerFast")
    from transformers import T5TokenizerFast

    from faceswap_kohya.models.tokenizers import ensure_flux_check_tokenizers

    cache = ensure_flux_check_tokenizers(tmp_path / "tok")
    assert (cache / "openai_clip-vit-large-patch14" / "vocab.json").is_file()  # CLIP-L as for SDXL
    tok = T5TokenizerFast.from_pretrained(str(cache / "google_t5-v1_1-xxl"))
    assert len(tok) == 32100 and (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == 32099
    enc = tok("myface woman, portrait photo", max_length=16, padding="max_length", truncation=True)
    ids = enc.input_ids
    n = sum(enc.attention_mask)
    assert ids[n - 1] == 1 and set(ids[n:]) == {0} and all(2 < i < 32000 for i in ids[:n - 1])
    assert tok.convert_ids_to_tokens(ids[0]).startswith("\u2581")  # sentencepiece's word-start mark


# ---------------------------------------------------------------- rendering
def test_flux_config_is_flux_train_networks():
    preset, _ = presets.load("flux-12gb")
    cfg = render.train_config(preset, RUN, "/m/flux1-dev.safetensors")
    assert cfg["model"] == {"pretrained_model_name_or_path": "/m/flux1-dev.safetensors", "ae": "models/ae.safetensors",
                            "clip_l": "models/clip_l.safetensors", "t5xxl": "models/t5xxl_fp16.safetensors"}
    assert cfg["network"]["network_module"] == "networks.lora_flux"
    t = cfg["training"]
    assert (t["guidance_scale"], t["timestep_sampling"], t["model_prediction_type"], t["blocks_to_swap"]) == \
        (1.0, "flux_shift", "raw", 16)
    assert t["fp8_base"] and t["cache_text_encoder_outputs"] and "no_half_vae" not in t
    check, _ = presets.load("flux-check")
    assert render.sample_prompts(check).rstrip().endswith("--l 1 --g 3.5")  # cfg is FLUX.1's embedded guidance
    from faceswap_kohya.trainer.install import Trainer

    trainer = Trainer.of(preset)
    assert trainer.script.name == "flux_train_network.py"
    assert render.trainer_argv(preset, trainer, RUN)[-5].endswith("flux_train_network.py")


def test_the_dataset_toml_is_the_same_for_both_families():
    sdxl, _ = presets.load("face-12gb")
    flux, _ = presets.load("flux-12gb", ["dataset.repeats=10", "training.batch_size=1"])
    assert render.dataset_config(sdxl, RUN) == render.dataset_config(flux, RUN)


# ---------------------------------------------------------------- the real trainer (one FLUX LoRA per session)
@pytest.mark.trainer
@needs_kohya
def test_train_flux_check_trains_a_flux_lora_that_attaches_fully_and_changes_the_image(trained_flux_run):
    from safetensors import safe_open

    from faceswap_kohya.diffusion.images import generate_images
    from faceswap_kohya.diffusion.lora import attach_lora, attached_names, read_lora_modules
    from faceswap_kohya.diffusion.pipeline import free_memory, load_pipeline
    from faceswap_kohya.runs.status import read_status

    result = trained_flux_run.result
    assert result.ok, result.diagnosis
    assert read_status(result.run.root)["state"] == "finished"
    with safe_open(str(result.final), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    modules = read_lora_modules(result.final)
    assert any(m.startswith("lora_unet_double_blocks_0_") for m in modules)
    assert any(m.startswith("lora_unet_single_blocks_0_") for m in modules)
    assert all(k.startswith("lora_unet_") for k in keys)  # network_train_unet_only
    assert meta["ss_network_module"] == "networks.lora_flux" and meta["ss_network_dim"] == "4"
    assert "ss_base_model_version" in meta and meta["ss_base_model_version"].startswith("flux")

    from faceswap_kohya.config.flux import t5_tokens
    from faceswap_kohya.diffusion.prompts import prompt_conditioning

    assert t5_tokens(trained_flux_run.preset) == 32  # flux-check's captions were encoded to 32 T5 tokens
    pipe = load_pipeline("builtin:flux-check", device="cpu", dtype="fp32", t5_tokens=t5_tokens(trained_flux_run.preset))
    try:
        assert prompt_conditioning(pipe, "myface woman", "")["max_sequence_length"] == 32  # generated as trained
        base = generate_images(pipe, ["myface woman, portrait photo"], [3], steps=2, cfg=3.5, width=64, height=64)[0]
        assert attach_lora(pipe, result.final, weight=1.0) == len(modules)
        assert set(modules) <= attached_names(pipe, next(iter(pipe.fsk_loras)))
        after = generate_images(pipe, ["myface woman, portrait photo"], [3], steps=2, cfg=3.5, width=64, height=64)[0]
    finally:
        del pipe
        free_memory()
    assert after.size == (64, 64)
    assert np.abs(np.asarray(after, dtype=int) - np.asarray(base, dtype=int)).max() > 0


@pytest.mark.trainer
@needs_kohya
def test_swap_with_a_flux_lora_inpaints_only_the_face(trained_flux_run, astronaut, tmp_path):
    """`swap RUN --photo`: FluxInpaintPipeline with the session's FLUX LoRA (flux-check, 64 px working size) redraws
    the face inside its mask; the PNG is the photo's size, carries A1111 `parameters`, and outside the mask it is
    the photo's own pixels."""
    pytest.importorskip("dlib", reason="dlib is not installed (pip install -e '.[faces]'): swap finds the face with it")
    from click.testing import CliRunner
    from PIL import Image

    from faceswap_kohya.cli.main import cli
    from faceswap_kohya.jobs.swap import plan_region

    run = trained_flux_run.result.run.root
    photo = tmp_path / "astronaut.png"
    astronaut.save(photo)
    r = CliRunner().invoke(cli, ["swap", str(run), "--photo", str(photo), "--seed", "5", "--steps", "2", "--cfg", "3.5",
                                 "-o", str(tmp_path / "swaps"), "-q"])
    assert r.exit_code == 0, r.output
    out = Path(r.stdout.splitlines()[0])
    assert out.parent == tmp_path / "swaps" and out.name == "astronaut-swap-s5.png"
    assert "modules attached" in r.stderr
    swapped = Image.open(out)
    assert swapped.size == astronaut.size
    text = swapped.text["parameters"].splitlines()
    assert text[0] == "myface woman, photo <lora:myface-flux-check:1>", text
    for part in ("Steps: 2", "Seed: 5", "CFG scale: 3.5", "Size: 64x64", "Denoising strength: 0.75",
                 "Face swap: astronaut.png", "Model: flux-check", 'Lora hashes: "myface-flux-check: '):
        assert part in text[1], (part, text[1])
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["t5_tokens"] == 32, "the run's T5 token count (flux.t5xxl_max_token_length), as it was trained"
    region = plan_region(tuple(side["face_box"]), astronaut.size, side["padding"])
    assert list(region.crop_box) == side["crop_box"] and list(region.mask_box) == side["mask_box"]
    mask = Image.new("L", astronaut.size, 0)
    mask.paste(region.mask, region.crop_box[:2])
    mask = np.asarray(mask)
    a, b = np.asarray(astronaut.convert("RGB"), dtype=int), np.asarray(swapped.convert("RGB"), dtype=int)
    assert np.abs(a[mask == 0] - b[mask == 0]).max() <= 1  # outside the mask: the photo's own pixels
    assert np.abs(a[mask == 255] - b[mask == 255]).mean() > 5  # inside: the face redrawn


# ---------------------------------------------------------------- the GPU check
def test_the_gpu_check_plans_the_flux_presets_on_the_gpu_only(tmp_path):
    """`gpu-check.sh -- --family flux` trains flux-24gb/16gb/12gb through the wrapper on a full-size random FLUX.1;
    the CPU dry run (`--dry-run`) keeps to the SDXL presets and refuses `--family flux`."""
    import sys

    sys.path.insert(0, str(presets.PROJECT_ROOT / "benchmarks"))
    import gpu_check as check
    import gpu_check_train

    from faceswap_kohya.trainer.install import check_flux_model

    assert check.FLUX_PRESETS == ("flux-24gb", "flux-16gb", "flux-12gb") == check.FAMILY_PRESETS["flux"]
    plan = check.plan_for("flux", dry_run=False)
    assert plan.family == "flux" and plan.resolution == 1024 and plan.steps == 20 and plan.budget_s <= 540
    assert plan.by_hand == () and plan.gen_dtypes == ()  # through the wrapper only; no generation part
    for name in check.FLUX_PRESETS:
        assert name in {i.name for i in presets.discover()}
        vram = presets.describe(preset_path(name)).vram
        assert gpu_check_train.budget_gib(vram) == float(name.split("-")[1].removesuffix("gb")), vram
    dry = check.plan_for("sdxl", dry_run=True)
    assert dry is check.DRY_PLAN and dry.family == "sdxl" and not set(check.FAMILY_PRESETS[dry.family]) & set(check.FLUX_PRESETS)
    with pytest.raises(SystemExit, match="--family flux runs on a GPU only"):
        check.plan_for("flux", dry_run=True)
    # what each flux run is given: the four files (here tiny stand-ins of their headers) and the stand-in T5 tokenizer
    files = {k if k != "path" else "dit": v for k, v in flux_model_files(tmp_path / "m").items()}
    overrides = check.base_overrides("flux", files["dit"], files)
    for name in check.FLUX_PRESETS:
        preset, _ = presets.load(name, overrides)
        check_flux_model(preset)
        assert (preset.base_model.path, preset.base_model.t5xxl) == (str(files["dit"]), str(files["t5xxl"]))
        assert (Path(preset.kohya.tokenizer_cache) / "google_t5-v1_1-xxl").is_dir()
    assert check.base_overrides("sdxl", None, {}) == ["base_model=builtin:pipeline-check"]


def test_a_flux_runs_t5_token_count_reaches_its_generation_and_class_images(tmp_path):
    """A FLUX run's captions were encoded to `flux.t5xxl_max_token_length` T5 tokens: its prompts are encoded to as
    many (sd-scripts' own samples do so; diffusers would pad to 512, which flux-check's 32 makes ~13 s slower per
    prompt on a CPU), and class images made with another count are other images (their cache key says so)."""
    from types import SimpleNamespace

    from faceswap_kohya.config.flux import t5_tokens
    from faceswap_kohya.data import regularization
    from faceswap_kohya.diffusion.prompts import prompt_conditioning

    bare = {"base_model": {"family": "flux", "path": "dit.safetensors", "ae": "ae.safetensors", "clip_l": "clip_l.safetensors",
                           "t5xxl": "t5xxl.safetensors"}, "regularization": {"generate": 1}}
    unset = presets.validate(bare, "p")
    short = presets.validate(bare | {"flux": {"t5xxl_max_token_length": 64}}, "p")
    sdxl = presets.validate({"base_model": "m.safetensors", "regularization": {"generate": 1}}, "p")
    assert (t5_tokens(short), t5_tokens(unset), t5_tokens(sdxl), t5_tokens(None)) == (64, None, None, None)
    assert t5_tokens(presets.load("flux-check")[0]) == 32
    pipe = SimpleNamespace(fsk_family="flux", fsk_t5_tokens=64)
    assert prompt_conditioning(pipe, "ohwx man", "") == {"prompt": "ohwx man", "max_sequence_length": 64}
    pipe.fsk_t5_tokens = None
    assert prompt_conditioning(pipe, "ohwx man", "") == {"prompt": "ohwx man"}
    assert regularization.plan(short)[0].key != regularization.plan(unset)[0].key


def test_flux_guidance_is_3_5_wherever_a_flux_preset_or_lora_gives_none(tmp_path):
    """FLUX.1's cfg is its embedded guidance (3.5), not SDXL's 6-7: a FLUX.1 preset that sets no cfg gets 3.5 for its
    samples, evaluation and class images; generate/compare/swap default to the run's evaluate.cfg, else 3.5 for a
    FLUX source with no run; SDXL keeps its own."""
    from faceswap_kohya.diffusion.source import Source, default_cfg

    bare = {"base_model": {"family": "flux", "path": "dit.safetensors", "ae": "ae.safetensors", "clip_l": "clip_l.safetensors",
                           "t5xxl": "t5xxl.safetensors"}}
    flux = presets.validate(bare, "p")
    assert (flux.sampling.cfg, flux.evaluate.cfg, flux.regularization.cfg) == (3.5, 3.5, 3.5)
    given = presets.validate(bare | {"evaluate": {"cfg": 2.0}}, "p")
    assert (given.sampling.cfg, given.evaluate.cfg) == (3.5, 2.0)
    chroma = presets.validate({**bare, "flux": {"model_type": "chroma"}, "evaluate": {"enabled": False}}, "p")
    sdxl = presets.validate({"base_model": "m.safetensors"}, "p")
    for p in (chroma, sdxl):  # true classifier-free guidance
        assert (p.sampling.cfg, p.evaluate.cfg, p.regularization.cfg) == (7.0, 6.0, 7.0)

    assert default_cfg(Source(base_model="dit.safetensors", flux={"dit": "dit.safetensors"})) == 3.5
    assert default_cfg(Source(base_model="m.safetensors")) == 6.0
    run = Source(base_model="dit.safetensors", flux={"dit": "x"}, run_dir=tmp_path, preset=given)
    assert default_cfg(run) == 2.0  # what the run's evaluation scored with
    assert default_cfg(run, 5.0) == 5.0  # what the user gave
