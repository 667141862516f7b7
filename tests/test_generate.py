"""`generate` / `compare`: prompt tags, A1111 weights, long prompts, PNG metadata, grids, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from faceswap_kohya.diffusion.prompts import a1111_to_compel, check_size, parse_tags, read_prompts_file
from faceswap_kohya.errors import UserError

FAST = ["--size", "64", "--steps", "2", "--cfg", "5", "-q"]


pytestmark = pytest.mark.usefixtures("user_home")  # a private FACESWAP_KOHYA_HOME


# ---------------------------------------------------------------- pure prompt handling
def test_lora_tags_are_stripped_and_the_trigger_kept():
    assert parse_tags("myface woman, <lora:myface:0.8> portrait") == ("myface woman, portrait", [("myface", 0.8)])
    assert parse_tags("<lora:a:1> myface woman <LORA:b-c_2:.5>") == ("myface woman", [("a", 1.0), ("b-c_2", 0.5)])
    assert parse_tags("photo <lora:a>") == ("photo", [("a", 1.0)])
    assert parse_tags("photo, <lora:a:0.7:0.3>, smiling") == ("photo, smiling", [("a", 0.7)])  # te:unet form
    with pytest.raises(UserError, match="weight must be a number"):
        parse_tags("<lora:a:strong>")


def test_a1111_weights_become_compel_weights():
    assert a1111_to_compel("myface woman, (freckles:1.3)") == "myface woman, (freckles)1.3"
    assert a1111_to_compel("(red hair: 0.8), (smile:1)") == "(red hair)0.8, (smile)1"
    assert a1111_to_compel("((soft light:1.2), bokeh:1.1)") == "((soft light)1.2, bokeh)1.1"
    assert a1111_to_compel("(word)1.5, word+, plain") == "(word)1.5, word+, plain"  # compel syntax untouched


def test_prompts_file_and_sizes(tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("# portraits\nmyface woman, portrait\n\n  myface woman, outdoors  \n")
    assert read_prompts_file(f) == ["myface woman, portrait", "myface woman, outdoors"]
    f.write_text("# nothing\n")
    with pytest.raises(UserError, match="no prompts"):
        read_prompts_file(f)
    check_size(64, 832)
    with pytest.raises(UserError, match="width 100: must be a multiple of 8"):
        check_size(100, 64)


# ---------------------------------------------------------------- with a tiny real pipeline



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as `train` leaves it: preset.yaml and model/ with the final LoRA and a checkpoint."""
    pytest.importorskip("diffusers", reason="diffusers is not installed (pip install -e '.[generate]')")
    from tiny_sdxl import save_tiny_pipeline, write_kohya_lora

    from faceswap_kohya.config import presets
    from faceswap_kohya.config.schema import Preset
    from faceswap_kohya.diffusion import pipeline as loader

    root = tmp_path_factory.mktemp("runs")
    tiny = save_tiny_pipeline(root / "tiny-sdxl")
    run = root / "myface" / "20260101-120000"
    (run / "model").mkdir(parents=True)
    preset = Preset.model_validate({"base_model": str(tiny), "output": {"name": "myface", "dir": str(root)},
                                    "subject": {"trigger": "myface", "class_word": "woman"}, "dataset": {"resolution": 128}})
    (run / "preset.yaml").write_text(presets.dump(preset))
    pipe = loader.load_pipeline(str(tiny), device="cpu")
    write_kohya_lora(pipe, run / "model" / "myface.safetensors", seed=1, conv=True)
    write_kohya_lora(pipe, run / "model" / "myface-000001.safetensors", seed=3)
    extra = root / "loras"
    extra.mkdir()
    write_kohya_lora(pipe, extra / "style.safetensors", seed=5, text_encoders=False)
    return run


def cli(*args):
    from faceswap_kohya.cli.main import cli as group

    result = CliRunner().invoke(group, [str(a) for a in args])
    return result


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def generated(result) -> list[Path]:
    assert result.exit_code == 0, result.output
    return [Path(line) for line in result.stdout.splitlines() if line.endswith(".png")]


