"""Face detection, embedding and identity scores on real face photos (and known answers on fixed vectors)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from face_data import ONE_PERSON, SOMEONE_ELSE
from PIL import Image, ImageEnhance, ImageOps

from faceswap_kohya.cli.main import cli
from faceswap_kohya.errors import UserError
from faceswap_kohya.faces.detect import detect, model_file
from faceswap_kohya.faces.identity import SAME_PERSON_SCORE, distance, get_embedder, identity_score, median_scores, similarity

pytest.importorskip("dlib", reason="dlib is not installed (pip install -e '.[faces]')")
ASTRONAUT_FACE_CENTRE = (223, 127)  # her face in skimage's 512×512 astronaut portrait


def inside(point, box, slack=0):
    return box[0] - slack <= point[0] <= box[2] + slack and box[1] - slack <= point[1] <= box[3] + slack


@pytest.fixture(scope="module")
def embedder():
    return get_embedder("dlib")


def test_finds_the_astronaut_face_with_landmarks(astronaut):
    found = detect(astronaut)
    assert len(found) == 1
    face = found[0]
    assert inside(ASTRONAUT_FACE_CENTRE, face.box)
    assert 60 < face.width < 140 and face.confidence > 0.5
    assert len(face.landmarks) == 5 and all(inside(p, face.box, slack=10) for p in face.landmarks)


def test_boxes_are_in_the_pixels_of_a_large_photo(astronaut):
    """Detection runs on a ≤640 px copy; the box comes back in the 12 MP photo's pixels."""
    big = Image.new("RGB", (4000, 3000), (90, 110, 130))
    big.paste(astronaut.resize((2400, 2400)), (800, 300))
    (face,) = detect(big)
    cx, cy = 800 + ASTRONAUT_FACE_CENTRE[0] * 2400 / 512, 300 + ASTRONAUT_FACE_CENTRE[1] * 2400 / 512
    assert inside((cx, cy), face.box)
    assert 300 < face.width < 700


def test_no_face_in_noise_or_a_flat_image():
    rng = np.random.default_rng(0)
    assert detect(Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))) == []
    assert detect(Image.new("RGB", (200, 200), "gray")) == []


def test_embedding_is_none_without_a_face(embedder):
    assert embedder.embed(Image.new("RGB", (200, 200), "gray")) is None


def _jpeg(image, quality):
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_edits_of_one_photo_score_as_the_same_person(astronaut, embedder):
    ref = embedder.embed(astronaut)
    assert ref.shape == (128,) and embedder.name == "dlib-resnet-128"
    variants = {
        "mirror": ImageOps.mirror(astronaut),
        "brighter": ImageEnhance.Brightness(astronaut).enhance(1.4),
        "darker": ImageEnhance.Brightness(astronaut).enhance(0.6),
        "rescaled": astronaut.resize((1024, 1024)),
        "grey": ImageOps.grayscale(astronaut),
        "jpeg q20": _jpeg(astronaut, 20),
    }
    for name, image in variants.items():
        score, nearest = identity_score(embedder.embed(image), [ref])
        assert score > 0.6 and nearest == 0, (name, score)


def test_one_person_across_photos_and_someone_else(face_recognition_photos, embedder):
    from faceswap_kohya.files.images import load_rgb

    vectors = {n: embedder.embed(load_rgb(face_recognition_photos / n)) for n in ONE_PERSON + [SOMEONE_ELSE]}
    assert all(v is not None for v in vectors.values())
    same = [similarity(vectors[a], vectors[b]) for a in ONE_PERSON for b in ONE_PERSON if a < b]
    other = [similarity(vectors[SOMEONE_ELSE], vectors[a]) for a in ONE_PERSON]
    assert min(same) > SAME_PERSON_SCORE > max(other)
    # the odd one out in a set has the lowest median score, under the threshold; the rest are above
    names = ONE_PERSON + [SOMEONE_ELSE]
    medians = dict(zip(names, median_scores([vectors[n] for n in names])))
    assert medians[SOMEONE_ELSE] < SAME_PERSON_SCORE < min(medians[n] for n in ONE_PERSON)


