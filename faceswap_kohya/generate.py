"""Images from a base model and Kohya LoRAs: `<lora:name:w>` prompt tags, long/weighted prompts (compel),
before/after grids, and PNGs that carry their generation parameters (A1111 `parameters` + a JSON sidecar)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from .errors import UserError
from .folders import new_folder
from .home import home

TAG = re.compile(r"<lora:([^:<>]+)(?::([^:<>]*))?(?::[^<>]*)?>", re.I)
COMPEL_SYNTAX = re.compile(r"[()]|\w[+-]+(?=[\s,]|$)|\.(?:and|blend)\(")
SAMPLERS = {  # our name: (diffusers scheduler class, extra config, A1111 name)
    "euler": ("EulerDiscreteScheduler", {}, "Euler"),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}, "Euler a"),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}, "DPM++ 2M"),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, "DPM++ 2M Karras"),
    "ddim": ("DDIMScheduler", {}, "DDIM"),
}
DEFAULT_WEIGHTS = (0.0, 0.7, 1.0)


# ---------------------------------------------------------------- prompts
def parse_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """Strip `<lora:NAME:WEIGHT>` tags (A1111): the cleaned prompt and [(name, weight)] (weight 1 when omitted)."""
    tags = []
    for m in TAG.finditer(prompt):
        name, raw = m.group(1).strip(), (m.group(2) or "").strip()
        try:
            weight = float(raw) if raw else 1.0
        except ValueError:
            raise UserError(f"prompt tag {m.group(0)!r}: the weight must be a number, e.g. <lora:{name}:0.8>") from None
        tags.append((name, weight))
    clean = TAG.sub("", prompt)
    clean = re.sub(r"\s*,\s*(,\s*)+", ", ", clean)
    clean = re.sub(r"\s{2,}", " ", clean).strip().strip(",").strip()
    return clean, tags


def a1111_to_compel(prompt: str) -> str:
    """A1111's `(word:1.2)` → compel's `(word)1.2`, nested groups too; compel syntax passes through."""
    out: list[str] = []
    opened: list[int] = []
    for ch in prompt:
        if ch == "(":
            opened.append(len(out))
        elif ch == ")" and opened:
            start = opened.pop()
            m = re.fullmatch(r"(.*):\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*", "".join(out[start + 1:]), re.S)
            if m:
                out[start + 1:] = list(f"{m.group(1)}){float(m.group(2)):g}")
                continue
        out.append(ch)
    return "".join(out)


def read_prompts_file(path: Path) -> list[str]:
    """One prompt a line; blank lines and `#` comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"prompts file {path}: cannot read it ({e})") from None
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise UserError(f"prompts file {path}: no prompts in it (one a line)")
    return prompts


def check_size(width: int, height: int) -> None:
    for label, v in (("width", width), ("height", height)):
        if v < 64 or v % 8:
            raise UserError(f"{label} {v}: must be a multiple of 8 and at least 64 (e.g. {max(64, round(v / 8) * 8)})")


# ---------------------------------------------------------------- encoding and sampling
def set_sampler(pipe, sampler: str) -> str:
    """Switch the scheduler; returns the A1111 name for metadata."""
    import diffusers

    if sampler not in SAMPLERS:
        raise UserError(f"sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
    cls_name, extra, label = SAMPLERS[sampler]
    if type(pipe.scheduler).__name__ != cls_name or extra:
        pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **extra)
    return label


def _n_tokens(pipe, text: str) -> int:
    return len(pipe.tokenizer(text, truncation=False, add_special_tokens=False).input_ids)


def prompt_conditioning(pipe, prompt: str, negative: str) -> dict:
    """Pipeline text arguments: plain strings when diffusers handles them as is, else compel embeddings
    (weighted terms, prompts over 75 tokens)."""
    prompt, negative = a1111_to_compel(prompt), a1111_to_compel(negative or "")
    long = max(_n_tokens(pipe, prompt), _n_tokens(pipe, negative)) > pipe.tokenizer.model_max_length - 2
    if not long and not COMPEL_SYNTAX.search(prompt) and not COMPEL_SYNTAX.search(negative):
        return {"prompt": prompt, "negative_prompt": negative or None}
    import torch
    from compel import CompelForSDXL

    with torch.no_grad():
        cond = CompelForSDXL(pipe, device=str(pipe._execution_device))(prompt, negative_prompt=negative or "")
    neg, neg_pooled = cond.negative_embeds, cond.negative_pooled_embeds
    if not negative and pipe.config.force_zeros_for_empty_prompt:  # as diffusers does for an empty negative prompt
        neg, neg_pooled = torch.zeros_like(cond.embeds), torch.zeros_like(cond.pooled_embeds)
    return {"prompt_embeds": cond.embeds, "pooled_prompt_embeds": cond.pooled_embeds,
            "negative_prompt_embeds": neg, "negative_pooled_prompt_embeds": neg_pooled}


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
            from .loader import set_weights

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


