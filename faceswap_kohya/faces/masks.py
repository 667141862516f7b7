"""Soft training masks for face-masked loss, from dlib's 68 face landmarks.

sd-scripts reads a subset's `alpha_mask` from each PNG's alpha channel as a per-pixel loss weight
(value / 255), resizes it with the image to the bucket size and then area-averages it down to the
latents (1/8). So a mask here is:

- a region drawn from the landmarks: `face` (the landmarks' hull, raised to the forehead line),
  `head` (up over forehead and hair, out to ears and hair, down to chin and neck) or `person` (the
  head plus shoulders and torso down to the image's bottom);
- dilated by two latent cells so that it survives the 1/8 downscale, with a feathered edge;
- `floor` outside it (the background is still learned a little): value = floor + (1 - floor) * region;
- `floor` over every other face in the photo too (`floor_faces`): only the subject is learned as the person.

`latent_scale` is the size of one latent cell in the image's own pixels: 8 when the image is trained
at its own size, 8 * image side / training side otherwise.
"""

from __future__ import annotations

import functools
from typing import Literal, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from faceswap_kohya.errors import UserError
from faceswap_kohya.faces.detect import DLIB_LOCK, dlib_module, model_file, rgb_array

MaskKind = Literal["face", "head", "person"]
KINDS = ("face", "head", "person")
LANDMARK_FACE_PX = 256  # the face is resampled to about this width before the 68-point predictor
OUTSIDE_TINT = (40, 20, 90)  # overlay: the colour laid over what the mask leaves out

# Proportions of the regions, in face heights H (brows to chin) and face widths W (jaw to jaw).
FOREHEAD_LINE = 0.15  # face: the brows raised by this much H
HAIR_ABOVE_BROWS = 0.8  # head: top of the hair above the brows (0.6-0.8 H in portraits)
HEAD_HALF_WIDTH = 0.62  # head: half-width at the temples (W/2 = jaw; the rest is ears and hair)
NECK_BELOW_CHIN, NECK_HALF_WIDTH = 0.45, 0.32  # head: the neck, down from the chin
SHOULDER_BELOW_CHIN, SHOULDER_HALF_WIDTH = 0.75, 1.5  # person: shoulders 3 W wide
TORSO_HALF_WIDTH = 1.7  # person: torso at the image's bottom


# ---------------------------------------------------------------- landmarks
@functools.lru_cache(maxsize=1)
def _predictor68():
    return dlib_module().shape_predictor(str(model_file("shape_predictor_68_face_landmarks.dat")))


def landmarks68(image: Image.Image, box: Sequence[float]) -> np.ndarray:
    """dlib's 68 face landmarks (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67) of the
    face in `box` (left, top, right, bottom, image pixels), as a (68, 2) array in image pixels.

    The predictor runs on a crop around the face resampled to ~LANDMARK_FACE_PX wide: the same
    detail for small and large faces, and fast on large photos."""
    left, top, right, bottom = (float(v) for v in box)
    if right <= left or bottom <= top:
        raise ValueError(f"face box {tuple(box)}: right/bottom must exceed left/top")
    margin = max(right - left, bottom - top) / 2
    region = (max(0, int(left - margin)), max(0, int(top - margin)),
              min(image.width, int(right + margin) + 1), min(image.height, int(bottom + margin) + 1))
    k = LANDMARK_FACE_PX / (right - left)
    crop = image.crop(region)
    crop = crop.resize((max(1, round(crop.width * k)), max(1, round(crop.height * k))), Image.BILINEAR)
    rect = dlib_module().rectangle(round((left - region[0]) * k), round((top - region[1]) * k),
                             round((right - region[0]) * k), round((bottom - region[1]) * k))
    arr = rgb_array(crop)
    with DLIB_LOCK:
        shape = _predictor68()(arr, rect)
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return points / k + np.array(region[:2], dtype=np.float64)


