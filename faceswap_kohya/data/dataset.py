"""Photos → a checked Kohya dataset in the run folder.

`img/10_myface woman/` (face crops + `.txt` captions starting with the instance tokens; with
`dataset.mask` each PNG's alpha is its loss-weight mask), `val/1_myface woman/` (held-out photos), `reg/1_woman/`
(class images with class-only captions), `contact_sheet.png` and `dataset.md` / `dataset.json`: what was
kept, cropped, augmented, dropped and why. The input photos are only read: every image is decoded
(EXIF orientation applied, converted to 8-bit RGB) and written anew into the run folder.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from PIL import Image

from faceswap_kohya.config.schema import Preset
from faceswap_kohya.data import captions, kohya_layout
from faceswap_kohya.data.captions import caption_files
from faceswap_kohya.data.framing import mean_weight
from faceswap_kohya.data.gate import run_gate
from faceswap_kohya.data.images import check_folder, sort_folder
from faceswap_kohya.data.kohya_layout import image_steps, reg_groups
from faceswap_kohya.data.photos import (
    HELD_OUT,
    Photo,
    augmentations,
    choose_holdout,
    finish,
    mark_duplicates,
    measure,
    output_name,
)
from faceswap_kohya.data.regularization import balance_advice
from faceswap_kohya.data.reports import LayoutSummary, write_reports
from faceswap_kohya.errors import UserError
from faceswap_kohya.faces import identity as faces
from faceswap_kohya.faces.worker import FaceWorker
from faceswap_kohya.files.images import PNG_FAST, load_rgb, resized, save_with_loss_weight, unreadable_reason
from faceswap_kohya.runs.layout import RunLayout, instance_dir, reg_dir, validation_dir

MIN_PHOTOS, FEW_PHOTOS, MANY_PHOTOS = 3, 5, 50
AUTO_HOLDOUT_FROM = 6  # with dataset.holdout unset, one photo is held out from this many usable photos
# Threads overlap decoding, resizing and encoding (Pillow releases the GIL); face detection runs one at a time.
WORKERS = min(6, (os.cpu_count() or 1) + 1)
WORKER_FROM = 4  # photos from which the embeddings are computed in a process of their own (faces.worker)


try:  # phones write HEIC
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency
    pass


TEMPLATE, BLIP = "template", "BLIP"  # where a caption came from, besides a caption file's name


def captioner(preset: Preset, echo, missing: list[str]) -> Callable[[Photo], tuple[str, str]]:
    """Photo → (caption, where it came from: a caption file's name, "template" or "BLIP"), per
    `dataset.captions.mode`; in mode `files` the photos without a caption file of their own go into `missing`."""
    c, s = preset.dataset.captions, preset.subject
    if c.mode == "blip":
        echo(f"captions: loading BLIP {c.blip_model}")
        blip = captions.BlipCaptioner(c.blip_model)
        return lambda p: (captions.with_trigger(blip(p.image), s.trigger, s.class_word), BLIP)
    template = captions.template_caption(c.template, s.trigger, s.class_word)
    if c.mode == "template":
        return lambda p: (template, TEMPLATE)

    def from_file(p: Photo) -> tuple[str, str]:
        own = captions.own_caption_file(p.source)
        if own is None:
            if c.mode == "files":
                missing.append(p.source.name)
            return template, TEMPLATE
        return captions.with_trigger(own[1], s.trigger, s.class_word), own[0].name

    return from_file


def caption_warnings(preset: Preset, kept: list[Photo], no_caption: list[str]) -> list[str]:
    """Caption files that were not used (modes template and blip), photos without one (mode files)."""
    mode = preset.dataset.captions.mode
    out = []
    if no_caption:
        out.append(f"captions mode files: no .txt beside {', '.join(no_caption)}; used the template caption")
    if mode in ("template", "blip"):
        unused = [f.name for p in kept for f in caption_files(p.source)]
        if unused:
            out.append(f"captions mode {mode}: the caption files {', '.join(unused)} were not used "
                       "(dataset.captions.mode=files_or_template uses them)")
    return out


@dataclass
class ImageJob:
    """One image to write: a training image (a photo or an augmented copy) or a held-out photo."""

    image: Image.Image
    path: Path
    caption: str
    mask: Optional[Image.Image] = None
    kind: str = ""  # "", an augmentation (mirror, brighter, ...) or "held out"


def save_image(image: Image.Image, path: Path, caption: str, mask: Optional[Image.Image] = None) -> None:
    if mask is None:
        image.save(path, **PNG_FAST)
    else:
        save_with_loss_weight(image, mask, path)
    path.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")


def count_warnings(preset: Preset, n: int, held: int = 0) -> list[str]:
    """Advice on the number of photos trained on (`n`; `held` more are held out) and on settings that interact."""
    d, c = preset.dataset, preset.dataset.captions
    out = []
    if n < FEW_PHOTOS:
        what = f"photos to train on ({held} more held out)" if held else "usable photos"
        out.append(f"only {n} {what}: 5-10 varied photos (angles, light, expressions) give a better likeness")
    if n > MANY_PHOTOS:
        out.append(f"{n} photos: more than {MANY_PHOTOS} rarely helps a face LoRA and makes epochs long; "
                   "consider picking the best, or lowering dataset.repeats")
    if c.shuffle and c.keep_tokens < 1:
        out.append("captions.shuffle is on with keep_tokens 0: the trigger may be moved away from the front; set keep_tokens: 1")
    if d.flip_aug and d.augment.mirror:
        out.append("flip_aug is on, so no mirrored copies were made (Kohya flips images at random)")
    return out


def holdout_count(setting: Optional[int], usable: int) -> tuple[int, Optional[str]]:
    """(photos to hold out, a warning when fewer than asked): `setting`, or 1 from AUTO_HOLDOUT_FROM photos
    when unset; never so many that fewer than MIN_PHOTOS remain for training."""
    wanted = (1 if usable >= AUTO_HOLDOUT_FROM else 0) if setting is None else setting
    allowed = max(0, min(wanted, usable - MIN_PHOTOS))
    if allowed < wanted:
        return allowed, (f"dataset.holdout {wanted}: only {usable} usable photos, so {allowed} held out "
                         f"(at least {MIN_PHOTOS} stay for training); no validation loss or held-out likeness"
                         if not allowed else f"dataset.holdout {wanted}: {allowed} held out so that {MIN_PHOTOS} stay for training")
    return wanted, None


def read_photos(preset: Preset, paths: list[Path], embedder, summary: LayoutSummary) -> list[Photo]:
    """Every photo measured once, checked as a set (duplicates, then the photo gate: someone else, which face,
    blur, small faces, pose and light), then cropped and masked; the usable ones, or UserError when too few."""
    d = preset.dataset
    upscales = not (d.enable_bucket and d.bucket_no_upscale)
    # dlib's embedding in a process of its own (faces.worker) for a set of photos: it holds the GIL, the threads'
    # decoding does not (below WORKER_FROM photos starting it costs more than it saves)
    with (FaceWorker() if embedder and len(paths) >= WORKER_FROM else nullcontext()) as worker, ThreadPoolExecutor(WORKERS) as pool:
        faces_of = embedder.with_worker(worker) if embedder else None
        photos = list(pool.map(lambda p: measure(p, faces_of, d.framing, d.resolution), paths))
        summary.entries = photos
        mark_duplicates(photos)
        gate = run_gate(photos, d, embedder.metric if embedder else "euclidean", summary.warnings,
                        embedder.name if embedder else None)
        summary.gate = gate.to_dict()
        summary.advice = gate.advice
        kept = [p for p in photos if p.status == "kept"]
        summary.skipped = [(p.source, p.reason) for p in photos if p.status == "dropped"]
        if len(kept) < MIN_PHOTOS:
            why = "".join(f"\n  {src.name}: {reason}" for src, reason in summary.skipped)
            raise UserError(f"dataset.images: only {len(kept)} usable photo{'s' if len(kept) != 1 else ''} in {summary.source} "
                            f"(at least {MIN_PHOTOS} needed, 5-10 recommended){why}")
        list(pool.map(lambda p: finish(p, d.framing, d.resolution, d.max_upscale, d.mask, d.mask_floor, upscales), kept))
    return kept


def face_embedder(preset: Preset, summary: LayoutSummary):
    """dlib's embedder, or None (with a warning) when face checks aren't needed and dlib is missing."""
    d = preset.dataset
    try:
        embedder = faces.get_embedder("dlib")
    except UserError as e:
        if d.framing != "as_is":
            raise UserError(f"dataset.framing {d.framing} needs face detection: {e} (or set dataset.framing=as_is)") from None
        if d.mask != "none":
            raise UserError(f"dataset.mask {d.mask} needs face detection: {e} (or set dataset.mask=none)") from None
        summary.warnings.append(f"face checks skipped: {e}")
        return None
    summary.embedder = embedder.name
    return embedder


def hold_out(kept: list[Photo], d, summary: LayoutSummary) -> list[Photo]:
    """Mark the photos kept out of training (`dataset.holdout`); the ones to train on."""
    n_held, why = holdout_count(d.holdout, len(kept))
    if why:
        summary.warnings.append(why)
    for i in choose_holdout(kept, n_held):
        kept[i].held_out = True
    return [p for p in kept if not p.held_out]


def layout(preset: Preset, run: RunLayout, echo: Callable[[str], None] = lambda s: None, notes=()) -> LayoutSummary:
    """Check, crop, mask, augment and caption the photos into the run folder (held-out photos into the
    validation folder); write the contact sheet and summary.

    Kohya folders (`dataset.subsets`, see kohya_folders.resolve) keep their subsets and captions; `notes`
    (from resolve) go into the summary. Raises UserError when fewer than 3 photos are usable (naming each
    photo not used and why).
    """
    start = time.monotonic()
    d = preset.dataset
    kohya = kohya_layout.plan(preset, run, notes)
    if kohya:
        source, paths, other = kohya.root, kohya.photos, kohya.other
    else:
        source = check_folder(d.images, "dataset.images")
        paths, other = sort_folder(source)
    summary = LayoutSummary(kohya.instance_dir if kohya else instance_dir(preset, run), source=source, other_files=other)
    embedder = face_embedder(preset, summary)
    no_caption: list[str] = []
    caption = kohya.caption if kohya else captioner(preset, echo, no_caption)  # first: a missing BLIP model fails early
    echo(f"reading {len(paths)} photos from {source}")
    kept = read_photos(preset, paths, embedder, summary)
    train = hold_out(kept, d, summary)
    summary.warnings += count_warnings(preset, len(train), len(kept) - len(train))
    small = [f"{p.source.name} {p.size[0]}×{p.size[1]}" for p in kept if min(p.size) < d.resolution]
    if small:
        summary.warnings.append(f"smaller than the training resolution {d.resolution} px: " + ", ".join(small))

    dest = kohya.out_dir if kohya else (lambda p: summary.instance_dir)
    jobs = image_jobs(kept, train, d, caption, summary, dest, validation_dir(preset, run))
    summary.warnings += caption_warnings(preset, kept, no_caption)
    write_images(jobs, summary, d)
    if preset.regularization.images or preset.regularization.subsets:
        layout_regularization(preset, run, summary, len(summary.photos))
    if kohya:
        kohya.finish(summary)
    summary.seconds = time.monotonic() - start
    write_reports(summary, run, jobs)
    return summary


def image_jobs(kept: list[Photo], train: list[Photo], d, caption, summary: LayoutSummary, dest, val_dir: Path) -> list[ImageJob]:
    """The images to write: each training photo (into `dest(photo)`), its augmented copies, then the held-out photos."""
    jobs = []
    for i, p in enumerate(kept, start=1):
        p.caption, p.caption_source = caption(p)
        name = output_name(i, p.source) + ".png"
        p.outputs.append(name)
        folder = val_dir if p.held_out else dest(p)
        jobs.append(ImageJob(p.image, folder / name, p.caption, p.mask, HELD_OUT if p.held_out else ""))
    for i, kind, image, mask in augmentations(train, d):
        p = train[i]
        name = output_name(kept.index(p) + 1, p.source, kind) + ".png"
        p.outputs.append(name)
        summary.augmented.append({"file": name, "from": p.source.name, "kind": kind})
        jobs.append(ImageJob(image, dest(p) / name, p.caption, mask, kind))
    return sorted(jobs, key=lambda job: job.kind == HELD_OUT)


def write_images(jobs: list[ImageJob], summary: LayoutSummary, d) -> None:
    """Write every image (with its mask as alpha) and caption; note what went where and the mean mask weight."""
    for folder in {job.path.parent for job in jobs}:
        folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda job: save_image(job.image, job.path, job.caption, job.mask), jobs))
    summary.photos = [job.path for job in jobs if job.kind != HELD_OUT]
    summary.held_out = [job.path for job in jobs if job.kind == HELD_OUT]
    if d.mask != "none":
        weights = [mean_weight(job.mask) for job in jobs if job.kind != HELD_OUT]
        summary.mask = {"kind": d.mask, "floor": d.mask_floor, "mean_weight": round(sum(weights) / len(weights), 4)}


def layout_regularization(preset: Preset, run: RunLayout, summary: LayoutSummary, n_train: int) -> None:
    """Class images → `reg/<repeats>_<class>/` with class-only captions (Kohya folders: one copy each, with
    their own captions), and a balance check."""
    r, d = preset.regularization, preset.dataset
    if r.subsets:
        groups = reg_groups(preset, run)
    else:
        folder = check_folder(r.images, "regularization.images")
        groups = [(folder, reg_dir(preset, run), r.repeats, lambda path: preset.subject.class_word)]
    summary.reg_dir = groups[0][1] if len(groups) == 1 else run.reg
    skipped = []

    def one(item):
        i, path, dest, caption_of = item
        try:
            rgb = load_rgb(path)
        except Exception as e:  # noqa: BLE001
            skipped.append({"file": path.name, "reason": unreadable_reason(path, e), "path": path})
            return 0
        scale = min(1.0, d.resolution / min(rgb.size))
        image = resized(rgb, (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))))
        save_image(image, dest / (output_name(i, path) + ".png"), caption_of(path))
        return 1

    items = []
    for folder, dest, _, caption_of in groups:
        dest.mkdir(parents=True, exist_ok=True)
        items += [(path, dest, caption_of) for path in sort_folder(folder)[0]]
    with ThreadPoolExecutor(WORKERS) as pool:
        summary.reg_images = sum(pool.map(one, [(i, *item) for i, item in enumerate(items, start=1)]))
    summary.skipped += [(s.pop("path"), "regularization image: " + s["reason"]) for s in skipped]
    if r.subsets:
        (train_steps, reg_steps), advice = image_steps(preset, run), None  # kohya_layout notes the balance
    else:
        train_steps, reg_steps = n_train * d.repeats, summary.reg_images * r.repeats
        advice = balance_advice(preset, n_train, summary.reg_images)
    if advice:
        summary.warnings.append(advice)
    summary.regularization = {"folder": str(groups[0][0]) if len(groups) == 1 else str(groups[0][0].parent),
                              "images": summary.reg_images, "repeats": [g[2] for g in groups] if r.subsets else r.repeats,
                              "skipped": skipped, "balance": {"training": train_steps, "regularization": reg_steps}}
