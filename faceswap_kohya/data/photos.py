"""One photo at a time: what is measured of it once (`measure`: decoded at the sizes each check needs — JPEG draft
mode for detection —, its faces with their landmarks and embeddings, sharpness, light and pose), then its training
image (`finish`: the crop around the subject's face and the loss mask, as `data.framing` plans them); augmented
copies (mirrored, relit), duplicates and the photos to hold out. The checks of the whole set are in `data.gate`."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from faceswap_kohya.data.framing import frame, mean_weight, planned_crop, training_mask
from faceswap_kohya.faces.detect import DETECT_SIDE, Face, detect, face_region, shifted
from faceswap_kohya.faces.identity import SAME_PERSON_SCORE
from faceswap_kohya.faces.masks import LANDMARK_FACE_PX, landmarks68
from faceswap_kohya.files.images import decode_reduced, decode_stored, unreadable_reason

HELD_OUT = "held out"  # the kind of a held-out photo's output (augmented copies: "mirror", "brighter", ...)
NEAR_DUPLICATE_BITS = 4  # perceptual-hash bits that may differ between two copies of one photo
# A burst (the same moment shot twice): hashes this close, faces this alike, at the same place in the frame
BURST_BITS, BURST_SCORE, BURST_PLACE, BURST_PIXELS = 12, 0.9, 0.04, 10.0  # pixels: mean difference, 32×32 grey
MAX_FACES = 4  # faces of a group photo embedded to find the subject (largest first)
SHARPNESS_PX = 128  # the face is resampled to this square before its sharpness is measured
RELIGHT = [  # (name, brightness, contrast, warmth: red/blue gain)
    ("brighter", 1.18, 1.05, 1.0),
    ("darker-warm", 0.85, 1.08, 1.07),
    ("cool-soft", 1.05, 0.88, 0.93),
]


def output_name(index: int, source: Path, tag: str = "") -> str:
    """`003-img-2041` (ASCII, no underscores: sd-scripts reads `a_b_c_d_e` names as face-crop names)."""
    ascii_stem = unicodedata.normalize("NFKD", source.stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ascii_stem).strip("-").lower()[:40] or "photo"
    return f"{index:03d}-{slug}" + (f"-{tag}" if tag else "")


# ---------------------------------------------------------------- one photo
@dataclass
class Photo:
    """What happened to one input photo."""

    source: Path
    status: str = "kept"  # kept | dropped
    reason: str = ""
    size: tuple[int, int] = (0, 0)
    sha256: str = ""
    phash: object = None
    faces: list = field(default_factory=list)  # faces.Face, largest first
    crop: Optional[tuple[int, int, int, int]] = None
    upscale: float = 1.0
    image: Optional[Image.Image] = None  # the prepared training image
    caption: str = ""
    caption_source: str = ""  # a caption file's name, "template" or "BLIP"
    outputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    identity: Optional[float] = None  # score against the centroid of the other photos (data.gate)
    embeddings: list = field(default_factory=list)  # per face (MAX_FACES at most; None where the face model missed it)
    landmarks: list = field(default_factory=list)  # per face: dlib's 68 points in the photo's pixels
    sharpness: list = field(default_factory=list)  # per face: variance of the Laplacian of the face, SHARPNESS_PX square
    light: Optional[tuple[float, float]] = None  # the main face's brightness (0-255) and warmth (red - blue)
    yaw: Optional[float] = None  # the subject's head turn from the landmarks: 0 frontal, 1 profile
    findings: list[dict] = field(default_factory=list)  # {"kind", "text"}: what the photo gate found (data.gate)
    work: object = None  # the decoded photo (reduced; an Image or files.images.Upright), between measure and finish
    thumb: Optional[Image.Image] = None  # a small copy, for the contact sheet when the gate leaves the photo out
    tiny: Optional[np.ndarray] = None  # 32×32 grey copy: a burst's frames differ little pixel by pixel
    work_scale: float = 1.0  # photo pixels per pixel of `work`
    mask: Optional[Image.Image] = None  # loss weight ("L", the training image's size), with dataset.mask
    held_out: bool = False  # kept out of training: validation loss and likeness are measured on it

    def drop(self, reason: str) -> None:
        self.status, self.reason, self.image, self.work = "dropped", reason, None, None

    def find(self, kind: str, text: str) -> None:
        """A finding of the photo gate (someone_else, other_faces, blurry, small_face, duplicate)."""
        self.findings.append({"kind": kind, "text": text})

    def has(self, kind: str) -> bool:
        return any(f["kind"] == kind for f in self.findings)

    @property
    def embedding(self) -> Optional[np.ndarray]:
        """The subject's (first face's) embedding."""
        return self.embeddings[0] if self.embeddings else None

    @property
    def pose(self) -> str:
        return pose_of(self.yaw)

    def choose_subject(self, i: int) -> None:
        """Face `i` is the person's: it goes first (the crop, mask and identity follow the first face)."""
        for name in ("faces", "embeddings", "landmarks", "sharpness"):
            values = getattr(self, name)
            if i < len(values):
                values.insert(0, values.pop(i))
        if self.landmarks and self.landmarks[0] is not None:
            self.yaw = yaw_of(self.landmarks[0])

    def to_dict(self) -> dict:
        d = {"file": self.source.name, "status": self.status, "size": list(self.size), "faces": len(self.faces)}
        if self.reason:
            d["reason"] = self.reason
        if self.faces:
            d["face_box"] = list(self.faces[0].box)
        if len(self.faces) > 1:
            d["other_faces"] = [list(f.box) for f in self.faces[1:]]
        if self.yaw is not None:
            d["pose"], d["yaw"] = self.pose, round(self.yaw, 2)
        if self.findings:
            d["findings"] = self.findings
        if self.crop:
            d["crop_box"] = list(self.crop)
            d["upscale"] = round(self.upscale, 2)
        if self.identity is not None:
            d["identity_score"] = round(self.identity, 3)
        if self.mask is not None:
            d["mask_mean_weight"] = round(mean_weight(self.mask), 3)
        if self.held_out:
            d["held_out"] = True
        if self.outputs:
            d["outputs"] = self.outputs
            d["caption"] = self.caption
            d["caption_source"] = self.caption_source
        if self.notes:
            d["notes"] = self.notes
        return d


