"""Real scores documents for tests: real face photos (tests/data/faces/) stand in for the images a checkpoint
generated, scored by dlib and put together by `scoring.document.scores_document`, exactly as `evaluate` does.

`real_scores` writes the images and returns scores.json's data; `write_evaluation` also lays it out as a run's
`eval/<timestamp>/` folder (images, scores.json), the way a finished evaluation leaves it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from face_data import FACES

REFS = ("obama.jpg", "obama3.jpg")  # the "training photos"
HELD_OUT = ("obama2.jpg",)  # photos the LoRA never saw
PROMPTS = ["myface man, portrait photo", "myface man, outdoors"]
# base: someone else and no face; then better and better checkpoints of the person (faceless images included)
CHECKPOINTS = {"base": ["biden.jpg", None], "epoch 1": ["biden.jpg", "obama_partial_face.jpg"],
               "final": ["obama_partial_face2.jpg", "obama_partial_face.jpg"]}


def dlib_embedder():
    import pytest

    pytest.importorskip("dlib", reason="scoring real faces needs the faces extra (dlib)")
    from faceswap_kohya.faces.identity import get_embedder

    return get_embedder("dlib")


def _image(photo: Optional[str]):
    from PIL import Image

    return Image.open(FACES / photo).convert("RGB") if photo else Image.new("RGB", (96, 96), "gray")


def real_scores(folder: Path, checkpoints: Optional[dict] = None, bleed: Optional[dict] = None,
                run_dir: Optional[Path] = None, held_out: bool = True, embedder=None) -> dict:
    """scores.json's data for `checkpoints` ({label: [photo or None per image]}, "base" first); `bleed`:
    {label: [photo or None]} for images of prompts without the trigger. Images go to `folder`/images."""
    from faceswap_kohya.scoring.document import scores_document
    from faceswap_kohya.scoring.scores import SAMPLER, load_references, score_faces, score_image, summarize, summarize_bleed

    embedder = embedder or dlib_embedder()
    checkpoints = checkpoints or CHECKPOINTS
    folder = Path(folder)
    photos = folder / "photos"  # the person's photos the images are scored against
    refs_dir, held_dir = photos / "refs", photos / "held"
    for target, names in ((refs_dir, REFS), (held_dir, HELD_OUT if held_out else ())):
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(FACES / name, target / name)
    refs = load_references(refs_dir, embedder)
    held = load_references(held_dir, embedder) if held_out else None
    (folder / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for label, shots in checkpoints.items():
        slug = label.replace(" ", "")
        scored = []
        for p, photo in enumerate(shots, 1):
            name = f"images/{slug}-p{p}-s7.png"
            image = _image(photo)
            image.save(folder / name)
            scored.append({"file": name, "p": p, "prompt": PROMPTS[(p - 1) % len(PROMPTS)], "seed": 7,
                           **score_image(image, refs, embedder, held)})
        entry = {"label": label, "file": None if label == "base" else f"{run_dir or '/runs/x'}/model/myface-{slug}.safetensors",
                 "epoch": None, "step": None, "images": scored, "summary": summarize(scored)}
        if bleed and label in bleed:
            images = []
            for p, photo in enumerate(bleed[label], 1):
                name = f"images/{slug}-b{p}-s7.png"
                image = _image(photo)
                image.save(folder / name)
                images.append({"file": name, "p": p, "prompt": "photo of a man", "seed": 7,
                               "faces": score_faces(image, refs, embedder)})
            entry["bleed"] = {"images": images, "summary": summarize_bleed(images)}
        entries.append(entry)
    scoring = SimpleNamespace(refs=refs, held_out=held, embedder=embedder)
    return scores_document(run_dir, [refs_dir], held_dir if held_out else None, scoring, entries, {
        "base_model": "base.safetensors", "prompts": PROMPTS, "bleed_prompts": ["photo of a man"] if bleed else [],
        "seeds": [7], "steps": 2, "cfg": 5.0, "width": 64, "height": 64, "sampler": SAMPLER, "negative_prompt": "",
        "lora_weight": 1.0, "bleed_margin": 0.1})


def write_evaluation(run_dir: Path, stamp: str = "20260101-120000", **kwargs) -> Path:
    """A run's evaluation folder `eval/<stamp>/` with its images and scores.json; returns the scores.json path."""
    folder = Path(run_dir) / "eval" / stamp
    scores = real_scores(folder, run_dir=Path(run_dir), **kwargs)
    path = folder / "scores.json"
    path.write_text(json.dumps(scores, indent=1), encoding="utf-8")
    return path
