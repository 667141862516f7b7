"""Uploaded photos are hostile until checked: one or more image files or one `.zip`, read in memory, every check done
before anything is written (size, photo count, image type by content, zip entries that leave their folder, symlinks,
zip bombs by total size and ratio, files that are not images, named); then written into the job's folder only."""

from __future__ import annotations

import io
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from faceswap_kohya.files.images import decode

MAX_PHOTOS = 200
MAX_RATIO = 100  # uncompressed / compressed, per entry and overall: photos barely compress, bombs compress a lot
MAX_PIXELS = 60_000_000
FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "HEIF": ".heic"}
IGNORED = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$)")


class UploadError(Exception):
    """A bad upload: the HTTP status, the message and the form field."""

    def __init__(self, status: int, message: str, field: str = "photos"):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


@dataclass
class Photo:
    name: str  # the name as uploaded (for messages)
    data: bytes
    suffix: str  # from the content


def image_suffix(data: bytes) -> str | None:
    """The file suffix of an image by its content (not its name); None when it is no image Pillow reads."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            if im.width * im.height > MAX_PIXELS:
                return None
        decode(data)  # reads it whole: a truncated or damaged file fails here, not in the trainer
    except Exception:  # noqa: BLE001 - any decoder failure means "not an image we can train on"
        return None
    return FORMATS.get(fmt)


def safe_member(name: str) -> bool:
    """A zip entry name that stays inside the folder it is unpacked into."""
    if not name or "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return False
    return ".." not in PurePosixPath(name).parts


def read_zip(name: str, data: bytes, limit: int) -> list[tuple[str, bytes]]:
    """The files of a zip upload, checked before any is unpacked (into memory only)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UploadError(400, f"photos: {name} is not a readable zip file ({e})") from None
    files = [i for i in infos if not i.is_dir() and not IGNORED.search(i.filename)]
    escaping = [i.filename for i in infos if not safe_member(i.filename)]
    if escaping:
        raise UploadError(400, f"photos: {name}: zip entries point outside their folder: {', '.join(escaping[:5])}")
    links = [i.filename for i in infos if stat.S_ISLNK(i.external_attr >> 16)]
    if links:
        raise UploadError(400, f"photos: {name}: zip entries are symbolic links: {', '.join(links[:5])}")
    if len(files) > MAX_PHOTOS:
        raise UploadError(413, f"photos: {name} holds {len(files)} files; at most {MAX_PHOTOS} photos per training")
    total = sum(i.file_size for i in files)
    if total > limit:
        raise UploadError(413, f"photos: {name} unpacks to {total / 2**20:.1f} MiB, over the limit of "
                               f"{limit / 2**20:.0f} MiB (--max-upload-mb)")
    packed = sum(i.compress_size for i in files)
    bomb = [i.filename for i in files if i.file_size > MAX_RATIO * max(i.compress_size, 1) and i.file_size > 2**20]
    if bomb or (total > 2**20 and total > MAX_RATIO * max(packed, 1)):
        raise UploadError(413, f"photos: {name} looks like a zip bomb (compressed over {MAX_RATIO}:1"
                               f"{': ' + ', '.join(bomb[:5]) if bomb else ''})")
    out, read = [], 0
    for i in files:
        with archive.open(i) as f:
            content = f.read(i.file_size + 1)  # the header's size is a claim: read no more than it said
        read += len(content)
        if len(content) > i.file_size or read > limit:
            raise UploadError(413, f"photos: {name}: {i.filename} is larger than its zip header says")
        out.append((i.filename, content))
    return out


def check_photos(files: list[tuple[str, bytes]], limit: int, max_photos: int = MAX_PHOTOS) -> list[Photo]:
    """Uploaded (name, bytes): image files, or one zip of them. Every problem raises one UploadError."""
    if not files:
        raise UploadError(400, "photos: give one or more photos (JPEG, PNG, WebP), or one .zip of them")
    zips = [(n, d) for n, d in files if d[:4] == b"PK\x03\x04" or n.lower().endswith(".zip")]
    if zips and len(files) > 1:
        raise UploadError(400, "photos: give image files or one .zip, not both (or several zips)")
    if zips:
        files = read_zip(zips[0][0], zips[0][1], limit)
        if not files:
            raise UploadError(400, f"photos: {zips[0][0]} holds no files")
    if len(files) > max_photos:
        raise UploadError(413, f"photos: {len(files)} files; at most {max_photos} photos per training")
    photos, bad = [], []
    for name, data in files:
        suffix = image_suffix(data)
        if suffix is None:
            bad.append(name)
        else:
            photos.append(Photo(name, data, suffix))
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise UploadError(422, f"photos: not images (by their content): {shown}; give JPEG, PNG or WebP photos")
    return photos


def safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", PurePosixPath(name).stem)[:60].strip("_")
    return stem or "photo"


def write_photos(photos: list[Photo], folder: Path) -> list[Path]:
    """Into `folder` (made here) as `NNN-<name><suffix by content>`: no uploaded name reaches the file system as is."""
    folder.mkdir(parents=True, exist_ok=False)
    written = []
    for n, p in enumerate(photos, 1):
        path = folder / f"{n:03d}-{safe_stem(p.name)}{p.suffix}"
        path.write_bytes(p.data)
        written.append(path)
    return written
