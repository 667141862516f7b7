"""A dataset already laid out Kohya's way, read as sd-scripts reads it.

`img/10_ohwx man/` is one subset: 10 repeats, class tokens "ohwx man" (the first word the trigger, the
rest the class), a `.txt` caption beside each photo (its first line; without one, the class tokens).
`dataset.images` may be such a `train_data_dir` (several folders → several subsets), one such folder, or a
plain folder of photos (not handled here). Regularization folders (`reg/1_man/`) are read the same way,
from `regularization.images` or, when that is unset, from a `reg/` folder beside the `train_data_dir`.

Folder names follow `generate_dreambooth_subsets_config_by_subdirs` (library/config_util.py): split at
"_", the first part an int (the repeats), the rest joined with "_" (the class tokens). Captions follow
`DreamBoothDataset.read_caption` (library/train_util.py) with kohya_ss' caption extension `.txt`.
Where sd-scripts skips a folder with a warning, this module stops with one clear message. The user's
folders are only read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pydantic import ValidationError

from faceswap_kohya.config.schema import Preset, Subject, Subset
from faceswap_kohya.data.samples import resolve_images
from faceswap_kohya.errors import UserError
from faceswap_kohya.files.images import IMAGE_SUFFIXES, list_images
from faceswap_kohya.runs.layout import subset_dir

# sd-scripts' IMAGE_EXTENSIONS (train_util.py): matched case-sensitively by glob, so `.Jpg` is not read.
SD_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".PNG", ".JPG", ".JPEG", ".WEBP", ".BMP"}
CAPTION_EXTENSION = ".txt"  # kohya_ss' default; sd-scripts' own default is `.caption`
MAX_REPEATS = 1000
EXAMPLE = "`N_<trigger> <class>`, e.g. `10_ohwx man`"


# ---------------------------------------------------------------- folder names
def parse_name(folder: Path, field_name: str) -> tuple[int, str]:
    """(repeats, class tokens) of a folder named `N_<tokens>`, or one UserError saying what to rename."""
    head, sep, tokens = folder.name.partition("_")
    try:
        repeats = int(head) if sep else None
    except ValueError:
        repeats = None
    if repeats is None:
        raise UserError(f"{field_name}: folder {folder} is not named Kohya's way {EXAMPLE} (sd-scripts would skip it): "
                        "rename it, or move it out")
    if repeats < 1:
        raise UserError(f"{field_name}: folder {folder} has {repeats} repeats (sd-scripts skips folders with fewer "
                        f"than 1): rename it to `1_{tokens}` or more, or move it out")
    if repeats > MAX_REPEATS:
        raise UserError(f"{field_name}: folder {folder} reads as {repeats} repeats (more than {MAX_REPEATS}): "
                        f"if it is a plain folder of photos, rename it so it does not start with a number and '_'")
    if not tokens.strip():
        raise UserError(f"{field_name}: folder {folder} has no tokens after `{head}_`: name it {EXAMPLE}")
    return repeats, tokens


def is_kohya_name(name: str) -> bool:
    return bool(re.match(r"^\s*[+-]?\d+_", name))


def kohya_subsets(folder: Path, field_name: str) -> list[Subset]:
    """The subsets of a Kohya `train_data_dir` or of one `N_<tokens>` folder; [] for a plain folder of photos."""
    photos = list_images(folder)
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if photos and is_kohya_name(folder.name):  # one Kohya folder, given directly
        members = [folder]
    elif photos:
        if any(is_kohya_name(d.name) for d in subdirs):
            raise UserError(f"{field_name}: {folder} holds photos and Kohya folders ({', '.join(d.name for d in subdirs)}): "
                            "point it at the folder holding the `N_<tokens>` folders, or at a plain folder of photos")
        return []
    elif subdirs:
        members = subdirs
    elif is_kohya_name(folder.name):
        members = [folder]
    else:
        return []
    subsets = []
    for member in members:
        try:
            repeats, tokens = parse_name(member, field_name)
        except UserError as e:
            if member.name in ("img", "reg") and not is_kohya_name(folder.name):
                raise UserError(f"{e} (a kohya_ss project folder? point {field_name} at its {member.name}/ folder)") from None
            raise
        if not list_images(member):
            raise UserError(f"{field_name}: Kohya folder {member} has no photos ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                            "sd-scripts would skip it: add photos, or remove the folder")
        subsets.append(Subset(folder=str(member), repeats=repeats, class_tokens=tokens))
    return subsets


def train_data_dir(subsets: list[Subset]) -> Path:
    """The folder holding the instance folders (sd-scripts' `train_data_dir`)."""
    return Path(os.path.commonpath([str(Path(s.folder).parent) for s in subsets]))


def check_subsets(subsets: list[Subset], field_name: str) -> None:
    for i, s in enumerate(subsets):
        folder = Path(s.folder)
        if not folder.is_dir():
            raise UserError(f"{field_name}[{i}].folder: folder {folder} does not exist")
        if not list_images(folder):
            raise UserError(f"{field_name}[{i}].folder: {folder} has no photos")
    names = [subset_dir(Path(), s).name for s in subsets]
    if len(set(names)) < len(names):
        raise UserError(f"{field_name}: two folders have the same repeats and class tokens ({names}); merge them")


# ---------------------------------------------------------------- captions
@dataclass(frozen=True)
class Caption:
    text: str
    origin: str  # "file", "tokens" (no caption file), "empty file", "other extension"


def sd_scripts_caption(photo: Path, class_tokens: str) -> Optional[str]:
    """What sd-scripts trains `photo` with (None: it stops, as for an empty caption file)."""
    path = photo.with_suffix(CAPTION_EXTENSION)
    if not path.is_file():
        return class_tokens
    lines = read_lines(path)
    return lines[0].strip() if lines else None


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        raise UserError(f"{path}: caption file is not UTF-8 text (sd-scripts stops on it too); save it as UTF-8") from None


def our_caption(photo: Path, class_tokens: str) -> Caption:
    """sd-scripts' caption, except that an empty caption becomes the class tokens and a `.caption` file is read too."""
    for suffix in (CAPTION_EXTENSION, ".caption"):
        path = photo.with_suffix(suffix)
        if path.is_file():
            lines = read_lines(path)
            first = lines[0].strip() if lines else ""
            if not first:
                return Caption(class_tokens, "empty file")
            return Caption(first, "file" if suffix == CAPTION_EXTENSION else "other extension")
    return Caption(class_tokens, "tokens")


def lacks_trigger(caption: str, trigger: str) -> bool:
    return not re.search(rf"\b{re.escape(trigger)}\b", caption, re.I)


# ---------------------------------------------------------------- the preset
@dataclass
class Resolved:
    preset: Preset
    notes: list[str] = field(default_factory=list)


def subject_words(tokens: str) -> tuple[Optional[str], Optional[str]]:
    """(trigger, class) of class tokens, each None when it is not a valid subject field."""
    words = tokens.split()
    out = []
    for key, value in (("trigger", words[0] if words else ""), ("class_word", " ".join(words[1:]))):
        try:
            Subject(**{key: value})
            out.append(value)
        except ValidationError:
            out.append(None)
    return out[0], out[1]


def _from_command_line(keys, name: str) -> bool:
    return any(k in (name, name.split(".")[0]) for k in keys)


def _apply_subject(data: dict, subsets: list[Subset], file_subject, cli_keys, notes: list[str]) -> list[Subset]:
    """Folder tokens win over the preset file's subject; a `subject.*` given on the command line wins over both."""
    first, at = subsets[0], len(notes)
    folder_subject = dict(zip(("trigger", "class_word"), subject_words(first.class_tokens)))
    subject, how, said = {}, {}, []
    for key, from_folder in folder_subject.items():
        mine, label = getattr(file_subject, key), key.replace("_word", "")
        if _from_command_line(cli_keys, f"subject.{key}"):
            subject[key], how[key] = mine, "command line"
            differs = f" (the folder says {from_folder!r})" if from_folder and from_folder != mine else ""
            said.append(f"{label} {mine!r} from the command line{differs}")
        elif from_folder:
            subject[key], how[key] = from_folder, "folder"
            differs = f" (not the preset file's {mine!r})" if from_folder != mine else ""
            said.append(f"{label} {from_folder!r} from the folder {Path(first.folder).name!r}{differs}")
        else:
            subject[key], how[key] = mine, "preset file"
            said.append(f"{label} {mine!r} from the preset file (the folder tokens {first.class_tokens!r} give none)")
    data["subject"] = subject
    triggers = sorted({s.class_tokens.split()[0] for s in subsets})
    if len(triggers) > 1:
        notes.append(f"the instance folders have different first words ({', '.join(triggers)}): prompts use "
                     f"subject.trigger {subject['trigger']!r}")
    out = []
    for s in subsets:
        words = s.class_tokens.split()
        trigger, cls = words[0], " ".join(words[1:])
        new_trigger = subject["trigger"] if how["trigger"] == "command line" and trigger == folder_subject["trigger"] else trigger
        new_cls = subject["class_word"] if how["class_word"] == "command line" and cls == folder_subject["class_word"] else cls
        if (new_trigger, new_cls) != (trigger, cls):
            tokens = " ".join(w for w in (new_trigger, new_cls) if w)
            notes.append(f"class tokens of {Path(s.folder).name!r}: {tokens!r} (photos without a caption file get them; "
                         "caption files are used as written)")
            s = s.model_copy(update={"class_tokens": tokens})
        out.append(s)
    notes.insert(at, "subject: " + "; ".join(said))
    return out


def _repeats_override(subsets: list[Subset], cli_keys, key: str, value: int, notes: list[str]) -> list[Subset]:
    if not subsets or key not in cli_keys:
        return subsets
    names = ", ".join(Path(s.folder).name for s in subsets)
    notes.append(f"{key}={value} from the command line wins over the folder names ({names})")
    return [s.model_copy(update={"repeats": value}) for s in subsets]


def _folder(value: Optional[str]) -> Optional[Path]:
    value = resolve_images(value)
    path = Path(value).expanduser() if value else None
    return path if path and path.is_dir() else None


def resolve(preset: Preset, cli_keys=()) -> Resolved:
    """The preset with its Kohya folders as subsets, the subject they name (by the precedence above) and notes.

    A preset without Kohya folders comes back unchanged. `cli_keys`: the keys given on the command line.
    """
    from faceswap_kohya.config.presets import validate

    d, r = preset.dataset, preset.regularization
    cli_keys = set(cli_keys)
    notes: list[str] = []
    instance, reg = list(d.subsets), list(r.subsets)
    check_subsets(instance, "dataset.subsets")
    check_subsets(reg, "regularization.subsets")
    images = _folder(d.images)
    read_here = not instance and images is not None
    if read_here:
        instance = kohya_subsets(images, "dataset.images")
        if instance:
            notes.append(f"Kohya folders in {train_data_dir(instance)}: " +
                         ", ".join(Path(s.folder).name for s in instance))
    if not reg and _folder(r.images):
        reg = kohya_subsets(_folder(r.images), "regularization.images")
    elif read_here and instance and not reg and not r.images and not r.generate:
        beside = train_data_dir(instance).parent / "reg"
        if beside.is_dir() and (reg := kohya_subsets(beside, f"regularization folder {beside} (found beside the photos)")):
            notes.append(f"regularization: Kohya folders in {beside} ({', '.join(Path(s.folder).name for s in reg)})")
    if not instance and not reg:
        return Resolved(preset, notes)
    data = preset.model_dump(mode="json")
    if instance:
        instance = _apply_subject(data, instance, preset.subject, cli_keys, notes)
    instance = _repeats_override(instance, cli_keys, "dataset.repeats", d.repeats, notes)
    reg = _repeats_override(reg, cli_keys, "regularization.repeats", r.repeats, notes)
    data["dataset"]["subsets"] = [s.model_dump() for s in instance]
    data["regularization"]["subsets"] = [s.model_dump() for s in reg]
    if d.captions.mode == "blip" and instance:
        notes.append("dataset.captions.mode blip is not used for Kohya folders: each photo's caption file, "
                     "else its folder's class tokens, as sd-scripts reads them")
    return Resolved(validate(data, "the preset with its Kohya folders"), notes)