def relit(image: Image.Image, variant: int) -> tuple[str, Image.Image]:
    name, brightness, contrast, warmth = RELIGHT[variant % len(RELIGHT)]
    out = ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(brightness)).enhance(contrast)
    if warmth != 1.0:
        r, g, b = out.split()
        r = r.point(lambda v: min(255, round(v * warmth)))
        b = b.point(lambda v: min(255, round(v / warmth)))
        out = Image.merge("RGB", (r, g, b))
    return name, out


def looks_like_someone_else(photo: Photo) -> bool:
    return photo.identity is not None and photo.identity < SAME_PERSON_SCORE


def clearest_first(photos: list[Photo]) -> list[int]:
    """Indices of the photos, the largest faces (the clearest views) first and any that looks like someone else last."""
    return sorted(range(len(photos)), key=lambda i: (looks_like_someone_else(photos[i]),
                                                     -(photos[i].faces[0].area if photos[i].faces else 0)))


def augmentations(kept: list[Photo], d) -> list[tuple[int, str, Image.Image, Optional[Image.Image]]]:
    """(photo index, kind, image, mask): mirrored copies, then relit ones, of the photos with the largest
    faces (the clearest views), never of one that looks like someone else; no mirrors with flip_aug.
    A mirrored copy gets the mirrored mask, a relit one the photo's own."""
    ranked = clearest_first(kept)
    mirrors = [] if d.flip_aug else ranked[:d.augment.mirror]
    out = []
    for i in mirrors:
        mask = kept[i].mask
        out.append((i, "mirror", ImageOps.mirror(kept[i].image), None if mask is None else ImageOps.mirror(mask)))
    for n, i in enumerate(ranked[:d.augment.relight]):
        out.append((i, *relit(kept[i].image, n), kept[i].mask))
    return out


