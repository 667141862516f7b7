"""A folder of photos as a command names it: checked (it exists, holds images) and sorted into photos and the
other files beside them, each with why it is not a photo."""

from __future__ import annotations

from pathlib import Path

from faceswap_kohya.data.samples import resolve_images
from faceswap_kohya.errors import UserError
from faceswap_kohya.files.images import CAPTION_SUFFIXES, IMAGE_SUFFIXES, list_images


def check_folder(folder: str | None, field_name: str) -> Path:
    """The folder exists and holds at least one image, else a UserError naming the field."""
    folder = resolve_images(folder)
    if not folder:
        raise UserError(f"{field_name} is not set: give the folder of photos, e.g. `{field_name}=~/photos`")
    path = Path(folder).expanduser()
    if path.is_file():
        raise UserError(f"{field_name}: {path} is a file; give the folder that holds the photos")
    if not path.is_dir():
        raise UserError(f"{field_name}: folder {path} does not exist")
    try:
        found = list_images(path)
    except OSError as e:
        raise UserError(f"{field_name}: cannot read {path} ({e.strerror})") from None
    if not found:
        raise UserError(f"{field_name}: {path} has no photos ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return path


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
