"""Evaluate a run: how much the generated person looks like the photos, per checkpoint, against the base model.

The base pipeline is loaded once. The base model (no LoRA) and then every checkpoint of the run
(`model/<name>-000001.safetensors` ..., the final `model/<name>.safetensors`), each attached in turn
as an adapter, render the same evaluation set (`preset.evaluate.prompts` × `preset.evaluate.seeds`).
Each image is scored against the reference photos (the run's training photos) with `faces`:

- `score`: the identity score of its face vs the nearest reference (as `faceswap-kohya identity`);
- `centroid_score`: its similarity to the mean embedding of all references;
- `copy_gap = score - centroid_score`: large when a face matches one training photo much better than
  the person as a whole (a copy of one photo is not success); around zero or below for a face that
  resembles the person across photos.

Images with no face are counted and reported ("no face"), never dropped. Per checkpoint: mean and
spread of the scores over the faces found, faces found / images. The best checkpoint has the highest
mean (ties go to the earlier one); the top-3 images are the highest-scoring LoRA images. Everything
goes into a new `<run>/eval/<timestamp>/` folder: the images, `scores.json` (every number of the
report can be recomputed from it: summaries from the per-image scores, scores from the embeddings),
`report.html` (self-contained) and `identity.png` (score per checkpoint with the base-model line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from faceswap_kohya.errors import UserError

SCHEMA_VERSION = 1
LORA_WEIGHT = 1.0
SAMPLER = "euler"  # the same deterministic sampler for every checkpoint
DECIMALS = 4  # per-image scores are stored rounded; summaries are computed from the stored values


# ---------------------------------------------------------------- checkpoints
@dataclass
class Checkpoint:
    """One model to evaluate: the base (path None) or a LoRA file of the run."""

    label: str  # "base", "epoch 3", "step 500", "final", or the file stem
    path: Optional[Path] = None
    epoch: Optional[int] = None
    step: Optional[int] = None

    @property
    def slug(self) -> str:
        """File-name prefix of its images."""
        if self.path is None:
            return "base"
        if self.epoch is not None:
            return f"e{self.epoch:06d}"
        if self.step is not None:
            return f"s{self.step:08d}"
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.label)


BASE = Checkpoint("base")


def find_checkpoints(model_dir: Path, name: str) -> list[Checkpoint]:
    """The run's LoRA files in training order: `<name>-NNNNNN` (epochs), `<name>-stepNNNNNNNN` (steps),
    then the final `<name>.safetensors`. With both epoch and step files, file times give the order."""
    if not Path(model_dir).is_dir():
        return []
    numbered, final = [], None
    for p in sorted(Path(model_dir).glob("*.safetensors")):
        if p.stem == name:
            final = Checkpoint("final", p)
        elif m := re.fullmatch(re.escape(name) + r"-(\d{6})", p.stem):
            numbered.append(Checkpoint(f"epoch {int(m.group(1))}", p, epoch=int(m.group(1))))
        elif m := re.fullmatch(re.escape(name) + r"-step(\d+)", p.stem):
            numbered.append(Checkpoint(f"step {int(m.group(1))}", p, step=int(m.group(1))))
    if any(c.epoch is not None for c in numbered) and any(c.step is not None for c in numbered):
        numbered.sort(key=lambda c: (c.path.stat().st_mtime, c.path.name))
    else:
        numbered.sort(key=lambda c: c.epoch if c.epoch is not None else c.step)
    return numbered + ([final] if final else [])


# ---------------------------------------------------------------- references and scoring
@dataclass
class References:
    """The reference faces: their files, embeddings and mean embedding, and the photos not used."""

    folder: Path
    metric: str
    files: list[str]
    vectors: list[np.ndarray]
    entries: list[dict] = field(default_factory=list)  # every photo: {"file", "face_box"} or {"file", "error"}

    @property
    def centroid(self) -> np.ndarray:
        return centroid(self.vectors, self.metric)


def centroid(vectors: Sequence[np.ndarray], metric: str = "euclidean") -> np.ndarray:
    """The mean embedding (of unit vectors for cosine embedders)."""
    arr = np.asarray(vectors, dtype=np.float64)
    if metric == "cosine":
        arr = arr / (np.linalg.norm(arr, axis=1, keepdims=True) + 1e-12)
    return arr.mean(axis=0)


def load_references(folder: Path, embedder) -> References:
    """Embed the main face of every photo in `folder`; UserError when none has a face."""
    from faceswap_kohya.data.images import list_images
    from faceswap_kohya.faces.identity import face_of

    folder = Path(folder)
    files = list_images(folder) if folder.is_dir() else []
    if not files:
        raise UserError(f"reference photos {folder}: no photos in this folder (give --refs PHOTOS_DIR)")
    entries = [face_of(p, embedder) for p in files]
    usable = [e for e in entries if "embedding" in e]
    if not usable:
        why = ", ".join(f"{Path(e['file']).name} ({e['error']})" for e in entries[:6])
        raise UserError(f"reference photos {folder}: no face found in any of its {len(files)} photos ({why}); "
                        "give clear photos of the person's face (--refs)")
    vectors = [e.pop("embedding") for e in usable]
    for e in entries:
        e["file"] = Path(e["file"]).name
    return References(folder, embedder.metric, [e["file"] for e in usable], vectors, entries)


def score_embedding(embedding: np.ndarray, refs: References) -> dict:
    """{"score", "nearest", "centroid_score", "copy_gap"} of one face embedding (rounded as stored)."""
    from faceswap_kohya.faces.identity import identity_score, similarity

    score, nearest = identity_score(embedding, refs.vectors, refs.metric)
    score = round(score, DECIMALS)
    to_mean = round(similarity(embedding, refs.centroid, refs.metric), DECIMALS)
    return {"score": score, "nearest": refs.files[nearest], "centroid_score": to_mean,
            "copy_gap": round(score - to_mean, DECIMALS)}


def score_image(image, refs: References, embedder) -> dict:
    """The main face of a PIL image scored against the references, or {"face_box": None, "error": "no face"}."""
    from faceswap_kohya.faces.detect import detect

    found = detect(image)
    embedding = embedder.embed(image, found[0]) if found else None
    if embedding is None:
        return {"face_box": None, "error": "no face"}
    return {"face_box": list(found[0].box), **score_embedding(embedding, refs),
            "embedding": [round(float(x), 6) for x in embedding]}


def summarize(images: Sequence[dict]) -> dict:
    """Per-checkpoint numbers from its images' stored scores (faces only; "no face" images are counted)."""
    scores = [im["score"] for im in images if im.get("score") is not None]
    gaps = [im["copy_gap"] for im in images if im.get("score") is not None]
    to_mean = [im["centroid_score"] for im in images if im.get("score") is not None]
    nearest: dict[str, int] = {}
    for im in images:
        if im.get("score") is not None:
            nearest[im["nearest"]] = nearest.get(im["nearest"], 0) + 1

    def r(x):
        return round(float(x), DECIMALS)

    return {
        "images": len(images), "faces": len(scores), "no_face": len(images) - len(scores),
        "mean": r(np.mean(scores)) if scores else None,
        "std": r(np.std(scores)) if scores else None,  # population standard deviation (ddof 0)
        "min": r(min(scores)) if scores else None,
        "max": r(max(scores)) if scores else None,
        "centroid_mean": r(np.mean(to_mean)) if scores else None,
        "copy_gap_mean": r(np.mean(gaps)) if scores else None,
        "nearest_counts": dict(sorted(nearest.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def rank(checkpoints: Sequence[dict], top: int = 3) -> tuple[Optional[dict], list[dict]]:
    """(best checkpoint entry, top images) from scores.json-style checkpoint entries in training order.

    The best checkpoint has the highest mean identity; a tie goes to the earlier one. Entries with no
    face at all can't be ranked. The top images are the highest scores among LoRA images (not the
    base model's); ties keep the earlier checkpoint, then generation order.
    """
    loras = [c for c in checkpoints if c.get("file")]
    rankable = [(i, c) for i, c in enumerate(loras) if c["summary"]["mean"] is not None]
    best = max(rankable, key=lambda ic: (ic[1]["summary"]["mean"], -ic[0]))[1] if rankable else None
    pool = [(im["score"], -ci, -ii, c["label"], im) for ci, c in enumerate(loras)
            for ii, im in enumerate(c["images"]) if im.get("score") is not None]
    pool.sort(key=lambda t: (t[0], t[1], t[2]), reverse=True)
    tops = [{"checkpoint": label, **{k: im[k] for k in ("file", "prompt", "seed", "score", "nearest", "copy_gap")}}
            for _, _, _, label, im in pool[:top]]
    return best, tops
