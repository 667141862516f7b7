"""Faces found offline with dlib (the `dlib-bin` wheel and the model files of `face_recognition_models` —
nothing is downloaded at run time).

`detect(image)`: faces, largest first, with 5-point landmarks, boxes in the image's own pixels. Detection
runs on a copy at most `DETECT_SIDE` px wide/high (dlib's CNN detector takes minutes on a 12 MP photo) and
the boxes are mapped back. dlib's HOG detector is unpacked once into the cache folder (`HOG_FILE`), and each
thread runs its own. `shifted` and `face_region`: a face moved, and the crop around it that the per-face
measurements look at.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from faceswap_kohya.errors import UserError

HOG_SURE = 0.5  # weaker HOG detections are false positives often: see _find
DETECT_SIDE = 800  # HOG runs on a copy this long (boxes are mapped back): faces from 1/10 of the photo
CNN_SIDE = 640  # the CNN detector (minutes on a 12 MP photo, ~2 s here) on a copy at most this long
INSTALL_HINT = "pip install 'faceswap_kohya[faces]' (the dlib-bin wheel and face_recognition_models)"
Detector = Literal["auto", "hog", "cnn"]
# dlib's detectors and nets are not thread-safe (concurrent calls crash): one caller at a time, except the HOG
# detector, of which each thread has its own (`hog_detector`). Threads overlap decoding, resizing and HOG.
DLIB_LOCK = threading.RLock()


@dataclass
class Face:
    """One face. `box` is (left, top, right, bottom) in the pixels of the image given to `detect`."""

    box: tuple[int, int, int, int]
    confidence: float
    landmarks: list[tuple[float, float]] = field(default_factory=list)  # dlib's 5 points, image pixels
    detector: str = "hog"

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def to_dict(self) -> dict:
        return {"box": list(self.box), "confidence": round(self.confidence, 3), "detector": self.detector}


def shifted(face: Face, dx: int, dy: int) -> Face:
    """The face in pixels moved by (dx, dy)."""
    x0, y0, x1, y1 = face.box
    return Face((x0 + dx, y0 + dy, x1 + dx, y1 + dy), face.confidence, [(x + dx, y + dy) for x, y in face.landmarks], face.detector)


def face_region(box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The face and one face size around it, inside the photo: everything the 68 landmarks, the embedding (its own
    margin is one face size), the sharpness and the light look at, so they see the same pixels in this crop."""
    left, top, right, bottom = box
    margin = max(right - left, bottom - top)
    return max(0, left - margin), max(0, top - margin), min(size[0], right + margin), min(size[1], bottom + margin)


# ---------------------------------------------------------------- dlib and its model files
def dlib_module():
    try:
        import dlib
    except ImportError:
        raise UserError(f"face detection needs dlib: {INSTALL_HINT}") from None
    return dlib


def model_file(name: str) -> Path:
    """A model file shipped in `face_recognition_models`, found without importing that package
    (its __init__ imports pkg_resources, which exits the process with recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.origin:
        raise UserError(f"the face model files are missing: {INSTALL_HINT}")
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall face_recognition_models ({INSTALL_HINT})")
    return path


HOG_FILE = "dlib/frontal_face_detector.svm"  # under paths.home(): dlib's HOG detector, unpacked once
_THREAD = threading.local()


def hog_detector():
    """This thread's own HOG detector (a detector is not safe to share between threads, but it releases the GIL
    while it runs: two threads detect at once). dlib builds its detector from a compressed string (~0.5 s); it
    is unpacked into the cache folder once and read from there (~1 ms) afterwards."""
    found = getattr(_THREAD, "hog", None)
    if found is None:
        _THREAD.hog = found = _load_hog()
    return found


def _load_hog():
    from faceswap_kohya.config.paths import home

    dlib = dlib_module()
    path = home() / HOG_FILE
    if path.is_file():
        try:
            return dlib.fhog_object_detector(str(path))
        except Exception:  # noqa: BLE001 - a damaged file: rebuilt below
            pass
    detector = dlib.get_frontal_face_detector()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{threading.get_ident()}.part")
        detector.save(str(part))
        part.replace(path)  # atomic: another process reads a whole file or none
    except OSError:  # a read-only cache: built again next time
        pass
    return detector


@functools.lru_cache(maxsize=None)
def dlib_model(kind: str):
    dlib = dlib_module()
    if kind == "cnn":
        return dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))
    if kind == "landmarks":
        return dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
    if kind == "resnet":
        return dlib.face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat")))
    raise ValueError(kind)


def rgb_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def small_copy(image: Image.Image, side: int) -> tuple[Image.Image, float]:
    """A copy no larger than `side` and the factor from its pixels back to the image's."""
    scale = max(image.size) / side
    if scale <= 1:
        return image, 1.0
    w, h = image.size
    small = image.reduce(int(scale)) if scale >= 2 else image  # fast integer shrink first
    small = small.resize((max(1, round(w / scale)), max(1, round(h / scale))), Image.BILINEAR)
    return small, w / small.width


