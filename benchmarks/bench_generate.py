"""Generation speed on a tiny SDXL pipeline (CPU is fine):

1. `faceswap-kohya generate` (in process, no LoRA) vs a plain diffusers script, same model and settings
   (target: ratio <= 1.05);
2. UNet step time with one LoRA fused vs the base model (target: ratio <= 1.02).

    .venv/bin/python benchmarks/bench_generate.py [--images 8] [--size 128] [--steps 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch
    from diffusers import StableDiffusionXLPipeline
    from tiny_sdxl import save_tiny_pipeline, write_kohya_lora

    from faceswap_kohya.diffusion.lora import attach_lora, fuse
    from faceswap_kohya.diffusion.pipeline import load_pipeline
    from faceswap_kohya.diffusion.source import Settings, Source
    from faceswap_kohya.jobs.generate import run_generate

    tmp = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    os.environ.setdefault("FACESWAP_KOHYA_HOME", str(tmp / "home"))
    folder = save_tiny_pipeline(tmp / "tiny")
    prompt, seeds = "myface woman, professional portrait, soft lighting", list(range(args.images))
    settings = Settings(steps=args.steps, cfg=6.0, width=args.size, height=args.size)

    def plain():  # what a user would write with diffusers alone
        pipe = StableDiffusionXLPipeline.from_pretrained(folder, torch_dtype=torch.float32, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        for s in seeds:
            pipe(prompt=prompt, num_inference_steps=args.steps, guidance_scale=6.0, width=args.size, height=args.size,
                 generator=torch.Generator("cpu").manual_seed(s)).images[0].save(tmp / f"plain-{s}.png")

    def ours():
        source = Source(base_model=str(folder))
        run_generate(source, [prompt], seeds, settings, tmp / "ours", no_lora=True, device="cpu",
                         on_event=lambda e: None)

    def timed(fn):
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    plain(), ours()  # warm-up (imports, file cache)
    t_plain, t_ours = [], []
    for _ in range(args.repeats):  # interleaved, best of N
        t_plain.append(timed(plain))
        t_ours.append(timed(ours))
    ratio = min(t_ours) / min(t_plain)
    print(f"generate vs plain diffusers: {min(t_ours):.2f} s vs {min(t_plain):.2f} s for {args.images} images "
          f"({args.size}px, {args.steps} steps): ratio {ratio:.3f} (target <= 1.05) {'OK' if ratio <= 1.05 else 'SLOW'}")

    # fused LoRA vs base: UNet forward time, same inputs
    base = load_pipeline(str(folder), device="cpu")
    fused = load_pipeline(str(folder), device="cpu")
    write_kohya_lora(fused, tmp / "myface.safetensors", conv=True)
    attach_lora(fused, tmp / "myface.safetensors")
    fuse(fused, {"myface": 0.8})
    lat = args.size // 8
    x = torch.randn(2, 4, lat, lat)
    ctx = torch.randn(2, 77, base.unet.config.cross_attention_dim)
    te2 = base.unet.config.projection_class_embeddings_input_dim - 6 * base.unet.config.addition_time_embed_dim
    cond = {"text_embeds": torch.randn(2, te2), "time_ids": torch.tensor([[args.size, args.size, 0, 0, args.size, args.size]] * 2, dtype=torch.float32)}

    def step_time(pipe, n=30):
        times = []
        with torch.no_grad():
            for _ in range(n):
                t = time.perf_counter()
                pipe.unet(x, torch.tensor([500]), ctx, added_cond_kwargs=cond)
                times.append(time.perf_counter() - t)
        return statistics.median(times)

    step_time(base, 5), step_time(fused, 5)
    tb, tf = [], []
    for _ in range(args.repeats):
        tb.append(step_time(base))
        tf.append(step_time(fused))
    r = min(tf) / min(tb)
    print(f"fused LoRA vs base UNet step: {min(tf) * 1e3:.2f} ms vs {min(tb) * 1e3:.2f} ms: ratio {r:.3f} "
          f"(target <= 1.02) {'OK' if r <= 1.02 else 'SLOW'}")


if __name__ == "__main__":
    main()