# ---------------------------------------------------------------- what to generate with
@dataclass
class Source:
    """The base model and the LoRAs a `generate` / `compare` call can use."""

    base_model: str
    lora: Optional[Path] = None  # the default LoRA (the run's final one, or the file given)
    lora_dirs: list = field(default_factory=list)  # where `<lora:NAME:w>` tags look for NAME.safetensors
    run_dir: Optional[Path] = None
    trigger: Optional[str] = None
    class_word: Optional[str] = None

    def find_lora(self, name: str) -> Path:
        if self.lora is not None and name in (self.lora.stem, self.lora.name):
            return self.lora
        for d in self.lora_dirs:
            candidate = Path(d) / (name if name.endswith(".safetensors") else f"{name}.safetensors")
            if candidate.is_file():
                return candidate
        known = sorted({p.stem for d in self.lora_dirs if Path(d).is_dir() for p in Path(d).glob("*.safetensors")})
        where = ", ".join(str(d) for d in self.lora_dirs) or "(no LoRA folder: give --lora-dir)"
        raise UserError(f"<lora:{name}:..>: no {name}.safetensors in {where}" +
                        (f"; available: {', '.join(known)}" if known else ""))

    def fill(self, prompt: str) -> str:
        if self.trigger:
            prompt = prompt.replace("{trigger}", self.trigger)
        if self.class_word:
            prompt = prompt.replace("{class}", self.class_word)
        return prompt


def run_preset(run_dir: Path):
    from . import presets

    path = run_dir / "preset.yaml"
    return presets.validate(presets.read_yaml(path), str(path))


def resolve_source(target: Optional[str], base: Optional[str] = None, epoch: Optional[int] = None,
                   lora_dirs: Sequence[str] = (), no_lora: bool = False) -> Source:
    """A run folder (its model/ LoRAs and preset.yaml), a LoRA file, or nothing (--base with --no-lora)."""
    preset, run_dir, lora = None, None, None
    if target:
        t = Path(target).expanduser()
        if t.is_dir():
            if not (t / "preset.yaml").is_file():
                raise UserError(f"{t}: not a run folder (no preset.yaml); give a run folder or a .safetensors LoRA")
            run_dir, preset = t, run_preset(t)
            model_dir, name = t / "model", preset.output.name
            if epoch is not None:
                lora = model_dir / f"{name}-{epoch:06d}.safetensors"
            else:
                lora = model_dir / f"{name}.safetensors"
            if not lora.is_file() and not no_lora:
                saved = sorted(p.name for p in model_dir.glob("*.safetensors")) if model_dir.is_dir() else []
                hint = f"saved: {', '.join(saved)} (pick one with --epoch N)" if saved else "the run saved no LoRA yet"
                raise UserError(f"{t}: no {lora.name} in {model_dir}; {hint}")
        elif t.is_file():
            if t.suffix != ".safetensors":
                raise UserError(f"{t}: not a LoRA file (expected .safetensors) or a run folder")
            lora = t
            maybe_run = t.parent.parent
            if t.parent.name == "model" and (maybe_run / "preset.yaml").is_file():
                run_dir, preset = maybe_run, run_preset(maybe_run)
        else:
            raise UserError(f"{target}: no such run folder or LoRA file")
    base_model = base or (preset.base_model.path if preset else None)
    if not base_model:
        raise UserError("no base model: give --base (a hub id, a diffusers folder or an SDXL .safetensors file)")
    dirs = [Path(d).expanduser() for d in lora_dirs]
    if lora is not None:
        dirs.insert(0, lora.parent)
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"LoRA folder {d}: does not exist")
    return Source(base_model=base_model, lora=None if no_lora else lora, lora_dirs=dirs, run_dir=run_dir,
                  trigger=preset.subject.trigger if preset else None,
                  class_word=preset.subject.class_word if preset else None)


# ---------------------------------------------------------------- the commands
@dataclass
class Settings:
    steps: int = 30
    cfg: float = 6.0
    width: int = 1024
    height: int = 1024
    negative_prompt: str = ""
    sampler: str = "euler"


def plan_prompts(prompts: Sequence[str], source: Source, weight: float, no_lora: bool):
    """Per prompt: (clean prompt, {lora path: weight}); the default LoRA at `weight`, tags add or override."""
    plans = []
    for i, raw in enumerate(prompts):
        if not raw or not raw.strip():
            raise UserError(f"prompt {i + 1} is empty")
        clean, tags = parse_tags(source.fill(raw))
        if not clean:
            raise UserError(f"prompt {i + 1} ({raw!r}) is empty once its <lora:..> tags are removed")
        loras = {}
        if not no_lora:
            if source.lora is not None:
                loras[source.lora] = weight
            for name, w in tags:
                loras[source.find_lora(name)] = w
        plans.append((clean, loras))
    return plans