# ---------------------------------------------------------------- detection
def _confirmed(arr: np.ndarray, rect) -> bool:
    """Whether the CNN detector also finds a face in a small crop around a weak HOG detection."""
    size = max(rect.width(), rect.height())
    x0, y0 = max(0, rect.left() - size // 2), max(0, rect.top() - size // 2)
    crop = Image.fromarray(arr[y0:rect.bottom() + size // 2, x0:rect.right() + size // 2])
    k = 80 / size  # the CNN finds faces from ~40 px; 80 px is safe and cheap
    crop = crop.resize((max(1, round(crop.width * k)), max(1, round(crop.height * k))), Image.BILINEAR)
    return len(dlib_model("cnn")(np.asarray(crop), 0)) > 0


def _find(arr: np.ndarray, grey: np.ndarray, detector: Detector) -> list[tuple[object, float, str]]:
    found = []
    for upsample in (0, 1) if detector in ("auto", "hog") else ():  # 1: twice the size, faces from ~40 px
        rects, scores, _ = hog_detector().run(grey, upsample, 0.0)  # this thread's own: no lock
        hits = [(r, float(s), "hog") for r, s in zip(rects, scores)]
        # Weak detections are often not faces: ignored beside a clear face, confirmed by the CNN otherwise.
        found = [h for h in hits if h[1] >= HOG_SURE]
        if not found and hits:
            with DLIB_LOCK:
                found = [h for h in hits if _confirmed(arr, h[0])]
        if found:
            break
    if not found and detector in ("auto", "cnn"):
        k = min(1.0, CNN_SIDE / max(arr.shape[:2]))
        small = arr if k == 1 else np.asarray(Image.fromarray(arr).resize(
            (round(arr.shape[1] * k), round(arr.shape[0] * k)), Image.BILINEAR))
        with DLIB_LOCK:
            found = [(_scaled(d.rect, 1 / k), float(d.confidence), "cnn") for d in dlib_model("cnn")(small, 0)]
    return found


def _scaled(rect, k: float):
    if k == 1:
        return rect
    return dlib_module().rectangle(round(rect.left() * k), round(rect.top() * k), round(rect.right() * k), round(rect.bottom() * k))


def detect(image: Image.Image, detector: Detector = "auto", side: int = DETECT_SIDE) -> list[Face]:
    """Faces in `image`, largest first, with 5-point landmarks.

    `auto`: dlib's HOG detector (fast, frontal faces; at twice the size when it finds none at
    first), then its CNN detector (turned and partly hidden faces; ~2 s) when HOG finds none.
    Runs on a copy `side` px long (smaller photos enlarged up to ×4); faces smaller than about
    40 px in that copy (1/20 of the photo's long side) are not found.
    """
    small, scale = small_copy(image, side)
    if max(small.size) < side:  # small photos: enlarged so that their faces reach the detectors' minimum
        k = min(4.0, side / max(small.size))
        small = small.resize((round(small.width * k), round(small.height * k)), Image.BILINEAR)
        scale = image.width / small.width
    arr, grey = rgb_array(small), np.asarray(small.convert("L"))  # HOG looks at brightness only
    found = _find(arr, grey, detector)
    with DLIB_LOCK:
        shapes = [dlib_model("landmarks")(arr, rect) for rect, _, _ in found]
    faces = []
    W, H = image.size
    for (rect, conf, how), shape in zip(found, shapes):
        points = [(p.x * scale, p.y * scale) for p in shape.parts()]
        box = (max(0, round(rect.left() * scale)), max(0, round(rect.top() * scale)),
               min(W, round((rect.right() + 1) * scale)), min(H, round((rect.bottom() + 1) * scale)))
        if box[2] > box[0] and box[3] > box[1]:
            faces.append(Face(box, conf, points, how))
    return sorted(faces, key=lambda f: f.area, reverse=True)
