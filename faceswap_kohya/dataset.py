"""Photos → a checked Kohya dataset in the run folder.

`img/10_myface woman/` (face crops + `.txt` captions starting with the instance tokens), `reg/1_woman/`
(class images with class-only captions), `contact_sheet.png` and `dataset.md` / `dataset.json`: what was
kept, cropped, augmented, dropped and why. The input photos are only read: every image is decoded
(EXIF orientation applied, converted to 8-bit RGB) and written anew into the run folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from .errors import UserError
from .regularization import balance_advice
from .render import RunLayout, instance_dir, reg_dir
from .schema import Preset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff"}
CAPTION_SUFFIXES = {".txt", ".caption"}
MIN_PHOTOS, FEW_PHOTOS, MANY_PHOTOS = 3, 5, 50
# Threads overlap decoding, resizing and encoding (Pillow releases the GIL); face detection runs one at a time.
WORKERS = min(6, (os.cpu_count() or 1) + 1)
NEAR_DUPLICATE_BITS = 4  # perceptual-hash bits that may differ between two copies of one photo
# Square crop around dlib's face box (which spans eyebrows to chin): side = k * box width, centre
# moved down by `dy` box heights (negative: up).
FRAMING = {"face": (2.2, -0.1), "head_and_shoulders": (3.6, 0.45)}
RELIGHT = [  # (name, brightness, contrast, warmth: red/blue gain)
    ("brighter", 1.18, 1.05, 1.0),
    ("darker-warm", 0.85, 1.08, 1.07),
    ("cool-soft", 1.05, 0.88, 0.93),
]

try:  # phones write HEIC
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency
    pass


# ---------------------------------------------------------------- reading photos
def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def check_folder(folder: str | None, field_name: str) -> Path:
    """The folder exists and holds at least one image, else a UserError naming the field."""
    from .samples import resolve_images

    folder = resolve_images(folder)
    if not folder:
        raise UserError(f"{field_name} is not set: give the folder of photos, e.g. `{field_name}=~/photos`")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise UserError(f"{field_name}: folder {path} does not exist")
    if not list_images(path):
        raise UserError(f"{field_name}: {path} has no photos ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return path


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
    """A photo as the person sees it: EXIF orientation applied, 8-bit RGB. Raises on unreadable data."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return to_rgb(ImageOps.exif_transpose(im))  # a new image: the file is closed after this


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


def sort_folder(folder: Path) -> tuple[list[Path], list[dict]]:
    """(photos, other files with why they are not photos). Caption files beside photos are recognised."""
    photos, other = [], []
    entries = sorted(folder.iterdir())
    stems = {p.stem for p in entries if p.suffix.lower() in IMAGE_SUFFIXES}
    for p in entries:
        if p.name.startswith("."):
            continue
        if p.is_dir():
            other.append({"file": p.name, "why": "a folder (sub-folders are not read)"})
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            photos.append(p)
        elif p.suffix.lower() in CAPTION_SUFFIXES and p.stem in stems:
            other.append({"file": p.name, "why": "caption of a photo"})
        else:
            other.append({"file": p.name, "why": "not a photo (unknown file type)"})
    return photos, other


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
    outputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    identity: Optional[float] = None  # median score against the other photos

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
        if self.outputs:
            d["outputs"] = self.outputs
            d["caption"] = self.caption
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


def resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    factor = min(image.width // size[0], image.height // size[1])
    if factor >= 2:  # cheap integer shrink first, LANCZOS for the last step
        image = image.reduce(factor)
    return image.resize(size, Image.LANCZOS)


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


def augmentations(kept: list[Photo], d) -> list[tuple[int, str, Image.Image]]:
    """(photo index, kind, image): mirrored copies, then relit ones, of the photos with the largest
    faces (the clearest views), never of one that looks like someone else; no mirrors with flip_aug."""
    from .faces import SAME_PERSON_SCORE

    def rank(i):
        p = kept[i]
        return p.identity is not None and p.identity < SAME_PERSON_SCORE, -(p.faces[0].area if p.faces else 0)

    ranked = sorted(range(len(kept)), key=rank)
    mirrors = [] if d.flip_aug else ranked[:d.augment.mirror]
    return ([(i, "mirror", ImageOps.mirror(kept[i].image)) for i in mirrors]
            + [(i, *relit(kept[i].image, n)) for n, i in enumerate(ranked[:d.augment.relight])])


def read_photo(path: Path, framing: str, resolution: int, max_upscale: float, embedder) -> Photo:
    """Decode, hash, find faces, embed the main face and prepare the training image of one photo."""
    import imagehash

    from . import faces

    photo = Photo(path)
    try:
        data = path.read_bytes()
        rgb = decode(data)
    except Exception as e:  # noqa: BLE001 - any decoder error means "unusable photo"
        photo.drop(unreadable_reason(path, e))
        return photo
    photo.size, photo.sha256 = rgb.size, hashlib.sha256(data).hexdigest()
    small, _ = faces.small_copy(rgb, faces.DETECT_SIDE)
    photo.phash = imagehash.phash(small)
    if embedder is not None:
        photo.faces = faces.detect(rgb)
        if photo.faces:
            photo.embedding = embedder.embed(rgb, photo.faces[0])
        elif framing != "as_is":
            photo.drop("no face found (a turned, covered or very small face; or no person)")
            return photo
        else:
            photo.notes.append("no face found")
    if len(photo.faces) > 1:
        photo.notes.append(f"{len(photo.faces)} faces: the largest is taken as the person, the others are in the crop or cut off")
    photo.image = frame(photo, rgb, framing, resolution, max_upscale)
    return photo


# ---------------------------------------------------------------- the whole folder
@dataclass
class LayoutSummary:
    instance_dir: Path
    photos: list[Path] = field(default_factory=list)  # training images written (augmented copies included)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # input photos not used, and why
    reg_dir: Optional[Path] = None
    reg_images: int = 0
    source: Optional[Path] = None
    entries: list[Photo] = field(default_factory=list)
    augmented: list[dict] = field(default_factory=list)
    other_files: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    regularization: dict = field(default_factory=dict)
    embedder: str = ""
    seconds: float = 0.0
    contact_sheet: Optional[Path] = None
    report_md: Optional[Path] = None
    report_json: Optional[Path] = None

    def brief(self, root: Path) -> list[str]:
        """What a person should read in the terminal: counts, warnings, photos not used, where to look."""
        kept = sum(e.status == "kept" for e in self.entries)
        lines = [f"run folder: {root}",
                 f"dataset: {kept} of {len(self.entries)} photos used, {len(self.augmented)} augmented copies "
                 f"→ {self.instance_dir.relative_to(root)} ({len(self.photos)} images)"]
        if self.reg_dir:
            lines.append(f"regularization: {self.reg_images} images → {self.reg_dir.relative_to(root)}")
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"not used: {src.name}: {why}" for src, why in self.skipped]
        lines += [f"note: {e.source.name}: {n}" for e in self.entries if e.status == "kept" for n in e.notes]
        lines.append(f"look before training: {self.contact_sheet}\nsummary: {self.report_md}")
        return lines

    def to_dict(self, root: Path) -> dict:
        rel = lambda p: str(p.relative_to(root)) if p else None  # noqa: E731
        kept = [e for e in self.entries if e.status == "kept"]
        return {
            "input": str(self.source),
            "instance_dir": rel(self.instance_dir),
            "reg_dir": rel(self.reg_dir),
            "counts": {"photos": len(self.entries), "used": len(kept), "dropped": len(self.entries) - len(kept),
                       "augmented": len(self.augmented), "training_images": len(self.photos),
                       "regularization_images": self.reg_images},
            "face_embedder": self.embedder,
            "warnings": self.warnings,
            "photos": [e.to_dict() for e in self.entries],
            "augmented": self.augmented,
            "not_photos": self.other_files,
            "regularization": self.regularization,
            "seconds": round(self.seconds, 2),
        }


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
    from . import faces

    with_face = [p for p in photos if p.status == "kept" and p.embedding is not None]
    scores = faces.median_scores([p.embedding for p in with_face], embedder.metric)
    for p, score in zip(with_face, scores):
        p.identity = score
        if score < faces.SAME_PERSON_SCORE:
            p.notes.append(f"the face does not look like the others (identity score {score:.2f} < "
                           f"{faces.SAME_PERSON_SCORE}): is this someone else? Remove it if so")


