"""The photo gate: the checks of a whole set of measured photos (`data.photos.measure`) before anything is
trained, each finding named on the photo it concerns (`Photo.findings`), and the set's one-line verdict.

- someone else: the majority person (`faces.likeness.one_person`, leave-one-out against the rest); a photo
  whose face does not match is left out (`dataset.identity_check: exclude`), kept with a warning (`warn`) or
  not checked (`off`); a set with no clear majority is a UserError;
- which face: in a photo with several faces, the one most like the others is the subject (its crop and mask),
  the other faces get the mask floor;
- blurry (the face's sharpness against the set's median), face too small for the training resolution;
- all one pose (yaw from the landmarks), all one light: advice for the set;
- the person's own baseline (`faces.likeness.own_baseline`) of the photos used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from faceswap_kohya.data.framing import planned_crop
from faceswap_kohya.data.photos import Photo
from faceswap_kohya.errors import UserError
from faceswap_kohya.faces.identity import SAME_PERSON_SCORE, similarity
from faceswap_kohya.faces.likeness import NoMajority, one_person, own_baseline

BLURRY_SHARE = 0.35  # a face less sharp than this share of the set's median sharpness is blurry
LIGHT_SPREAD = 12.0, 8.0  # brightness and warmth spreads (sd over the set) under which every photo has one light
FINDING_WORDS = {"someone_else": "someone else", "other_faces": "other faces", "blurry": "blurry",
                 "small_face": "face too small", "duplicate": "duplicate"}


@dataclass
class Gate:
    """What the gate found in the whole set (dataset.json's `gate`)."""

    identity_check: str
    threshold: float = SAME_PERSON_SCORE
    left_out: list[str] = field(default_factory=list)  # someone else, left out
    kept_anyway: list[str] = field(default_factory=list)  # someone else, kept (identity_check warn)
    advice: list[str] = field(default_factory=list)
    poses: dict = field(default_factory=dict)  # pose → photos used
    duplicates: int = 0  # photos counted once with another
    baseline: Optional[dict] = None  # faces.likeness.Baseline.to_dict() of the photos used
    verdict: str = ""

    def to_dict(self) -> dict:
        return {"identity_check": self.identity_check, "threshold": self.threshold, "someone_else": self.left_out,
                "someone_else_kept": self.kept_anyway, "duplicates": self.duplicates, "poses": self.poses,
                "advice": self.advice, "baseline": self.baseline, "verdict": self.verdict}


def choose_subjects(photos: list[Photo], metric: str) -> None:
    """In each photo with several embedded faces, the face most like the other photos' faces becomes the subject."""
    single = [p.embedding for p in photos if len([e for e in p.embeddings if e is not None]) == 1 and p.embedding is not None]
    if len(single) < 2:
        return
    try:
        ref = one_person(single, metric, SAME_PERSON_SCORE).centre
    except NoMajority:
        return
    for p in photos:
        scored = [(similarity(e, ref, metric), i) for i, e in enumerate(p.embeddings) if e is not None]
        if len(scored) < 2:
            continue
        best, i = max(scored)
        p.choose_subject(i)
        others = len(p.faces) - 1
        p.find("other_faces", f"{len(p.faces)} faces: the subject is the one most like the other photos "
                              f"(identity {best:.2f}); the other{' face gets' if others == 1 else 's get'} the mask floor")


def check_identity(photos: list[Photo], metric: str, mode: str, summary_warnings: list[str]) -> Gate:
    """The majority person of the photos kept so far; each photo's score (`Photo.identity`); someone else
    left out (exclude) or kept with a warning (warn). UserError when no person has a clear majority."""
    gate = Gate(mode)
    with_face = [p for p in photos if p.status == "kept" and p.embedding is not None]
    choose_subjects(with_face, metric)
    if mode == "off" or len(with_face) < 3:  # too few for an odd one out
        return gate
    try:
        found = one_person([p.embedding for p in with_face], metric, SAME_PERSON_SCORE)
    except NoMajority as e:
        groups = "; ".join(", ".join(with_face[i].source.name for i in g) for g in e.groups)
        raise UserError(f"dataset.identity_check: no clear majority identity in these photos (no person has more than "
                        f"half of the {len(with_face)} faces; groups that look alike: {groups}): give photos of one "
                        "person, or set dataset.identity_check=off if they are one person") from None
    for p, score in zip(with_face, found.scores):
        p.identity = score
    others = found.member_range()
    for i in found.outsiders:
        p = with_face[i]
        text = (f"someone else? identity {p.identity:.2f} against the other photos, which score {others} "
                f"(one person usually above {SAME_PERSON_SCORE:g})")
        if mode == "exclude":
            p.drop(f"{text}: left out (dataset.identity_check=warn keeps it)")
            p.find("someone_else", f"{text}: left out")
            gate.left_out.append(p.source.name)
        else:
            p.find("someone_else", f"{text}: kept (dataset.identity_check=warn)")
            p.notes.append(f"the face does not look like the others ({text}): is this someone else? Remove it if so")
            summary_warnings.append(f"{p.source.name} looks like someone else ({text}); kept because dataset.identity_check=warn")
            gate.kept_anyway.append(p.source.name)
    return gate


def check_quality(kept: list[Photo], d) -> None:
    """Blurry faces (against the set's median sharpness) and faces too small for the training resolution."""
    sharp = [p.sharpness[0] for p in kept if p.sharpness]
    median = float(np.median(sharp)) if len(sharp) >= 3 else None
    for p in kept:
        if median and p.sharpness and p.sharpness[0] < BLURRY_SHARE * median:
            p.find("blurry", f"blurry: the face's sharpness is {p.sharpness[0] / median:.0%} of the set's median")
        if not p.faces:
            continue
        box, scale = planned_crop(p, d.framing, d.resolution)
        if scale > d.max_upscale:
            side = box[2] - box[0]
            p.find("small_face", f"face too small for {d.resolution} px training: its crop is {side} px "
                                 f"(needs {d.resolution / d.max_upscale:.0f} px or more with dataset.max_upscale {d.max_upscale:g})")
        elif d.framing == "as_is" and p.faces[0].width * scale < d.resolution / 8:
            p.find("small_face", f"face too small for {d.resolution} px training: {round(p.faces[0].width * scale)} px "
                                 "wide in the training image")


def set_advice(kept: list[Photo], gate: Gate) -> None:
    """Poses counted; advice when every photo has one pose or one light."""
    poses = [p.pose for p in kept if p.pose]
    gate.poses = {name: poses.count(name) for name in ("frontal", "three-quarter", "profile") if poses.count(name)}
    if len(poses) >= 3 and len(gate.poses) == 1:
        (only,) = gate.poses
        add = {"frontal": "add a three-quarter or profile view", "three-quarter": "add a frontal and a profile view",
               "profile": "add a frontal and a three-quarter view"}[only]
        gate.advice.append(f"every photo is {only}: {add}")
    light = np.array([p.light for p in kept if p.light is not None])
    if len(light) >= 4 and light[:, 0].std() < LIGHT_SPREAD[0] and light[:, 1].std() < LIGHT_SPREAD[1]:
        gate.advice.append("every photo has about the same light on the face: add photos in other light "
                           "(daylight outdoors, indoors, shade, evening)")


def verdict(photos: list[Photo], gate: Gate) -> str:
    """"7 usable photos, 1 left out (someone else), poses: 5 frontal, 2 three-quarter"."""
    kept = [p for p in photos if p.status == "kept"]
    parts = [f"{len(kept)} usable photo{'s' if len(kept) != 1 else ''}"]
    dropped = [p for p in photos if p.status == "dropped" and not p.has("duplicate")]  # duplicates: counted once
    why: dict[str, int] = {}
    for p in dropped:
        kind = "someone else" if p.has("someone_else") else ("no face" if "no face" in p.reason else "unreadable")
        why[kind] = why.get(kind, 0) + 1
    if dropped:
        parts.append(f"{len(dropped)} left out ({', '.join(f'{n} {k}' if n > 1 else k for k, n in why.items())})")
    if gate.duplicates:
        parts.append(f"{gate.duplicates} duplicate{'s' if gate.duplicates != 1 else ''} counted once")
    if gate.kept_anyway:
        parts.append(f"{len(gate.kept_anyway)} kept though it looks like someone else")
    flagged = {k: sum(p.has(k) for p in kept) for k in ("blurry", "small_face")}
    parts += [f"{n} {FINDING_WORDS[k]}" for k, n in flagged.items() if n]
    if gate.poses:
        parts.append("poses: " + ", ".join(f"{n} {name}" for name, n in gate.poses.items()))
    return ", ".join(parts)


def run_gate(photos: list[Photo], d, metric: str, warnings: list[str], embedder_name: Optional[str]) -> Gate:
    """Every check of the set, in order; the Gate (with the verdict) for dataset.json and the summary."""
    gate = check_identity(photos, metric, d.identity_check, warnings)
    kept = [p for p in photos if p.status == "kept"]
    gate.duplicates = sum(p.has("duplicate") for p in photos)
    check_quality(kept, d)
    set_advice(kept, gate)
    with_face = [p for p in kept if p.embedding is not None]
    if embedder_name:
        base = own_baseline([p.source.name for p in with_face], [p.embedding for p in with_face], embedder_name, metric)
        gate.baseline = base.to_dict() if base else None
    gate.verdict = verdict(photos, gate)
    return gate
