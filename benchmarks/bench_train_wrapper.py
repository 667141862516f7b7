"""Wrapper overhead: the same cpu-check run launched by `faceswap-kohya train` and by its rendered
command run by hand (command.sh). Prints both wall times and the ratio (target ≤ 1.02).

Needs scripts/setup.sh done; each run takes ~1 min and ~22 GB RAM (run nothing else meanwhile).
Usage: .venv/bin/python benchmarks/bench_train_wrapper.py [--photos DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", default="builtin:sample-photos")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "faceswap_kohya", "train", "cpu-check", f"dataset.images={args.photos}",
               f"output.dir={tmp}", "sampling.every_n_epochs=null", "sampling.prompts=[]"]
        start = time.monotonic()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        wrapped = time.monotonic() - start
        run = next(Path(tmp).rglob("command.sh")).parent
        (run / "model").rename(run / "model-wrapped")
        start = time.monotonic()
        subprocess.run(["sh", str(run / "command.sh")], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        by_hand = time.monotonic() - start
        assert (run / "model" / "myface-check.safetensors").is_file(), "the hand-run command wrote no LoRA"
    # the wrapper's time includes laying out the dataset and rendering; the hand run only trains
    print(f"wrapper: {wrapped:.1f} s   by hand: {by_hand:.1f} s   ratio: {wrapped / by_hand:.3f} (target <= 1.02)")


if __name__ == "__main__":
    main()
