"""Swap: put the trained person's face into an existing photo.

The face is found in the photo (dlib; EXIF orientation applied), a square around it (the face box
plus `padding` × its size on each side, kept inside the photo) is resized to the model's working size
and inpainted by SDXL with the LoRA inside an elliptical mask over the face. The result is resized
back and blended into the photo through the same mask with a feathered edge, so every pixel outside
the mask is the photo's own, bit for bit. The photo is only read; the result is a new PNG with its
parameters (A1111 `parameters` + a JSON sidecar) and the identity score of the new face against the
reference photos (the run's training photos).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from faceswap_kohya.config.flux import t5_tokens
from faceswap_kohya.diffusion.images import ImageInfo, file_sha256, save_image
from faceswap_kohya.diffusion.lora import attach_loras, fuse, set_weights
from faceswap_kohya.diffusion.prompts import prompt_conditioning, set_sampler
from faceswap_kohya.diffusion.source import Settings, Source, check_lora_files
from faceswap_kohya.errors import UserError
from faceswap_kohya.events import ImageWritten, OnEvent, echo_to, ignore
from faceswap_kohya.faces.detect import detect
from faceswap_kohya.faces.identity import get_embedder, overlap
from faceswap_kohya.files.images import load_rgb, unreadable_reason
from faceswap_kohya.jobs.generate import plan_prompts
from faceswap_kohya.scoring.references import run_refs, subject_from_lora
from faceswap_kohya.scoring.scores import load_references, score_embedding
from faceswap_kohya.scoring.thresholds import same_person_text

FACE_PROMPT = "{trigger} {class}, photo"
STRENGTH = 0.75
PADDING = 0.6  # the square is the face box + 0.6 × its size on each side: 2.2× the face, like `framing: face`
DEFAULT_SIZE = 1024  # working size when there is no run preset to take the training resolution from
# The mask ellipse over dlib's face box (which spans eyebrows to chin): width and height as multiples
# of the box, centre moved by this many box heights (negative: up, to take in the forehead).
ELLIPSE = (1.2, 1.4, -0.1)
FEATHER = 0.25  # the outer quarter of the ellipse's radius fades from the new face to the photo


# ---------------------------------------------------------------- geometry and mask (pure)
@dataclass
class Region:
    """Where the photo is changed. Boxes are (left, top, right, bottom) in the photo's pixels."""

    face_box: tuple[int, int, int, int]
    crop_box: tuple[int, int, int, int]  # the square the model redraws
    mask: Image.Image  # "L", the crop's size: 255 = new face, 0 = the photo's own pixels
    mask_box: tuple[int, int, int, int]  # the bounding box of the mask's non-zero pixels

    @property
    def side(self) -> int:
        return self.crop_box[2] - self.crop_box[0]


def _ellipse(face_box) -> tuple[float, float, float, float]:
    left, top, right, bottom = face_box
    w, h = right - left, bottom - top
    return (left + right) / 2, (top + bottom) / 2 + ELLIPSE[2] * h, w * ELLIPSE[0] / 2, h * ELLIPSE[1] / 2


def crop_box(face_box, photo_size: tuple[int, int], padding: float = PADDING) -> tuple[int, int, int, int]:
    """A square around the face: `padding` × the face's size on each side, shrunk and moved to stay inside the photo."""
    if padding < 0:
        raise UserError(f"--padding {padding:g}: must be 0 or more (a fraction of the face's size, e.g. {PADDING})")
    left, top, right, bottom = face_box
    W, H = photo_size
    side = min(round(max(right - left, bottom - top) * (1 + 2 * padding)), W, H)
    side = max(1, side)
    cx, cy, _, _ = _ellipse(face_box)
    x0 = min(max(0, round(cx - side / 2)), W - side)
    y0 = min(max(0, round(cy - side / 2)), H - side)
    return x0, y0, x0 + side, y0 + side


def face_mask(face_box, crop: tuple[int, int, int, int], photo_size: tuple[int, int],
              feather: float = FEATHER) -> Image.Image:
    """The blend mask over the crop: 255 inside the face ellipse, a smooth fall to exactly 0 at its edge.

    At the crop's sides that lie inside the photo the mask also fades to 0, so the change never
    ends in a hard edge there (it can only reach the photo's own border)."""
    cx, cy, a, b = _ellipse(face_box)
    x0, y0, x1, y1 = crop
    xs, ys = np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5
    r = np.sqrt(((xs[None, :] - cx) / a) ** 2 + ((ys[:, None] - cy) / b) ** 2)
    t = np.clip((1.0 - r) / feather, 0.0, 1.0)
    m = t * t * (3 - 2 * t)  # smoothstep: 1 inside, 0 from the ellipse's edge outwards
    ramp = max(2.0, feather * min(a, b))
    W, H = photo_size
    for inside, dist in ((x0 > 0, (xs - x0 - 0.5)[None, :]), (x1 < W, (x1 - 0.5 - xs)[None, :]),
                         (y0 > 0, (ys - y0 - 0.5)[:, None]), (y1 < H, (y1 - 0.5 - ys)[:, None])):
        if inside:
            m = m * np.clip(dist / ramp, 0.0, 1.0)
    return Image.fromarray(np.rint(m * 255).astype(np.uint8), "L")