def captioner(preset: Preset, echo, missing: list[str]) -> Callable[[Photo], str]:
    """Photo → caption, per `dataset.captions.mode`; photos without their own caption file go into `missing`."""
    from . import captions

    c, s = preset.dataset.captions, preset.subject
    if c.mode == "blip":
        echo(f"captions: loading BLIP {c.blip_model}")
        blip = captions.BlipCaptioner(c.blip_model)
        return lambda p: captions.with_trigger(blip(p.image), s.trigger, s.class_word)
    template = captions.template_caption(c.template, s.trigger, s.class_word)
    if c.mode == "template":
        return lambda p: template

    def from_file(p: Photo) -> str:
        own = captions.own_caption(p.source)
        if own is None:
            missing.append(p.source.name)
            return template
        return captions.with_trigger(own, s.trigger, s.class_word)

    return from_file


def save_image(image: Image.Image, path: Path, caption: str) -> None:
    image.save(path, compress_level=1)
    path.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")


def count_warnings(preset: Preset, n: int) -> list[str]:
    d, c = preset.dataset, preset.dataset.captions
    out = []
    if n < FEW_PHOTOS:
        out.append(f"only {n} usable photos: 5-10 varied photos (angles, light, expressions) give a better likeness")
    if n > MANY_PHOTOS:
        out.append(f"{n} photos: more than {MANY_PHOTOS} rarely helps a face LoRA and makes epochs long; "
                   "consider picking the best, or lowering dataset.repeats")
    if c.shuffle and c.keep_tokens < 1:
        out.append("captions.shuffle is on with keep_tokens 0: the trigger may be moved away from the front; set keep_tokens: 1")
    if d.flip_aug and d.augment.mirror:
        out.append("flip_aug is on, so no mirrored copies were made (Kohya flips images at random)")
    return out


def layout(preset: Preset, run: RunLayout, echo: Callable[[str], None] = lambda s: None) -> LayoutSummary:
    """Check, crop, augment and caption the photos into the run folder; write the contact sheet and summary.

    Raises UserError when fewer than 3 photos are usable (naming each photo not used and why).
    """
    from . import faces

    start = time.monotonic()
    d = preset.dataset
    source = check_folder(d.images, "dataset.images")
    paths, other = sort_folder(source)
    summary = LayoutSummary(instance_dir(preset, run), source=source, other_files=other)

    embedder = None
    try:
        embedder = faces.get_embedder("dlib")
        summary.embedder = embedder.name
    except UserError as e:
        if d.framing != "as_is":
            raise UserError(f"dataset.framing {d.framing} needs face detection: {e} (or set dataset.framing=as_is)") from None
        summary.warnings.append(f"face checks skipped: {e}")

    no_caption: list[str] = []
    caption = captioner(preset, echo, no_caption)  # first: a missing BLIP model fails before any work
    echo(f"reading {len(paths)} photos from {source}")
    with ThreadPoolExecutor(WORKERS) as pool:
        photos = list(pool.map(lambda p: read_photo(p, d.framing, d.resolution, d.max_upscale, embedder), paths))
    summary.entries = photos
    mark_duplicates(photos)
    if embedder is not None:
        check_identity(photos, embedder)
    kept = [p for p in photos if p.status == "kept"]
    summary.skipped = [(p.source, p.reason) for p in photos if p.status == "dropped"]
    if len(kept) < MIN_PHOTOS:
        why = "".join(f"\n  {src.name}: {reason}" for src, reason in summary.skipped)
        raise UserError(f"dataset.images: only {len(kept)} usable photo{'s' if len(kept) != 1 else ''} in {source} "
                        f"(at least {MIN_PHOTOS} needed, 5-10 recommended){why}")
    summary.warnings += count_warnings(preset, len(kept))
    small = [f"{p.source.name} {p.size[0]}×{p.size[1]}" for p in kept if min(p.size) < d.resolution]
    if small:
        summary.warnings.append(f"smaller than the training resolution {d.resolution} px: " + ", ".join(small))

    out_dir = summary.instance_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for i, p in enumerate(kept, start=1):
        p.caption = caption(p)
        name = output_name(i, p.source) + ".png"
        p.outputs.append(name)
        jobs.append((p.image, out_dir / name, p.caption))
    if no_caption:
        summary.warnings.append(f"captions mode files: no .txt beside {', '.join(no_caption)}; used the template caption")
    for i, kind, image in augmentations(kept, d):
        p = kept[i]
        name = output_name(i + 1, p.source, kind) + ".png"
        p.outputs.append(name)
        summary.augmented.append({"file": name, "from": p.source.name, "kind": kind})
        jobs.append((image, out_dir / name, p.caption))
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda job: save_image(*job), jobs))
    summary.photos = [path for _, path, _ in jobs]

    if preset.regularization.images:
        layout_regularization(preset, run, summary, len(kept) + len(summary.augmented))
    summary.seconds = time.monotonic() - start
    write_reports(summary, run, jobs)
    return summary


