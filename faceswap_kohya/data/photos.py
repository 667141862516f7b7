"""One photo at a time: the crop around its face (framing), its training mask, augmented copies (mirrored, relit),
duplicates, the photos to hold out, and identity checks against the other photos."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from faceswap_kohya.faces.detect import DETECT_SIDE, detect, small_copy
from faceswap_kohya.faces.identity import SAME_PERSON_SCORE, median_scores
from faceswap_kohya.faces.masks import landmarks68, make_mask
from faceswap_kohya.files.images import decode, resized, unreadable_reason

HELD_OUT = "held out"  # the kind of a held-out photo's output (augmented copies: "mirror", "brighter", ...)
NEAR_DUPLICATE_BITS = 4  # perceptual-hash bits that may differ between two copies of one photo
# Square crop around dlib's face box (which spans eyebrows to chin): side = k * box width, centre
# moved down by `dy` box heights (negative: up).
FRAMING = {"face": (2.2, -0.1), "head_and_shoulders": (3.6, 0.45)}
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
    embedding: Optional[np.ndarray] = None
    crop: Optional[tuple[int, int, int, int]] = None
    upscale: float = 1.0
    image: Optional[Image.Image] = None  # the prepared training image
    caption: str = ""
    caption_source: str = ""  # a caption file's name, "template" or "BLIP"
    outputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    identity: Optional[float] = None  # median score against the other photos
    mask: Optional[Image.Image] = None  # loss weight ("L", the training image's size), with dataset.mask
    held_out: bool = False  # kept out of training: validation loss and likeness are measured on it

    def drop(self, reason: str) -> None:
        self.status, self.reason, self.image = "dropped", reason, None

    def to_dict(self) -> dict:
        d = {"file": self.source.name, "status": self.status, "size": list(self.size), "faces": len(self.faces)}
        if self.reason:
            d["reason"] = self.reason
        if self.faces:
            d["face_box"] = list(self.faces[0].box)
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


def crop_box(size: tuple[int, int], face_box, framing: str) -> tuple[int, int, int, int]:
    """A square around the face, inside the photo: shifted, then shrunk, never padded past an edge."""
    W, H = size
    left, top, right, bottom = face_box
    k, dy = FRAMING[framing]
    side = min(round(k * max(right - left, bottom - top)), W, H)
    cx = (left + right) / 2
    cy = (top + bottom) / 2 + dy * (bottom - top)
    # centred as framed, moved to hold the whole face when the square is tight, then inside the photo
    x0 = min(max(cx - side / 2, right - side), left)
    y0 = min(max(cy - side / 2, bottom - side), top)
    x0 = int(round(min(max(x0, 0), W - side)))
    y0 = int(round(min(max(y0, 0), H - side)))
    return x0, y0, x0 + side, y0 + side


def frame(photo: Photo, rgb: Image.Image, framing: str, resolution: int, max_upscale: float) -> Image.Image:
    """The training image of one photo: the crop, resized to the resolution (enlarged at most max_upscale)."""
    if framing == "as_is" or not photo.faces:
        box = (0, 0, rgb.width, rgb.height)
        scale = min(1.0, resolution / min(rgb.size))  # buckets do the rest
    else:
        box = crop_box(rgb.size, photo.faces[0].box, framing)
        scale = resolution / (box[2] - box[0])
    if scale > max_upscale:
        photo.notes.append(f"{box[2] - box[0]} px crop would need ×{scale:.1f} to reach {resolution} px; "
                           f"enlarged ×{max_upscale:g} only (dataset.max_upscale); a sharper or closer photo is better")
        scale = max_upscale
    photo.crop, photo.upscale = box, scale
    w, h = max(1, round((box[2] - box[0]) * scale)), max(1, round((box[3] - box[1]) * scale))
    region = rgb if box == (0, 0, rgb.width, rgb.height) else rgb.crop(box)
    return resized(region, (w, h))


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


# ---------------------------------------------------------------- loss masks
def latent_scale(size: tuple[int, int], resolution: int, trainer_upscales: bool) -> int:
    """One latent cell (1/8 of the trained image) in this image's pixels: 8 × its side / the trained side."""
    side = (size[0] * size[1]) ** 0.5
    trained = resolution if trainer_upscales or side >= resolution else side
    return max(1, round(8 * side / trained))