def choose_holdout(kept: list[Photo], n: int) -> list[int]:
    """Indices of up to `n` photos to keep out of training: photos with a face that looks like the others,
    spread over face sizes from the middle; the clearest photo always stays in training."""
    if n <= 0:
        return []
    ranked = clearest_first(kept)
    candidates = [i for i in ranked[1:] if kept[i].faces and not looks_like_someone_else(kept[i])]
    n = min(n, len(candidates))
    return sorted(candidates[(2 * k + 1) * len(candidates) // (2 * n)] for k in range(n))


# ---------------------------------------------------------------- measuring
POSES = ((0.55, "frontal"), (0.95, "three-quarter"), (float("inf"), "profile"))  # yaw_of: ~25°, ~45°


def yaw_of(points68: np.ndarray) -> float:
    """How far the head is turned, from dlib's 68 landmarks: where the nose tip lies between the jaw's ends
    along the eye line; 0 frontal, about 0.4 at 20°, 0.65 at 30°, 1 (clipped) from about 45° on."""
    p = np.asarray(points68, dtype=np.float64)
    along = p[42:48].mean(axis=0) - p[36:42].mean(axis=0)
    along /= np.linalg.norm(along) + 1e-12
    left, right, nose = p[0] @ along, p[16] @ along, p[30] @ along
    if right - left <= 0:
        return 1.0
    return float(min(1.0, abs((nose - left) / (right - left) - 0.5) * 2))


def pose_of(yaw: Optional[float]) -> str:
    """"frontal", "three-quarter" or "profile" ("" unmeasured)."""
    if yaw is None:
        return ""
    return next(name for limit, name in POSES if yaw < limit)


def face_sharpness(rgb: Image.Image, box) -> float:
    """Variance of the Laplacian of the face, resampled to SHARPNESS_PX square: comparable between photos."""
    face = rgb.crop(tuple(round(v) for v in box)).convert("L").resize((SHARPNESS_PX, SHARPNESS_PX), Image.BILINEAR)
    a = np.asarray(face, dtype=np.float64)
    lap = 4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]
    return float(lap.var())


def face_light(rgb: Image.Image, box) -> tuple[float, float]:
    """(brightness 0-255, warmth: mean red minus mean blue) of the face."""
    a = np.asarray(rgb.crop(tuple(round(v) for v in box)).resize((32, 32), Image.BILINEAR), dtype=np.float64)
    return float(a.mean()), float(a[..., 0].mean() - a[..., 2].mean())


def scaled(face: Face, k: float) -> Face:
    """The face in pixels `k` times smaller."""
    return Face(tuple(round(v / k) for v in face.box), face.confidence, [(x / k, y / k) for x, y in face.landmarks], face.detector)


def work_factor(photo: Photo, framing: str, resolution: int) -> int:
    """How many times smaller than its size the photo may be decoded (1, 2, 4 or 8): the training crop keeps at
    least the resolution and the main face at least LANDMARK_FACE_PX px."""
    box, _ = planned_crop(photo, framing, resolution)
    limit = (box[2] - box[0]) / resolution
    if photo.faces:
        limit = min(limit, photo.faces[0].width / LANDMARK_FACE_PX)
    return next((f for f in (8, 4, 2) if f <= limit), 1)


def measure(path: Path, embedder, framing: str = "face", resolution: int = 1024) -> Photo:
    """Everything the checks need of one photo, each computed once: decode (JPEG draft mode: detection on a
    copy ~DETECT_SIDE px, the rest at the size the training crop needs), hashes, faces (largest first), and
    for each of the MAX_FACES largest its 68 landmarks, embedding and sharpness; the main face's light and
    pose. The decoded photo stays in `work` for `finish`."""
    import imagehash

    photo = Photo(path)
    try:
        data = path.read_bytes()
        small, photo.size = decode_reduced(data, DETECT_SIDE * 3 // 4)
    except Exception as e:  # noqa: BLE001 - any decoder error means "unusable photo"
        photo.drop(unreadable_reason(path, e))
        return photo
    photo.sha256 = hashlib.sha256(data).hexdigest()
    photo.phash = imagehash.phash(small)
    photo.tiny = np.asarray(small.convert("L").resize((32, 32), Image.BILINEAR), dtype=np.float64)
    photo.thumb = small.copy()
    photo.thumb.thumbnail((256, 256), Image.BILINEAR)
    k_small = photo.size[0] / small.width
    if embedder is not None:
        W, H = photo.size
        photo.faces = [Face((max(0, x0), max(0, y0), min(W, x1), min(H, y1)), f.confidence, f.landmarks, f.detector)
                       for f in (scaled(f, 1 / k_small) for f in detect(small)) for x0, y0, x1, y1 in [f.box]]
        if not photo.faces and framing != "as_is":
            photo.drop("no face found (a turned, covered or very small face; or no person)")
            return photo
        if not photo.faces:
            photo.notes.append("no face found")
    f = work_factor(photo, framing, resolution)
    if f >= k_small * 0.99:
        work, k = small, k_small
    else:  # kept as stored: only the crops are turned upright
        work = decode_stored(data, -(-min(photo.size) // f) if f > 1 else 0)
        k = photo.size[0] / work.width
    photo.work, photo.work_scale = work, k
    for i, face in enumerate(photo.faces[:MAX_FACES]):
        inner = scaled(face, k)
        region = face_region(inner.box, work.size)
        patch, local = work.crop(region), shifted(inner, -region[0], -region[1])
        photo.landmarks.append((landmarks68(patch, local.box) + np.array(region[:2], dtype=np.float64)) * k)
        photo.sharpness.append(face_sharpness(patch, local.box))
        if embedder is not None:
            photo.embeddings.append(embedder.embed(patch, local))
        if i == 0:
            photo.light = face_light(patch, local.box)
    if photo.faces:
        photo.yaw = yaw_of(photo.landmarks[0])
        if photo.embeddings and photo.embeddings[0] is None:
            photo.notes.append(f"{embedder.missed}: left out of the identity check")
    return photo


def finish(photo: Photo, framing: str, resolution: int, max_upscale: float, mask: str = "none",
           mask_floor: float = 0.1, trainer_upscales: bool = True) -> Photo:
    """The training image of a measured photo (and, unless `mask` is "none", its loss-weight mask); `work` is let go."""
    if photo.status != "kept" or photo.work is None:
        return photo
    photo.image = frame(photo, photo.work, framing, resolution, max_upscale, photo.work_scale)
    if mask != "none":
        photo.mask = training_mask(photo, mask, mask_floor, resolution, trainer_upscales)
    photo.work = None
    return photo


def read_photo(path: Path, framing: str, resolution: int, max_upscale: float, embedder, mask: str = "none",
               mask_floor: float = 0.1, trainer_upscales: bool = True) -> Photo:
    """One photo on its own (`measure`, then `finish` around its largest face). `trainer_upscales`: sd-scripts
    enlarges images smaller than the resolution (not so with buckets and bucket_no_upscale)."""
    photo = measure(path, embedder, framing, resolution)
    if len(photo.faces) > 1:
        photo.notes.append(f"{len(photo.faces)} faces: the largest is taken as the person")
    return finish(photo, framing, resolution, max_upscale, mask, mask_floor, trainer_upscales)


def mark_duplicates(photos: list[Photo]) -> None:
    """Drop exact copies (same bytes), near copies (perceptual hash) and bursts (close hashes and faces that
    alike), keeping the larger photo: each counts once."""
    from faceswap_kohya.faces.identity import similarity

    kept: list[Photo] = []
    for p in sorted((p for p in photos if p.status == "kept"), key=lambda p: -p.size[0] * p.size[1]):
        twin = next((k for k in kept if k.sha256 == p.sha256), None)
        if twin:
            p.drop(f"exact duplicate of {twin.source.name}")
            p.find("duplicate", f"the same file as {twin.source.name}: counted once")
            continue
        twin = next((k for k in kept if (k.phash - p.phash) <= NEAR_DUPLICATE_BITS), None)
        if twin:
            p.drop(f"near duplicate of {twin.source.name} (the same picture, resized, recompressed or relit)")
            p.find("duplicate", f"the same picture as {twin.source.name}: counted once")
            continue
        twin = next((k for k in kept if burst(k, p, similarity)), None)
        if twin:
            p.drop(f"near duplicate of {twin.source.name} (the same moment shot twice: a burst)")
            p.find("duplicate", f"a burst with {twin.source.name}: counted once")
            continue
        kept.append(p)


def burst(a: Photo, b: Photo, similarity) -> bool:
    """Two shots of one moment: close perceptual hashes, faces alike at the same place in the frame, the same
    scene pixel by pixel (32×32 grey)."""
    if a.embedding is None or b.embedding is None or (a.phash - b.phash) > BURST_BITS:
        return False
    place = [abs(x / a.size[i % 2] - y / b.size[i % 2]) for i, (x, y) in enumerate(zip(a.faces[0].box, b.faces[0].box))]
    same_scene = a.tiny is not None and b.tiny is not None and float(np.abs(a.tiny - b.tiny).mean()) < BURST_PIXELS
    return max(place) < BURST_PLACE and same_scene and similarity(a.embedding, b.embedding) >= BURST_SCORE
