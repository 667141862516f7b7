"""Wrapper overhead: the same cpu-check run launched as `faceswap-kohya train` does (`jobs.train.train` with the
CLI's progress bar) and by its rendered command run by hand (`sh command.sh`, output to a file, nothing
reading it), alternately (the order swaps each round).

Prints, per run and as medians: the trainer's s/it after warm-up by its own clock (step × the mean rate its
bar shows, read from each side's log: `trainer.progress.bar_clock`, the GPU check's way), the ratio wrapper /
by hand (target ≤ 1.02), the wrapper's own CPU seconds while the trainer ran (its process, all threads:
reading the pipe, parsing, the log, events.jsonl, status.json, the bar) against the trainer's CPU seconds,
and the spread of the by-hand runs among themselves (how noisy the machine is).

Needs scripts/setup.sh done; each run takes ~1-2 min and ~22 GB RAM (run nothing else meanwhile).
Usage: .venv/bin/python benchmarks/bench_train_wrapper.py [--photos DIR] [--rounds N] [--steps N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_check_train import sec_per_it  # noqa: E402  (the same s/it as the GPU check's table)

from faceswap_kohya.cli.progress import Printer  # noqa: E402
from faceswap_kohya.config import presets  # noqa: E402
from faceswap_kohya.events import StageFinished, StageStarted  # noqa: E402
from faceswap_kohya.jobs import train as runner  # noqa: E402
from faceswap_kohya.trainer.launch import trainer_env  # noqa: E402
from faceswap_kohya.trainer.progress import bar_clock, log_events  # noqa: E402

QUIET = ["sampling.prompts=[]", "sampling.every_n_epochs=null"]
TARGET_RATIO = 1.02


def cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def trainer_s_per_it(log: Path, warmup: int):
    return sec_per_it(bar_clock(log_events(log.read_text(encoding="utf-8", errors="replace"))), warmup)


def wrapped(preset, path, warmup: int) -> dict:
    """One run as the CLI does it; CPU times from the training stage's start to its end."""
    marks = {}
    printer = Printer()

    def on_event(event) -> None:
        if isinstance(event, (StageStarted, StageFinished)) and event.stage == "training":
            marks[type(event).__name__] = (cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN), time.monotonic())
        printer(event)

    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
        result = runner.train(preset, path, on_event=on_event, confirmed=True)
        printer.close()
    assert result.ok, result.diagnosis
    (s0, c0, t0), (s1, c1, t1) = marks["StageStarted"], marks["StageFinished"]
    return {"run": result.run, "wall_s": t1 - t0, "wrapper_cpu_s": s1 - s0, "trainer_cpu_s": c1 - c0,
            "s_per_it": trainer_s_per_it(result.run.log, warmup)}


def by_hand(run, warmup: int) -> dict:
    shutil.rmtree(run.model, ignore_errors=True)
    log = run.root / "by_hand.log"
    c0, t0 = cpu(resource.RUSAGE_CHILDREN), time.monotonic()
    with open(log, "wb") as out:
        subprocess.run(["sh", str(run.command)], check=True, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       env=trainer_env(), start_new_session=True)
    wall, trainer_cpu = time.monotonic() - t0, cpu(resource.RUSAGE_CHILDREN) - c0
    assert (run.model / "myface-check.safetensors").is_file(), "the hand-run command wrote no LoRA"
    return {"wall_s": wall, "trainer_cpu_s": trainer_cpu, "s_per_it": trainer_s_per_it(log, warmup)}


def spread(values: list[float]) -> str:
    m = statistics.median(values)
    return f"{(max(values) - min(values)) / m * 100:.1f} %" if m else "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", default="builtin:sample-photos")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=12, help="training steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="steps before s/it is counted")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"dataset.images={args.photos}", f"output.dir={tmp}", f"training.max_steps={args.steps}", *QUIET]
        preset, path = presets.load("cpu-check", overrides)
        previous = None
        for round_no in range(args.rounds):
            h = by_hand(previous, args.warmup) if round_no % 2 else None  # odd rounds: by hand first
            w = wrapped(preset, path, args.warmup)
            run = w.pop("run")
            if h is None:
                h = by_hand(run, args.warmup)
            rows.append((w, h))
            print(f"round {round_no + 1}: s/it wrapper {w['s_per_it']:.3f}  by hand {h['s_per_it']:.3f}  "
                  f"ratio {w['s_per_it'] / h['s_per_it']:.3f}  | wall {w['wall_s']:.1f} / {h['wall_s']:.1f} s  | "
                  f"wrapper CPU {w['wrapper_cpu_s']:.2f} s, trainer CPU {w['trainer_cpu_s']:.0f} / {h['trainer_cpu_s']:.0f} s",
                  flush=True)
            if previous is not None:
                shutil.rmtree(previous.root)
            previous = run
    ws, hs = [w["s_per_it"] for w, _ in rows], [h["s_per_it"] for _, h in rows]
    ratios = [w / h for w, h in zip(ws, hs)]
    wcpu = [w["wrapper_cpu_s"] for w, _ in rows]
    share = [w["wrapper_cpu_s"] / w["wall_s"] * 100 for w, _ in rows]
    print(f"s/it (trainer's clock, after step {args.warmup} of {args.steps}): wrapper {statistics.median(ws):.3f}, "
          f"by hand {statistics.median(hs):.3f}; ratio median {statistics.median(ratios):.3f} "
          f"[{', '.join(f'{r:.3f}' for r in ratios)}] (target <= {TARGET_RATIO})")
    print(f"wrapper's own CPU while the trainer ran: median {statistics.median(wcpu):.2f} s "
          f"[{', '.join(f'{c:.2f}' for c in wcpu)}] = {statistics.median(share):.2f} % of one core over the run")
    print(f"noise: by-hand s/it spread (max-min)/median {spread(hs)}, wrapper's {spread(ws)} over {len(rows)} runs each")


if __name__ == "__main__":
    main()