def layout_regularization(preset: Preset, run: RunLayout, summary: LayoutSummary, n_train: int) -> None:
    """Class images → `reg/<repeats>_<class>/` with class-only captions, and a balance check."""
    r, d = preset.regularization, preset.dataset
    folder = check_folder(r.images, "regularization.images")
    paths, _ = sort_folder(folder)
    summary.reg_dir = reg_dir(preset, run)
    summary.reg_dir.mkdir(parents=True, exist_ok=True)
    skipped = []

    def one(item):
        i, path = item
        try:
            rgb = load_rgb(path)
        except Exception as e:  # noqa: BLE001
            skipped.append({"file": path.name, "reason": unreadable_reason(path, e)})
            return 0
        scale = min(1.0, d.resolution / min(rgb.size))
        image = resized(rgb, (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))))
        save_image(image, summary.reg_dir / (output_name(i, path) + ".png"), preset.subject.class_word)
        return 1

    with ThreadPoolExecutor(WORKERS) as pool:
        summary.reg_images = sum(pool.map(one, enumerate(paths, start=1)))
    summary.skipped += [(folder / s["file"], "regularization image: " + s["reason"]) for s in skipped]
    train_steps, reg_steps = n_train * d.repeats, summary.reg_images * r.repeats
    advice = balance_advice(preset, n_train, summary.reg_images)
    if advice:
        summary.warnings.append(advice)
    summary.regularization = {"folder": str(folder), "images": summary.reg_images, "repeats": r.repeats,
                              "skipped": skipped, "balance": {"training": train_steps, "regularization": reg_steps}}


