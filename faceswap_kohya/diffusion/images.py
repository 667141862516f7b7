"""Images from a pipeline: one per (prompt, seed), PNGs that carry their generation parameters (A1111
`parameters` + a JSON sidecar), labelled before/after grids, and cached file hashes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from faceswap_kohya.config.paths import home
from faceswap_kohya.diffusion.lora import set_weights
from faceswap_kohya.diffusion.prompts import check_size, prompt_conditioning
from faceswap_kohya.errors import UserError


def generate_images(pipe, prompts: Sequence[str], seeds: Sequence[int], steps: int, cfg: float, width: int, height: int,
                    negative_prompt: str = "", progress: Optional[Callable[[int, int], None]] = None,
                    lora_weights: Optional[Sequence[Optional[dict]]] = None) -> list:
    """One image for every (prompt, seed), prompt-major: len(prompts) * len(seeds) PIL images.

    Prompts may use compel or A1111 `(word:1.2)` weights and be longer than 77 tokens. `<lora:..>` tags
    must already be stripped (see `parse_tags`). lora_weights, one per prompt, sets the active adapters
    ({name: weight}; {} = base model) before its images; None leaves the pipeline as it is.
    Noise comes from a CPU generator seeded per image, so images repeat across devices' runs.
    """
    import torch

    check_size(width, height)
    if not prompts:
        raise UserError("no prompt given")
    for i, p in enumerate(prompts):
        if not p or not p.strip():
            raise UserError(f"prompt {i + 1} is empty")
    images, total = [], len(prompts) * len(seeds)
    for i, prompt in enumerate(prompts):
        if lora_weights is not None and lora_weights[i] is not None:
            set_weights(pipe, lora_weights[i])
        text = prompt_conditioning(pipe, prompt, negative_prompt)
        for seed in seeds:
            generator = torch.Generator("cpu").manual_seed(int(seed))
            with torch.no_grad():
                out = pipe(**text, num_inference_steps=steps, guidance_scale=cfg, width=width, height=height,
                           generator=generator)
            images.append(out.images[0])
            if progress:
                progress(len(images), total)
    return images


# ---------------------------------------------------------------- metadata
def file_sha256(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) in the user cache (a base model takes seconds)."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = home() / "hashes.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    cache[key] = h.hexdigest()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache, indent=0))
    except OSError:
        pass
    return cache[key]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("faceswap_kohya")
    except PackageNotFoundError:
        return "dev"


@dataclass
class ImageInfo:
    """Everything needed to reproduce one image."""

    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    cfg: float
    width: int
    height: int
    sampler: str
    model: str
    model_hash: Optional[str] = None
    loras: list = field(default_factory=list)  # [{"name", "path", "weight", "sha256"}]
    t5_tokens: Optional[int] = None  # FLUX: the T5 tokens the prompt was encoded to (None: diffusers' 512; SDXL)

    def a1111(self) -> str:
        """The A1111 `parameters` text: prompt (with <lora:..> tags), negative prompt, then settings."""
        tags = "".join(f" <lora:{lo['name']}:{lo['weight']:g}>" for lo in self.loras if lo["weight"] != 0)
        lines = [self.prompt + tags]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        settings = [f"Steps: {self.steps}", f"Sampler: {self.sampler}", f"CFG scale: {self.cfg:g}", f"Seed: {self.seed}",
                    f"Size: {self.width}x{self.height}"]
        if self.model_hash:
            settings.append(f"Model hash: {self.model_hash[:10]}")
        settings.append(f"Model: {self.model}")
        hashed = [lo for lo in self.loras if lo["weight"] != 0 and lo.get("sha256")]
        if hashed:
            settings.append('Lora hashes: "' + ", ".join(f"{lo['name']}: {lo['sha256'][:12]}" for lo in hashed) + '"')
        settings.append(f"Version: faceswap_kohya {_version()}")
        lines.append(", ".join(settings))
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"parameters": self.a1111()}


def save_image(image, path: Path, info: ImageInfo) -> Path:
    """PNG with a `parameters` text chunk (A1111/ComfyUI/civitai read it) and `<name>.json` beside it."""
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("parameters", info.a1111())
    path = Path(path)
    if path.exists():
        raise UserError(f"{path} already exists (nothing was overwritten)")
    image.save(path, pnginfo=meta)
    path.with_suffix(".json").write_text(json.dumps(info.as_dict(), indent=2, default=str), encoding="utf-8")
    return path


def _label_font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def make_grid(images: list, columns: list[str], rows: list[str], title: str):
    """A labelled grid: one column per weight, one row per seed, the prompt on top."""
    from PIL import Image, ImageDraw

    w, h = images[0].size
    font_size = max(12, min(32, w // 16))
    font = _label_font(font_size)
    top, pad = font_size * 3 + 8, 4
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = max([font_size * 5] + [int(measure.textlength(label, font=font)) + 12 for label in rows])
    col = max([w] + [int(measure.textlength(label, font=font)) + 8 for label in columns])  # labels never overlap
    grid = Image.new("RGB", (left + len(columns) * (col + pad), top + len(rows) * (h + pad)), "white")
    draw = ImageDraw.Draw(grid)
    max_chars = max(20, grid.width // max(1, font_size // 2))
    draw.text((4, 2), title if len(title) <= max_chars else title[:max_chars - 1] + "…", fill="black", font=font)
    for c, label in enumerate(columns):
        draw.text((left + c * (col + pad) + 4, font_size + 10), label, fill="black", font=font)
    for r, label in enumerate(rows):
        draw.text((4, top + r * (h + pad) + h // 2 - font_size // 2), label, fill="black", font=font)
    for i, im in enumerate(images):
        r, c = divmod(i, len(columns))
        grid.paste(im, (left + c * (col + pad) + (col - w) // 2, top + r * (h + pad)))
    return grid
