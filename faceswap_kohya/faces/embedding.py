"""What every face embedder shares (`faces.identity`'s dlib one and `faces.arcface`'s ArcFace): the `Embedder` base
(its name, its metric, `score` against references, `missed`), and how alike two embeddings are (`distance`,
`similarity`, `identity_score`). It imports no face model, so both embedders can build on it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional, Sequence

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from faceswap_kohya.faces.detect import Face


class Embedder:
    """Face → embedding vector. `name` says which model produced the numbers; `metric` how to compare them."""

    name = "embedder"
    metric: Literal["euclidean", "cosine"] = "euclidean"

    def embed(self, image: Image.Image, face: Optional[Face] = None) -> Optional[np.ndarray]:
        raise NotImplementedError

    def with_worker(self, worker) -> "Embedder":
        """The embedder computing in `worker` (a faces.worker.FaceWorker) where its model runs there (dlib's); else
        this one (ArcFace's onnxruntime lets go of the GIL itself)."""
        return self

    def score(self, embedding: np.ndarray, references: Sequence[np.ndarray]) -> tuple[float, int]:
        return identity_score(embedding, references, metric=self.metric)

    @property
    def missed(self) -> str:
        """Why a face the detector found has no embedding: this model's own detector did not find it."""
        return f"no face found by {self.name}"


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
    ArcFace (cosine) it is the cosine similarity, clipped at 0.
    """
    if not len(references):
        raise ValueError("no reference embeddings")
    scores = [similarity(embedding, r, metric) for r in references]
    best = int(np.argmax(scores))
    return scores[best], best
