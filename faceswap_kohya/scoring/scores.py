"""Identity scores of generated faces and the best checkpoint.

The reference photos' main faces are embedded (`load_references`); each generated face gets `score` (vs the
nearest reference), `centroid_score` (vs their mean embedding), `copy_gap = score - centroid_score` (large when
a face copies one photo rather than resembling the person) and `held_out_score` (vs the held-out photos). Per
checkpoint: mean and spread over the faces found ("no face" images are counted, never dropped) and the bleed
(faces in prompts without the trigger). A checkpoint whose bleed rises more than `evaluate.bleed_margin` above
the base model's is overtrained. The best checkpoint (`pick_best`) has the highest identity (held-out identity
when the run has held-out photos) among those not overtrained, ties going to the earlier one; when every one
is overtrained, the one that bleeds least. The top images are the highest-scoring LoRA images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from faceswap_kohya.errors import UserError
from faceswap_kohya.faces.likeness import centroid

SCHEMA_VERSION = 2  # 2: held-out identity, bleed, overtrained, the reason for the best
LORA_WEIGHT = 1.0
SAMPLER = "euler"  # the same deterministic sampler for every checkpoint
DECIMALS = 4  # per-image scores are stored rounded; summaries are computed from the stored values


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


def load_references(folders, embedder) -> References:
    """Embed the main face of every photo in `folders` (one folder or several, e.g. training photos and
    held-out photos); UserError when none has a face."""
    from faceswap_kohya.faces.identity import face_of
    from faceswap_kohya.files.images import list_images

    folders = [Path(f) for f in (folders if isinstance(folders, (list, tuple)) else [folders])]
    files = [p for folder in folders if folder.is_dir() for p in list_images(folder)]
    where = " + ".join(str(f) for f in folders)
    if not files:
        raise UserError(f"reference photos {where}: no photos in this folder (give --refs PHOTOS_DIR)")
    entries = [face_of(p, embedder) for p in files]
    usable = [e for e in entries if "embedding" in e]
    if not usable:
        why = ", ".join(f"{Path(e['file']).name} ({e['error']})" for e in entries[:6])
        raise UserError(f"reference photos {where}: no face found in any of its {len(files)} photos ({why}); "
                        "give clear photos of the person's face (--refs)")
    vectors = [e.pop("embedding") for e in usable]
    for e in entries:
        e["file"] = Path(e["file"]).name
    return References(folders[0], embedder.metric, [e["file"] for e in usable], vectors, entries)


def score_embedding(embedding: np.ndarray, refs: References) -> dict:
    """{"score", "nearest", "centroid_score", "copy_gap"} of one face embedding (rounded as stored)."""
    from faceswap_kohya.faces.identity import identity_score, similarity

    score, nearest = identity_score(embedding, refs.vectors, refs.metric)
    score = round(score, DECIMALS)
    to_mean = round(similarity(embedding, refs.centroid, refs.metric), DECIMALS)
    return {"score": score, "nearest": refs.files[nearest], "centroid_score": to_mean,
            "copy_gap": round(score - to_mean, DECIMALS)}


def score_image(image, refs: References, embedder, held_out: Optional[References] = None) -> dict:
    """The main face of a PIL image scored against the references (and the held-out photos: `held_out_score`,
    `held_out_nearest`), or {"face_box": None, "error": "no face"}."""
    from faceswap_kohya.faces.detect import detect

    found = detect(image)
    if not found:
        return {"face_box": None, "error": "no face"}
    embedding = embedder.embed(image, found[0])
    if embedding is None:
        return {"face_box": None, "error": embedder.missed}
    out = {"face_box": list(found[0].box), **score_embedding(embedding, refs)}
    if held_out is not None:
        held = score_embedding(embedding, held_out)
        out |= {"held_out_score": held["score"], "held_out_nearest": held["nearest"]}
    return out | {"embedding": [round(float(x), 6) for x in embedding]}


def score_faces(image, refs: References, embedder) -> list[dict]:
    """Every face in a PIL image scored against the references (for bleed: anyone may have the person's face)."""
    from faceswap_kohya.faces.detect import detect

    faces = []
    for face in detect(image):
        embedding = embedder.embed(image, face)
        if embedding is not None:
            score = score_embedding(embedding, refs)
            faces.append({"face_box": list(face.box), "score": score["score"], "nearest": score["nearest"],
                          "embedding": [round(float(x), 6) for x in embedding]})
    return faces


def summarize_bleed(images: Sequence[dict]) -> dict:
    """How much the faces in a model's bleed images look like the person: mean and max over every face."""
    scores = [f["score"] for im in images for f in im["faces"]]
    return {"images": len(images), "faces": len(scores),
            "mean": round(float(np.mean(scores)), DECIMALS) if scores else None,
            "max": round(float(max(scores)), DECIMALS) if scores else None}


def summarize(images: Sequence[dict]) -> dict:
    """Per-checkpoint numbers from its images' stored scores (faces only; "no face" images are counted)."""
    scores = [im["score"] for im in images if im.get("score") is not None]
    gaps = [im["copy_gap"] for im in images if im.get("score") is not None]
    to_mean = [im["centroid_score"] for im in images if im.get("score") is not None]
    held = [im["held_out_score"] for im in images if im.get("held_out_score") is not None]
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
        "held_out_mean": r(np.mean(held)) if held else None,
        "held_out_std": r(np.std(held)) if held else None,
    }


