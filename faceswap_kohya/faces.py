"""Faces, offline: detect, align and embed with dlib (the `dlib-bin` wheel) and the model files of
`face_recognition_models` — nothing is downloaded at run time.

- `detect(image)`: faces, largest first, boxes in the image's own pixels. Detection runs on a copy
  at most `DETECT_SIDE` px wide/high (dlib's CNN detector takes minutes on a 12 MP photo) and the
  boxes are mapped back.
- `get_embedder()`: dlib's 128-d ResNet face embedder (or InsightFace's ArcFace when the user has
  its model files), aligned with 5 landmarks.
- `identity_score(embedding, references)`: a similarity in [0, 1] and the nearest reference.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
from PIL import Image

from .errors import UserError

HOG_SURE = 0.5  # weaker HOG detections are false positives often: see _find
DETECT_SIDE = 800  # HOG runs on a copy this long (boxes are mapped back): faces from 1/10 of the photo
CNN_SIDE = 640  # the CNN detector (minutes on a 12 MP photo, ~2 s here) on a copy at most this long
EMBED_FACE_PX = 200  # the face is resampled to about this width before landmarks and embedding
SAME_PERSON_SCORE = 0.4  # dlib's "distance < 0.6" rule of thumb, as a score (see identity_score)
INSTALL_HINT = "pip install 'faceswap_kohya[faces]' (the dlib-bin wheel and face_recognition_models)"

Detector = Literal["auto", "hog", "cnn"]
# dlib's detectors and nets are not thread-safe (concurrent calls crash): one caller at a time.
# Threads still overlap decoding and resizing, which is most of the time on a phone photo.
_DLIB = threading.RLock()


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


# ---------------------------------------------------------------- dlib and its model files
def _dlib():
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


@functools.lru_cache(maxsize=None)
def _model(kind: str):
    dlib = _dlib()
    if kind == "hog":
        return dlib.get_frontal_face_detector()
    if kind == "cnn":
        return dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))
    if kind == "landmarks":
        return dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))
    if kind == "resnet":
        return dlib.face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat")))
    raise ValueError(kind)


def _rgb_array(image: Image.Image) -> np.ndarray:
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
    return len(_model("cnn")(np.asarray(crop), 0)) > 0


def _find(arr: np.ndarray, grey: np.ndarray, detector: Detector) -> list[tuple[object, float, str]]:
    found = []
    for upsample in (0, 1) if detector in ("auto", "hog") else ():  # 1: twice the size, faces from ~40 px
        rects, scores, _ = _model("hog").run(grey, upsample, 0.0)
        hits = [(r, float(s), "hog") for r, s in zip(rects, scores)]
        # Weak detections are often not faces: ignored beside a clear face, confirmed by the CNN otherwise.
        found = [h for h in hits if h[1] >= HOG_SURE] or [h for h in hits if _confirmed(arr, h[0])]
        if found:
            break
    if not found and detector in ("auto", "cnn"):
        k = min(1.0, CNN_SIDE / max(arr.shape[:2]))
        small = arr if k == 1 else np.asarray(Image.fromarray(arr).resize(
            (round(arr.shape[1] * k), round(arr.shape[0] * k)), Image.BILINEAR))
        found = [(_scaled(d.rect, 1 / k), float(d.confidence), "cnn") for d in _model("cnn")(small, 0)]
    return found


def _scaled(rect, k: float):
    if k == 1:
        return rect
    return _dlib().rectangle(round(rect.left() * k), round(rect.top() * k), round(rect.right() * k), round(rect.bottom() * k))


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
    arr, grey = _rgb_array(small), np.asarray(small.convert("L"))  # HOG looks at brightness only
    with _DLIB:
        found = _find(arr, grey, detector)
        shapes = [_model("landmarks")(arr, rect) for rect, _, _ in found]
    faces = []
    W, H = image.size
    for (rect, conf, how), shape in zip(found, shapes):
        points = [(p.x * scale, p.y * scale) for p in shape.parts()]
        box = (max(0, round(rect.left() * scale)), max(0, round(rect.top() * scale)),
               min(W, round((rect.right() + 1) * scale)), min(H, round((rect.bottom() + 1) * scale)))
        if box[2] > box[0] and box[3] > box[1]:
            faces.append(Face(box, conf, points, how))
    return sorted(faces, key=lambda f: f.area, reverse=True)


# ---------------------------------------------------------------- embedding
class Embedder:
    """Face → embedding vector. `name` says which model produced the numbers; `metric` how to compare them."""

    name = "embedder"
    metric: Literal["euclidean", "cosine"] = "euclidean"

    def embed(self, image: Image.Image, face: Optional[Face] = None) -> Optional[np.ndarray]:
        raise NotImplementedError

    def score(self, embedding: np.ndarray, references: Sequence[np.ndarray]) -> tuple[float, int]:
        return identity_score(embedding, references, metric=self.metric)


class DlibEmbedder(Embedder):
    """dlib's ResNet (128-d, 99.38 % on LFW); the face is aligned on its 5 landmarks first."""

    name = "dlib-resnet-128"
    metric = "euclidean"

    def embed(self, image: Image.Image, face: Optional[Face] = None) -> Optional[np.ndarray]:
        dlib = _dlib()
        if face is None:
            faces = detect(image)
            if not faces:
                return None
            face = faces[0]
        # Work on a crop around the face, resampled so the face is ~EMBED_FACE_PX wide: fast on
        # 12 MP photos and the same detail for small and large faces.
        left, top, right, bottom = face.box
        margin = max(face.width, face.height)
        region = (max(0, left - margin), max(0, top - margin),
                  min(image.width, right + margin), min(image.height, bottom + margin))
        k = EMBED_FACE_PX / max(1, face.width)
        crop = image.crop(region)
        crop = crop.resize((max(1, round(crop.width * k)), max(1, round(crop.height * k))), Image.BILINEAR)
        arr = _rgb_array(crop)
        rect = dlib.rectangle(round((left - region[0]) * k), round((top - region[1]) * k),
                              round((right - region[0]) * k), round((bottom - region[1]) * k))
        with _DLIB:
            shape = _model("landmarks")(arr, rect)
            chip = dlib.get_face_chip(arr, shape, size=150, padding=0.25)
            return np.asarray(_model("resnet").compute_face_descriptor(chip), dtype=np.float64)