def plan_region(face_box, photo_size: tuple[int, int], padding: float = PADDING) -> Region:
    box = tuple(int(v) for v in face_box)
    crop = crop_box(box, photo_size, padding)
    mask = face_mask(box, crop, photo_size)
    inner = mask.getbbox()
    if inner is None:
        raise UserError(f"the face at {box} is too small to swap; use a photo where the face is larger")
    mask_box = (crop[0] + inner[0], crop[1] + inner[1], crop[0] + inner[2], crop[1] + inner[3])
    return Region(box, crop, mask, mask_box)


def blend(photo: Image.Image, new_crop: Image.Image, region: Region) -> Image.Image:
    """The photo with `new_crop` (any size; resized to the crop) blended in through the mask.
    Where the mask is 0 — everywhere outside `region.mask_box` — the photo's pixels are kept exactly."""
    side = region.side
    if new_crop.size != (side, side):
        new_crop = new_crop.resize((side, side), Image.LANCZOS)
    original = photo.crop(region.crop_box)
    out = photo.copy()
    out.paste(Image.composite(new_crop.convert("RGB"), original, region.mask), region.crop_box[:2])
    return out


# ---------------------------------------------------------------- the photo and its face
def read_photo(path: Path) -> Image.Image:
    """The photo as it is seen: EXIF orientation applied, 8-bit RGB (HEIC, PNG with alpha, 16-bit...)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"photo {path}: no such file")
    if path.is_dir():
        raise UserError(f"photo {path}: a folder; give one photo file")
    try:
        return load_rgb(path)
    except Exception as e:  # noqa: BLE001 - any decoder error
        raise UserError(f"photo {path}: {unreadable_reason(path, e)}") from None


def pick_face(photo: Image.Image, index: int, name: str):
    """(face number `index`, 1 = the largest; all faces found). UserError when there is none or too few."""
    found = detect(photo)
    if not found:
        raise UserError(f"photo {name}: no face found; use a clearer photo where the face is frontal, well lit "
                        "and not too small (at least 1/20 of the photo's width)")
    if not 1 <= index <= len(found):
        boxes = "; ".join(f"{i + 1}: {f.box}" for i, f in enumerate(found))
        raise UserError(f"--face {index}: photo {name} has {len(found)} face{'s' if len(found) != 1 else ''}, "
                        f"numbered 1 (the largest) to {len(found)} ({boxes})")
    return found[index - 1], found


# ---------------------------------------------------------------- metadata
def _quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ',:"\n') else value


@dataclass
class SwapInfo(ImageInfo):
    """ImageInfo plus what a swap needs to be repeated (width/height: the working size)."""

    strength: float = STRENGTH
    source_photo: str = ""
    photo_size: list = field(default_factory=list)
    face_index: int = 1
    faces_found: int = 1
    face_box: list = field(default_factory=list)
    padding: float = PADDING
    crop_box: list = field(default_factory=list)
    mask_box: list = field(default_factory=list)
    identity: Optional[dict] = None

    def a1111(self) -> str:
        text = super().a1111()
        box = ", ".join(str(v) for v in self.face_box)
        extra = (f"Denoising strength: {self.strength:g}, Inpaint area: Only masked, "
                 f"Face swap: {_quoted(self.source_photo)}, Face box: \"{box}\", Face padding: {self.padding:g}")
        head, sep, tail = text.rpartition(", Version: ")
        return f"{head}, {extra}{sep}{tail}" if sep else f"{text}, {extra}"


def output_path(folder: Path, photo: Path, seed: int) -> Path:
    """`<photo>-swap-s<seed>.png` in folder, with -2, -3... when taken: never an earlier output."""
    stem = f"{photo.stem}-swap-s{seed}"
    for n in range(1, 10000):
        path = folder / (f"{stem}.png" if n == 1 else f"{stem}-{n}.png")
        if not path.exists() and not path.with_suffix(".json").exists():
            return path
    raise UserError(f"{folder}: too many swaps of {photo.name} with seed {seed}")


# ---------------------------------------------------------------- identity
def _references(source: Source, refs: Optional[Path]):
    """(References or None, why none). --refs errors are the user's to fix; the run's own may be missing."""
    if refs is not None:
        return load_references(Path(refs).expanduser(), get_embedder("dlib")), ""
    if source.run_dir is None:
        return None, "no reference photos (give --refs PHOTOS_DIR, or a run folder)"

    try:
        return load_references(run_refs(source.run_dir, source.preset), get_embedder("dlib")), ""
    except UserError as e:
        return None, str(e)


def _score(image: Image.Image, region: Region, refs, face=None) -> Optional[dict]:
    """The identity score of `face`, or of the face found in the region's square that overlaps the
    mask most; None when there is no face there."""
    if face is None:
        x0, y0 = region.crop_box[:2]
        # the face fills about half the square: a 400 px copy is plenty for the detectors, and fast
        found = detect(image.crop(region.crop_box), side=min(400, max(64, region.side)))
        target = tuple(v - o for v, o in zip(region.mask_box, (x0, y0, x0, y0)))
        found = [f for f in found if overlap(f.box, target) > 0]
        if not found:
            return None
        face = max(found, key=lambda f: overlap(f.box, target))
        l, t, r, b = face.box
        face = replace(face, box=(l + x0, t + y0, r + x0, b + y0),
                       landmarks=[(px + x0, py + y0) for px, py in face.landmarks])
    embedding = get_embedder("dlib").embed(image, face)
    if embedding is None:
        return None
    return {"face_box": list(face.box), **score_embedding(embedding, refs)}


# ---------------------------------------------------------------- the swap
@dataclass
class SwapResult:
    path: Path
    region: Region
    faces_found: int
    identity: Optional[dict]  # {"score", "nearest", ...}; None: no face found in the result
    before: Optional[dict]  # the original face's score
    refs_note: str  # why there is no score, when there are no references
    seconds: float

    def lines(self) -> list[str]:
        out = [f"face {tuple(self.region.face_box)} swapped ({self.faces_found} face{'s' if self.faces_found != 1 else ''} "
               f"in the photo); changed pixels only inside {tuple(self.region.mask_box)}; {self.seconds:.1f} s"]
        if self.refs_note:
            out.append(f"identity: not scored: {self.refs_note}")
        elif self.identity is None:
            out.append("identity: no face found in the result (try a lower --strength or more --steps)")
        else:
            before = f" (the photo's face: {self.before['score']:.2f})" if self.before else ""
            out.append(f"identity: {self.identity['score']:.2f} vs the reference photos, nearest "
                       f"{self.identity['nearest']}{before}; with dlib, one person usually scores above {same_person_text('dlib')}")
        return out


def _working_size(source: Source, size: Optional[int]) -> int:
    if size is None:
        size = source.preset.dataset.resolution if source.preset is not None else DEFAULT_SIZE
    if size < 64 or size % 8:
        raise UserError(f"--size {size}: must be a multiple of 8 and at least 64 (e.g. {max(64, round(size / 8) * 8)})")
    return size


def _prompt(source: Source, prompt: Optional[str]) -> str:
    text = source.fill(prompt if prompt is not None else FACE_PROMPT)
    if "{trigger}" in text or "{class}" in text:
        subject = subject_from_lora(source.lora) if source.lora is not None else None
        if subject is None:
            raise UserError(f"prompt {text!r}: no trigger/class to fill in (the LoRA is not in a run folder); "
                            "give --prompt with the trigger word, e.g. --prompt \"myface woman, photo\"")
        text = text.replace("{trigger}", subject[0]).replace("{class}", subject[1])
    return text


def _inpaint_pipeline(source: Source, loras: dict, device, dtype, offload, echo, modules: Optional[dict] = None):
    """StableDiffusionXLInpaintPipeline (FLUX: FluxInpaintPipeline) sharing the loaded model's modules, the LoRAs
    fused in at their weights (as adapters at their weights when the pipeline is kept between jobs)."""
    from diffusers import FluxInpaintPipeline, StableDiffusionXLInpaintPipeline

    from faceswap_kohya.diffusion.pipeline import keeping, load_pipeline, pick_device, pick_dtype

    if offload not in (None, "model", "sequential"):
        raise UserError(f"offload {offload!r}: use 'model' or 'sequential'")
    device = pick_device(device)
    dtype = pick_dtype(device, dtype)
    pipe = load_pipeline(source.base_model, device="cpu" if offload else device, dtype=dtype, flux=source.flux,
                         t5_tokens=t5_tokens(source.preset))
    names = attach_loras(pipe, loras, modules=modules)
    for path, name in names.items():
        echo(f"LoRA {path.name}: all {pipe.fsk_loras[name].modules} modules attached")
    if names:  # fused in, unless the pipeline is kept between jobs: then as adapters, the base left as it is
        (set_weights if keeping() else fuse)(pipe, {names[p]: w for p, w in loras.items()})
    if pipe.fsk_family == "flux":
        inpaint = FluxInpaintPipeline(**pipe.components)
    else:
        inpaint = StableDiffusionXLInpaintPipeline(**pipe.components, requires_aesthetics_score=False, add_watermarker=False,
                                                   force_zeros_for_empty_prompt=pipe.config.force_zeros_for_empty_prompt)
    inpaint.fsk_family, inpaint.fsk_t5_tokens = pipe.fsk_family, getattr(pipe, "fsk_t5_tokens", None)
    if offload == "model":
        inpaint.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        inpaint.enable_sequential_cpu_offload(device=device)
    inpaint.set_progress_bar_config(disable=True)
    inpaint.fsk_base = pipe.fsk_base
    return inpaint, names


def run_swap(source: Source, photo_path: Path, settings: Settings, out_dir: Path, *, prompt: Optional[str] = None,
             seed: int = 0, strength: float = STRENGTH, weight: float = 1.0, face: int = 1, padding: float = PADDING,
             size: Optional[int] = None, refs: Optional[Path] = None, device=None, dtype=None, offload=None,
             on_event: OnEvent = ignore) -> SwapResult:
    """Swap face number `face` (1 = the largest) of the photo for the LoRA's person; write a new PNG into out_dir.

    `settings.width/height` are ignored: the working size is `size` (default: the run's training
    resolution). Everything cheap is checked before the base model is loaded."""
    import torch

    echo = echo_to(on_event)


    started = time.monotonic()
    if not 0 < strength <= 1:
        raise UserError(f"--strength {strength:g}: must be above 0 and at most 1 (how much of the face is redrawn)")
    if settings.steps < 1 or int(settings.steps * strength) < 1:
        raise UserError(f"--steps {settings.steps} with --strength {strength:g} runs no denoising step "
                        f"(steps × strength must be at least 1); raise --steps")
    size = _working_size(source, size)
    photo_path = Path(photo_path).expanduser()
    photo = read_photo(photo_path)
    chosen, found = pick_face(photo, face, str(photo_path))
    region = plan_region(chosen.box, photo.size, padding)
    if len(found) > 1:
        echo(f"{len(found)} faces in {photo_path.name}; swapping face {face} at {chosen.box} (choose with --face N, 1 = the largest)")
    text = _prompt(source, prompt)
    (clean, loras), = plan_prompts([text], source, weight, no_lora=False)
    modules = check_lora_files(list(loras), source.modules)
    if all(w == 0 for w in loras.values()):
        loras = {}  # weight 0: the plain base model
    references, refs_note = _references(source, refs)
    before = None
    if references is not None:
        before = _score(photo, region, references, face=chosen)

    out_dir = Path(out_dir).expanduser().absolute()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"output folder {out_dir}: cannot create it ({e.strerror})") from None
    pipe, names = _inpaint_pipeline(source, loras, device, dtype, offload, echo, modules)
    sampler = set_sampler(pipe, settings.sampler)
    crop = photo.crop(region.crop_box).resize((size, size), Image.LANCZOS)
    hard = region.mask.point(lambda v: 255 if v else 0).resize((size, size), Image.BILINEAR)
    with torch.no_grad():
        conditioning = prompt_conditioning(pipe, clean, settings.negative_prompt)
        out = pipe(**conditioning, image=crop, mask_image=hard, strength=strength, num_inference_steps=settings.steps,
                   guidance_scale=settings.cfg, width=size, height=size,
                   generator=torch.Generator("cpu").manual_seed(int(seed))).images[0]
    result = blend(photo, out, region)
    identity = _score(result, region, references) if references is not None else None

    base = pipe.fsk_base
    model_hash = file_sha256(Path(base["path"])) if base.get("path") and Path(base["path"]).is_file() else None
    info = SwapInfo(prompt=clean, negative_prompt=settings.negative_prompt, seed=int(seed), steps=settings.steps,
                    cfg=settings.cfg, width=size, height=size, sampler=sampler, model=base["label"], model_hash=model_hash,
                    loras=[{"name": p.stem, "adapter": names[p], "path": str(p), "weight": w, "sha256": file_sha256(p)}
                           for p, w in loras.items()], t5_tokens=getattr(pipe, "fsk_t5_tokens", None),
                    strength=strength, source_photo=photo_path.name, photo_size=list(photo.size), face_index=face,
                    faces_found=len(found), face_box=list(region.face_box), padding=padding,
                    crop_box=list(region.crop_box), mask_box=list(region.mask_box),
                    identity={"after": identity, "before": before} if references is not None else None)
    path = save_image(result, output_path(out_dir, photo_path, int(seed)), info)
    on_event(ImageWritten(str(path), "swap"))
    return SwapResult(path, region, len(found), identity, before, refs_note, time.monotonic() - started)


def default_out_dir(source: Source) -> Path:
    """`<run>/swaps` for a run; else `./swaps`."""
    return source.run_dir / "swaps" if source.run_dir is not None else Path.cwd() / "swaps"
