"""A dataset already laid out Kohya's way (`img/10_ohwx man/` + captions, `reg/1_man/`), prepared as it is.

Real photos (tests/data/faces and scikit-image's astronaut) in Kohya's layout; the rendered dataset TOML is
compared with what sd-scripts' own loader (config_util + DreamBoothDataset) reads from the original folders.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib
from click.testing import CliRunner
from conftest import KOHYA_PYTHON, SD_SCRIPTS, kohya_available

from faceswap_kohya.cli.main import cli
from faceswap_kohya.config import presets
from faceswap_kohya.data.kohya_folders import resolve
from faceswap_kohya.errors import UserError
from faceswap_kohya.formats.importer import import_file, import_preset
from faceswap_kohya.jobs.train import prepare_run
from faceswap_kohya.runs.layout import new_run

pytest.importorskip("dlib", reason="dlib is not installed (pip install -e '.[faces]')")
FACES = Path(__file__).parent / "data" / "faces"
CAPTIONS = {  # photo → its caption file's text (others have none: sd-scripts uses the folder's tokens)
    "10_ohwx man/obama.jpg": "ohwx man, smiling, in front of a flag\nsecond line sd-scripts ignores",
    "10_ohwx man/obama2.jpg": "ohwx man, portrait, dark suit",
    "4_ohwx man/obama_partial_face.jpg": "ohwx man, close-up",
    "reg/1_man/biden.jpg": "a man in a suit, portrait",
}

# sd-scripts' own loader, as train_network.py calls it: legacy folders (train_data_dir/reg_data_dir) or a dataset TOML.
SD_SCRIPTS_READER = r"""
import json, os, sys
import sdxl_train_network
from library import config_util, train_util

parser = sdxl_train_network.setup_parser()
if sys.argv[1] == "folders":
    args = parser.parse_args(["--train_data_dir", sys.argv[2], "--reg_data_dir", sys.argv[3], "--resolution", "256",
                              "--caption_extension", ".txt"])
    user_config = {"datasets": [{"subsets": config_util.generate_dreambooth_subsets_config_by_subdirs(
        args.train_data_dir, args.reg_data_dir)}]}
else:
    args = parser.parse_args(["--dataset_config", sys.argv[2]])
    user_config = config_util.load_user_config(sys.argv[2])
train_util.prepare_dataset_args(args, True)
blueprint = config_util.BlueprintGenerator(config_util.ConfigSanitizer(True, True, False, True)).generate(user_config, args)
group, _ = config_util.generate_dataset_group_by_blueprint(blueprint.dataset_group)
subsets, images = [], []
for ds in group.datasets:
    subsets += [{"dir": os.path.basename(s.image_dir), "is_reg": s.is_reg, "repeats": s.num_repeats,
                 "class_tokens": s.class_tokens, "images": s.img_count} for s in ds.subsets]
    for key, info in ds.image_data.items():
        images.append({"dir": os.path.basename(ds.image_to_subset[key].image_dir),
                       "file": os.path.basename(info.absolute_path), "caption": info.caption})
print(json.dumps({"subsets": subsets, "images": images}))
"""


@pytest.fixture
def project(tmp_path, astronaut) -> Path:
    """A kohya_ss project folder: img/10_ohwx man (3 photos), img/4_ohwx man (3), reg/1_man (2), some captions."""
    root = tmp_path / "kohya project"
    layout = {"img/10_ohwx man": ["obama.jpg", "obama2.jpg", "obama3.jpg"],
              "img/4_ohwx man": ["obama_partial_face.jpg", "obama_partial_face2.jpg"],
              "reg/1_man": ["biden.jpg"]}
    for folder, names in layout.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(FACES / name, root / folder / name)
    astronaut.crop((0, 0, 512, 512)).save(root / "img/4_ohwx man/astronaut.png")
    astronaut.crop((64, 0, 448, 384)).save(root / "reg/1_man/astronaut.jpg", quality=90)
    for photo, text in CAPTIONS.items():
        folder = root / ("" if photo.startswith("reg/") else "img")
        (folder / photo).with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
    return root


def snapshot(folder: Path) -> dict:
    """Every file's hash and every file's and folder's mtime (a folder's changes when a file is added to it)."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder",
                                         p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def face_12gb(project: Path, tmp_path: Path, *extra: str):
    overrides = [f"dataset.images={project / 'img'}", f"output.dir={tmp_path / 'out'}", "dataset.resolution=256", "dataset.min_bucket_reso=128",
                 "kohya.tokenizer_cache=null", "base_model.path=/models/never-loaded.safetensors", *extra]
    preset, path = presets.load("face-12gb", overrides)
    return preset, path, overrides


