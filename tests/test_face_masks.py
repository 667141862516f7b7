"""Soft loss-weight masks from 68 face landmarks, on real photos: the astronaut portrait (also tilted)
and Grace Hopper's portrait that matplotlib ships."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from faceswap_kohya.errors import UserError
from faceswap_kohya.faces import detect as faces
from faceswap_kohya.faces import masks as fm
from faceswap_kohya.files.images import with_alpha

pytest.importorskip("dlib", reason="dlib is not installed (pip install -e '.[faces]')")
FLOOR = 0.1
TOLERANCE = 2 / 255
LATENT = 8


def _grace_hopper() -> Image.Image:
    try:
        import matplotlib
    except ImportError:
        pytest.skip("matplotlib (which ships grace_hopper.jpg) is not installed")
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip(f"{path} is missing from this matplotlib")
    return Image.open(path).convert("RGB")


def _photo(name: str) -> Image.Image:
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    if name == "astronaut":
        return astronaut
    if name == "astronaut tilted":  # a head at 20°: the regions must follow it
        return astronaut.rotate(20, resample=Image.BICUBIC, center=(223, 127), fillcolor=(128, 128, 128))
    return _grace_hopper()


PHOTOS = ["astronaut", "astronaut tilted", "grace hopper"]


@pytest.fixture(scope="module")
def found():
    """name -> (photo, face box, 68 landmarks), computed once."""
    cache = {}

    def get(name):
        if name not in cache:
            photo = _photo(name)
            detected = faces.detect(photo)
            assert detected, f"no face found in the {name} photo"
            cache[name] = (photo, detected[0].box, fm.landmarks68(photo, detected[0].box))
        return cache[name]

    return get


def weights(mask: Image.Image) -> np.ndarray:
    return np.asarray(mask, dtype=np.float64) / 255  # as sd-scripts reads the alpha channel


def at(array: np.ndarray, points: np.ndarray, scale: int = 1) -> np.ndarray:
    cells = np.floor(points / scale).astype(int)
    return array[cells[:, 1], cells[:, 0]]


@pytest.mark.parametrize("name", PHOTOS)
def test_the_68_landmarks_outline_the_detected_face(found, name):
    photo, box, points = found(name)
    assert points.shape == (68, 2)
    width = box[2] - box[0]
    inside = ((points[:, 0] > box[0] - width / 4) & (points[:, 0] < box[2] + width / 4)
              & (points[:, 1] > box[1] - width / 4) & (points[:, 1] < box[3] + width / 4))
    assert inside.all(), points[~inside]
    eyes, mouth, chin = points[36:48].mean(axis=0), points[48:68].mean(axis=0), points[8]
    # In the face's own frame the eyes are above the mouth, the mouth above the chin (tilted photo too).
    down = np.array([-(points[45] - points[36])[1], (points[45] - points[36])[0]])
    assert (mouth - eyes) @ down > 0 and (chin - mouth) @ down > 0


@pytest.mark.parametrize("kind", fm.KINDS)
@pytest.mark.parametrize("name", PHOTOS)
def test_every_landmark_has_full_weight_and_the_corners_the_floor(found, name, kind):
    photo, _, points = found(name)
    mask = fm.make_mask(photo.size, points, kind, floor=FLOOR)
    assert mask.mode == "L" and mask.size == photo.size
    values = weights(mask)
    assert at(values, points).min() >= 0.9
    corners = {"top left": values[0, 0], "top right": values[0, -1],
               "bottom left": values[-1, 0], "bottom right": values[-1, -1]}
    if kind == "person":  # the body reaches down to the bottom edge, its corners too in a portrait
        corners = {k: v for k, v in corners.items() if k.startswith("top")}
    for where, value in corners.items():
        assert abs(value - FLOOR) <= TOLERANCE, (where, value)
    assert values.min() >= FLOOR - TOLERANCE and values.max() == 1.0


@pytest.mark.parametrize("floor", [0.0, 0.25])
def test_the_floor_is_the_weight_outside(found, floor):
    photo, _, points = found("astronaut")
    values = weights(fm.make_mask(photo.size, points, "face", floor=floor))
    assert abs(values[0, 0] - floor) <= TOLERANCE
    assert abs(np.median(values) - floor) <= TOLERANCE  # the face covers far less than half the photo
    assert at(values, points).min() >= 0.9


@pytest.mark.parametrize("name", PHOTOS)
def test_head_contains_face_and_person_contains_head(found, name):
    photo, _, points = found(name)
    face, head, person = (weights(fm.make_mask(photo.size, points, k, FLOOR)) for k in fm.KINDS)
    assert (head >= face - TOLERANCE).all() and (person >= head - TOLERANCE).all()
    # ... and each is larger: hair above the face, a body below the head.
    assert (head > 0.5).sum() > 1.5 * (face > 0.5).sum()
    assert (person > 0.5).sum() > 1.5 * (head > 0.5).sum()
    if name != "astronaut tilted":  # upright: hair above the brows, the neck below the chin
        brow_top, chin = points[17:27, 1].min(), points[8, 1]
        column = head[:, int(points[17:27, 0].mean())] > 0.5
        assert np.argmax(column) < brow_top - 0.6 * (chin - brow_top)
        assert np.nonzero(column)[0].max() > chin + 0.3 * (chin - brow_top)


@pytest.mark.parametrize("kind", fm.KINDS)
@pytest.mark.parametrize("name", ["astronaut", "grace hopper"])
def test_a_mirrored_photo_gets_the_mirrored_mask(found, name, kind):
    photo, _, points = found(name)
    mask = fm.make_mask(photo.size, points, kind, FLOOR)
    flipped_photo = ImageOps.mirror(photo)
    flipped_face = faces.detect(flipped_photo)[0]
    own = fm.mask_for_photo(flipped_photo, flipped_face.box, kind, FLOOR)
    a, b = weights(fm.mirrored(mask)) > 0.5, weights(own) > 0.5
    iou = (a & b).sum() / (a | b).sum()
    assert iou >= 0.9, iou
    assert (weights(fm.mirrored(mask)) == weights(mask)[:, ::-1]).all()


@pytest.mark.parametrize("kind", fm.KINDS)
@pytest.mark.parametrize("name", PHOTOS)
def test_landmarks_keep_full_weight_at_latent_scale(found, name, kind):
    """sd-scripts area-averages the mask to the latents (1/8): every landmark's cell stays >= 0.9."""
    photo, _, points = found(name)
    values = weights(fm.make_mask(photo.size, points, kind, FLOOR, latent_scale=LATENT))
    h, w = (values.shape[0] // LATENT) * LATENT, (values.shape[1] // LATENT) * LATENT
    latent = values[:h, :w].reshape(h // LATENT, LATENT, w // LATENT, LATENT).mean(axis=(1, 3))
    assert at(latent, points, LATENT).min() >= 0.9
    assert abs(latent[0, 0] - FLOOR) <= TOLERANCE


def test_the_mask_travels_as_the_png_alpha_channel(found):
    photo, _, points = found("astronaut")
    mask = fm.make_mask(photo.size, points, "head", FLOOR)
    buf = io.BytesIO()
    with_alpha(photo, mask).save(buf, format="PNG")
    buf.seek(0)
    rgba = np.asarray(Image.open(buf).convert("RGBA"))  # what sd-scripts' load_image(alpha=True) reads
    assert (rgba[:, :, :3] == np.asarray(photo)).all()  # colours kept under a low alpha
    assert (rgba[:, :, 3] == np.asarray(mask)).all()


def test_the_overlay_tints_only_what_the_mask_leaves_out(found):
    photo, _, points = found("astronaut")
    mask = fm.make_mask(photo.size, points, "face", FLOOR)
    shown = np.asarray(fm.overlay(photo, mask), dtype=np.int16)
    original = np.asarray(photo, dtype=np.int16)
    full, outside = weights(mask) == 1.0, weights(mask) <= FLOOR + TOLERANCE
    assert (shown[full] == original[full]).all()
    assert np.abs(shown[outside] - original[outside]).mean() > 20


def test_bad_input_says_what_to_do(found):
    photo, box, points = found("astronaut")
    with pytest.raises(UserError, match="mask kind 'torso'"):
        fm.make_mask(photo.size, points, "torso")
    with pytest.raises(UserError, match="mask floor 1.5"):
        fm.make_mask(photo.size, points, "face", floor=1.5)
    with pytest.raises(ValueError, match="68"):
        fm.make_mask(photo.size, points[:5], "face")
    with pytest.raises(ValueError, match="differs"):
        with_alpha(photo, fm.make_mask((10, 10), points, "face"))