def test_generate_from_a_run_folder_writes_pngs_with_parameters(run_dir):
    out = generated(cli("generate", run_dir, "{trigger} {class}, portrait", "--seed", 7, "-n", 2, "--negative", "blurry", *FAST))
    assert len(out) == 2 and all(p.is_file() for p in out)
    assert out[0].parent.parent == run_dir / "images"
    text = Image.open(out[0]).text["parameters"]
    lines = text.splitlines()
    assert lines[0] == "myface woman, portrait <lora:myface:1>"
    assert lines[1] == "Negative prompt: blurry"
    assert "Steps: 2, Sampler: Euler, CFG scale: 5, Seed: 7, Size: 64x64" in lines[2]
    assert "Model: tiny-sdxl" in lines[2] and 'Lora hashes: "myface: ' in lines[2]
    side = json.loads(out[1].with_suffix(".json").read_text())
    assert side["seed"] == 8 and side["loras"][0]["weight"] == 1.0 and len(side["loras"][0]["sha256"]) == 64
    assert "modules attached" in cli("generate", run_dir, "x", "--seed", 1, *FAST).stderr


def test_size_defaults_to_the_runs_training_resolution(run_dir):
    out = generated(cli("generate", run_dir, "myface woman", "--seed", 1, "--steps", "1", "-q"))
    assert Image.open(out[0]).size == (128, 128)


def test_weight_no_lora_and_fusing_give_consistent_images(run_dir):
    def one(*extra):
        return pixels(generated(cli("generate", run_dir, "myface woman, portrait", "--seed", 3, *FAST, *extra))[0])

    full, none, zero = one(), one("--no-lora"), one("--weight", "0")
    half = one("--weight", "0.5")
    assert (zero == none).all()  # weight 0 is exactly the base model
    assert np.abs(full - none).mean() > 1 and 0 < np.abs(half - none).mean() < np.abs(full - none).mean()
    # per-prompt weights (adapters, unfused) agree with the fused single-weight path
    a, b = generated(cli("generate", run_dir, "myface woman, portrait", "myface woman, portrait <lora:myface:0.5>",
                         "--seed", 3, *FAST))
    assert np.abs(pixels(a) - full).max() <= 2 and np.abs(pixels(b) - half).max() <= 2
    assert not Image.open(b).text["parameters"].startswith("myface woman, portrait <lora:myface:1>")


def test_a_kept_pipeline_is_reused_clean_and_gives_the_same_images(run_dir):
    """The web app keeps the base model between jobs: the next job gets the same pipeline back with no LoRA left on
    it and its own sampler set back, LoRAs go on as adapters (never fused), and the images are those of a fresh load."""
    from faceswap_kohya.diffusion import pipeline as loader
    from faceswap_kohya.diffusion.lora import all_adapters

    tiny = str(run_dir.parents[1] / "tiny-sdxl")

    def one(*extra):
        return pixels(generated(cli("generate", run_dir, "myface woman, portrait", "--seed", 3, *FAST, *extra))[0])

    fresh_full, fresh_none = one(), one("--no-lora")  # nothing kept: each loads its own and fuses the LoRA
    loader.keep_between_jobs(True)
    try:
        assert one("--sampler", "dpmpp_2m_karras").shape == fresh_full.shape
        kept = loader.load_pipeline(tiny, device="cpu")
        assert loader.load_pipeline(tiny, device="cpu") is kept, "the same base model, device and dtype: reused"
        assert not getattr(kept, "fsk_fused", None) and not all_adapters(kept) and kept.fsk_loras == {}
        assert kept.scheduler is kept.fsk_scheduler, "the sampler it was loaded with is set back"
        full, none = one(), one("--no-lora")
        assert np.abs(full - fresh_full).max() <= 2, "a LoRA as adapters draws what the fused one drew"
        assert (none == fresh_none).all(), "after a LoRA job, the kept pipeline is exactly the base model again"
        assert loader.load_pipeline(tiny, device="cpu") is kept
        other = loader.load_pipeline(tiny, device="cpu", dtype="bf16")
        assert other is not kept and loader.load_pipeline(tiny, device="cpu", dtype="bf16") is other
        assert loader.release_kept() and not loader.release_kept()
        assert loader.load_pipeline(tiny, device="cpu", dtype="bf16") is not other, "released: loaded anew"
    finally:
        loader.keep_between_jobs(False)
    assert loader.load_pipeline(tiny, device="cpu") is not loader.load_pipeline(tiny, device="cpu"), "off: never kept"