def _progress_bar(total: int, show: bool):
    from tqdm import tqdm

    bar = tqdm(total=total, unit="image", file=sys.stderr, disable=not show, dynamic_ncols=True)

    def update(done, _total):
        bar.n = done
        bar.refresh()

    return bar, update


def check_lora_files(paths) -> None:
    """Refuse missing or broken LoRA files before the (slow) base model is loaded."""
    from .loader import read_lora_modules

    for p in paths:
        if not Path(p).is_file():
            raise UserError(f"LoRA {p}: no such file")
        read_lora_modules(Path(p))


def _load(source: Source, paths: list[Path], device, dtype, offload):
    from . import loader

    pipe = loader.load_pipeline(source.base_model, device=device, dtype=dtype, offload=offload)
    names = {}
    for path in paths:
        before = set(pipe.fsk_loras)
        loader.attach_lora(pipe, path, weight=0.0)
        names[path] = (set(pipe.fsk_loras) - before).pop()
    return pipe, names


def _info(pipe, prompt: str, seed: int, s: Settings, sampler_label: str, loras: dict, names: dict) -> ImageInfo:
    base = pipe.fsk_base
    model_hash = file_sha256(Path(base["path"])) if base.get("path") and Path(base["path"]).is_file() else None
    return ImageInfo(prompt=prompt, negative_prompt=s.negative_prompt, seed=int(seed), steps=s.steps, cfg=s.cfg,
                     width=s.width, height=s.height, sampler=sampler_label, model=base["label"], model_hash=model_hash,
                     loras=[{"name": p.stem, "adapter": names[p], "path": str(p), "weight": w, "sha256": file_sha256(p)}
                            for p, w in loras.items()])


