"""Benchmark: prepare 10 phone-like photos of 12 megapixels (EXIF-rotated JPEGs) into a Kohya dataset:
decoding (JPEG draft mode for detection), face detection, landmarks, identity embedding and the photo gate
(someone else, blur, small faces, duplicates, pose, light), crop to 1024 px, head masks, augmentation,
captions, contact sheet.

Target: ≤ 3 s for the 10 photos on 2 CPU cores, the face models' loading included (dlib's HOG detector is read from
the cache folder, where the first run on a machine unpacks it: ~0.5 s once). Run: .venv/bin/python benchmarks/bench_prepare.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from skimage import data

from faceswap_kohya.config import presets
from faceswap_kohya.data import dataset
from faceswap_kohya.runs.layout import RunLayout

N, SIZE, TARGET_S = 10, (4000, 3000), 3.0


def phone_photos(folder: Path) -> list[Path]:
    """Ten different 12 MP scenes with the astronaut's face at different sizes and places, stored
    sideways with EXIF orientation 6 (as phones do)."""
    portrait = Image.fromarray(data.astronaut())
    rng = np.random.default_rng(1)
    exif = Image.Exif()
    exif[0x0112] = 6
    paths = []
    for i in range(N):
        base = rng.integers(40, 220, (12, 16, 3), dtype=np.uint8)  # a smooth, different background each time
        scene = Image.fromarray(base).resize(SIZE, Image.BICUBIC)
        side = int(rng.integers(1400, 2900))
        face = portrait if i % 2 else ImageOps.mirror(portrait)
        scene.paste(face.resize((side, side), Image.BICUBIC), (int(rng.integers(0, SIZE[0] - side)), int(rng.integers(0, SIZE[1] - side))))
        path = folder / f"IMG_{4000 + i}.jpg"
        scene.rotate(90, expand=True).save(path, quality=90, exif=exif)
        paths.append(path)
    return paths


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos"
        photos.mkdir()
        phone_photos(photos)
        preset, _ = presets.load("face-12gb", [f"dataset.images={photos}", f"output.dir={tmp / 'out'}"])
        run = RunLayout(tmp / "run")
        run.root.mkdir()
        start = time.perf_counter()
        summary = dataset.layout(preset, run)
        seconds = time.perf_counter() - start
    kept = sum(e.status == "kept" for e in summary.entries)
    print(f"cores: {len(os.sched_getaffinity(0))}; photos: {N} × {SIZE[0] * SIZE[1] / 1e6:.0f} MP, {kept} used, "
          f"{len(summary.augmented)} augmented, {len(summary.photos)} images at {preset.dataset.resolution} px")
    print(f"prepare: {seconds:.2f} s total, {seconds / N:.3f} s per photo (target ≤ {TARGET_S:g} s for {N})")
    print(f"photo gate: {summary.gate.get('verdict')}")
    for src, why in summary.skipped:
        print(f"  not used: {src.name}: {why}")
    return 0 if seconds <= TARGET_S and kept == N else 1


if __name__ == "__main__":
    sys.exit(main())