def test_checkpoint_epoch_and_extra_lora_tags(run_dir):
    final = generated(cli("generate", run_dir, "myface woman", "--seed", 2, *FAST))[0]
    epoch1 = generated(cli("generate", run_dir, "myface woman", "--seed", 2, "--epoch", 1, *FAST))[0]
    assert np.abs(pixels(final) - pixels(epoch1)).mean() > 1
    styled = generated(cli("generate", run_dir, "myface woman <lora:style:0.8>", "--seed", 2,
                           "--lora-dir", run_dir.parent.parent / "loras", *FAST))[0]
    assert np.abs(pixels(styled) - pixels(final)).mean() > 1
    assert "<lora:myface:1> <lora:style:0.8>" in Image.open(styled).text["parameters"]


def test_each_lora_header_is_read_once(run_dir, monkeypatch):
    """generate and compare check every LoRA before the base model loads and attach them after: one header read each."""
    from faceswap_kohya.diffusion import lora, source

    reads = []
    real = lora.read_lora_modules

    def counted(path):
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(lora, "read_lora_modules", counted)
    monkeypatch.setattr(source, "read_lora_modules", counted)
    styled = "myface woman <lora:style:0.8>"
    for command in ("generate", "compare"):
        reads.clear()
        generated(cli(command, run_dir, styled, "--seed", 2, "--lora-dir", run_dir.parent.parent / "loras", *FAST))
        assert sorted(reads) == ["myface.safetensors", "style.safetensors"], (command, reads)


def test_generate_from_a_lora_file_and_base_only(run_dir, tmp_path):
    lora = run_dir / "model" / "myface.safetensors"
    from_file = generated(cli("generate", lora, "myface woman", "--seed", 4, "-o", tmp_path, *FAST))[0]
    assert from_file.parent.parent == tmp_path  # base model found from the run's preset
    base = str(run_dir.parent.parent / "tiny-sdxl")
    only_base = generated(cli("generate", "--base", base, "--no-lora", "myface woman", "--seed", 4, "-o", tmp_path, *FAST))[0]
    assert only_base.parent != from_file.parent  # a new folder each time, nothing overwritten
    assert np.abs(pixels(from_file) - pixels(only_base)).mean() > 1


def test_long_and_weighted_prompts_use_every_token(run_dir, tmp_path):
    words = ", ".join(f"detail{i}" for i in range(60))  # > 77 tokens
    short = "myface woman, portrait"

    def img(prompt):
        return pixels(generated(cli("generate", run_dir, prompt, "--seed", 9, "--no-lora", "-o", tmp_path, *FAST))[0])

    assert (img(f"{short}, {words}") != img(f"{short}, {words}, extra words at the end")).any()  # not cut at 77
    weighted, compel_syntax, plain = img("myface woman, (portrait:1.6)"), img("myface woman, (portrait)1.6"), img(short)
    assert (weighted == compel_syntax).all() and np.abs(weighted - plain).mean() > 0.5


def test_compare_makes_a_labelled_grid_per_prompt(run_dir):
    result = cli("compare", run_dir, "myface woman, portrait", "myface woman, outdoors", "--seed", 3, "-n", 2, *FAST)
    assert result.exit_code == 0, result.output
    grids = [Path(line) for line in result.stdout.splitlines() if line.endswith(".png")]
    assert [g.name for g in grids] == ["grid-p1.png", "grid-p2.png"]
    folder = grids[0].parent
    assert folder.parent == run_dir / "compare"
    assert len(list(folder.glob("p*-s*-w*.png"))) == 2 * 2 * 3 and len(list(folder.glob("p*.json"))) == 12
    grid = Image.open(grids[0])
    assert grid.width > 3 * 64 and grid.height > 2 * 64 and "weights 0, 0.7, 1" in grid.text["parameters"]
    base = generated(cli("generate", run_dir, "myface woman, portrait", "--seed", 4, "--no-lora", *FAST))[0]
    assert (pixels(folder / "p1-s4-w0.png") == pixels(base)).all()  # the base column is the base model
    full = generated(cli("generate", run_dir, "myface woman, portrait", "--seed", 4, *FAST))[0]
    assert np.abs(pixels(folder / "p1-s4-w1.png") - pixels(full)).max() <= 2
    assert "<lora:" not in Image.open(folder / "p1-s4-w0.png").text["parameters"]


