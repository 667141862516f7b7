"""The `identity` job: how much each image looks like the reference photos, and the photos' own baseline
(each against the leave-one-out centroid of the others) that the scores are read against."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from faceswap_kohya.events import Finished, OnEvent, ignore


def identity(refs: Path, images: Sequence[Path], embedder: str = "dlib", model_dir: Optional[Path] = None,
             on_event: OnEvent = ignore) -> dict:
    """Scores (0-1, higher = more alike) of the face in each image against the reference faces, each also as a
    share of the references' own baseline (`faces.identity.score_files`); `images` may be empty."""
    from faceswap_kohya.faces.identity import get_embedder, score_files

    result = score_files(Path(refs), [Path(p) for p in images], get_embedder(embedder, str(model_dir) if model_dir else None))
    on_event(Finished(f"{len(result['images'])} images scored with {result['embedder']}", []))
    return result
