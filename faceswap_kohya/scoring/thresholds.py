"""The score thresholds every front end states: above which an identity score usually means the same person,
for each face model. One place: the CLI, the web app, the swap job and the reports all read them here.

dlib's value is `faces.identity.SAME_PERSON_SCORE` (its "distance < 0.6" rule of thumb as a score), which the
photo checks below this layer use too; ArcFace scores are cosine similarities, clipped at 0.
"""

from __future__ import annotations

from faceswap_kohya.faces.identity import SAME_PERSON_SCORE

SAME_PERSON = {"dlib": SAME_PERSON_SCORE, "arcface": 0.5}


def face_model(embedder: str | None) -> str:
    """"dlib" or "arcface" for an embedder's name (`dlib-resnet-128`, `arcface-w600k-mbf`, ...)."""
    return "arcface" if (embedder or "").lower().startswith("arcface") else "dlib"


def same_person(embedder: str | None) -> float:
    """The score above which photos of one person usually land with this face model."""
    return SAME_PERSON[face_model(embedder)]


def same_person_text(embedder: str | None) -> str:
    """"0.4" for dlib, "0.5 (cosine)" for ArcFace: the threshold as the front ends write it."""
    value = f"{same_person(embedder):g}"
    return value + (" (cosine)" if face_model(embedder) == "arcface" else "")


def thresholds_note() -> str:
    """Every face model's threshold in one sentence (reports that may show either)."""
    return (f"With dlib, photos of one person usually score above {SAME_PERSON['dlib']:g}; "
            f"with ArcFace (cosine) above {SAME_PERSON['arcface']:g}.")
