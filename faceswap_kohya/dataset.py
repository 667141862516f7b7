"""Photos → Kohya's folder layout (`img/10_myface woman/` + `.txt` captions, `reg/1_woman/`).

The input photos are only read: every image is decoded (EXIF orientation applied, converted to RGB)
and written anew into the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

from .errors import UserError
from .render import RunLayout, fill, instance_dir, reg_dir
from .schema import Preset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff"}

try:  # phones write HEIC
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency
    pass


@dataclass
class LayoutSummary:
    instance_dir: Path
    photos: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    reg_dir: Path | None = None
    reg_images: int = 0


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


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return im.convert("RGB") if im.mode != "RGB" else im.copy()


def copy_images(sources: list[Path], dest: Path, caption_for, summary: LayoutSummary) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for i, src in enumerate(sources):
        try:
            image = load_rgb(src)
        except Exception as e:  # noqa: BLE001 - any decoder error means "unusable photo"
            summary.skipped.append((src, f"unreadable ({type(e).__name__})"))
            continue
        out = dest / f"{i:03d}_{src.stem}.png"
        image.save(out)
        out.with_suffix(".txt").write_text(caption_for(src) + "\n", encoding="utf-8")
        written.append(out)
    return written


def layout(preset: Preset, run: RunLayout) -> LayoutSummary:
    """The simple form: every photo copied with a `trigger class` caption (or its own .txt in `files` mode)."""
    photos = check_folder(preset.dataset.images, "dataset.images")
    captions = preset.dataset.captions
    base = preset.instance_tokens

    def caption(src: Path) -> str:
        own = src.with_suffix(".txt")
        if captions.mode == "files" and own.is_file():
            text = own.read_text(encoding="utf-8").strip()
            return text if text.startswith(base) else f"{base}, {text}"
        return fill(captions.template, preset)

    summary = LayoutSummary(instance_dir(preset, run))
    summary.photos = copy_images(list_images(photos), summary.instance_dir, caption, summary)
    if not summary.photos:
        raise UserError(f"dataset.images: none of the photos in {photos} could be read")
    if preset.regularization.images:
        reg = check_folder(preset.regularization.images, "regularization.images")
        summary.reg_dir = reg_dir(preset, run)
        summary.reg_images = len(copy_images(list_images(reg), summary.reg_dir, lambda _: preset.subject.class_word, summary))
    return summary
