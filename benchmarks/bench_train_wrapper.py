"""Wrapper overhead: the same cpu-check run launched by the wrapper (`runner.train`) and by its rendered
command run by hand (command.sh), alternately, twice each. Prints the trainer's wall time both ways and
the ratio (target ≤ 1.02), plus the wrapper's one-off preparation (face checks, crops, TOMLs).

Needs scripts/setup.sh done; each run takes ~1 min and ~22 GB RAM (run nothing else meanwhile).
Usage: .venv/bin/python benchmarks/bench_train_wrapper.py [--photos DIR] [--rounds N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time

from faceswap_kohya.config import presets
from faceswap_kohya.jobs import train as runner

QUIET = ["sampling.prompts=[]", "sampling.every_n_epochs=null"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", default="builtin:sample-photos")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    wrapped, by_hand, prep = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        preset, path = presets.load("cpu-check", [f"dataset.images={args.photos}", f"output.dir={tmp}", *QUIET])
        for _ in range(args.rounds):
            start = time.monotonic()
            result = runner.train(preset, path)
            assert result.ok, result.diagnosis
            wrapped.append(result.seconds)
            prep.append(time.monotonic() - start - result.seconds)
            shutil.rmtree(result.run.model)
            start = time.monotonic()
            subprocess.run(["sh", str(result.run.command)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            by_hand.append(time.monotonic() - start)
            assert (result.run.model / "myface-check.safetensors").is_file(), "the hand-run command wrote no LoRA"
    w, h = statistics.median(wrapped), statistics.median(by_hand)
    print(f"trainer via wrapper: {w:.1f} s  by hand: {h:.1f} s  ratio: {w / h:.3f} (target <= 1.02)  "
          f"[runs: {', '.join(f'{x:.1f}' for x in wrapped)} | {', '.join(f'{x:.1f}' for x in by_hand)}]")
    print(f"wrapper preparation before launch (photo checks, crops, TOMLs): {statistics.median(prep):.1f} s")


if __name__ == "__main__":
    main()
