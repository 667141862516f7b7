"""Kohya folders into the run folder, and a side-by-side report of them.

`plan` says where each photo of the preset's Kohya subsets goes in the run folder and what its caption is
(data/dataset.py asks it). `compare` puts side by side how sd-scripts would read the folders by itself and
what this tool trains on: for each subset its repeats, class tokens and image count, then each photo with
the caption sd-scripts would use and ours ("same" when they agree). Before preparing (`prepare --dry-run`)
the photos are not checked yet; after it, each row also says whether the photo was used, and how many
images it gave.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from faceswap_kohya.config.schema import Preset, Subset
from faceswap_kohya.data.images import sort_folder
from faceswap_kohya.data.kohya_folders import (
    CAPTION_EXTENSION,
    SD_IMAGE_SUFFIXES,
    Caption,
    lacks_trigger,
    our_caption,
    parse_name,
    sd_scripts_caption,
    train_data_dir,
)
from faceswap_kohya.errors import UserError
from faceswap_kohya.files.images import list_images
from faceswap_kohya.runs.layout import RunLayout, subset_dir

FOLDER_TOKENS = "folder tokens"  # where a caption came from when the photo has no caption file


# ---------------------------------------------------------------- preparing the photos (data/dataset.py)
@dataclass
class LayoutPlan:
    """Where each photo of the Kohya subsets goes in the run folder, and its caption."""

    preset: Preset
    run: RunLayout
    root: Path
    photos: list[Path]
    other: list[dict]
    dest: dict[Path, Path]  # photo → its subset's folder in the run
    tokens: dict[Path, str]  # photo → its subset's class tokens
    notes: list[str]
    captions: dict[Path, Caption] = field(default_factory=dict)

    @property
    def instance_dir(self) -> Path:
        dirs = set(self.dest.values())
        return dirs.pop() if len(dirs) == 1 else self.run.img

    def out_dir(self, photo) -> Path:
        return self.dest[photo.source]

    def caption(self, photo) -> tuple[str, str]:
        """(caption, where it came from: its caption file's name, or "folder tokens")."""
        self.captions[photo.source] = c = our_caption(photo.source, self.tokens[photo.source])
        suffix = {"file": CAPTION_EXTENSION, "other extension": ".caption"}.get(c.origin)
        return c.text, photo.source.with_suffix(suffix).name if suffix else FOLDER_TOKENS

    def finish(self, summary) -> None:
        """Caption warnings, the reg balance and the side-by-side table into the summary."""
        kept = [e for e in summary.entries if e.status == "kept"]
        for origin, text in (("empty file", "empty caption file, so the class tokens were used (sd-scripts would stop "
                                            "on an empty file, or train with an empty caption)"),
                             ("other extension", "caption read from its .caption file (kohya_ss reads .txt)")):
            names = [self._name(e.source) for e in kept if self.captions.get(e.source, Caption("", "")).origin == origin]
            if names:
                summary.warnings.append(f"{', '.join(names)}: {text}")
        empty = sorted({d.name for d in self.dest.values()} - {self.dest[e.source].name for e in kept})
        if empty:
            summary.warnings.append(f"no photo of {', '.join(empty)} was usable: sd-scripts skips that subset")
        summary.warnings += balance_note(self.preset, self.run)
        summary.kohya = compare(self.preset, summary.entries, self.notes)
        summary.warnings += summary.kohya["warnings"]

    def _name(self, photo: Path) -> str:
        return f"{photo.parent.name}/{photo.name}"


def plan(preset: Preset, run: RunLayout, notes=()) -> Optional[LayoutPlan]:
    """The layout of the preset's Kohya subsets (None when it has none)."""
    subsets = preset.dataset.subsets
    if not subsets:
        return None
    photos, other, dest, tokens = [], [], {}, {}
    for s in subsets:
        folder = Path(s.folder)
        paths, rest = sort_folder(folder)
        photos += paths
        other += [dict(o, file=f"{folder.name}/{o['file']}") for o in rest]
        for p in paths:
            dest[p], tokens[p] = subset_dir(run.img, s), s.class_tokens
    for d in set(dest.values()):
        d.mkdir(parents=True, exist_ok=True)
    return LayoutPlan(preset, run, train_data_dir(subsets), photos, other, dest, tokens, list(notes))


def reg_groups(preset: Preset, run: RunLayout) -> list[tuple[Path, Path, int, object]]:
    """(folder, its copy in the run, repeats, photo → caption) for each Kohya regularization folder."""
    return [(Path(s.folder), subset_dir(run.reg, s), s.repeats,
             lambda path, tokens=s.class_tokens: our_caption(path, tokens).text)
            for s in preset.regularization.subsets]


def image_steps(preset: Preset, run: RunLayout) -> tuple[int, int]:
    """(training, regularization) images × repeats in the run folder's subsets."""
    def steps(parent: Path, subsets) -> int:
        return sum(len(list(subset_dir(parent, s).glob("*.png"))) * s.repeats for s in subsets)

    return steps(run.img, preset.dataset.subsets), steps(run.reg, preset.regularization.subsets)


def balance_note(preset: Preset, run: RunLayout) -> list[str]:
    """sd-scripts repeats or leaves out regularization images to match the training steps: say which."""
    if not preset.regularization.subsets:
        return []
    train, reg = image_steps(preset, run)
    if reg and reg < train:
        return [f"regularization: {reg} image steps for {train} training image steps; sd-scripts repeats them to match"]
    if reg > train:
        return [f"regularization: {reg} image steps for {train} training image steps; sd-scripts uses only {train} of them"]
    return []


# ---------------------------------------------------------------- side by side
WIDTHS = (30, 44)


def _as_sd_scripts_reads(s: Subset) -> tuple[int, str]:
    """sd-scripts takes repeats and class tokens from the folder name (a dataset TOML's subset: from the subset)."""
    try:
        return parse_name(Path(s.folder), "")
    except UserError:
        return s.repeats, s.class_tokens


def _subset(s: Subset, is_reg: bool, preset: Preset, entries: dict) -> dict:
    folder = Path(s.folder)
    repeats, tokens = _as_sd_scripts_reads(s)
    run_dir = f"{'reg' if is_reg else 'img'}/{s.repeats}_{s.class_tokens}"
    photos = {}
    for path in list_images(folder):
        if path.suffix in SD_IMAGE_SUFFIXES:
            theirs = sd_scripts_caption(path, tokens)
            theirs = theirs if theirs is not None else "(empty caption file: sd-scripts stops)"
        else:
            theirs = None  # not read by sd-scripts
        ours = our_caption(path, s.class_tokens).text
        row = {"sd_scripts": theirs, "ours": ours, "tokens_only": not path.with_suffix(".txt").is_file()}
        entry = entries.get(path)
        if entry is not None:
            row["status"] = entry.status
            if entry.status == "kept":
                row["ours"], row["outputs"] = entry.caption, list(entry.outputs)
            else:
                row["reason"] = entry.reason
        photos[path.name] = row
    return {"folder": str(folder), "is_reg": is_reg,
            "sd_scripts": {"repeats": repeats, "class_tokens": tokens,
                           "images": sum(r["sd_scripts"] is not None for r in photos.values())},
            "ours": {"dir": run_dir, "repeats": s.repeats, "class_tokens": s.class_tokens,
                     "images": sum(len(r.get("outputs", [None])) for r in photos.values()
                                   if r.get("status", "kept") == "kept")},
            "photos": photos}


def compare(preset: Preset, entries: Optional[list] = None, notes=()) -> dict:
    """The side-by-side data (also stored in dataset.json under "kohya")."""
    by_source = {e.source: e for e in entries or []}
    subsets = ([_subset(s, False, preset, by_source) for s in preset.dataset.subsets]
               + [_subset(s, True, preset, by_source) for s in preset.regularization.subsets])
    trigger = preset.subject.trigger
    bare = [f"{Path(s['folder']).name}/{file}" for s in subsets if not s["is_reg"] for file, row in s["photos"].items()
            if row.get("status", "kept") == "kept" and lacks_trigger(row["ours"], trigger)]
    warnings = [f"captions without the trigger {trigger!r}: {', '.join(bare)} (the model learns this person "
                "from the trigger: add it to these captions)"] if bare else []
    return {"prepared": entries is not None, "notes": list(notes), "warnings": warnings, "subsets": subsets}


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _ours(row: dict) -> str:
    if row.get("status") == "dropped":
        return f"not used: {row['reason']}"
    text = "same" if row["ours"] == row["sd_scripts"] else f'"{row["ours"]}"'
    extra = len(row.get("outputs", [])) - 1
    return text + (f" (+{extra} augmented)" if extra > 0 else "")


def _rows(data: dict) -> list[tuple[str, str, str]]:
    prepared = data["prepared"]
    rows = [("", "sd-scripts by itself", "this tool" + ("" if prepared else " (photos checked when prepared)"))]
    for s in data["subsets"]:
        k, o = s["sd_scripts"], s["ours"]
        name = ("reg " if s["is_reg"] else "") + Path(s["folder"]).name
        rows.append((name, f"{_n(k['images'], 'image')} ×{k['repeats']}, tokens '{k['class_tokens']}'",
                     f"{_n(o['images'], 'image' if prepared else 'photo')} ×{o['repeats']}, tokens "
                     f"'{o['class_tokens']}' → {o['dir']}"))
        for file, row in s["photos"].items():
            theirs = "not read (not a .png/.jpg/.jpeg/.webp/.bmp)" if row["sd_scripts"] is None else f'"{row["sd_scripts"]}"'
            theirs += " (no caption file)" if row.get("tokens_only") else ""
            rows.append(("  " + file, theirs, _ours(row)))
    return rows


def text_lines(data: dict) -> list[str]:
    """The table for the terminal (long captions cut)."""
    lines = ["Kohya folders, side by side:"]
    for name, theirs, ours in _rows(data):
        lines.append(f"  {_cut(name, WIDTHS[0]):<{WIDTHS[0]}} {_cut(theirs, WIDTHS[1]):<{WIDTHS[1]}} | {ours}")
    lines += [f"note: {n}" for n in data["notes"]]
    return lines + ([] if data["prepared"] else [f"warning: {w}" for w in data["warnings"]])


def markdown_lines(data: dict) -> list[str]:
    """The same table for dataset.md (captions in full)."""
    out = ["", "## Kohya folders: sd-scripts by itself vs this tool", ""]
    out += [f"- {n}" for n in data["notes"] + data["warnings"]]
    rows = _rows(data)
    out += ["", f"| | {rows[0][1]} | {rows[0][2]} |", "|---|---|---|"]
    out += [f"| {name.strip()} | {theirs} | {ours} |".replace("\n", " ") for name, theirs, ours in rows[1:]]
    return out