# ---------------------------------------------------------------- reports
def contact_sheet(items: list[tuple[Image.Image, str, str, str]], thumb: int = 256, columns: int = 5) -> Image.Image:
    """A grid of (image, title, warning, caption): title, the warning in red (if any) and the wrapped caption under each thumbnail."""
    from PIL import ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    line_h, lines_per_cell = 16, 5
    cols = max(1, min(columns, len(items)))
    rows = -(-len(items) // cols)
    cell_w, cell_h = thumb + 12, thumb + 12 + line_h * lines_per_cell
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    colours = {"title": (40, 40, 160), "warning": (200, 0, 0), "caption": "black"}
    for k, (image, title, warning, text) in enumerate(items):
        x, y = (k % cols) * cell_w + 6, (k // cols) * cell_h + 6
        scale = thumb / max(image.size)  # small training images (e.g. 64 px) are shown enlarged too
        im = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                          Image.LANCZOS if scale < 1 else Image.NEAREST)
        sheet.paste(im, (x + (thumb - im.width) // 2, y + (thumb - im.height) // 2))
        lines = [("title", title)] + [("warning", w) for w in wrap(warning, draw, font, thumb)]
        lines += [("caption", line) for line in wrap(text, draw, font, thumb)]
        for j, (kind, line) in enumerate(lines[:lines_per_cell]):
            draw.text((x, y + thumb + 4 + j * line_h), line, fill=colours[kind], font=font)
    return sheet


def wrap(text: str, draw, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    return lines + ([line] if line else [])


def markdown(summary: LayoutSummary, data: dict) -> str:
    c = data["counts"]
    out = [f"# Dataset: {c['used']} of {c['photos']} photos used",
           "",
           f"- input: `{data['input']}` (read only)",
           f"- training images: {c['training_images']} in `{data['instance_dir']}` "
           f"({c['used']} photos + {c['augmented']} augmented copies)"]
    if data["reg_dir"]:
        out.append(f"- regularization: {c['regularization_images']} images in `{data['reg_dir']}`")
    if summary.embedder:
        out.append(f"- faces: dlib ({summary.embedder}); identity score = similarity to the other photos, 0-1")
    out.append(f"- time: {data['seconds']} s; contact sheet: `contact_sheet.png`")
    if data["warnings"]:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in data["warnings"]]
    if summary.skipped:
        out += ["", "## Not used", ""] + [f"- `{src.name}`: {why}" for src, why in summary.skipped]
    out += ["", "## Used", "", "| photo | size | faces | identity | crop | images | caption |", "|---|---|---|---|---|---|---|"]
    for e in summary.entries:
        if e.status != "kept":
            continue
        crop = f"{e.crop[2] - e.crop[0]} px ×{e.upscale:.2f}" if e.crop else ""
        ident = f"{e.identity:.2f}" if e.identity is not None else ""
        out.append(f"| `{e.source.name}` | {e.size[0]}×{e.size[1]} | {len(e.faces)} | {ident} | {crop} "
                   f"| {', '.join(e.outputs)} | {e.caption} |")
    notes = [(e.source.name, n) for e in summary.entries if e.status == "kept" for n in e.notes]
    if notes:
        out += ["", "## Notes", ""] + [f"- `{name}`: {n}" for name, n in notes]
    if summary.augmented:
        out += ["", "## Augmented", ""] + [f"- `{a['file']}`: {a['kind']} of `{a['from']}`" for a in summary.augmented]
    if summary.other_files:
        out += ["", "## Other files in the folder (not photos)", ""] + [f"- `{o['file']}`: {o['why']}" for o in summary.other_files]
    return "\n".join(out) + "\n"


def at_a_glance(photo: Photo) -> str:
    """The problems of a photo in a few words, for the contact sheet."""
    from .faces import SAME_PERSON_SCORE

    out = []
    if photo.identity is not None and photo.identity < SAME_PERSON_SCORE:
        out.append(f"someone else? (identity {photo.identity:.2f})")
    if len(photo.faces) > 1:
        out.append(f"{len(photo.faces)} faces")
    if any("max_upscale" in n for n in photo.notes):
        out.append(f"low resolution (enlarged x{photo.upscale:g})")
    return "! " + ", ".join(out) if out else ""


def write_reports(summary: LayoutSummary, run: RunLayout, jobs) -> None:
    items = []
    augmented = {a["file"]: a for a in summary.augmented}
    source = {name: e for e in summary.entries for name in e.outputs}
    for image, path, caption in jobs:
        tag = f" ({augmented[path.name]['kind']})" if path.name in augmented else ""
        items.append((image, path.name + tag, "" if tag else at_a_glance(source[path.name]), caption))
    summary.contact_sheet = run.root / "contact_sheet.png"
    contact_sheet(items).save(summary.contact_sheet, compress_level=1)
    data = summary.to_dict(run.root)
    summary.report_json = run.root / "dataset.json"
    summary.report_json.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    summary.report_md = run.root / "dataset.md"
    summary.report_md.write_text(markdown(summary, data), encoding="utf-8")
