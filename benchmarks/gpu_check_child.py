"""The GPU check's parts that run in a process of their own (benchmarks/gpu_check.py starts them):

    env NAME...                       versions of these packages (the trainer's python runs this too)
    optimizer                         whether bitsandbytes' AdamW8bit takes a step here
    generate MODEL LORA OUT.json ...  diffusers generation: base vs LoRA unfused vs fused, per dtype
    swap MODEL LORA OUT.json ...      one face swap

Each writes its JSON after every measurement, so what was measured survives a timeout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
PROMPT = "myface woman, professional portrait photo, soft light"
ASTRONAUT_FACE = (177, 82, 274, 178)  # dlib's HOG box of the face in scikit-image's 512 px astronaut


def _save(data: dict, out: Path) -> None:
    tmp = out.with_suffix(".partial")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    tmp.replace(out)


def env(names: list[str]) -> dict:
    import importlib.metadata as md
    import platform

    info = {"python": platform.python_version()}
    for name in names:
        try:
            info[name] = md.version(name)
        except md.PackageNotFoundError:
            info[name] = None
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = props.name
            info["gpu_memory_mib"] = props.total_memory // 2**20
    except ImportError:
        pass
    return info


def optimizer_check() -> dict:
    """One AdamW8bit step on the trainer's device: bitsandbytes loads its library and runs there."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    import bitsandbytes as bnb

    p = torch.nn.Parameter(torch.randn(4096, 64, device=device))
    opt = bnb.optim.AdamW8bit([p], lr=1e-3)
    p.grad = torch.randn_like(p)
    before = p.detach().clone()
    opt.step()
    return {"bitsandbytes": bnb.__version__, "device": device, "moved": bool((p.detach() != before).any())}


# ---------------------------------------------------------------- generation
def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn) -> float:
    _sync()
    start = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - start


def _peak_mib():
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def generation(model: str, lora: Path, dtypes: list[str], size: int, steps: int, images: int, out: Path,
               warmup: bool = True) -> dict:
    import torch

    from faceswap_kohya.diffusion.images import generate_images
    from faceswap_kohya.diffusion.lora import attach_lora, fuse
    from faceswap_kohya.diffusion.pipeline import free_memory, load_pipeline, pick_device

    device = pick_device()
    results = {"device": device}

    def image_s(pipe, n_steps: int, seed: int) -> float:
        return _timed(lambda: generate_images(pipe, [PROMPT], [seed], n_steps, 6.0, size, size))

    def per_image(pipe) -> float:
        if warmup:
            image_s(pipe, min(steps, 3), 99)  # warm-up: kernels, autotuning, the adapters' first call
        return statistics.median(image_s(pipe, steps, seed) for seed in range(images))

    for dtype in dtypes:
        entry = results[dtype] = {"size": size, "steps": steps, "images_per_timing": images, "warmup": warmup}
        try:
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            pipe = load_pipeline(model, device=device, dtype=dtype)
            entry["load_s"] = time.perf_counter() - start
            entry["base_s"] = per_image(pipe)
            _save(results, out)
            if not lora.is_file():  # no training run wrote one: a random LoRA of the same shape as face-24gb's
                from tiny_sdxl import write_kohya_lora

                lora.parent.mkdir(parents=True, exist_ok=True)
                write_kohya_lora(pipe, lora, rank=64, alpha=32.0)
                results["lora"] = "random, rank 64, UNet and both text encoders"
            results.setdefault("lora", str(lora))
            entry["lora_load_s"] = _timed(lambda: attach_lora(pipe, lora, weight=1.0))
            entry["lora_modules"] = next(iter(pipe.fsk_loras.values())).modules
            entry["unfused_s"] = per_image(pipe)
            _save(results, out)
            entry["fuse_s"] = _timed(lambda: fuse(pipe, {name: 1.0 for name in pipe.fsk_loras}))
            entry["fused_s"] = per_image(pipe)
            entry["unfused_ratio"] = entry["unfused_s"] / entry["base_s"]
            entry["fused_ratio"] = entry["fused_s"] / entry["base_s"]
            entry["torch_peak_allocated_mib"] = _peak_mib()
        except Exception as e:  # noqa: BLE001 - one dtype failing must not lose the other
            entry["error"] = f"{type(e).__name__}: {str(e)[:400]}"
        finally:
            pipe = None
            free_memory()
        _save(results, out)
    return results


# ---------------------------------------------------------------- swap
def swap(model: str, lora: Path, size: int, steps: int, work: Path, out: Path) -> dict:
    """The astronaut enlarged so that the square around the face is `size` px; the face box is given
    (dlib's detection is CPU work, not what this measures)."""
    import torch
    from PIL import Image
    from skimage import data

    from faceswap_kohya.diffusion.source import Settings, Source
    from faceswap_kohya.faces.detect import Face
    from faceswap_kohya.jobs import swap as sw

    scale = max(1.0, size / ((1 + 2 * sw.PADDING) * (ASTRONAUT_FACE[2] - ASTRONAUT_FACE[0])))
    side = round(512 * scale)
    photo = work / "astronaut.png"
    Image.fromarray(data.astronaut()).resize((side, side), Image.LANCZOS).save(photo)
    face = Face(tuple(round(v * scale) for v in ASTRONAUT_FACE), 1.0)
    sw.pick_face = lambda image, index, name: (face, [face])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    source = Source(base_model=model, lora=lora)
    result = sw.run_swap(source, photo, Settings(steps=steps), work / "swaps", prompt="myface woman, photo",
                         size=size)
    info = {"size": size, "steps": steps, "strength": sw.STRENGTH, "photo_px": side, "face_box": list(face.box),
            "crop_px": result.region.side, "seconds": result.seconds, "torch_peak_allocated_mib": _peak_mib(),
            "note": "face box given (no dlib detection); no identity score (no reference photos)"}
    _save(info, out)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("env").add_argument("names", nargs="*")
    sub.add_parser("optimizer")
    for name in ("generate", "swap"):
        p = sub.add_parser(name)
        p.add_argument("model")
        p.add_argument("lora", type=Path)
        p.add_argument("out", type=Path)
        p.add_argument("--size", type=int, default=1024)
        p.add_argument("--steps", type=int, default=30)
        p.add_argument("--dtypes", default="fp16,bf16")
        p.add_argument("--images", type=int, default=2)
        p.add_argument("--no-warmup", dest="warmup", action="store_false", help="no untimed image before each timing")
        p.add_argument("--work", type=Path, default=Path("."))
    args = ap.parse_args()
    if args.cmd == "env":
        print(json.dumps(env(args.names)))
    elif args.cmd == "optimizer":
        print(json.dumps(optimizer_check()))
    elif args.cmd == "generate":
        generation(args.model, args.lora, args.dtypes.split(","), args.size, args.steps, args.images, args.out, args.warmup)
    else:
        swap(args.model, args.lora, args.size, args.steps, args.work, args.out)


if __name__ == "__main__":
    sys.exit(main())