def training_mask(photo: Photo, rgb: Image.Image, kind: str, floor: float, resolution: int,
                  trainer_upscales: bool) -> Image.Image:
    """The loss-weight mask of the photo's training image, from the 68 landmarks of its main face found
    in the full photo (more detail than the crop). A photo with no face gets full weight everywhere."""
    size = photo.image.size
    if not photo.faces:
        photo.notes.append("no face found, so no mask: every pixel counts the same")
        return Image.new("L", size, 255)
    left, top, right, bottom = photo.crop
    points = landmarks68(rgb, photo.faces[0].box)
    scale = np.array([size[0] / (right - left), size[1] / (bottom - top)])
    mapped = (points - np.array([left, top], dtype=np.float64)) * scale
    return make_mask(size, mapped, kind, floor, latent_scale(size, resolution, trainer_upscales))


def mean_weight(mask: Image.Image) -> float:
    """The mean loss weight of a mask (0-1): what a masked image's loss is scaled by, on average."""
    return float(np.asarray(mask, dtype=np.float64).mean() / 255)


def read_photo(path: Path, framing: str, resolution: int, max_upscale: float, embedder, mask: str = "none",
               mask_floor: float = 0.1, trainer_upscales: bool = True) -> Photo:
    """Decode, hash, find faces, embed the main face and prepare the training image (and, unless `mask`
    is "none", its loss-weight mask) of one photo. `trainer_upscales`: sd-scripts enlarges images smaller
    than the resolution (not so with buckets and bucket_no_upscale)."""
    import imagehash


    photo = Photo(path)
    try:
        data = path.read_bytes()
        rgb = decode(data)
    except Exception as e:  # noqa: BLE001 - any decoder error means "unusable photo"
        photo.drop(unreadable_reason(path, e))
        return photo
    photo.size, photo.sha256 = rgb.size, hashlib.sha256(data).hexdigest()
    small, _ = small_copy(rgb, DETECT_SIDE)
    photo.phash = imagehash.phash(small)
    if embedder is not None:
        photo.faces = detect(rgb)
        if photo.faces:
            photo.embedding = embedder.embed(rgb, photo.faces[0])
            if photo.embedding is None:
                photo.notes.append(f"{embedder.missed}: left out of the identity check")
        elif framing != "as_is":
            photo.drop("no face found (a turned, covered or very small face; or no person)")
            return photo
        else:
            photo.notes.append("no face found")
    if len(photo.faces) > 1:
        photo.notes.append(f"{len(photo.faces)} faces: the largest is taken as the person, the others are in the crop or cut off")
    photo.image = frame(photo, rgb, framing, resolution, max_upscale)
    if mask != "none":
        photo.mask = training_mask(photo, rgb, mask, mask_floor, resolution, trainer_upscales)
    return photo


def mark_duplicates(photos: list[Photo]) -> None:
    """Drop exact copies (same bytes) and near copies (perceptual hash), keeping the larger photo."""
    kept: list[Photo] = []
    for p in sorted((p for p in photos if p.status == "kept"), key=lambda p: -p.size[0] * p.size[1]):
        twin = next((k for k in kept if k.sha256 == p.sha256), None)
        if twin:
            p.drop(f"exact duplicate of {twin.source.name}")
            continue
        twin = next((k for k in kept if (k.phash - p.phash) <= NEAR_DUPLICATE_BITS), None)
        if twin:
            p.drop(f"near duplicate of {twin.source.name} (the same picture, resized, recompressed or relit)")
            continue
        kept.append(p)


def check_identity(photos: list[Photo], embedder) -> None:
    """Note each photo's median identity score against the others; flag the ones that look like someone else."""
    with_face = [p for p in photos if p.status == "kept" and p.embedding is not None]
    scores = median_scores([p.embedding for p in with_face], embedder.metric)
    for p, score in zip(with_face, scores):
        p.identity = score
        if score < SAME_PERSON_SCORE:
            p.notes.append(f"the face does not look like the others (identity score {score:.2f} < "
                           f"{SAME_PERSON_SCORE}): is this someone else? Remove it if so")
