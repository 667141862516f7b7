"""What `prepare` shows of a dataset: `contact_sheet.png` (each image with its mask as a tint, held-out photos
framed, each photo's findings in red, the photos the gate left out framed in red), `dataset.json` and `dataset.md` (the photo gate's verdict, findings per
photo, advice and the person's own baseline)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from PIL import Image

from faceswap_kohya.data.gate import FINDING_WORDS
from faceswap_kohya.data.kohya_layout import markdown_lines, text_lines
from faceswap_kohya.data.photos import HELD_OUT, Photo
from faceswap_kohya.faces.identity import SAME_PERSON_SCORE
from faceswap_kohya.faces.masks import overlay
from faceswap_kohya.files.images import resized
from faceswap_kohya.runs.layout import RunLayout

# ---------------------------------------------------------------- reports
HELD_OUT_FRAME = (230, 120, 0)  # the frame around a held-out photo on the contact sheet
LEFT_OUT_FRAME = (200, 0, 0)  # the frame around a photo the photo gate left out (someone else, a duplicate)


def contact_sheet(items: list[tuple], thumb: int = 256, columns: int = 5) -> Image.Image:
    """A grid of (image, title, warning, caption source, caption[, frame colour]): under each thumbnail its title,
    the warning in red (if any), where the caption came from (grey) and the wrapped caption; a frame colour
    draws a thick frame around the thumbnail."""
    from PIL import ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    line_h, lines_per_cell = 16, 6
    cols = max(1, min(columns, len(items)))
    rows = -(-len(items) // cols)
    cell_w, cell_h = thumb + 12, thumb + 12 + line_h * lines_per_cell
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    colours = {"title": (40, 40, 160), "warning": (200, 0, 0), "source": (110, 110, 110), "caption": "black"}
    for k, (image, title, warning, source, text, *frame) in enumerate(items):
        x, y = (k % cols) * cell_w + 6, (k // cols) * cell_h + 6
        scale = thumb / max(image.size)  # small training images (e.g. 64 px) are shown enlarged too
        im = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                          Image.LANCZOS if scale < 1 else Image.NEAREST)
        at = (x + (thumb - im.width) // 2, y + (thumb - im.height) // 2)
        sheet.paste(im, at)
        if frame and frame[0]:
            draw.rectangle((at[0] - 4, at[1] - 4, at[0] + im.width + 3, at[1] + im.height + 3), outline=frame[0], width=4)
        lines = [("title", title)] + [("warning", w) for w in wrap(warning, draw, font, thumb)]
        lines += [("source", line) for line in wrap(f"caption from {source}:", draw, font, thumb)] if source else []
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
    out = [f"# Dataset: {c['used']} of {c['photos']} photos used", ""]
    if data.get("verdict"):
        out += [f"**{data['verdict']}**", ""]
    out += [
           f"- input: `{data['input']}` (read only)",
           f"- training images: {c['training_images']} in `{data['instance_dir']}` "
           f"({c['used'] - c['held_out']} photos + {c['augmented']} augmented copies)"]
    if summary.held_out:
        out.append(f"- held out: {c['held_out']} photo{'s' if c['held_out'] != 1 else ''} in `{data['validation_dir']}` "
                   "(not trained on: validation loss and likeness to unseen photos are measured on them)")
    if summary.mask:
        m = summary.mask
        out.append(f"- loss mask: {m['kind']} (alpha channel of each training image; weight {m['floor']:g} outside, "
                   f"mean weight {m['mean_weight']:.2f}); the contact sheet tints what it leaves out")
    if data["reg_dir"]:
        out.append(f"- regularization: {c['regularization_images']} images in `{data['reg_dir']}`")
    if summary.embedder:
        out.append(f"- faces: dlib ({summary.embedder}); identity score = similarity to the centroid of the other "
                   "photos (leave-one-out), 0-1")
    own = (summary.gate or {}).get("baseline")
    if own:
        out.append(f"- your photos' own likeness: {own['mean']:.3f} ± {own['std']:.3f} ({own['photos']} photos, "
                   f"{own['method']}; {own['embedder']}): the scale a trained LoRA's likeness is read on")
    if data["captions"]:
        out.append(f"- captions: {data['captions']}")
    out.append(f"- time: {data['seconds']} s; contact sheet: `contact_sheet.png`")
    if data["warnings"]:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in data["warnings"]]
    if summary.advice:
        out += ["", "## Advice", ""] + [f"- {a}" for a in summary.advice]
    findings = [(e.source.name, f["text"]) for e in summary.entries for f in e.findings]
    if findings:
        out += ["", "## Findings per photo", ""] + [f"- `{name}`: {text}" for name, text in findings]
    if summary.skipped:
        out += ["", "## Not used", ""] + [f"- `{src.name}`: {why}" for src, why in summary.skipped]
    out += ["", "## Used", "", "| photo | size | faces | identity | pose | findings | crop | images | caption | caption from |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for e in summary.entries:
        if e.status != "kept":
            continue
        crop = f"{e.crop[2] - e.crop[0]} px ×{e.upscale:.2f}" if e.crop else ""
        ident = f"{e.identity:.2f}" if e.identity is not None else ""
        held = " (held out)" if e.held_out else ""
        found = ", ".join(FINDING_WORDS[f["kind"]] for f in e.findings)
        out.append(f"| `{e.source.name}`{held} | {e.size[0]}×{e.size[1]} | {len(e.faces)} | {ident} | {e.pose} | {found} | {crop} "
                   f"| {', '.join(e.outputs)} | {e.caption} | {e.caption_source} |")
    notes = [(e.source.name, n) for e in summary.entries if e.status == "kept" for n in e.notes]
    if notes:
        out += ["", "## Notes", ""] + [f"- `{name}`: {n}" for name, n in notes]
    if summary.augmented:
        out += ["", "## Augmented", ""] + [f"- `{a['file']}`: {a['kind']} of `{a['from']}`" for a in summary.augmented]
    if summary.other_files:
        out += ["", "## Other files in the folder (not photos)", ""] + [f"- `{o['file']}`: {o['why']}" for o in summary.other_files]
    if summary.kohya:
        out += markdown_lines(summary.kohya)
    return "\n".join(out) + "\n"


def at_a_glance(photo: Photo) -> str:
    """The problems of a photo in a few words, for the contact sheet."""
    out = []
    if photo.identity is not None and photo.identity < SAME_PERSON_SCORE:
        out.append(f"someone else? (identity {photo.identity:.2f})")
    if len(photo.faces) > 1:
        out.append(f"{len(photo.faces)} faces" + (" (others masked)" if photo.mask is not None else ""))
    if photo.has("blurry"):
        out.append("blurry")
    if photo.has("small_face"):
        out.append("face too small")
    if any("max_upscale" in n for n in photo.notes):
        out.append(f"low resolution (enlarged x{photo.upscale:g})")
    return "! " + ", ".join(out) if out else ""


def sheet_copy(image: Image.Image, thumb: int = 256) -> Image.Image:
    """An image shrunk to the contact sheet's thumbnail size (as `contact_sheet` would shrink it); smaller ones as they are."""
    scale = thumb / max(image.size)
    return image if scale >= 1 else resized(image, (max(1, round(image.width * scale)), max(1, round(image.height * scale))))


