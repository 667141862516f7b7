"""Identity, offline: face embeddings and how alike two faces are.

- `get_embedder()`: dlib's 128-d ResNet face embedder, aligned with 5 landmarks, or ArcFace
  (`faces.arcface`, an optional extra: InsightFace's weights, non-commercial research only).
- `identity_score(embedding, references)`: a similarity in [0, 1] and the nearest reference; `centroid(vectors)`
  the mean embedding.
- `score_files`: image files or folders scored against the faces in reference photos (the `identity` job adds
  the photos' own baseline, `faces.likeness`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from faceswap_kohya.errors import UserError
from faceswap_kohya.faces.arcface import get_arcface
from faceswap_kohya.faces.detect import DLIB_LOCK, Face, detect, dlib_model, dlib_module, model_file, rgb_array
from faceswap_kohya.faces.embedding import Embedder, similarity
from faceswap_kohya.faces.embedding import distance as distance  # comparing, as callers of faces.identity know it
from faceswap_kohya.faces.embedding import identity_score as identity_score
from faceswap_kohya.faces.worker import FaceWorker, embedding_of
from faceswap_kohya.files.images import list_images, load_rgb, unreadable_reason

EMBED_FACE_PX = 200  # the face is resampled to about this width before landmarks and embedding
SAME_PERSON_SCORE = 0.4  # dlib's "distance < 0.6" rule of thumb, as a score (see identity_score)


# ---------------------------------------------------------------- embedding
class DlibEmbedder(Embedder):
    """dlib's ResNet (128-d, 99.38 % on LFW); the face is aligned on its 5 landmarks first. `worker`: a
    faces.worker.FaceWorker that computes it in its own process (see `with_worker`)."""

    name = "dlib-resnet-128"
    metric = "euclidean"

    def __init__(self, worker: Optional[FaceWorker] = None):
        self.worker = worker

    def with_worker(self, worker: Optional[FaceWorker]) -> "DlibEmbedder":
        return DlibEmbedder(worker)

    def embed(self, image: Image.Image, face: Optional[Face] = None) -> Optional[np.ndarray]:
        dlib = dlib_module()
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
        arr = rgb_array(crop)
        rect = dlib.rectangle(round((left - region[0]) * k), round((top - region[1]) * k),
                              round((right - region[0]) * k), round((bottom - region[1]) * k))
        box = (rect.left(), rect.top(), rect.right(), rect.bottom())
        if self.worker is not None and (vector := self.worker.embedding(arr, box)) is not None:
            return vector
        with DLIB_LOCK:
            return embedding_of(dlib, dlib_model("landmarks"), dlib_model("resnet"), arr, box)


def overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


EMBEDDERS = ("dlib", "arcface")


def _arcface_folder(folder: str) -> Path:
    """A folder of InsightFace .onnx files; an InsightFace root (`models/<pack>/`) gives its first pack."""
    path = Path(folder).expanduser()
    if path.is_dir() and not any(path.glob("*.onnx")):
        packs = sorted(p for p in (path / "models").glob("*") if p.is_dir() and any(p.glob("*.onnx")))
        if packs:
            return packs[0]
    return path


@functools.lru_cache(maxsize=4)
def get_embedder(kind: str = "dlib", arcface_models: Optional[str] = None) -> Embedder:
    """`dlib` (built in with the faces extra) or `arcface`: InsightFace's ArcFace via onnxruntime, from the
    files of the optional `arcface` extra or from `arcface_models` (a folder of InsightFace .onnx files).
    ArcFace's weights are licensed for non-commercial research only; its cosine scores are never
    comparable with dlib's."""
    if kind == "dlib":
        for name in ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"):
            model_file(name)
        dlib_module()
        return DlibEmbedder()
    if kind != "arcface":
        raise UserError(f"unknown face embedder {kind!r}: use one of {', '.join(EMBEDDERS)}")

    return get_arcface(_arcface_folder(arcface_models) if arcface_models else None)


# ---------------------------------------------------------------- comparing
def centroid(vectors: Sequence[np.ndarray], metric: str = "euclidean") -> np.ndarray:
    """The mean embedding (of unit vectors for cosine embedders)."""
    arr = np.asarray(vectors, dtype=np.float64)
    if metric == "cosine":
        arr = arr / (np.linalg.norm(arr, axis=1, keepdims=True) + 1e-12)
    return arr.mean(axis=0)


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
    out = []
    for p in map(Path, paths):
        found = list_images(p) if p.is_dir() else [p]
        if not found:
            raise UserError(f"{p}: no images in this folder")
        out += found
    return out


def face_of(path: Path, embedder: Embedder) -> dict:
    """{"file", "face_box", "faces", "embedding"} or {"file", "error"} for one image file."""
    try:
        image = load_rgb(path)
    except Exception as e:  # noqa: BLE001 - any decoder error
        return {"file": str(path), "error": unreadable_reason(path, e)}
    found = detect(image)
    if not found:
        return {"file": str(path), "error": "no face"}
    embedding = embedder.embed(image, found[0])
    if embedding is None:  # a face model may miss a face the detector found (ArcFace's own detector)
        return {"file": str(path), "error": embedder.missed}
    return {"file": str(path), "face_box": list(found[0].box), "faces": len(found), "embedding": embedding}


def score_files(refs: Path, images: Sequence[Path], embedder: Embedder) -> dict:
    """Identity scores of `images` (files or folders) against the faces in the photos of `refs`.

    Returns {"embedder", "references": [...], "reference_embeddings": [the usable references' vectors, in order],
    "images": [{"file", "score", "face_box", "nearest", "centroid_score"} or {"file", "error": "no face" / why
    unreadable}]} (`centroid_score`: against the references' mean embedding, the statistic of their own baseline);
    `images` may be empty. UserError when no reference photo has a face.
    """

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
            score, nearest = embedder.score(r["embedding"], vectors)
            to_mean = similarity(r.pop("embedding"), centroid(vectors, embedder.metric), embedder.metric)
            r |= {"score": round(score, 4), "nearest": Path(usable[nearest]["file"]).name, "centroid_score": round(to_mean, 4)}
        results.append(r)
    return {"embedder": embedder.name, "references": references, "reference_embeddings": vectors, "images": results}
