"""`swap`: a tiny real SDXL + a Kohya LoRA redraw the face of a real photo; only the masked face changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from faceswap_kohya.errors import UserError
from faceswap_kohya.jobs import swap

pytest.importorskip("dlib", reason="dlib is not installed (pip install -e '.[faces]')")
ASTRONAUT_FACE_CENTRE = (223, 127)  # her face in skimage's 512×512 astronaut portrait
FAST = ["--steps", "2", "--cfg", "5", "-q"]  # strength 0.75: 1 denoising step


def pixels(path_or_image) -> np.ndarray:
    im = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(im.convert("RGB"), dtype=np.int16)


def outside(box, shape) -> np.ndarray:
    keep = np.ones(shape[:2], bool)
    keep[box[1]:box[3], box[0]:box[2]] = False
    return keep


pytestmark = pytest.mark.usefixtures("user_home")  # a private FACESWAP_KOHYA_HOME


# ---------------------------------------------------------------- geometry and blending (no model)
def test_the_square_stays_inside_the_photo_and_the_mask_fades_to_zero_at_its_inner_sides():
    r = swap.plan_region((180, 80, 270, 170), (512, 512))
    x0, y0, x1, y1 = r.crop_box
    assert x1 - x0 == y1 - y0 == round(90 * 2.2)
    m = np.asarray(r.mask)
    assert m.max() == 255 and m[0].max() == m[-1].max() == m[:, 0].max() == m[:, -1].max() == 0
    assert x0 < r.mask_box[0] and r.mask_box[2] < x1 and y0 < r.mask_box[1] and r.mask_box[3] < y1
    # a face in the corner of a small photo: the square shrinks to the photo and is moved into it
    corner = swap.plan_region((10, 10, 110, 110), (300, 200))
    assert corner.crop_box == (0, 0, 200, 200)
    m = np.asarray(corner.mask)
    assert m[:, -1].max() == 0 and m[-1].max() == 0  # sides inside the photo
    assert m[0].max() == 255  # the face reaches the photo's top edge: nothing to fade into there
    with pytest.raises(UserError, match="--padding -1"):
        swap.crop_box((0, 0, 10, 10), (100, 100), -1)


def test_blend_keeps_every_pixel_outside_the_mask():
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    region = swap.plan_region((150, 100, 230, 180), photo.size)
    out = swap.blend(photo, Image.new("RGB", (64, 64), "red"), region)
    a, b = pixels(photo), pixels(out)
    changed = np.argwhere((a != b).any(axis=2))
    (top, left), (bottom, right) = changed.min(axis=0), changed.max(axis=0) + 1
    assert (left, top, right, bottom) == region.mask_box
    cx, cy = 190, 140 - 8  # the ellipse's centre: fully the new face
    assert tuple(b[cy, cx]) == (255, 0, 0)


# ---------------------------------------------------------------- with a tiny real pipeline


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, astronaut):
    """A run folder as `train` leaves it: preset.yaml (64 px), a training photo in img/, model/ with the LoRA."""
    pytest.importorskip("diffusers", reason="diffusers is not installed (pip install -e '.[generate]')")
    from tiny_sdxl import build_tiny_pipeline, write_kohya_lora

    from faceswap_kohya.config import presets
    from faceswap_kohya.config.schema import Preset

    root = tmp_path_factory.mktemp("runs")
    pipe = build_tiny_pipeline()
    pipe.save_pretrained(root / "tiny-sdxl")
    run = root / "myface" / "20260101-120000"
    (run / "model").mkdir(parents=True)
    preset = Preset.model_validate({"base_model": str(root / "tiny-sdxl"), "output": {"name": "myface", "dir": str(root)},
                                    "subject": {"trigger": "myface", "class_word": "woman"},
                                    "dataset": {"resolution": 64}})
    (run / "preset.yaml").write_text(presets.dump(preset))
    refs = run / "img" / "10_myface woman"
    refs.mkdir(parents=True)
    astronaut.crop((100, 0, 356, 256)).save(refs / "00.png")
    write_kohya_lora(pipe, run / "model" / "myface.safetensors", seed=1)
    return run


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut):
    folder = tmp_path_factory.mktemp("photos")
    astronaut.save(folder / "astronaut.png")
    # a phone photo stored sideways: the EXIF tag says "rotate 90° clockwise to show" (orientation 6)
    shown = astronaut.crop((0, 0, 512, 400))
    exif = Image.Exif()
    exif[0x0112] = 6
    shown.transpose(Image.Transpose.ROTATE_90).save(folder / "sideways.jpg", quality=92, exif=exif.tobytes())
    ramp = np.linspace(0, 255, 320, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (240, 1))] * 3, axis=2)).save(folder / "gradient.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    return folder


def cli(*args):
    from faceswap_kohya.cli.main import cli as group

    return CliRunner().invoke(group, [str(a) for a in args])


def swapped(result) -> Path:
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.splitlines()[0])
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def first_swap(run_dir, photos):
    src = photos / "astronaut.png"
    original = src.read_bytes()
    result = cli("swap", run_dir, "--photo", src, "--seed", 5, *FAST)
    return src, original, result, swapped(result)


def test_swap_redraws_only_the_face_and_keeps_the_photo(first_swap, run_dir):
    src, original, result, out = first_swap
    assert out.parent == run_dir / "swaps" and out.name == "astronaut-swap-s5.png"
    side = json.loads(out.with_suffix(".json").read_text())
    a, b = pixels(src), pixels(out)
    assert a.shape == b.shape
    keep = outside(side["mask_box"], a.shape)
    assert (a[keep] == b[keep]).all()  # bit-identical outside the mask
    l, t, r, bt = side["mask_box"]
    assert np.abs(a[t:bt, l:r] - b[t:bt, l:r]).mean() > 5  # the face was redrawn
    face = side["face_box"]
    assert face[0] <= ASTRONAUT_FACE_CENTRE[0] <= face[2] and face[1] <= ASTRONAUT_FACE_CENTRE[1] <= face[3]
    crop = side["crop_box"]
    assert crop[0] <= l and crop[1] <= t and r <= crop[2] and bt <= crop[3]
    assert src.read_bytes() == original
    # identity vs the run's training photo: the photo's own face is the person in it
    assert side["identity"]["before"]["score"] > 0.6
    assert "identity:" in result.stdout and "modules attached" in result.stderr


def test_the_png_carries_the_swap_parameters(first_swap):
    _, _, _, out = first_swap
    side = json.loads(out.with_suffix(".json").read_text())
    text = Image.open(out).text["parameters"].splitlines()
    assert text[0] == "myface woman, photo <lora:myface:1>"
    for part in ("Steps: 2", "Seed: 5", "Size: 64x64", "Denoising strength: 0.75", "Face swap: astronaut.png",
                 f'Face box: "{", ".join(map(str, side["face_box"]))}"', "Model: tiny-sdxl", 'Lora hashes: "myface: '):
        assert part in text[1], part
    assert side["source_photo"] == "astronaut.png" and side["photo_size"] == [512, 512] and side["strength"] == 0.75
    assert side["loras"][0]["weight"] == 1.0 and side["loras"][0]["name"] == "myface" and side["seed"] == 5


def test_a_second_swap_writes_a_new_file_and_the_lora_weight_matters(first_swap, run_dir):
    src, _, _, out = first_swap
    first = out.read_bytes()
    base = swapped(cli("swap", run_dir, "--photo", src, "--seed", 5, "--weight", "0", *FAST))
    assert base.parent == out.parent and base.name == "astronaut-swap-s5-2.png"
    assert out.read_bytes() == first
    assert np.abs(pixels(base) - pixels(out)).mean() > 0.2  # same seed, no LoRA: another face
    assert "<lora:" not in Image.open(base).text["parameters"]


def test_a_sideways_jpeg_is_swapped_upright_at_its_shown_size(run_dir, photos, tmp_path):
    from faceswap_kohya.files.images import load_rgb

    src = photos / "sideways.jpg"
    original = src.read_bytes()
    with Image.open(src) as raw:
        assert raw.size == (400, 512)
    result = swapped(cli("swap", run_dir / "model" / "myface.safetensors", "--photo", src, "--seed", 1,
                         "-o", tmp_path / "out", *FAST))
    assert result.parent == tmp_path / "out"
    side = json.loads(result.with_suffix(".json").read_text())
    shown, b = pixels(load_rgb(src)), pixels(result)
    assert b.shape == (400, 512, 3)
    keep = outside(side["mask_box"], b.shape)
    assert (shown[keep] == b[keep]).all()
    assert not (shown[~keep] == b[~keep]).all()
    assert src.read_bytes() == original


def test_bad_photos_and_options_are_clear_errors(run_dir, photos, tmp_path):
    def fails(*args):
        r = cli("swap", run_dir, *args, "-o", tmp_path, *FAST)
        assert r.exit_code == 2, r.output
        return r.stderr

    no_face = fails("--photo", photos / "gradient.png")
    assert "gradient.png: no face found" in no_face and "clearer photo" in no_face
    assert "no such file" in fails("--photo", photos / "missing.jpg")
    assert "broken.jpg: not a readable image" in fails("--photo", photos / "broken.jpg")
    assert "--face 2: photo" in fails("--photo", photos / "astronaut.png", "--face", "2")
    assert "must be a multiple of 8" in fails("--photo", photos / "astronaut.png", "--size", "100")
    assert "--strength 1.5" in fails("--photo", photos / "astronaut.png", "--strength", "1.5")
    assert list(tmp_path.iterdir()) == []  # nothing written
    from faceswap_kohya.diffusion.source import Settings, resolve_source

    with pytest.raises(UserError, match="runs no denoising step"):
        swap.run_swap(resolve_source(str(run_dir)), photos / "astronaut.png", Settings(steps=1), tmp_path, strength=0.5)
    with pytest.raises(UserError, match="no face found"):
        swap.pick_face(Image.open(photos / "gradient.png").convert("RGB"), 1, "gradient.png")


def test_a_lora_outside_a_run_needs_a_prompt_with_the_trigger(run_dir, photos, tmp_path):
    lora = tmp_path / "someone.safetensors"
    shutil.copyfile(run_dir / "model" / "myface.safetensors", lora)
    r = cli("swap", lora, "--photo", photos / "astronaut.png", "--base", run_dir.parent.parent / "tiny-sdxl",
            "-o", tmp_path / "out", *FAST)
    assert r.exit_code == 2 and "give --prompt" in r.stderr
    r = cli("swap", lora, "--photo", photos / "astronaut.png", "--base", run_dir.parent.parent / "tiny-sdxl",
            "--prompt", "myface woman, smiling", "--size", "64", "--strength", "0.5", "-o", tmp_path / "out", *FAST)
    out = swapped(r)
    text = Image.open(out).text["parameters"]
    assert text.startswith("myface woman, smiling <lora:someone:1>") and "Denoising strength: 0.5" in text
    assert "identity: not scored: no reference photos" in r.stdout
