"""Photos read as the person sees them and training images written: listing a folder's images, decoding any
file (EXIF orientation, 16-bit, alpha, CMYK, palette, HEIC) to 8-bit RGB, naming why a file is unreadable,
resizing, and PNGs whose alpha channel is a training loss weight; `Upright`: a photo kept as stored, turned upright
one crop at a time."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# A PNG text chunk marking an alpha channel that holds a training loss weight (sd-scripts' alpha_mask),
# not transparency: readers take the colours as they are.
LOSS_WEIGHT_KEY, LOSS_WEIGHT_VALUE = "alpha", "loss weight"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff"}
CAPTION_SUFFIXES = {".txt", ".caption"}
# Training PNGs are read once (sd-scripts caches their latents): written fast. Huffman coding only, no string
# matching: on photos ~25 % faster than zlib level 1 and no larger (1024 px RGBA: 0.065 s, 1.38 MB vs 0.081 s, 1.63 MB).
PNG_FAST = {"compress_level": 1, "compress_type": 2}  # 2: zlib.Z_HUFFMAN_ONLY


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: 16/32-bit greyscale rescaled (not clipped), alpha over white,
    CMYK, palette and greyscale converted."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if im.mode == "F" and arr.max() <= 1.0:
            top = 1.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if im.mode == "P" and "transparency" in im.info or im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def decode(data: bytes) -> Image.Image:
    """A photo as the person sees it: EXIF orientation applied, 8-bit RGB. Raises on unreadable data.
    A training image whose alpha is a loss weight (see `save_with_loss_weight`) keeps its colours."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode == "RGBA" and im.info.get(LOSS_WEIGHT_KEY) == LOSS_WEIGHT_VALUE:
            return im.convert("RGB")
        return to_rgb(ImageOps.exif_transpose(im))  # a new image: the file is closed after this


def decode_reduced(data: bytes, min_side: int = 0) -> tuple[Image.Image, tuple[int, int]]:
    """`decode`, with a JPEG decoded at a reduced size (JPEG draft mode: 1/2, 1/4 or 1/8, far faster than the
    full size) whose short side stays at least `min_side` (0: full size); and the full-size photo's (width,
    height), upright, to map its pixels back."""
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation: turned a quarter
            w, h = h, w
        if min_side and im.format == "JPEG" and min(im.size) >= 2 * min_side and im.mode in ("RGB", "L"):
            k = min(im.size) / min_side
            im.draft(im.mode, (int(im.size[0] / k), int(im.size[1] / k)))
        im.load()
        if im.mode == "RGBA" and im.info.get(LOSS_WEIGHT_KEY) == LOSS_WEIGHT_VALUE:
            return im.convert("RGB"), (w, h)
        return to_rgb(ImageOps.exif_transpose(im)), (w, h)


# EXIF orientation → the transpose that shows the photo upright, and where an upright pixel (x, y) lies in the
# stored image of size (W, H)
TURNS = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT, lambda x, y, W, H: (W - x, y)),
    3: (Image.Transpose.ROTATE_180, lambda x, y, W, H: (W - x, H - y)),
    4: (Image.Transpose.FLIP_TOP_BOTTOM, lambda x, y, W, H: (x, H - y)),
    5: (Image.Transpose.TRANSPOSE, lambda x, y, W, H: (y, x)),
    6: (Image.Transpose.ROTATE_270, lambda x, y, W, H: (y, H - x)),
    7: (Image.Transpose.TRANSVERSE, lambda x, y, W, H: (W - y, H - x)),
    8: (Image.Transpose.ROTATE_90, lambda x, y, W, H: (W - y, x)),
}


class Upright:
    """A decoded photo kept as stored and shown upright one crop at a time: `crop(box)` (upright pixels) equals
    the EXIF-turned photo's crop, but only the crop is turned (turning a 12 MP photo costs ~0.06 s)."""

    def __init__(self, stored: Image.Image, orientation: int):
        self.stored, self.orientation = stored, orientation if orientation in TURNS else 1
        W, H = stored.size
        self.size = (H, W) if self.orientation in (5, 6, 7, 8) else (W, H)

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    def crop(self, box) -> Image.Image:
        if self.orientation == 1:
            return self.stored.crop(box)
        method, where = TURNS[self.orientation]
        W, H = self.stored.size
        (x0, y0), (x1, y1) = where(box[0], box[1], W, H), where(box[2], box[3], W, H)
        stored = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        region = self.stored if stored == (0, 0, W, H) else self.stored.crop(stored)
        return region.transpose(method)


def decode_stored(data: bytes, min_side: int = 0) -> Upright:
    """`decode_reduced` without turning the whole photo: an `Upright` whose crops are turned (a photo whose alpha is
    a loss weight, or in a mode other than RGB, is decoded as `decode_reduced` does, already upright)."""
    im = Image.open(io.BytesIO(data))  # in memory: nothing to close
    orientation = im.getexif().get(0x0112, 1)
    if im.format != "JPEG" or im.mode != "RGB" or orientation not in TURNS:
        return Upright(decode_reduced(data, min_side)[0], 1)
    if min_side and min(im.size) >= 2 * min_side:
        k = min(im.size) / min_side
        im.draft(im.mode, (int(im.size[0] / k), int(im.size[1] / k)))
    im.load()
    return Upright(im if im.mode == "RGB" else im.convert("RGB"), orientation)


def save_with_loss_weight(image: Image.Image, mask: Image.Image, path: Path) -> None:
    """`image` as an RGBA PNG whose alpha is `mask` (sd-scripts' `alpha_mask` reads it as the loss
    weight, value / 255), marked so that this package reads the colours back unchanged."""
    from PIL.PngImagePlugin import PngInfo


    info = PngInfo()
    info.add_text(LOSS_WEIGHT_KEY, LOSS_WEIGHT_VALUE)
    with_alpha(image, mask).save(path, pnginfo=info, **PNG_FAST)


def load_rgb(path: Path) -> Image.Image:
    return decode(path.read_bytes())


def unreadable_reason(path: Path, err: Exception) -> str:
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    text = str(err)
    if "truncated" in text.lower() or isinstance(err, (EOFError, SyntaxError)):
        return f"truncated or damaged ({text or type(err).__name__})"
    if isinstance(err, Image.DecompressionBombError):
        return "too many pixels (over Pillow's safety limit)"
    return f"not a readable image ({type(err).__name__}: {text[:120]})"


def with_alpha(image: Image.Image, mask: Image.Image) -> Image.Image:
    """`image` as RGBA with `mask` as its alpha channel (what sd-scripts' `alpha_mask` reads);
    the colours are kept unchanged under every alpha value."""
    if image.size != mask.size:
        raise ValueError(f"mask size {mask.size} differs from the image's {image.size}")
    rgba = image.convert("RGB")
    rgba.putalpha(mask.convert("L"))
    return rgba


def resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    factor = min(image.width // size[0], image.height // size[1])
    if factor >= 2:  # cheap integer shrink first, LANCZOS for the last step
        image = image.reduce(factor)
    return image.resize(size, Image.LANCZOS)