def write_reports(summary: LayoutSummary, run: RunLayout, jobs) -> None:
    """contact_sheet.png (each image with its mask as a tint, held-out photos framed), dataset.json, dataset.md."""
    items = []
    source = {name: e for e in summary.entries for name in e.outputs}
    for job in jobs:
        held = job.kind == HELD_OUT
        title = job.path.name + (f" ({job.kind.upper() if held else job.kind})" if job.kind else "")
        image, mask = sheet_copy(job.image), None if job.mask is None else sheet_copy(job.mask)
        shown = image if mask is None else overlay(image, mask)  # tinted at the thumbnail's size: 16 times fewer pixels
        photo = source[job.path.name]
        warning = "" if job.kind and not held else at_a_glance(photo)
        items.append((shown, title, warning, photo.caption_source, job.caption, HELD_OUT_FRAME if held else None))
    for e in summary.entries:  # the photos the gate left out, framed in red, with why
        if e.status == "dropped" and e.thumb is not None and e.findings:
            items.append((e.thumb, f"{e.source.name} (LEFT OUT)", "! " + e.findings[0]["text"], "", "", LEFT_OUT_FRAME))
    summary.contact_sheet = run.root / "contact_sheet.png"
    contact_sheet(items).save(summary.contact_sheet, compress_level=1)
    data = summary.to_dict(run.root)
    summary.report_json = run.root / "dataset.json"
    summary.report_json.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    summary.report_md = run.root / "dataset.md"
    summary.report_md.write_text(markdown(summary, data), encoding="utf-8")