def run_generate(source: Source, prompts: Sequence[str], seeds: Sequence[int], settings: Settings, out_dir: Path,
                 weight: float = 1.0, no_lora: bool = False, device=None, dtype=None, offload=None,
                 show_progress: bool = True, echo=print) -> list[Path]:
    """Generate every (prompt, seed) into a new folder under out_dir; returns the PNG paths.

    One LoRA set at one weight for all images is fused (base-model speed); otherwise adapters switch per prompt."""
    check_size(settings.width, settings.height)
    plans = plan_prompts(prompts, source, weight, no_lora)
    paths = list(dict.fromkeys(p for _, loras in plans for p in loras))
    check_lora_files(paths)
    if all(w == 0 for _, loras in plans for w in loras.values()):
        paths = []  # weight 0 everywhere: the plain base model (attaching and disabling is only ~1e-6 close)
    pipe, names = _load(source, paths, device, dtype, offload)
    sampler_label = set_sampler(pipe, settings.sampler)
    for path, name in names.items():
        echo(f"LoRA {path.name}: all {pipe.fsk_loras[name].modules} modules attached")
    names = {p: names.get(p, p.stem) for _, loras in plans for p in loras}
    distinct = {tuple(sorted((names[p], w) for p, w in loras.items())) for _, loras in plans}
    fused = len(distinct) == 1 and paths
    if fused:
        from .loader import fuse

        fuse(pipe, dict(next(iter(distinct))))
    folder = new_folder(out_dir)
    bar, update = _progress_bar(len(plans) * len(seeds), show_progress)
    written = []
    try:
        for pi, (prompt, loras) in enumerate(plans):
            weights = None if fused or not paths else {names[p]: w for p, w in loras.items()} | {
                n: 0.0 for n in names.values() if n not in {names[p] for p in loras}}
            images = generate_images(pipe, [prompt], seeds, settings.steps, settings.cfg, settings.width, settings.height,
                                     settings.negative_prompt, lora_weights=[weights],
                                     progress=lambda d, t, base=len(written): update(base + d, None))
            for seed, image in zip(seeds, images):
                info = _info(pipe, prompt, seed, settings, sampler_label, loras, names)
                written.append(save_image(image, folder / f"{len(written) + 1:04d}-p{pi + 1}-s{seed}.png", info))
    finally:
        bar.close()
    return written


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
    top, left, pad = font_size * 3 + 8, font_size * 5, 4
    grid = Image.new("RGB", (left + len(columns) * (w + pad), top + len(rows) * (h + pad)), "white")
    draw = ImageDraw.Draw(grid)
    max_chars = max(20, grid.width // max(1, font_size // 2))
    draw.text((4, 2), title if len(title) <= max_chars else title[:max_chars - 1] + "…", fill="black", font=font)
    for c, label in enumerate(columns):
        draw.text((left + c * (w + pad) + 4, font_size + 10), label, fill="black", font=font)
    for r, label in enumerate(rows):
        draw.text((4, top + r * (h + pad) + h // 2 - font_size // 2), label, fill="black", font=font)
    for i, im in enumerate(images):
        r, c = divmod(i, len(columns))
        grid.paste(im, (left + c * (w + pad), top + r * (h + pad)))
    return grid


def run_compare(source: Source, prompts: Sequence[str], seeds: Sequence[int], settings: Settings, out_dir: Path,
                weights: Sequence[float] = DEFAULT_WEIGHTS, device=None, dtype=None, offload=None,
                show_progress: bool = True, echo=print) -> list[Path]:
    """Per prompt: the base model and the LoRA at each weight, same seeds → every image plus one grid
    (columns: weights, rows: seeds). Returns the grid paths.

    Weight 0 is the plain base model (rendered before any LoRA is attached, so it is bit-identical to
    `generate --no-lora`); other `<lora:..>` tags in a prompt apply to the non-zero columns."""
    from PIL.PngImagePlugin import PngInfo

    from .loader import attach_lora

    if source.lora is None:
        raise UserError("compare needs a LoRA: give a run folder or a .safetensors file")
    weights = [float(w) for w in weights]
    if not weights:
        raise UserError("--weights: give at least one weight, e.g. 0,0.7,1")
    check_size(settings.width, settings.height)
    plans = plan_prompts(prompts, source, 1.0, no_lora=False)
    paths = list(dict.fromkeys(p for _, loras in plans for p in loras))
    check_lora_files(paths)
    pipe, names = _load(source, [], device, dtype, offload)
    sampler_label = set_sampler(pipe, settings.sampler)
    folder = new_folder(out_dir)
    bar, update = _progress_bar(len(plans) * len(weights) * len(seeds), show_progress)
    results: dict = {}
    done = 0

    def render(pi, w, prompt, active):
        nonlocal done
        results[pi, w] = generate_images(pipe, [prompt], seeds, settings.steps, settings.cfg, settings.width,
                                         settings.height, settings.negative_prompt, lora_weights=[active],
                                         progress=lambda d, t, base=done: update(base + d, None))
        done += len(seeds)

    try:
        if 0.0 in weights:
            for pi, (prompt, _) in enumerate(plans):
                render(pi, 0.0, prompt, None)
        if any(w != 0 for w in weights):
            for p in paths:
                attach_lora(pipe, p, weight=0.0)
                names[p] = next(n for n, info in pipe.fsk_loras.items() if info.path == p)
            main = names[source.lora]
            echo(f"LoRA {source.lora.name}: all {pipe.fsk_loras[main].modules} modules attached")
            for w in weights:
                if w == 0:
                    continue
                for pi, (prompt, loras) in enumerate(plans):
                    render(pi, w, prompt, {names[p]: pw for p, pw in loras.items() if p != source.lora} | {main: w})
    finally:
        bar.close()
    grids = []
    for pi, (prompt, loras) in enumerate(plans):
        for w in weights:
            used = {} if w == 0 else {p: (w if p == source.lora else pw) for p, pw in loras.items()}
            for seed, image in zip(seeds, results[pi, w]):
                save_image(image, folder / f"p{pi + 1}-s{seed}-w{w:g}.png",
                           _info(pipe, prompt, seed, settings, sampler_label, used, names))
        cells = [results[pi, w][r] for r in range(len(seeds)) for w in weights]
        columns = ["base" if w == 0 else f"{source.lora.stem} {w:g}" for w in weights]
        grid = make_grid(cells, columns, [f"seed {s}" for s in seeds], prompt)
        meta = PngInfo()
        meta.add_text("parameters", f"{prompt}\nComparison grid: weights {', '.join(f'{w:g}' for w in weights)}; "
                                    f"seeds {', '.join(str(s) for s in seeds)}; Steps: {settings.steps}, "
                                    f"Sampler: {sampler_label}, CFG scale: {settings.cfg:g}, "
                                    f"Size: {settings.width}x{settings.height}, Model: {pipe.fsk_base['label']}")
        path = folder / f"grid-p{pi + 1}.png"
        grid.save(path, pnginfo=meta)
        grids.append(path)
    return grids


def default_out_dir(source: Source, kind: str) -> Path:
    """`<run>/images` (or `<run>/compare`) for a run; else `./generated`."""
    if source.run_dir is not None:
        return source.run_dir / ("images" if kind == "generate" else "compare")
    return Path(os.getcwd()) / "generated"