def sd_scripts_reads(*args: str) -> dict:
    proc = subprocess.run([str(KOHYA_PYTHON), "-c", SD_SCRIPTS_READER, *args], cwd=SD_SCRIPTS,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the same data as sd-scripts reads
def test_prepared_dataset_toml_matches_what_sd_scripts_reads_from_the_folders(project, tmp_path):
    before = snapshot(project)
    # every photo trained: none held out (a held-out photo is left out of training on purpose)
    preset, path, overrides = face_12gb(project, tmp_path, "dataset.holdout=0", "dataset.identity_check=warn")  # the astronaut is another person
    resolved = resolve(preset, presets.override_keys(overrides))
    p = resolved.preset
    assert [(Path(s.folder).name, s.repeats, s.class_tokens) for s in p.dataset.subsets] == [
        ("10_ohwx man", 10, "ohwx man"), ("4_ohwx man", 4, "ohwx man")]
    assert [(s.repeats, s.class_tokens) for s in p.regularization.subsets] == [(1, "man")]
    assert (p.subject.trigger, p.subject.class_word) == ("ohwx", "man")

    run = new_run(p)
    prepare_run(p, path, run, echo=lambda s: None, notes=resolved.notes)
    assert snapshot(project) == before, "the user's folders must not change"
    toml = tomllib.loads(run.dataset_toml.read_text())
    ours = {(Path(s["image_dir"]).name, bool(s.get("is_reg")), s["num_repeats"], s["class_tokens"])
            for s in toml["datasets"][0]["subsets"]}
    assert ours == {("10_ohwx man", False, 10, "ohwx man"), ("4_ohwx man", False, 4, "ohwx man"), ("1_man", True, 1, "man")}
    report = json.loads((run.root / "dataset.json").read_text())["kohya"]
    assert report["prepared"] and any(n.startswith("subject: trigger 'ohwx' from the folder '10_ohwx man' (not the "
                                                    "preset file's 'myface')") for n in report["notes"])
    if not kohya_available():
        pytest.skip(f"sd-scripts not set up ({SD_SCRIPTS}, {KOHYA_PYTHON}): the TOML was checked against the folder "
                    "names only; run scripts/setup.sh (or set FACESWAP_KOHYA_SD_SCRIPTS) to compare with sd-scripts' loader")

    theirs = sd_scripts_reads("folders", str(project / "img"), str(project / "reg"))
    rendered = sd_scripts_reads("toml", str(run.dataset_toml))
    key = lambda s: (s["dir"], s["is_reg"], s["repeats"], s["class_tokens"])  # noqa: E731
    assert sorted(map(key, rendered["subsets"])) == sorted(map(key, theirs["subsets"]))
    # every photo sd-scripts reads from a folder is trained here, each of its images with the same caption
    outputs = {(Path(s["folder"]).name, file): row for s in report["subsets"] for file, row in s["photos"].items()}
    source_of = {(Path(s["ours"]["dir"]).name, out): file for s in report["subsets"]
                 for file, row in s["photos"].items() for out in row.get("outputs", [])}
    their_captions = {(i["dir"], i["file"]): i["caption"] for i in theirs["images"]}
    assert their_captions[("10_ohwx man", "obama.jpg")] == "ohwx man, smiling, in front of a flag"
    assert their_captions[("10_ohwx man", "obama3.jpg")] == "ohwx man"  # no caption file: the class tokens
    trained = 0
    for image in rendered["images"]:
        if image["dir"] == "1_man":
            continue  # regularization images are checked below
        source = source_of[(image["dir"], image["file"])]
        assert image["caption"] == their_captions[(image["dir"], source)], (image, source)
        trained += 1
    kept = {k for k, row in outputs.items() if row.get("status") == "kept" and k[0] != "1_man"}
    assert {k for k in their_captions if k[0] != "1_man"} == kept, "no photo may be lost"
    assert trained == sum(len(outputs[k]["outputs"]) for k in kept)
    reg_ours = sorted(i["caption"] for i in rendered["images"] if i["dir"] == "1_man")
    reg_theirs = sorted(c for (d, _), c in their_captions.items() if d == "1_man")
    assert reg_ours == reg_theirs == ["a man in a suit, portrait", "man"]


def test_prepare_prints_both_readings_side_by_side_and_dry_run_makes_no_folder(project, tmp_path):
    before = snapshot(project)
    _, _, overrides = face_12gb(project, tmp_path, "dataset.identity_check=warn")  # the astronaut is another person
    r = CliRunner().invoke(cli, ["prepare", "face-12gb", *overrides, "--dry-run"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "out").exists()
    lines = r.output.splitlines()
    assert any("sd-scripts by itself" in line and "this tool" in line for line in lines)
    row = next(line for line in lines if line.strip().startswith("10_ohwx man"))
    assert "3 images ×10, tokens 'ohwx man'" in row and "3 photos ×10, tokens 'ohwx man' → img/10_ohwx man" in row
    row = next(line for line in lines if line.strip().startswith("obama3.jpg"))
    assert '"ohwx man" (no caption file)' in row and row.rstrip().endswith("| same")

    r = CliRunner().invoke(cli, ["prepare", "face-12gb", *overrides])
    assert r.exit_code == 0, r.output
    assert snapshot(project) == before
    assert "dataset: 6 of 6 photos used" in r.output and "Kohya folders, side by side:" in r.output
    md = next((tmp_path / "out").rglob("dataset.md")).read_text()
    assert "## Kohya folders: sd-scripts by itself vs this tool" in md
    assert "| obama.jpg | \"ohwx man, smiling, in front of a flag\" | same" in md


# ---------------------------------------------------------------- precedence
def test_folder_tokens_win_over_the_preset_file_and_the_command_line_wins_over_the_folder(project, tmp_path):
    preset_file = tmp_path / "mine.yaml"
    preset_file.write_text(presets.resolve("face-12gb").read_text().replace("trigger: myface", "trigger: zzperson"))
    common = [f"dataset.images={project / 'img'}", f"output.dir={tmp_path / 'out'}", "kohya.tokenizer_cache=null"]

    r = CliRunner().invoke(cli, ["render", str(preset_file), *common, "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "trigger 'ohwx' from the folder '10_ohwx man' (not the preset file's 'zzperson')" in r.output
    subsets = tomllib.loads((tmp_path / "a" / "dataset.toml").read_text())["datasets"][0]["subsets"]
    assert [s["class_tokens"] for s in subsets] == ["ohwx man", "ohwx man", "man"]

    r = CliRunner().invoke(cli, ["render", str(preset_file), *common, "subject.trigger=sks", "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "trigger 'sks' from the command line (the folder says 'ohwx')" in r.output
    assert "class 'man' from the folder '10_ohwx man'" in r.output
    subsets = tomllib.loads((tmp_path / "b" / "dataset.toml").read_text())["datasets"][0]["subsets"]
    assert [(Path(s["image_dir"]).name, s["class_tokens"]) for s in subsets] == [
        ("10_sks man", "sks man"), ("4_sks man", "sks man"), ("1_man", "man")]

    p, _ = presets.load(str(preset_file), common + ["subject.trigger=sks"])
    resolved = resolve(p, {"subject.trigger"})
    assert resolved.preset.subject.trigger == "sks"
    # its caption files are used as written, with a warning where they lack the new trigger
    summary_preset = resolve(p, set()).preset
    assert summary_preset.subject.trigger == "ohwx", "without the command-line key the folder wins"
    r = CliRunner().invoke(cli, ["prepare", str(preset_file), *common, "subject.trigger=sks", "--dry-run"])
    assert "warning: captions without the trigger 'sks': 10_ohwx man/obama.jpg, 10_ohwx man/obama2.jpg" in r.output


def test_one_kohya_folder_and_its_sibling_reg_folder(project, tmp_path):
    p, _ = presets.load("face-12gb", [f"dataset.images={project / 'img' / '4_ohwx man'}"])
    resolved = resolve(p)
    assert [(s.repeats, s.class_tokens) for s in resolved.preset.dataset.subsets] == [(4, "ohwx man")]
    assert [Path(s.folder).name for s in resolved.preset.regularization.subsets] == ["1_man"]
    p, _ = presets.load("face-12gb", [f"dataset.images={project / 'img'}", "regularization.generate=10"])
    assert resolve(p).preset.regularization.subsets == [], "generated class images: the reg folder is not added"


# ---------------------------------------------------------------- bad folders: one clear message each
@pytest.mark.parametrize("make, message", [
    (lambda img: (img / "7_ohwx man").mkdir(),
     r"dataset.images: Kohya folder .*7_ohwx man has no photos .*sd-scripts would skip it"),
    (lambda img: shutil.copytree(img / "4_ohwx man", img / "closeups"),
     r"dataset.images: folder .*closeups is not named Kohya's way `N_<trigger> <class>`"),
    (lambda img: (img / "4_ohwx man").rename(img / "0_ohwx man"),
     r"dataset.images: folder .*0_ohwx man has 0 repeats .*rename it to `1_ohwx man` or more"),
])
def test_bad_kohya_folders_are_one_clear_message(project, tmp_path, make, message):
    make(project / "img")
    _, _, overrides = face_12gb(project, tmp_path)
    for command in (["prepare", "face-12gb", *overrides], ["prepare", "face-12gb", *overrides, "--dry-run"]):
        r = CliRunner().invoke(cli, command)
        assert r.exit_code == 2, r.output
        errors = [line for line in r.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and re.search(message, errors[0]), r.output
    assert not (tmp_path / "out").exists()


def test_plain_photo_folders_are_read_as_before(tmp_path, photos):
    p, _ = presets.load("face-12gb", [f"dataset.images={photos}"])
    resolved = resolve(p)
    assert resolved.preset is p and resolved.notes == []
    (photos / "1_rejects").mkdir()
    with pytest.raises(UserError, match="holds photos and Kohya folders"):
        resolve(p)


# ---------------------------------------------------------------- importing kohya_ss presets
def test_kohya_gui_json_pointing_at_the_folders_carries_them_into_the_preset(project, tmp_path):
    gui = json.loads((Path(__file__).parent / "data" / "kohya" / "face_gui.json").read_text())
    gui |= {"train_data_dir": str(project / "img"), "reg_data_dir": str(project / "reg")}
    source = tmp_path / "my kohya preset.json"
    source.write_text(json.dumps(gui))
    p, report = import_preset(source)
    assert (p.dataset.images, p.regularization.images) == (str(project / "img"), str(project / "reg"))
    assert (p.subject.trigger, p.subject.class_word) == ("ohwx", "man")
    entry = report.by_key("train_data_dir")[0]
    assert entry.status == "transformed" and "10_ohwx man (×10), 4_ohwx man (×4)" in entry.detail
    resolved = resolve(p)
    assert [(s.repeats, s.class_tokens) for s in resolved.preset.dataset.subsets] == [(10, "ohwx man"), (4, "ohwx man")]
    assert [(s.repeats, s.class_tokens) for s in resolved.preset.regularization.subsets] == [(1, "man")]

    gui["train_data_dir"] = "C:/kohya/img"  # a path of another machine stays unused, as before
    source.write_text(json.dumps(gui))
    data, report = import_file(source)
    assert "images" not in data.get("dataset", {}) and report.by_key("train_data_dir")[0].status == "ignored"


def test_dataset_toml_with_several_subsets_keeps_each(project, tmp_path):
    img = project / "img"
    (tmp_path / "config.toml").write_text('network_dim = 16\nnetwork_alpha = 8\nlearning_rate = 1e-4\n')
    (tmp_path / "config.dataset.toml").write_text(
        '[general]\ncaption_extension = ".txt"\n[[datasets]]\nresolution = 1024\n'
        f'[[datasets.subsets]]\nimage_dir = "{img / "10_ohwx man"}"\nnum_repeats = 6\nclass_tokens = "ohwx man"\n'
        f'[[datasets.subsets]]\nimage_dir = "{img / "4_ohwx man"}"\nnum_repeats = 2\nclass_tokens = "ohwx man"\n'
        f'[[datasets.subsets]]\nimage_dir = "{project / "reg" / "1_man"}"\nis_reg = true\nnum_repeats = 1\nclass_tokens = "man"\n')
    p, report = import_preset(tmp_path / "config.toml")
    assert [(Path(s.folder).name, s.repeats) for s in p.dataset.subsets] == [("10_ohwx man", 6), ("4_ohwx man", 2)]
    assert [(Path(s.folder).name, s.repeats) for s in p.regularization.subsets] == [("1_man", 1)]
    assert resolve(p).preset.dataset.subsets == p.dataset.subsets, "a dataset TOML's repeats are kept (not the names')"
