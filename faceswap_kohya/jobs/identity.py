"""The `identity` job: how much each image looks like the reference photos, and the photos' own baseline
(each against the leave-one-out centroid of the others) that the scores are read against."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from faceswap_kohya.events import Finished, OnEvent, ignore


def identity(refs: Path, images: Sequence[Path], embedder: str = "dlib", model_dir: Optional[Path] = None,
             on_event: OnEvent = ignore) -> dict:
    """Scores (0-1, higher = more alike) of the face in each image against the reference faces; its score against
    their centroid also as a share of the references' own baseline (`baseline`: `faces.likeness.Baseline.to_dict()`, None under 2 faces);
    `images` may be empty."""
    from faceswap_kohya.faces.identity import get_embedder, score_files
    from faceswap_kohya.faces.likeness import own_baseline, share_of

    model = get_embedder(embedder, str(model_dir) if model_dir else None)
    result = score_files(Path(refs), [Path(p) for p in images], model)
    usable = [Path(r["file"]).name for r in result["references"] if "face_box" in r]
    baseline = own_baseline(usable, result.pop("reference_embeddings"), model.name, model.metric)
    result["baseline"] = own = baseline.to_dict() if baseline else None
    for r in result["images"]:
        if "score" in r:
            r["share"] = share_of(r["centroid_score"], own, model.name)  # one statistic: against the centroid
    on_event(Finished(f"{len(result['images'])} images scored with {result['embedder']}", []))
    return result