class InsightFaceEmbedder(Embedder):
    """InsightFace ArcFace (512-d, unit length) from a local model folder; compared by cosine."""

    metric = "cosine"

    def __init__(self, root: Path, pack: str):
        from insightface.app import FaceAnalysis

        self.name = f"insightface-{pack}"
        self.app = FaceAnalysis(name=pack, root=str(root), providers=["CPUExecutionProvider"],
                                allowed_modules=["detection", "recognition"])
        self.app.prepare(ctx_id=-1, det_size=(640, 640))

    def embed(self, image: Image.Image, face: Optional[Face] = None) -> Optional[np.ndarray]:
        bgr = _rgb_array(image)[:, :, ::-1].copy()
        found = self.app.get(bgr)
        if not found:
            return None
        if face is None:
            chosen = max(found, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))
        else:  # the detection that overlaps the given face the most
            chosen = max(found, key=lambda f: overlap(face.box, tuple(f.bbox)))
        return np.asarray(chosen.normed_embedding, dtype=np.float64)


def overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


@functools.lru_cache(maxsize=4)
def get_embedder(kind: str = "dlib", insightface_root: Optional[str] = None) -> Embedder:
    """`dlib` (always available with the faces extra) or `insightface` (needs the `insightface`
    package and a local model folder: `insightface_root/models/<pack>/` with its .onnx files)."""
    if kind == "dlib":
        for name in ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"):
            model_file(name)
        _dlib()
        return DlibEmbedder()
    if kind != "insightface":
        raise UserError(f"unknown face embedder {kind!r}: use dlib or insightface")
    if importlib.util.find_spec("insightface") is None:
        raise UserError("embedder insightface needs the insightface package (pip install insightface onnxruntime) "
                        "and its model files; or use the built-in embedder: dlib")
    if not insightface_root:
        raise UserError("embedder insightface needs insightface_root: the folder holding models/<pack>/*.onnx "
                        "(e.g. ~/.insightface); nothing is downloaded")
    root = Path(insightface_root).expanduser()
    packs = sorted(p for p in (root / "models").glob("*") if p.is_dir() and any(p.glob("*.onnx")))
    if not packs:
        raise UserError(f"insightface_root {root}: no model folder with .onnx files under {root / 'models'} "
                        "(unpack e.g. buffalo_l there), or use embedder dlib")
    return InsightFaceEmbedder(root, packs[0].name)