def identity_basis(checkpoints: Sequence[dict]) -> str:
    """The summary key checkpoints are ranked by: held-out identity when the run has held-out photos."""
    return "held_out_mean" if any(c["summary"].get("held_out_mean") is not None for c in checkpoints) else "mean"


def mark_overtrained(checkpoints: Sequence[dict], margin: float) -> None:
    """Set each LoRA entry's `bleed_rise` (its bleed minus the base model's) and `overtrained` (a rise above
    `margin`); entries without bleed images, or a base model whose bleed images show no face, are not judged."""
    base = next((c for c in checkpoints if not c.get("file")), None)
    floor = base["bleed"]["summary"]["mean"] if base and base.get("bleed") else None
    for c in checkpoints:
        if not c.get("file"):
            continue
        mean = c["bleed"]["summary"]["mean"] if c.get("bleed") else None
        c["bleed_rise"] = None if mean is None or floor is None else round(mean - floor, DECIMALS)
        c["overtrained"] = c["bleed_rise"] is not None and c["bleed_rise"] > margin


def pick_best(checkpoints: Sequence[dict], margin: float = 0.1) -> tuple[Optional[dict], str]:
    """(best LoRA entry, why): the highest identity (held-out when there is one) among the checkpoints not
    marked overtrained; a tie goes to the earlier one. When every rankable one is overtrained: the one that
    bleeds least."""
    loras = [c for c in checkpoints if c.get("file")]
    key = identity_basis(loras)
    what = "held-out identity" if key == "held_out_mean" else "identity"
    rankable = [(i, c) for i, c in enumerate(loras) if c["summary"][key] is not None]
    if not rankable:
        return None, "no checkpoint produced a face to score"
    fine = [(i, c) for i, c in rankable if not c.get("overtrained")]
    if not fine:
        i, best = min(rankable, key=lambda ic: (ic[1]["bleed_rise"], ic[0]))
        return best, (f"every checkpoint is overtrained (faces in prompts without the trigger look like the person: "
                      f"bleed more than {margin:g} above the base model's); {best['label']} bleeds least "
                      f"({best['bleed_rise']:+.3f}): train for fewer steps or at a lower learning rate")
    best = max(fine, key=lambda ic: (ic[1]["summary"][key], -ic[0]))[1]
    why = f"highest {what} ({best['summary'][key]:.3f})"
    left_out = [c for _, c in rankable if c.get("overtrained")]
    judged = any(c.get("bleed_rise") is not None for c in loras)
    if left_out:
        names = ", ".join(f"{c['label']} ({c['bleed_rise']:+.3f})" for c in left_out)
        why += f" among checkpoints whose bleed stays within {margin:g} of the base model's; overtrained: {names}"
    elif judged:
        why += f"; no checkpoint's bleed rose more than {margin:g} above the base model's"
    elif any(c.get("bleed") for c in loras):
        why += "; bleed not judged (the base model's images without the trigger showed no face)"
    else:
        why += "; no bleed check (evaluate.bleed_prompts is empty)"
    return best, why


def rank(checkpoints: Sequence[dict], top: int = 3, margin: float = 0.1) -> tuple[Optional[dict], list[dict]]:
    """(best checkpoint entry, top images) from scores.json-style checkpoint entries in training order.

    The best checkpoint comes from `pick_best`. Entries with no face at all can't be ranked. The top images
    are the highest scores (vs all photos) among LoRA images (not the base model's); ties keep the earlier
    checkpoint, then generation order.
    """
    loras = [c for c in checkpoints if c.get("file")]
    best, _ = pick_best(checkpoints, margin)
    pool = [(im["score"], -ci, -ii, c["label"], im) for ci, c in enumerate(loras)
            for ii, im in enumerate(c["images"]) if im.get("score") is not None]
    pool.sort(key=lambda t: (t[0], t[1], t[2]), reverse=True)
    tops = [{"checkpoint": label, **{k: im[k] for k in ("file", "prompt", "seed", "score", "nearest", "copy_gap")}}
            for _, _, _, label, im in pool[:top]]
    return best, tops
