"""Live likeness costs (scoring/live.py), without a trainer: what the wrapper pays while a training writes samples.

Measures, in this process:
- idle: the watcher's own CPU while no sample appears (its once-a-second look at the sample folder), per minute;
- first sample: loading the face model and embedding the training and held-out photos (once per training) plus
  scoring a 1024 px sample with a face, and later samples with a face and without one (the check model's case);
- the pipe reader's worst wait meanwhile: the longest gap of a thread that wakes every millisecond, as the
  launcher's pipe reader does when the trainer prints (the scoring runs in a child process: dlib holds the GIL
  there, not here).

Targets: idle ≤ 0.05 s CPU a minute; the longest gap ≤ 0.3 s (it was 1.2 s with the scoring in this process). Needs the faces extra (dlib). Usage: .venv/bin/python benchmarks/bench_live_likeness.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceswap_kohya.config import presets  # noqa: E402
from faceswap_kohya.runs.layout import RunLayout, instance_dir, validation_dir  # noqa: E402
from faceswap_kohya.scoring.live import LiveLikeness  # noqa: E402

FACES = ROOT / "tests" / "data" / "faces"
IDLE_S = 10.0
LONGEST_S = 0.3


def thread_cpu(thread: threading.Thread) -> float:
    """A thread's CPU seconds from /proc (Linux)."""
    fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Gaps:
    """The longest time a thread waking every millisecond had to wait."""

    def __init__(self):
        self.longest, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            self.longest, last = max(self.longest, now - last), now

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.longest


def main() -> int:
    preset, _ = presets.load("cpu-check")
    with tempfile.TemporaryDirectory() as tmp:
        run = RunLayout(Path(tmp) / "run")
        for folder, names in ((instance_dir(preset, run), ["obama.jpg", "obama3.jpg", "obama_partial_face.jpg"]),
                              (validation_dir(preset, run), ["obama_partial_face2.jpg"])):
            folder.mkdir(parents=True)
            for name in names:
                shutil.copy(FACES / name, folder / name)
        run.samples.mkdir(parents=True)
        got, arrived = [], threading.Event()
        watcher = LiveLikeness(run, preset, lambda e: (got.append((time.perf_counter(), e)), arrived.set())).start()
        time.sleep(1.0)
        start = thread_cpu(watcher.thread)
        time.sleep(IDLE_S)
        idle = (thread_cpu(watcher.thread) - start) * 60 / IDLE_S
        face = Image.open(FACES / "obama2.jpg").convert("RGB")
        face = face.resize((1024, round(1024 * face.height / face.width)))  # a 1024 px sample, not distorted
        noise = Image.effect_noise((1024, 1024), 80).convert("RGB")
        timings = []
        gaps = Gaps()
        for k, (label, image) in enumerate((("first sample (face model + photos + a face)", face),
                                            ("a sample with a face", face), ("a sample with no face", noise)), 1):
            arrived.clear()
            path = run.samples / f"bench_e{k:06d}_00_20260101120000_1.png"
            image.save(path)
            written = time.perf_counter()
            if not arrived.wait(120):
                print(f"{label}: not scored within 120 s")
                return 1
            timings.append((label, got[-1][0] - written, got[-1][1].text))
        longest = gaps.stop()
        watcher.stop()
    print(f"idle watcher: {idle:.4f} s CPU a minute (target ≤ 0.05)")
    for label, seconds, text in timings:
        print(f"{label}: scored {seconds:.2f} s after it was written (≤ 1 s of it waiting for the next look): {text}")
    print(f"longest wait of a thread beside the scoring: {longest:.3f} s (target ≤ {LONGEST_S:g})")
    return 0 if idle <= 0.05 and longest <= LONGEST_S else 1


if __name__ == "__main__":
    sys.exit(main())
