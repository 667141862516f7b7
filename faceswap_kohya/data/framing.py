"""A photo's training image, planned from its measurements (`data.photos.measure`): the square crop around the
subject's face (`dataset.framing`) and how much it is enlarged (`planned_crop`, `frame`), and its loss-weight mask
from the face's 68 landmarks, every other face in the crop at the floor (`training_mask`). The functions take a
`data.photos.Photo` (its size, faces, landmarks and crop); this module does not import it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from faceswap_kohya.faces.masks import floor_faces, make_mask
from faceswap_kohya.files.images import resized

# Square crop around dlib's face box (which spans eyebrows to chin): side = k * box width, centre
# moved down by `dy` box heights (negative: up).
FRAMING = {"face": (2.2, -0.1), "head_and_shoulders": (3.6, 0.45)}


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


def planned_crop(photo, framing: str, resolution: int) -> tuple[tuple[int, int, int, int], float]:
    """(crop box in the photo's pixels, scale to the training image) before max_upscale."""
    if framing == "as_is" or not photo.faces:
        return (0, 0, *photo.size), min(1.0, resolution / min(photo.size))  # buckets do the rest
    box = crop_box(photo.size, photo.faces[0].box, framing)
    return box, resolution / (box[2] - box[0])


def frame(photo, rgb: Image.Image, framing: str, resolution: int, max_upscale: float, k: float = 1.0) -> Image.Image:
    """The training image of one photo: the crop, resized to the resolution (enlarged at most max_upscale).
    `rgb` is the photo decoded `k` times smaller than its size (an Image, or an `Upright` that turns the crop only)."""
    box, scale = planned_crop(photo, framing, resolution)
    if scale > max_upscale:
        photo.notes.append(f"{box[2] - box[0]} px crop would need ×{scale:.1f} to reach {resolution} px; "
                           f"enlarged ×{max_upscale:g} only (dataset.max_upscale); a sharper or closer photo is better")
        scale = max_upscale
    photo.crop, photo.upscale = box, scale
    w, h = max(1, round((box[2] - box[0]) * scale)), max(1, round((box[3] - box[1]) * scale))
    inner = tuple(round(v / k) for v in box)
    region = rgb if inner == (0, 0, rgb.width, rgb.height) and isinstance(rgb, Image.Image) else rgb.crop(inner)
    return resized(region, (w, h))


# ---------------------------------------------------------------- loss masks
def latent_scale(size: tuple[int, int], resolution: int, trainer_upscales: bool) -> int:
    """One latent cell (1/8 of the trained image) in this image's pixels: 8 × its side / the trained side."""
    side = (size[0] * size[1]) ** 0.5
    trained = resolution if trainer_upscales or side >= resolution else side
    return max(1, round(8 * side / trained))


def training_mask(photo, kind: str, floor: float, resolution: int, trainer_upscales: bool) -> Image.Image:
    """The loss-weight mask of the photo's training image, from the 68 landmarks of its subject's face found
    in the full photo (more detail than the crop); every other face in the crop at the floor, not the
    subject's weight. A photo with no face gets full weight everywhere."""
    size = photo.image.size
    if not photo.faces or not photo.landmarks or photo.landmarks[0] is None:
        photo.notes.append("no face found, so no mask: every pixel counts the same")
        return Image.new("L", size, 255)
    left, top, right, bottom = photo.crop
    scale = np.array([size[0] / (right - left), size[1] / (bottom - top)])

    def mapped(points):
        return (points - np.array([left, top], dtype=np.float64)) * scale

    cell = latent_scale(size, resolution, trainer_upscales)
    mask = make_mask(size, mapped(photo.landmarks[0]), kind, floor, cell)
    others = [mapped(p) for p in photo.landmarks[1:] if p is not None]
    return floor_faces(mask, others, floor, cell) if others else mask


def mean_weight(mask: Image.Image) -> float:
    """The mean loss weight of a mask (0-1): what a masked image's loss is scaled by, on average."""
    return float(np.asarray(mask, dtype=np.float64).mean() / 255)