@pytest.mark.parametrize("args,message", [
    (["{run}", "", "--seed", "1"], "prompt 1 is empty"),
    (["{run}", "<lora:myface:0.5>", "--seed", "1"], "empty once its <lora:..> tags are removed"),
    (["{run}", "x <lora:nobody:1>"], "no nobody.safetensors in .*available: myface"),
    (["{run}", "x", "--size", "100"], "width 100: must be a multiple of 8"),
    (["{run}", "x", "--size", "big"], "--size 'big'"),
    (["{run}"], "no prompt"),
    (["{run}", "x", "--epoch", "5"], "no myface-000005.safetensors .*saved: myface-000001.safetensors, myface.safetensors"),
    (["{run}/nothing.safetensors", "x"], "no such run folder or LoRA file"),
    (["{run}/preset.yaml", "x"], "not a LoRA file"),
    (["x", "--no-lora"], "no such run folder"),
])
def test_bad_input_is_one_clear_message(run_dir, args, message):
    result = cli("generate", *FAST, *[a.replace("{run}", str(run_dir)) for a in args])
    assert result.exit_code == 2, result.output
    import re

    assert re.search(message, result.output), result.output
    assert "Traceback" not in result.output


def test_bad_lora_fails_before_any_image(run_dir, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    base = str(run_dir.parent.parent / "tiny-sdxl")
    for cmd in ("generate", "compare"):
        result = cli(cmd, junk, "x", "--base", base, "-o", tmp_path / "out", *FAST)
        assert result.exit_code == 2 and "truncated or corrupt" in result.output
    assert not list((tmp_path / "out").glob("*/*.png"))


def test_standalone_script_is_the_same_command(run_dir, tmp_path):
    import subprocess
    import sys

    from faceswap_kohya.config.presets import PROJECT_ROOT

    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "generate.py"), str(run_dir), "myface woman",
                           "--seed", "3", "-o", str(tmp_path), *FAST], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    png = Path([ln for ln in proc.stdout.splitlines() if ln.endswith(".png")][0])
    assert png.is_file() and "Seed: 3" in Image.open(png).text["parameters"]


# ---------------------------------------------------------------- one sampler vocabulary
@pytest.fixture(scope="module")
def tiny_pipe():
    pytest.importorskip("diffusers", reason="diffusers is not installed (pip install -e '.[generate]')")
    from tiny_sdxl import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("name", ["euler", "euler_a", "heun", "lms", "pndm", "ddim", "dpm_2", "dpm_2_a", "dpmpp_2m",
                                  "dpmpp_2m_karras", "dpmsolver", "dpmsingle", "dpmsolver++", "k_euler_a"])
def test_every_sampler_name_generates(tiny_pipe, name):
    """Each name the preset or --sampler accepts (sd-scripts' aliases too) works in diffusers."""
    from faceswap_kohya.config.samplers import SAMPLERS, canonical
    from faceswap_kohya.diffusion.images import generate_images
    from faceswap_kohya.diffusion.prompts import set_sampler

    label = set_sampler(tiny_pipe, name)
    chosen = SAMPLERS[canonical(name)]
    assert label == chosen.a1111 and type(tiny_pipe.scheduler).__name__ == chosen.diffusers
    for key, value in chosen.config.items():
        assert tiny_pipe.scheduler.config[key] == value
    (image,) = generate_images(tiny_pipe, ["myface woman"], [1], 3, 5.0, 64, 64, "")
    assert image.size == (64, 64) and np.asarray(image).std() > 0


def test_an_unknown_sampler_is_refused_before_anything_loads():
    from faceswap_kohya.diffusion.source import Settings

    with pytest.raises(UserError, match="sampler 'dpm_fast': use one of euler, euler_a"):
        Settings(sampler="dpm_fast")
    assert Settings(sampler="dpmsolver++").sampler == "dpmpp_2m"


def test_grid_column_labels_never_overlap():
    """Column labels longer than a small image (`myface-check@0.7` over 64 px images) widen their column."""
    from PIL import Image

    from faceswap_kohya.diffusion.images import make_grid

    labels = ["base", "myface-check@0.7", "myface-check"]
    grid = make_grid([Image.new("RGB", (64, 64), "red") for _ in labels], labels, ["seed 7"], "a prompt")
    row = [grid.getpixel((x, grid.height - 10)) for x in range(grid.width)]
    starts = [x for x in range(1, grid.width) if row[x] == (255, 0, 0) and row[x - 1] != (255, 0, 0)]
    assert len(starts) == 3
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 96, f"columns at {starts}: a 16-letter label fits"