# ---------------------------------------------------------------- the whole folder
@dataclass
class LayoutSummary:
    instance_dir: Path
    photos: list[Path] = field(default_factory=list)  # training images written (augmented copies included)
    held_out: list[Path] = field(default_factory=list)  # held-out photos written to the validation folder
    mask: dict = field(default_factory=dict)  # {"kind", "floor", "mean_weight"} with dataset.mask
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # input photos not used, and why
    reg_dir: Optional[Path] = None
    reg_images: int = 0
    source: Optional[Path] = None
    entries: list[Photo] = field(default_factory=list)
    augmented: list[dict] = field(default_factory=list)
    other_files: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    regularization: dict = field(default_factory=dict)
    kohya: dict = field(default_factory=dict)  # Kohya folders: sd-scripts' reading vs ours (kohya_layout)
    embedder: str = ""
    gate: dict = field(default_factory=dict)  # data.gate.Gate.to_dict(): verdict, someone else, poses, advice, baseline
    advice: list[str] = field(default_factory=list)  # for the set (pose, light)
    seconds: float = 0.0
    contact_sheet: Optional[Path] = None
    report_md: Optional[Path] = None
    report_json: Optional[Path] = None

    def brief(self, root: Path) -> list[str]:
        """What a person should read in the terminal: counts, warnings, photos not used, where to look."""
        kept = sum(e.status == "kept" for e in self.entries)
        held = f" ({kept - len(self.held_out)} trained on, {len(self.held_out)} held out)" if self.held_out else ""
        lines = [f"run folder: {root}"]
        if self.gate.get("verdict"):
            lines.append(f"photos: {self.gate['verdict']}")
        lines += [f"dataset: {kept} of {len(self.entries)} photos used{held}, {len(self.augmented)} augmented copies "
                 f"→ {self.instance_dir.relative_to(root)} ({len(self.photos)} images)"]
        if self.held_out:
            names = ", ".join(p.name for p in self.held_out)
            lines.append(f"held out for validation loss and likeness to unseen photos: {names} "
                         f"→ {self.held_out[0].parent.relative_to(root)}")
        if self.mask:
            lines.append(f"loss mask: {self.mask['kind']}, mean weight {self.mask['mean_weight']:.2f} (tinted on the contact sheet)")
        if self.reg_dir:
            lines.append(f"regularization: {self.reg_images} images → {self.reg_dir.relative_to(root)}")
        if captions := self.caption_sources():
            lines.append(f"captions: {captions}")
        own = self.gate.get("baseline")
        if own:
            lines.append(f"your photos' own likeness: {own['mean']:.3f} ± {own['std']:.3f} ({own['photos']} photos, "
                         f"{own['method']}; {own['embedder']})")
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"advice: {a}" for a in self.advice]
        lines += [f"not used: {src.name}: {why}" for src, why in self.skipped]
        lines += [f"photo {e.source.name}: {f['text']}" for e in self.entries if e.status == "kept" for f in e.findings
                  if f["kind"] != "someone_else"]
        lines += [f"note: {e.source.name}: {n}" for e in self.entries if e.status == "kept" for n in e.notes]
        if self.kohya:
            lines += text_lines(self.kohya)
        lines.append(f"look before training: {self.contact_sheet}\nsummary: {self.report_md}")
        return lines

    def caption_sources(self) -> str:
        """Where the captions of the photos used came from, e.g. "2 from their own files (a.txt, b.txt), 4 from the template"."""
        kept = [e for e in self.entries if e.status == "kept" and e.caption_source]
        kinds = {"template": "from the template", "BLIP": "from BLIP", "folder tokens": "from their folder's tokens"}
        files = [e.caption_source for e in kept if e.caption_source not in kinds]
        parts = [f"{len(files)} from their own caption files ({', '.join(files)})"] if files else []
        for kind, words in kinds.items():
            n = sum(e.caption_source == kind for e in kept)
            if n:
                parts.append(f"{n} {words}")
        return ", ".join(parts)

    def to_dict(self, root: Path) -> dict:
        rel = lambda p: str(p.relative_to(root)) if p else None  # noqa: E731
        kept = [e for e in self.entries if e.status == "kept"]
        return {
            "input": str(self.source),
            "instance_dir": rel(self.instance_dir),
            "reg_dir": rel(self.reg_dir),
            "validation_dir": rel(self.held_out[0].parent) if self.held_out else None,
            "counts": {"photos": len(self.entries), "used": len(kept), "dropped": len(self.entries) - len(kept),
                       "augmented": len(self.augmented), "training_images": len(self.photos),
                       "held_out": len(self.held_out), "regularization_images": self.reg_images},
            "mask": self.mask or None,
            "face_embedder": self.embedder,
            "verdict": self.gate.get("verdict", ""),
            "gate": self.gate or None,
            "baseline": self.gate.get("baseline"),
            "warnings": self.warnings,
            "captions": self.caption_sources(),
            "photos": [e.to_dict() for e in self.entries],
            "augmented": self.augmented,
            "not_photos": self.other_files,
            "regularization": self.regularization,
            "kohya": self.kohya,
            "seconds": round(self.seconds, 2),
        }