# ---------------------------------------------------------------- geometry
class _FaceFrame:
    """Coordinates along the eye line (a, to the image's right for an upright face) and across it
    (b, downwards), in pixels, centred between the eyes: the regions follow a tilted head."""

    def __init__(self, points: np.ndarray):
        eye_left, eye_right = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
        along = eye_right - eye_left
        if not np.linalg.norm(along) > 0:
            raise ValueError("landmarks: both eyes at one point")
        self.centre = (eye_left + eye_right) / 2
        self.ex = along / np.linalg.norm(along)
        self.ey = np.array([-self.ex[1], self.ex[0]])
        ab = self.to_frame(points)
        self.brow = ab[17:27, 1].min()
        self.chin = ab[8, 1]
        self.mid = (ab[0:17, 0].min() + ab[0:17, 0].max()) / 2
        self.height = max(self.chin - self.brow, 1.0)
        self.width = max(ab[0:17, 0].max() - ab[0:17, 0].min(), 1.0)
        self.points = ab

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        rel = np.asarray(xy, dtype=np.float64) - self.centre
        return np.stack([rel @ self.ex, rel @ self.ey], axis=1)

    def to_image(self, ab: np.ndarray) -> np.ndarray:
        ab = np.asarray(ab, dtype=np.float64)
        return self.centre + ab[:, :1] * self.ex + ab[:, 1:2] * self.ey


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (Andrew's monotone chain), counter-clockwise, no repeated point."""
    pts = sorted(set(map(tuple, np.round(points, 3))))
    if len(pts) < 3:
        return np.array(pts)

    def half(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(reversed(pts))
    return np.array(lower[:-1] + upper[:-1])


def _face_points(f: _FaceFrame) -> np.ndarray:
    raised_brows = f.points[17:27] - [0, FOREHEAD_LINE * f.height]
    return np.vstack([f.points, raised_brows])


def _head_points(f: _FaceFrame) -> np.ndarray:
    H, W = f.height, f.width
    t = np.linspace(0, np.pi, 25)
    top_y = f.brow + 0.1 * H
    cranium = np.stack([f.mid + HEAD_HALF_WIDTH * W * np.cos(t),
                        top_y - (HAIR_ABOVE_BROWS + 0.1) * H * np.sin(t)], axis=1)
    ear_line = f.points[33, 1]  # the ears reach from the brows to about the nose's base
    ears = [(f.mid + s * HEAD_HALF_WIDTH * W, ear_line) for s in (-1, 1)]
    neck = [(f.mid + s * NECK_HALF_WIDTH * W, f.chin + NECK_BELOW_CHIN * H) for s in (-1, 1)]
    return np.vstack([_face_points(f), cranium, ears, neck])


def _body_points(f: _FaceFrame, size: tuple[int, int]) -> np.ndarray:
    H, W = f.height, f.width
    far = f.chin + 2 * max(size) + H  # beyond the image's bottom for any tilt that still shows a face
    left_side = [(NECK_HALF_WIDTH, f.chin + 0.2 * H),
                 (SHOULDER_HALF_WIDTH, f.chin + SHOULDER_BELOW_CHIN * H),
                 (TORSO_HALF_WIDTH, far)]
    left = [(f.mid - half_width * W, y) for half_width, y in left_side]
    right = [(f.mid + half_width * W, y) for half_width, y in reversed(left_side)]
    return np.array(left + right)


def region_polygons(points68: np.ndarray, kind: MaskKind, size: tuple[int, int]) -> list[np.ndarray]:
    """The convex polygons (image pixels) whose union is the undilated region of `kind`."""
    f = _FaceFrame(points68)
    if kind == "face":
        shapes = [_hull(_face_points(f))]
    else:
        shapes = [_hull(_head_points(f))]
        if kind == "person":
            shapes.append(_body_points(f, size))
    return [f.to_image(s) for s in shapes]


# ---------------------------------------------------------------- masks
def _check(size, points68, kind, floor, latent_scale) -> np.ndarray:
    if kind not in KINDS:
        raise UserError(f"mask kind {kind!r}: use one of {', '.join(KINDS)}")
    if not 0 <= floor <= 1:
        raise UserError(f"mask floor {floor}: give a weight between 0 and 1 (e.g. 0.1)")
    if latent_scale < 1:
        raise ValueError(f"latent_scale {latent_scale}: must be at least 1 pixel")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"mask size {size}: give (width, height)")
    points = np.asarray(points68, dtype=np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise ValueError(f"points68: expected 68 finite (x, y) landmarks, got an array of shape {points.shape}")
    return points


def make_mask(size: tuple[int, int], points68: np.ndarray, kind: MaskKind, floor: float = 0.1,
              latent_scale: int = 8) -> Image.Image:
    """A soft loss-weight mask ("L", `size`): 255 over the region of `kind`, `floor` * 255 outside.

    The region is dilated by 2 latent cells and feathered by a Gaussian of half a cell, so that every
    latent cell touching the region keeps a weight of ~1 after sd-scripts' 1/8 area downscale."""
    points = _check(size, points68, kind, floor, latent_scale)
    w, h = int(size[0]), int(size[1])
    dilation = 2 * latent_scale
    region = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(region)
    for polygon in region_polygons(points, kind, (w, h)):
        xy = [tuple(p) for p in polygon]
        draw.polygon(xy, fill=255)
        # Dilation of a convex polygon by a disk: its outline drawn `dilation` wide, rounded at the corners.
        draw.line(xy + [xy[0]], fill=255, width=2 * dilation + 1, joint="curve")
        for x, y in xy:
            draw.ellipse((x - dilation, y - dilation, x + dilation, y + dilation), fill=255)
    soft = region.filter(ImageFilter.GaussianBlur(latent_scale / 2))
    weight = floor + (1 - floor) * (np.asarray(soft, dtype=np.float64) / 255)
    return Image.fromarray(np.clip(np.round(weight * 255), 0, 255).astype(np.uint8), "L")


def mask_for_photo(image: Image.Image, face_box: Sequence[float], kind: MaskKind, floor: float = 0.1,
                   latent_scale: int = 8) -> Image.Image:
    """The mask of `kind` for the face in `face_box` of `image` (landmarks found here)."""
    return make_mask(image.size, landmarks68(image, face_box), kind, floor, latent_scale)


def mirrored(mask: Image.Image) -> Image.Image:
    """The mask of a left-right mirrored copy of the image."""
    return ImageOps.mirror(mask)


def overlay(image: Image.Image, mask: Image.Image, strength: float = 0.7) -> Image.Image:
    """`image` with what the mask leaves out tinted (for the contact sheet): weight 1 shows the
    photo as it is, weight 0 is `strength` tint."""
    if image.size != mask.size:
        raise ValueError(f"mask size {mask.size} differs from the image's {image.size}")
    rgb = image.convert("RGB")
    tinted = Image.blend(rgb, Image.new("RGB", rgb.size, OUTSIDE_TINT), strength)
    return Image.composite(rgb, tinted, mask.convert("L"))


def floor_faces(mask: Image.Image, faces68: Sequence[np.ndarray], floor: float, latent_scale: int = 8) -> Image.Image:
    """`mask` with the `face` region of each other face (its 68 landmarks, in the mask's pixels) at `floor`:
    someone else in the photo is not learned as the person."""
    out = np.asarray(mask, dtype=np.float64)
    for points in faces68:
        region = np.asarray(make_mask(mask.size, points, "face", 0.0, latent_scale), dtype=np.float64) / 255
        out = np.minimum(out, 255 * (1 - (1 - floor) * region))
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8), "L")