def test_the_embedding_worker_gives_the_same_numbers_and_a_dead_one_is_replaced_in_process(face_recognition_photos,
                                                                                             embedder):
    """faces.worker: dlib's embedding in its own process (prepare uses it: dlib holds the GIL) is the very same
    vector as in-process; a worker killed with SIGKILL is noticed, and the faces after it are embedded in-process."""
    import os
    import signal
    import subprocess

    from faceswap_kohya.faces.worker import FaceWorker
    from faceswap_kohya.files.images import load_rgb

    images = [load_rgb(face_recognition_photos / n) for n in ONE_PERSON[:3]]
    here = [embedder.embed(im) for im in images]
    with FaceWorker() as worker:
        assert worker.proc is not None and worker.proc.poll() is None
        remote = embedder.with_worker(worker)
        assert remote.worker is worker and embedder.worker is None  # the shared embedder is left as it was
        assert all(np.array_equal(a, remote.embed(im)) for a, im in zip(here[:2], images[:2]))
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait()
        assert np.array_equal(here[2], remote.embed(images[2]))  # computed here instead
        assert worker.proc is None
    left = subprocess.run(["pgrep", "-f", "faceswap_kohya.faces.worker"], capture_output=True, text=True).stdout
    assert left.strip() == "", f"worker processes left: {left}"


# ---------------------------------------------------------------- scores on fixed vectors (known answers)
def test_distance_and_score_known_answers():
    a, b, c = np.zeros(128), np.zeros(128), np.zeros(128)
    b[0], c[0] = 0.3, 2.0
    assert distance(a, b) == pytest.approx(0.3)
    assert similarity(a, b) == pytest.approx(0.7)
    assert similarity(a, c) == 0.0  # clipped, never negative
    assert identity_score(a, [c, b]) == (pytest.approx(0.7), 1)
    u, v = np.array([1.0, 0.0]), np.array([1.0, 1.0])
    assert distance(u, v, "cosine") == pytest.approx(1 - 2 ** -0.5)
    assert identity_score(u, [np.array([-1.0, 0.0]), v], metric="cosine") == (pytest.approx(2 ** -0.5), 1)
    with pytest.raises(ValueError):
        identity_score(a, [])


def test_median_scores_pick_the_odd_one_out():
    base = np.zeros(128)
    close = [base + d for d in (0.0, 0.01, 0.02, 0.015)]
    far = base.copy()
    far[0] = 0.9
    medians = median_scores(close + [far])
    assert medians[-1] == pytest.approx(1 - 0.9 + 0.01, abs=0.02) and min(medians[:-1]) > 0.8
    assert median_scores(close[:2]) == []


def test_unavailable_embedders_say_what_to_do(tmp_path):
    with pytest.raises(UserError, match="unknown face embedder 'facenet': use one of dlib, arcface"):
        get_embedder("facenet")
    with pytest.raises(UserError, match="unknown face embedder 'insightface'"):
        get_embedder("insightface", str(tmp_path))
    # a user's own InsightFace folder without a detector: one line saying what the folder needs
    (tmp_path / "w600k_r50.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match=r"no face detector \(scrfd\*.onnx or det\*.onnx\)|needs onnxruntime"):
        get_embedder("arcface", str(tmp_path))


def test_model_files_are_found_without_importing_their_package():
    import sys

    assert model_file("dlib_face_recognition_resnet_model_v1.dat").stat().st_size > 1_000_000
    assert "face_recognition_models" not in sys.modules


# ---------------------------------------------------------------- the identity command
def test_identity_cli_scores_a_set_against_references(tmp_path, face_recognition_photos):
    refs = tmp_path / "refs"
    refs.mkdir()
    for n in ("obama.jpg", "obama3.jpg"):
        (refs / n).write_bytes((face_recognition_photos / n).read_bytes())
    Image.new("RGB", (64, 64), "gray").save(tmp_path / "flat.png")
    images = [str(face_recognition_photos / "obama2.jpg"), str(face_recognition_photos / SOMEONE_ELSE), str(tmp_path / "flat.png")]
    r = CliRunner().invoke(cli, ["identity", "--refs", str(refs), *images, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["embedder"] == "dlib-resnet-128" and len(out["references"]) == 2
    same, other, flat = out["images"]
    assert same["score"] > SAME_PERSON_SCORE > other["score"]
    assert same["nearest"] in ("obama.jpg", "obama3.jpg") and len(same["face_box"]) == 4
    assert flat == {"file": str(tmp_path / "flat.png"), "error": "no face"}

    r = CliRunner().invoke(cli, ["identity", "--refs", str(refs), *images])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].startswith("dlib-resnet-128: 2 reference faces")
    assert any("no face" in line and "flat.png" in line for line in lines)
    assert "not a yes/no" in r.output


def test_identity_cli_refs_without_faces_is_a_clear_error(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    Image.new("RGB", (64, 64), "gray").save(refs / "flat.png")
    r = CliRunner().invoke(cli, ["identity", "--refs", str(refs), str(refs / "flat.png")])
    assert r.exit_code == 2 and "no face found in any of its 1 photos" in r.output
