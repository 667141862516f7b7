"""The photo gate before training (data/gate.py) and the person's own baseline (faces/likeness.py), on real face
photos: someone else left out or kept with a warning, the subject of a group photo and the other face at the
mask floor, blurry and small faces, duplicates counted once, poses, the verdict, and `identity --refs`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from face_data import FACES, SOMEONE_ELSE
from PIL import Image, ImageFilter

from faceswap_kohya.cli.main import cli
from faceswap_kohya.config import presets
from faceswap_kohya.data.dataset import layout
from faceswap_kohya.errors import UserError
from faceswap_kohya.faces.identity import SAME_PERSON_SCORE
from faceswap_kohya.runs.layout import RunLayout

pytest.importorskip("dlib", reason="the photo gate detects and embeds faces (dlib)")

OBAMA = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"]


def folder_of(tmp_path: Path, names, name="photos") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for n in names:
        shutil.copy(FACES / n, folder / n)
    return folder


def prepared(folder: Path, tmp_path: Path, *extra: str):
    preset = presets.load("cpu-check", [f"dataset.images={folder}", f"output.dir={tmp_path / 'out'}", "dataset.resolution=256",
                                        "dataset.augment.mirror=0", "dataset.augment.relight=0", *extra])[0]
    run = RunLayout(tmp_path / "run")
    run.root.mkdir()
    summary = layout(preset, run)
    return summary, json.loads((run.root / "dataset.json").read_text(encoding="utf-8")), run


def test_someone_else_is_left_out_by_name_with_both_scores(tmp_path):
    folder = folder_of(tmp_path, OBAMA + [SOMEONE_ELSE])
    summary, data, run = prepared(folder, tmp_path)
    by_name = {p["file"]: p for p in data["photos"]}
    other = by_name[SOMEONE_ELSE]
    assert other["status"] == "dropped" and other["reason"].startswith("someone else? identity ")
    score = other["identity_score"]
    assert score < SAME_PERSON_SCORE and f"identity {score:.2f} against the other photos, which score " in other["reason"]
    kept = [by_name[n]["identity_score"] for n in OBAMA]
    assert min(kept) > SAME_PERSON_SCORE and f"{min(kept):.2f}-{max(kept):.2f}" in other["reason"]  # the others' scores
    assert data["gate"]["someone_else"] == [SOMEONE_ELSE] and other["findings"][0]["kind"] == "someone_else"
    assert data["verdict"].startswith("5 usable photos, 1 left out (someone else)")
    lines = summary.brief(run.root)
    assert f"photos: {data['verdict']}" in lines
    assert any(line.startswith(f"not used: {SOMEONE_ELSE}: someone else? identity {score:.2f}") for line in lines)
    md = (run.root / "dataset.md").read_text(encoding="utf-8")
    assert f"`{SOMEONE_ELSE}`: someone else? identity {score:.2f}" in md and data["verdict"] in md
    # the person's own baseline, from the photos used, shown in the terminal
    own = data["baseline"]
    assert own["photos"] == 5 and own["method"] == "leave-one-out centroid" and own["embedder"] == "dlib-resnet-128"
    assert SAME_PERSON_SCORE < own["mean"] < 1 and set(own["scores"]) == set(OBAMA)
    assert any(line.startswith(f"your photos' own likeness: {own['mean']:.3f}") for line in lines)
    # every fixture photo faces the camera: the set is all one pose
    assert data["gate"]["poses"] == {"frontal": 5} and "poses: 5 frontal" in data["verdict"]
    assert "every photo is frontal: add a three-quarter or profile view" in data["gate"]["advice"]
    assert "advice: every photo is frontal: add a three-quarter or profile view" in lines


def test_warn_keeps_someone_else_with_a_warning(tmp_path):
    folder = folder_of(tmp_path, OBAMA + [SOMEONE_ELSE])
    summary, data, _ = prepared(folder, tmp_path, "dataset.identity_check=warn")
    other = next(p for p in data["photos"] if p["file"] == SOMEONE_ELSE)
    assert other["status"] == "kept" and "kept (dataset.identity_check=warn)" in other["findings"][0]["text"]
    assert any(w.startswith(f"{SOMEONE_ELSE} looks like someone else (someone else? identity") for w in data["warnings"])
    assert data["gate"]["someone_else_kept"] == [SOMEONE_ELSE] and "1 kept though it looks like someone else" in data["verdict"]
    (tmp_path / "off").mkdir()
    off = prepared(folder, tmp_path / "off", "dataset.identity_check=off")[1]
    assert all(p["status"] == "kept" and "findings" not in p for p in off["photos"])


def test_no_clear_majority_is_an_error_before_training(tmp_path):
    folder = folder_of(tmp_path, ["obama.jpg", "obama3.jpg", SOMEONE_ELSE])
    Image.open(FACES / SOMEONE_ELSE).transpose(Image.FLIP_LEFT_RIGHT).save(folder / "biden-mirrored.jpg", quality=90)
    with pytest.raises(UserError, match="dataset.identity_check: no clear majority identity") as err:
        prepared(folder, tmp_path)
    assert "obama.jpg, obama3.jpg" in str(err.value) and "biden" in str(err.value)
    assert not list((tmp_path / "run").rglob("*.png"))  # nothing prepared


def group_photo(path: Path) -> tuple[tuple[int, int], float]:
    """obama.jpg with biden.jpg below it, enlarged so that his is the larger face: the person is not the largest
    face. Returns where biden's photo was put and its scale."""
    top, bottom = Image.open(FACES / "obama.jpg").convert("RGB"), Image.open(FACES / SOMEONE_ELSE).convert("RGB")
    k = 1.6
    bottom = bottom.resize((round(bottom.width * k), round(bottom.height * k)), Image.LANCZOS)
    canvas = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height), "white")
    canvas.paste(top, ((canvas.width - top.width) // 2, 0))
    at = ((canvas.width - bottom.width) // 2, top.height)
    canvas.paste(bottom, at)
    canvas.save(path, quality=92)
    return at, k


def test_the_subject_of_a_group_photo_is_chosen_and_the_other_face_gets_the_floor(tmp_path):
    from faceswap_kohya.faces.detect import detect

    folder = folder_of(tmp_path, ["obama2.jpg", "obama3.jpg", "obama_partial_face2.jpg"])
    group_photo(folder / "group.jpg")
    found = detect(Image.open(folder / "group.jpg").convert("RGB"))
    assert len(found) == 2 and found[0].center[1] > found[1].center[1]  # the largest face is biden's, below
    summary, data, run = prepared(folder, tmp_path, "dataset.framing=as_is", "dataset.mask=person", "dataset.mask_floor=0.1")
    group = next(p for p in data["photos"] if p["file"] == "group.jpg")
    def near(box, face):  # the same face (detection ran on a reduced decode: boxes differ by a few pixels)
        return max(abs(a - b) for a, b in zip(box, face.box)) <= 0.03 * group["size"][0]

    assert group["status"] == "kept" and near(group["face_box"], found[1])  # obama's face, the smaller one
    assert len(group["other_faces"]) == 1 and near(group["other_faces"][0], found[0])
    assert group["findings"][0]["kind"] == "other_faces" and "the other face gets the mask floor" in group["findings"][0]["text"]
    assert any(line.startswith("photo group.jpg: 2 faces: the subject is the one most like") for line in summary.brief(run.root))
    (image,) = [p for p in summary.photos if "group" in p.name]
    with Image.open(image) as im:
        alpha = np.asarray(im.getchannel("A"))
        k = im.width / group["size"][0]
    def at(face):
        x, y = (face[0] + face[2]) / 2 * k, (face[1] + face[3]) / 2 * k
        return int(alpha[round(y), round(x)])

    assert at(group["face_box"]) == 255  # the subject: full weight
    assert at(group["other_faces"][0]) <= round(0.1 * 255) + 1  # biden: the floor, though the person mask reaches there


def test_blurred_and_shrunken_copies_are_flagged(tmp_path):
    folder = folder_of(tmp_path, ["obama.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"])
    Image.open(FACES / "obama2.jpg").filter(ImageFilter.GaussianBlur(5)).save(folder / "blurred.jpg", quality=92)
    small = Image.open(FACES / "obama3.jpg")
    small.resize((small.width // 5, small.height // 5), Image.LANCZOS).save(folder / "shrunken.jpg", quality=92)
    summary, data, run = prepared(folder, tmp_path, "dataset.framing=face")
    kinds = {p["file"]: [f["kind"] for f in p.get("findings", [])] for p in data["photos"]}
    assert "blurry" in kinds["blurred.jpg"] and "small_face" not in kinds["blurred.jpg"], kinds
    assert "small_face" in kinds["shrunken.jpg"], kinds
    assert not kinds["obama.jpg"] and not kinds["obama_partial_face.jpg"], kinds
    shrunk = next(p for p in data["photos"] if p["file"] == "shrunken.jpg")
    assert "face too small for 256 px training" in next(f["text"] for f in shrunk["findings"] if f["kind"] == "small_face")
    assert "blurry" in data["verdict"] and "1 face too small" in data["verdict"]  # the shrunken face may read blurry too
    lines = summary.brief(run.root)
    assert any(line.startswith("photo blurred.jpg: blurry: the face's sharpness is") for line in lines)
    md = (run.root / "dataset.md").read_text(encoding="utf-8")
    assert "`blurred.jpg`: blurry" in md and "`shrunken.jpg`: face too small" in md


def test_a_duplicate_and_a_near_duplicate_count_once(tmp_path):
    folder = folder_of(tmp_path, ["obama.jpg", "obama3.jpg", "obama_partial_face2.jpg"])
    shutil.copy(folder / "obama.jpg", folder / "obama copy.jpg")
    im = Image.open(FACES / "obama.jpg")
    im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.LANCZOS).save(folder / "obama small.jpg", quality=70)
    summary, data, _ = prepared(folder, tmp_path)
    dropped = {p["file"]: p for p in data["photos"] if p["status"] == "dropped"}
    assert len(dropped) == 2 and "obama small.jpg" in dropped and len({"obama.jpg", "obama copy.jpg"} & set(dropped)) == 1
    assert all(p["findings"][0]["kind"] == "duplicate" and "counted once" in p["findings"][0]["text"] for p in dropped.values())
    assert data["gate"]["duplicates"] == 2 and data["verdict"].startswith("3 usable photos, 2 duplicates counted once")


def test_identity_refs_prints_the_persons_own_baseline(tmp_path):
    folder = folder_of(tmp_path, OBAMA)
    r = CliRunner().invoke(cli, ["identity", "--refs", str(folder)])
    assert r.exit_code == 0, r.output
    assert "your photos' own likeness: " in r.output and "dlib-resnet-128" in r.output
    assert all(name in r.output for name in OBAMA)
    r = CliRunner().invoke(cli, ["identity", "--refs", str(folder), str(FACES / SOMEONE_ELSE), "--json"])
    result = json.loads(r.output)
    own = result["baseline"]
    assert own["photos"] == 5 and own["embedder"] == result["embedder"] and SAME_PERSON_SCORE < own["mean"] < 1
    (other,) = result["images"]
    assert other["share"] == round(other["centroid_score"] / own["mean"], 4) and other["share"] < 0.7  # one statistic


def test_leave_one_out_baseline_and_the_majority_person():
    from faceswap_kohya.faces.identity import face_of, get_embedder
    from faceswap_kohya.faces.likeness import NoMajority, leave_one_out, one_person, own_baseline, share_of

    embedder = get_embedder("dlib")
    vectors = {n: face_of(FACES / n, embedder)["embedding"] for n in OBAMA + [SOMEONE_ELSE]}
    obama = [vectors[n] for n in OBAMA]
    base = own_baseline(OBAMA, obama, embedder.name)
    assert base.values == pytest.approx(leave_one_out(obama)) and min(base.values) > SAME_PERSON_SCORE
    found = one_person(obama + [vectors[SOMEONE_ELSE]], "euclidean", SAME_PERSON_SCORE)
    assert found.outsiders == [5] and found.members == list(range(5)) and found.scores[5] < SAME_PERSON_SCORE
    with pytest.raises(NoMajority):
        one_person([obama[0], vectors[SOMEONE_ELSE]], "euclidean", SAME_PERSON_SCORE)
    own = base.to_dict()
    assert share_of(own["mean"], own, embedder.name) == 1.0 and share_of(0.5, own, "arcface-w600k-mbf") is None