# ---------------------------------------------------------------- comparing
def distance(a: np.ndarray, b: np.ndarray, metric: str = "euclidean") -> float:
    """Euclidean distance (dlib: < 0.6 is usually the same person), or cosine distance 1 - cos."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if metric == "cosine":
        return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return float(np.linalg.norm(a - b))


def similarity(a: np.ndarray, b: np.ndarray, metric: str = "euclidean") -> float:
    """The identity score of one pair: 1 - distance, clipped to [0, 1] (for cosine: cos, clipped)."""
    return float(min(1.0, max(0.0, 1.0 - distance(a, b, metric))))


def identity_score(embedding: np.ndarray, references: Sequence[np.ndarray],
                   metric: str = "euclidean") -> tuple[float, int]:
    """How much a face looks like the nearest reference face: (score, index of that reference).

    The score is a similarity in [0, 1], higher = more alike; it is a measurement, not a yes/no.
    With dlib's embedder it is `1 - euclidean distance`, clipped: dlib's "same person" rule of
    thumb (distance < 0.6) is a score above 0.4. Measured with dlib: edits of one photo score
    0.76-0.95, different photos of one person 0.56-0.98, different people 0.10-0.37. With
    InsightFace (cosine) it is the cosine similarity, clipped at 0.
    """
    if not len(references):
        raise ValueError("no reference embeddings")
    scores = [similarity(embedding, r, metric) for r in references]
    best = int(np.argmax(scores))
    return scores[best], best


def median_scores(embeddings: Sequence[np.ndarray], metric: str = "euclidean") -> list[float]:
    """Each face's median identity score against all the others (for finding a photo of someone
    else in a set: its median is low). Empty when there are fewer than 3 faces (none can be the odd one out)."""
    n = len(embeddings)
    if n < 3:
        return []
    return [float(np.median([similarity(embeddings[i], embeddings[j], metric) for j in range(n) if j != i]))
            for i in range(n)]


# ---------------------------------------------------------------- files
def _image_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders as the images in them."""
    from .dataset import list_images

    out = []
    for p in map(Path, paths):
        found = list_images(p) if p.is_dir() else [p]
        if not found:
            raise UserError(f"{p}: no images in this folder")
        out += found
    return out


def face_of(path: Path, embedder: Embedder) -> dict:
    """{"file", "face_box", "faces", "embedding"} or {"file", "error"} for one image file."""
    from .dataset import load_rgb, unreadable_reason

    try:
        image = load_rgb(path)
    except Exception as e:  # noqa: BLE001 - any decoder error
        return {"file": str(path), "error": unreadable_reason(path, e)}
    found = detect(image)
    if not found:
        return {"file": str(path), "error": "no face"}
    return {"file": str(path), "face_box": list(found[0].box), "faces": len(found),
            "embedding": embedder.embed(image, found[0])}


def score_files(refs: Path, images: Sequence[Path], embedder: Embedder) -> dict:
    """Identity scores of `images` (files or folders) against the faces in the photos of `refs`.

    Returns {"embedder", "references": [...], "images": [{"file", "score", "face_box", "nearest"} or
    {"file", "error": "no face" / why unreadable}]}. UserError when no reference photo has a face.
    """
    from .dataset import list_images

    ref_files = list_images(Path(refs)) if Path(refs).is_dir() else []
    if not ref_files:
        raise UserError(f"--refs {refs}: no photos in this folder")
    references = [face_of(p, embedder) for p in ref_files]
    usable = [r for r in references if "embedding" in r]
    if not usable:
        raise UserError(f"--refs {refs}: no face found in any of its {len(ref_files)} photos; "
                        "give clear photos of the person's face")
    vectors = [r.pop("embedding") for r in usable]
    results = []
    for path in _image_files(images):
        r = face_of(path, embedder)
        if "embedding" in r:
            score, nearest = embedder.score(r.pop("embedding"), vectors)
            r |= {"score": round(score, 4), "nearest": Path(usable[nearest]["file"]).name}
        results.append(r)
    return {"embedder": embedder.name, "references": references, "images": results}
