"""Photo preparation on real face photos: formats, checks, crops, augmentation, captions, layout, reports."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import KOHYA_PYTHON, SD_SCRIPTS, needs_kohya
from face_data import ONE_PERSON, SOMEONE_ELSE
from PIL import Image

from faceswap_kohya.cli.main import cli
from faceswap_kohya.config import presets
from faceswap_kohya.data.dataset import layout
from faceswap_kohya.data.framing import crop_box
from faceswap_kohya.data.photos import read_photo
from faceswap_kohya.data.reports import at_a_glance
from faceswap_kohya.errors import UserError
from faceswap_kohya.faces import identity as faces
from faceswap_kohya.files.images import load_rgb
from faceswap_kohya.runs.layout import RunLayout

pytest.importorskip("dlib", reason="dlib is not installed (pip install -e '.[faces]')")
FACE_CENTRE = (223, 127)  # the astronaut's face in skimage's 512×512 portrait


def preset_for(folder: Path, tmp_path: Path, *extra: str):
    return presets.load("cpu-check", [f"dataset.images={folder}", f"output.dir={tmp_path / 'out'}",
                                      "dataset.repeats=10", "dataset.resolution=256", *extra])[0]


def snapshot(folder: Path) -> dict:
    """Everything that changes when a folder is written to, whatever the permissions (tests may run as root):
    each file's hash, size, mtime and inode, and the folder's own mtime (it moves when a file is created,
    renamed or deleted in it, even a temporary one that is gone again)."""
    import hashlib

    files = {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino)
             for p in sorted(folder.iterdir())}
    return {"files": files, "folder_mtime": folder.stat().st_mtime_ns}


def run_layout(preset, tmp_path: Path):
    run = RunLayout(tmp_path / "run")
    run.root.mkdir()
    return layout(preset, run), run


# ---------------------------------------------------------------- reading every kind of photo file
def write_formats(astronaut: Image.Image, folder: Path) -> dict[str, Path]:
    """The astronaut saved as every supported kind of file a phone or an editor writes."""
    import pillow_heif

    folder.mkdir(exist_ok=True)
    files = {}

    def save(name, image, **kw):
        files[name] = folder / name
        image.save(files[name], **kw)

    save("plain.jpg", astronaut, quality=92)
    save("plain.png", astronaut)
    save("plain.webp", astronaut, quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned left; viewers turn it right
    save("exif-rotated.jpg", astronaut.rotate(90, expand=True), quality=92, exif=exif)
    save("cmyk.jpg", astronaut.convert("CMYK"), quality=92)
    grey16 = (np.asarray(astronaut.convert("L"), dtype=np.uint16) * 257)
    save("grey16.png", Image.fromarray(grey16))
    rgba = astronaut.convert("RGBA")
    alpha = np.full((512, 512), 255, np.uint8)
    alpha[:, 450:] = 0  # a transparent strip at the right
    rgba.putalpha(Image.fromarray(alpha))
    save("alpha.png", rgba)
    save("palette.png", astronaut.convert("P", palette=Image.ADAPTIVE))
    heif = pillow_heif.from_pillow(astronaut)
    files["phone.heic"] = folder / "phone.heic"
    heif.save(files["phone.heic"], quality=90)
    return files


def test_every_format_is_read_upright_in_rgb_and_the_crop_holds_the_face(tmp_path, astronaut):
    files = write_formats(astronaut, tmp_path / "formats")
    embedder = faces.get_embedder()
    for name, path in files.items():
        rgb = load_rgb(path)
        assert rgb.mode == "RGB" and rgb.size == (512, 512), name
        photo = read_photo(path, "face", 256, 2.0, embedder)
        assert photo.status == "kept" and len(photo.faces) == 1, (name, photo.reason)
        assert photo.crop[0] <= FACE_CENTRE[0] <= photo.crop[2] and photo.crop[1] <= FACE_CENTRE[1] <= photo.crop[3], name
        face = photo.faces[0].box
        assert photo.crop[0] <= face[0] and face[2] <= photo.crop[2] and photo.crop[1] <= face[1] and face[3] <= photo.crop[3]
        assert photo.image.size == (256, 256)
        assert faces.identity_score(photo.embedding, [embedder.embed(astronaut)])[0] > 0.6, name


def test_a_photo_kept_as_stored_gives_the_upright_photos_crops(tmp_path):
    """`decode_stored` turns only the crops: for every EXIF orientation, each crop is the upright photo's own, pixel
    for pixel (also in JPEG draft mode), and the size is the upright one."""
    import io

    from faceswap_kohya.files.images import decode, decode_reduced, decode_stored

    rng = np.random.default_rng(3)
    stored = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).resize((256, 192))
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = io.BytesIO()
        stored.save(data, "JPEG", quality=95, exif=exif)
        data = data.getvalue()
        for min_side, upright in ((0, decode(data)), (48, decode_reduced(data, 48)[0])):
            view = decode_stored(data, min_side)
            assert view.size == upright.size == (view.width, view.height), orientation
            boxes = [(0, 0, *upright.size)] + [tuple(int(v) for v in (*sorted(rng.integers(0, upright.width, 2)),
                                                                      *sorted(rng.integers(0, upright.height, 2))))
                                               for _ in range(4)]
            for x0, x1, y0, y1 in [(b[0], b[1], b[2], b[3]) for b in boxes[1:]]:
                box = (x0, y0, x1 + 1, y1 + 1)
                assert np.array_equal(np.asarray(view.crop(box)), np.asarray(upright.crop(box))), (orientation, box)
            assert np.array_equal(np.asarray(view.crop(boxes[0])), np.asarray(upright)), orientation


def test_16_bit_is_rescaled_and_alpha_goes_over_white(tmp_path, astronaut):
    files = write_formats(astronaut, tmp_path / "formats")
    grey8 = np.asarray(astronaut.convert("L"), dtype=float)
    grey16 = np.asarray(load_rgb(files["grey16.png"]), dtype=float)[:, :, 0]
    assert abs(grey16 - grey8).max() <= 1  # not clipped to white
    alpha = np.asarray(load_rgb(files["alpha.png"]))
    assert (alpha[:, 460:] == 255).all()  # the transparent strip is white, not black


def test_framings_never_pad_past_the_edge_and_cap_upscaling(tmp_path, astronaut):
    embedder = faces.get_embedder()
    path = tmp_path / "small.jpg"
    astronaut.resize((200, 200)).save(path, quality=95)
    photo = read_photo(path, "head_and_shoulders", 512, 2.0, embedder)
    x0, y0, x1, y1 = photo.crop
    assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 200  # inside the photo: nothing padded
    assert photo.upscale == 2.0 and photo.image.size == ((x1 - x0) * 2, (y1 - y0) * 2)
    assert any("max_upscale" in n for n in photo.notes)
    big = read_photo(tmp_path / "small.jpg", "as_is", 128, 2.0, embedder)
    assert big.crop == (0, 0, 200, 200) and big.image.size == (128, 128)
    # a face at the very edge: the square is shifted inside, never past the edge
    assert crop_box((1000, 800), (0, 300, 120, 420), "face") == (0, 216, 264, 480)
    assert crop_box((300, 200), (100, 50, 200, 150), "head_and_shoulders") == (50, 0, 250, 200)


def test_unreadable_files_are_named_with_the_reason(tmp_path, astronaut):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    astronaut.save(folder / "full.jpg", quality=90)
    (folder / "truncated.jpg").write_bytes((folder / "full.jpg").read_bytes()[:5000])
    reasons = {p.name: read_photo(p, "face", 256, 2.0, faces.get_embedder()).reason
               for p in folder.iterdir() if p.name != "full.jpg"}
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["text.png"].startswith("not a readable image")
    assert reasons["truncated.jpg"].startswith("truncated or damaged")


# ---------------------------------------------------------------- a real folder, end to end
@pytest.fixture
def messy_folder(tmp_path, face_recognition_photos) -> Path:
    """Several photos of one person, one of someone else, and the usual mess, in a folder with
    spaces and non-ASCII characters in its name."""
    folder = tmp_path / "Fotos für Ünï test"
    folder.mkdir()
    for name in ONE_PERSON + [SOMEONE_ELSE]:
        shutil.copy(face_recognition_photos / name, folder / name)
    shutil.copy(face_recognition_photos / "obama.jpg", folder / "obama copy.jpg")  # exact duplicate
    (folder / "obama3.txt").write_text("a man standing at a podium in front of flags\n", encoding="utf-8")
    (folder / "notes.md").write_text("my photos\n")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "broken.jpg").write_bytes((folder / "obama.jpg").read_bytes()[:4000])
    (folder / "été à la plage.png").write_text("not a png")
    return folder


def test_prepare_a_messy_folder(tmp_path, messy_folder):
    before = snapshot(messy_folder)
    # identity_check warn: the photo of someone else is kept with a warning (exclude, the default: tests/test_gate.py)
    preset = preset_for(messy_folder, tmp_path, "subject.class_word=man", "dataset.captions.mode=files",
                        "dataset.identity_check=warn")
    summary, run = run_layout(preset, tmp_path)
    assert snapshot(messy_folder) == before, "the input folder is unchanged: no file written, touched, replaced or added"

    report = json.loads((run.root / "dataset.json").read_text(encoding="utf-8"))
    by_name = {p["file"]: p for p in report["photos"]}
    # every file in the folder is accounted for: a photo (used or not, and why) or another file
    assert set(by_name) | {o["file"] for o in report["not_photos"]} == set(before["files"])
    assert {o["file"]: o["why"] for o in report["not_photos"]} == {
        "obama3.txt": "caption of a photo", "notes.md": "not a photo (unknown file type)"}
    dropped = {n: p["reason"] for n, p in by_name.items() if p["status"] == "dropped"}
    assert dropped["empty.jpg"] == "empty file (0 bytes)"
    assert dropped["broken.jpg"].startswith("truncated or damaged")
    assert dropped["été à la plage.png"].startswith("not a readable image")
    assert {"obama.jpg", "obama copy.jpg"} & set(dropped) and "exact duplicate of obama" in " ".join(dropped.values())
    assert {"obama2.jpg", "32bit.png"} & set(dropped) and "near duplicate of" in " ".join(dropped.values())
    assert len(dropped) == 5 and {src.name for src, _ in summary.skipped} == set(dropped)
    kept = [n for n, p in by_name.items() if p["status"] == "kept"]
    assert len(kept) == 6 and SOMEONE_ELSE in kept
    assert any("does not look like the others" in n for n in by_name[SOMEONE_ELSE]["notes"])
    assert all(by_name[n]["identity_score"] > faces.SAME_PERSON_SCORE for n in kept if n != SOMEONE_ELSE)
    for n in kept:  # the crop holds the face
        f, c = by_name[n]["face_box"], by_name[n]["crop_box"]
        assert c[0] <= f[0] and f[2] <= c[2] and c[1] <= f[1] and f[3] <= c[3], n

    # Kohya layout: `10_myface man`, one caption per image, trigger first, class words rewritten
    assert summary.instance_dir == run.img / "10_myface man"
    images = sorted(summary.instance_dir.glob("*.png"))
    assert len(images) == len(summary.photos) == 5 + 3  # one held out; mirror 2 + relight 1 by default
    assert len(summary.held_out) == 1 and report["counts"]["held_out"] == 1
    assert [a["kind"] for a in report["augmented"]] == ["mirror", "mirror", "brighter"]
    for image in images:
        caption = image.with_suffix(".txt").read_text(encoding="utf-8")
        assert caption.startswith("myface man") and "_" not in image.name
        with Image.open(image) as im:
            assert im.size == (256, 256)
    assert by_name["obama3.jpg"]["caption"] == "myface man, standing at a podium in front of flags"
    assert by_name["obama2.jpg" if "obama2.jpg" in kept else "32bit.png"]["caption"] == "myface man, photo"
    assert any(w.startswith("captions mode files: no .txt beside") and "biden.jpg" in w for w in report["warnings"])
    assert SOMEONE_ELSE not in {a["from"] for a in report["augmented"]}  # never augment a photo of someone else

    # the contact sheet and the markdown summary name everything a person must know
    glance = {e.source.name: at_a_glance(e) for e in summary.entries if e.status == "kept"}
    assert glance[SOMEONE_ELSE].startswith("! someone else?") and glance["obama3.jpg"] == ""
    with Image.open(run.root / "contact_sheet.png") as sheet:
        assert sheet.width >= 5 * 256 and sheet.height >= 2 * 256
    md = (run.root / "dataset.md").read_text(encoding="utf-8")
    assert md.startswith("# Dataset: 6 of 11 photos used")
    for name in dropped:
        assert f"`{name}`" in md


def test_too_few_usable_photos_is_an_error_naming_each(tmp_path, astronaut):
    folder = tmp_path / "few"
    folder.mkdir()
    astronaut.save(folder / "one.jpg")
    astronaut.save(folder / "same.jpg")
    Image.new("RGB", (300, 300), "gray").save(folder / "wall.png")
    with pytest.raises(UserError) as e:
        run_layout(preset_for(folder, tmp_path), tmp_path)
    text = str(e.value)
    assert "only 1 usable photo" in text and "at least 3" in text
    assert "same.jpg: exact duplicate of one.jpg" in text and "wall.png: no face found" in text


def test_regularization_folder_and_balance_advice(tmp_path, face_recognition_photos):
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ONE_PERSON[:5]:
        shutil.copy(face_recognition_photos / name, photos / name)
    reg = tmp_path / "class images"
    reg.mkdir()
    Image.fromarray(data.coffee()).save(reg / "a.jpg")
    Image.fromarray(data.chelsea()).save(reg / "b.png")
    (reg / "c.jpg").write_bytes(b"")
    preset = preset_for(photos, tmp_path, f"regularization.images={reg}", "subject.class_word=man")
    summary, run = run_layout(preset, tmp_path)
    assert summary.reg_dir == run.reg / "1_man" and summary.reg_images == 2
    assert sorted(p.read_text() for p in summary.reg_dir.glob("*.txt")) == ["man\n", "man\n"]
    assert any("fewer regularization images (2×1) than training images" in w for w in summary.warnings)
    assert (reg / "c.jpg", "regularization image: empty file (0 bytes)") in summary.skipped


def test_flip_aug_replaces_mirrored_copies(tmp_path, face_recognition_photos):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ONE_PERSON[:5]:
        shutil.copy(face_recognition_photos / name, photos / name)
    summary, _ = run_layout(preset_for(photos, tmp_path, "dataset.flip_aug=true", "dataset.augment.relight=2"), tmp_path)
    assert [a["kind"] for a in summary.augmented] == ["brighter", "darker-warm"]
    assert any("flip_aug is on" in w for w in summary.warnings)


def test_prepare_command_writes_a_run_folder(tmp_path, face_recognition_photos):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ONE_PERSON[:4]:
        shutil.copy(face_recognition_photos / name, photos / name)
    r = CliRunner().invoke(cli, ["prepare", "cpu-check", f"dataset.images={photos}", f"output.dir={tmp_path / 'out'}"])
    assert r.exit_code == 0, r.output
    assert "dataset: 4 of 4 photos used (3 trained on, 1 held out)" in r.output
    assert "warning: only 3 photos to train on" in r.output
    (root,) = (tmp_path / "out" / "myface-check").iterdir()
    assert (root / "contact_sheet.png").is_file() and (root / "dataset.md").is_file()
    assert len(list((root / "img" / "1_myface woman").glob("*.png"))) == 3 + 3
    assert len(list((root / "val" / "1_myface woman").glob("*.png"))) == 1

    (photos / "obama.jpg").unlink()
    (photos / "obama2.jpg").unlink()
    r = CliRunner().invoke(cli, ["prepare", "cpu-check", f"dataset.images={photos}", f"output.dir={tmp_path / 'out'}"])
    assert r.exit_code == 2 and "only 2 usable photos" in r.output
    assert len(list((tmp_path / "out" / "myface-check").iterdir())) == 1  # the failed run left no folder


@needs_kohya
def test_sd_scripts_reads_the_layout(tmp_path, face_recognition_photos):
    """sd-scripts' own folder parser: `10_myface woman` → 10 repeats, class tokens "myface woman"."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ONE_PERSON[:4]:
        shutil.copy(face_recognition_photos / name, photos / name)
    summary, run = run_layout(preset_for(photos, tmp_path), tmp_path)
    script = (
        "import json, sys\n"
        "from library.config_util import generate_dreambooth_subsets_config_by_subdirs as subdirs\n"
        "from library.train_util import glob_images\n"
        "subsets = subdirs(sys.argv[1])\n"
        "print(json.dumps([dict(s, images=len(glob_images(s['image_dir']))) for s in subsets]))\n")
    proc = subprocess.run([str(KOHYA_PYTHON), "-c", script, str(run.img)], cwd=SD_SCRIPTS,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (subset,) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert subset["num_repeats"] == 10 and subset["class_tokens"] == "myface woman"
    assert subset["images"] == len(summary.photos) == 6 and not subset["is_reg"]  # 3 photos + 3 copies; 1 held out


# ---------------------------------------------------------------- where each caption came from
@pytest.fixture
def captioned_photos(tmp_path, face_recognition_photos) -> Path:
    """Four photos of one person; two have a caption file of their own (.txt and .caption)."""
    photos = tmp_path / "captioned"
    photos.mkdir()
    for name in ONE_PERSON[:4]:
        shutil.copy(face_recognition_photos / name, photos / name)
    (photos / "obama3.txt").write_text("a man at a podium, flags behind him\n", encoding="utf-8")
    (photos / "obama.caption").write_text("close-up, dark suit\n", encoding="utf-8")
    return photos


def test_default_captions_use_a_photos_own_file_and_the_template_otherwise(tmp_path, captioned_photos):
    r = CliRunner().invoke(cli, ["prepare", "cpu-check", f"dataset.images={captioned_photos}", f"output.dir={tmp_path / 'out'}",
                                 "subject.class_word=man"])
    assert r.exit_code == 0, r.output
    (root,) = (tmp_path / "out" / "myface-check").iterdir()
    report = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    by_name = {p["file"]: p for p in report["photos"]}
    assert {n: (p["caption_source"], p["caption"]) for n, p in by_name.items()} == {
        "obama3.jpg": ("obama3.txt", "myface man, at a podium, flags behind him"),
        "obama.jpg": ("obama.caption", "myface man, close-up, dark suit"),
        "obama2.jpg": ("template", "myface man, photo"),
        "obama_partial_face.jpg": ("template", "myface man, photo")}
    line = "captions: 2 from their own caption files (obama.caption, obama3.txt), 2 from the template"
    assert line in r.output and report["captions"] == line.removeprefix("captions: ")
    md = (root / "dataset.md").read_text(encoding="utf-8")
    assert "| caption from |" in md and "| myface man, close-up, dark suit | obama.caption |" in md
    assert not any("were not used" in w for w in report["warnings"])


def test_template_mode_says_which_caption_files_it_ignored(tmp_path, captioned_photos):
    summary, _ = run_layout(preset_for(captioned_photos, tmp_path, "dataset.captions.mode=template"), tmp_path)
    assert {e.caption_source for e in summary.entries} == {"template"}
    (warning,) = [w for w in summary.warnings if "were not used" in w]
    assert "captions mode template: the caption files obama.caption, obama3.txt were not used" in warning


def test_the_contact_sheet_shows_where_a_caption_came_from(astronaut):
    from faceswap_kohya.data.reports import contact_sheet

    grey = np.array([110, 110, 110])
    shown = np.asarray(contact_sheet([(astronaut, "001.png", "", "IMG_0002.txt", "myface woman, photo")]))
    hidden = np.asarray(contact_sheet([(astronaut, "001.png", "", "", "myface woman, photo")]))
    assert (np.abs(shown.astype(int) - grey).sum(axis=2) < 30).sum() > 20  # the grey "caption from ..." line
    assert (np.abs(hidden.astype(int) - grey).sum(axis=2) < 30).sum() < (np.abs(shown.astype(int) - grey).sum(axis=2) < 30).sum()


# ---------------------------------------------------------------- loss masks and held-out photos
FACES = Path(__file__).parent / "data" / "faces"


@pytest.mark.parametrize("setting,usable,expected", [
    (None, 5, (0, False)), (None, 6, (1, False)), (1, 4, (1, False)), (1, 3, (0, True)), (3, 5, (2, True)), (0, 9, (0, False))])
def test_how_many_photos_are_held_out(setting, usable, expected):
    from faceswap_kohya.data.dataset import holdout_count

    n, warning = holdout_count(setting, usable)
    assert (n, warning is not None) == expected
    assert usable - n >= 3 or n == 0  # never fewer than 3 left to train on


@pytest.fixture(scope="module")
def masked_run(tmp_path_factory):
    """The repository's six real photos (five of one person, one of another) prepared with head masks,
    the hold-out left to its default, at 256 px."""
    tmp = tmp_path_factory.mktemp("masked")
    preset = preset_for(FACES, tmp, "subject.class_word=man", "dataset.mask=head", "dataset.holdout=null",
                        "dataset.identity_check=warn")  # six usable photos, biden.jpg among them
    summary, run = run_layout(preset, tmp)
    return preset, summary, run


def _alpha(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGBA" and im.info.get("alpha") == "loss weight", path.name
        return np.asarray(im.getchannel("A"), dtype=np.float64) / 255


def test_every_training_image_carries_its_mask_as_alpha(masked_run):
    from faceswap_kohya.faces.detect import detect
    from faceswap_kohya.faces.masks import landmarks68

    preset, summary, run = masked_run
    report = json.loads((run.root / "dataset.json").read_text())
    augmented = {a["file"]: a for a in report["augmented"]}
    originals = [p for p in summary.photos if p.name not in augmented]
    assert originals and report["mask"]["kind"] == "head" and 0.1 < report["mask"]["mean_weight"] < 0.9
    for path in originals:
        alpha, rgb = _alpha(path), load_rgb(path)
        with Image.open(path) as im:  # the colours are kept as they are under every alpha value
            assert np.array_equal(np.asarray(rgb), np.asarray(im.convert("RGB")))
        faces_found = detect(rgb)
        points = landmarks68(rgb, faces_found[0].box)  # found again on the training image itself
        cols = np.clip(np.round(points[:, 0]).astype(int), 0, alpha.shape[1] - 1)
        rows = np.clip(np.round(points[:, 1]).astype(int), 0, alpha.shape[0] - 1)
        assert alpha[rows, cols].min() >= 0.9, path.name
        if "partial" in path.name:  # cut off at the photo's edge: the head reaches a corner
            continue
        for corner in (alpha[0, 0], alpha[0, -1], alpha[-1, 0], alpha[-1, -1]):
            assert abs(corner - preset.dataset.mask_floor) <= 2 / 255, path.name
    for name, aug in augmented.items():  # a mirrored copy has the mirrored mask, a relit one the same
        source = next(p for p in summary.photos if p.name == name.rsplit("-", 1)[0] + ".png")
        expected = _alpha(source)[:, ::-1] if aug["kind"] == "mirror" else _alpha(source)
        assert np.array_equal(_alpha(run.root / "img" / "10_myface man" / name), expected), name


def test_one_photo_is_held_out_of_training_and_shown_on_the_sheet(masked_run):
    from faceswap_kohya.data.reports import HELD_OUT_FRAME

    _, summary, run = masked_run
    report = json.loads((run.root / "dataset.json").read_text())
    held = [p for p in report["photos"] if p.get("held_out")]
    assert len(held) == 1 and report["counts"]["held_out"] == 1  # six usable photos: one held out by default
    assert held[0]["file"] != SOMEONE_ELSE and held[0]["file"] not in {a["from"] for a in report["augmented"]}
    (val,) = summary.held_out
    assert val.parent == run.root / "val" / "1_myface man" and report["validation_dir"] == "val/1_myface man"
    assert val.with_suffix(".txt").read_text().startswith("myface man") and _alpha(val).max() == 1.0
    trained = {p.name for p in (run.root / "img" / "10_myface man").glob("*.png")}
    assert val.name not in trained and not any(n.startswith(val.stem) for n in trained)
    assert len(trained) == len(summary.photos) == 5 + 3
    with Image.open(run.root / "contact_sheet.png") as sheet:
        frame = np.all(np.asarray(sheet.convert("RGB")) == HELD_OUT_FRAME, axis=-1)
    assert frame.sum() > 4 * 200  # a frame around one thumbnail
    md = (run.root / "dataset.md").read_text()
    assert f"`{held[0]['file']}` (held out)" in md and "loss mask: head" in md
