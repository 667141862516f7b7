"""The GPU check's training part: one preset run through the wrapper (`jobs.train.train`) and through its
rendered command.sh by hand, with step times, torch's peak memory inside the trainer's processes and
nvidia-smi's peak sampled alongside."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from faceswap_kohya.jobs.train import train
from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.trainer.launch import trainer_env
from faceswap_kohya.trainer.progress import bar_clock, log_events


# ---------------------------------------------------------------- measurements
def sec_per_it(steps: list[tuple[int, float]], warmup: int) -> Optional[float]:
    """Seconds per step from (step, time) pairs, counting from step `warmup` on; None if too few."""
    first_seen: dict[int, float] = {}
    for step, t in steps:
        first_seen.setdefault(step, t)
    after = sorted((s, t) for s, t in first_seen.items() if s >= warmup)
    if len(after) < 2 or after[-1][0] == after[0][0]:
        return None
    return (after[-1][1] - after[0][1]) / (after[-1][0] - after[0][0])


def budget_gib(vram: str) -> Optional[float]:
    """'24 GB' (a preset's `# VRAM:` line) → 24.0; None when it names no size."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*GB", vram or "", re.I)
    return float(m.group(1)) if m else None


def read_peaks(folder: Path) -> dict:
    """The largest of each figure over the processes the hook saw."""
    peaks: dict = {}
    for f in folder.glob("*.json"):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        for key in ("cuda_max_allocated_mib", "cuda_max_reserved_mib", "max_rss_mib"):
            if data.get(key) is not None:
                peaks[key] = max(peaks.get(key, 0.0), data[key])
    return peaks


class SmiPeak:
    """nvidia-smi's memory.used, sampled every 100 ms in a thread; peak and the value before."""

    def __init__(self) -> None:
        self.baseline_mib: Optional[float] = None
        self.peak_mib: Optional[float] = None
        self._proc = None
        self._thread = None

    @staticmethod
    def available() -> bool:
        return shutil.which("nvidia-smi") is not None

    def __enter__(self):
        if not self.available():
            return self
        query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "--id=0"]
        try:
            self.baseline_mib = float(subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.split()[0])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return self
        self._proc = subprocess.Popen(query + ["-lms", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            try:
                value = float(line.strip())
            except ValueError:
                continue
            self.peak_mib = value if self.peak_mib is None else max(self.peak_mib, value)

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._thread.join(timeout=5)


# ---------------------------------------------------------------- one run each way
@contextmanager
def _peak_dir(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("GPU_CHECK_PEAK_DIR")
    os.environ["GPU_CHECK_PEAK_DIR"] = str(folder)
    try:
        yield folder
    finally:
        if old is None:
            os.environ.pop("GPU_CHECK_PEAK_DIR", None)
        else:
            os.environ["GPU_CHECK_PEAK_DIR"] = old


def log_tail(path: Path, n: int = 12) -> list[str]:
    """The last lines of a trainer log, progress-bar redraws dropped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip() and "steps:" not in ln]
    return [ln[-300:] for ln in lines[-n:]]


def trainer_steps(log: Path) -> list[tuple[int, float]]:
    """(step, seconds) by the trainer's own clock, read from a log: the same for the wrapper's train.log and
    the by-hand run's output, whoever read the pipe and however late (`trainer.progress.bar_clock`)."""
    try:
        return bar_clock(log_events(log.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return []


def _measured(record: dict, warmup: int, peaks: Path, smi: SmiPeak, log: Path) -> dict:
    steps = trainer_steps(log)
    if record.get("status") != "ok":
        record["log_tail"] = log_tail(log)
    record["steps_seen"] = max((s for s, _ in steps), default=0)
    record["s_per_it"] = sec_per_it(steps, warmup)
    p = read_peaks(peaks)
    record["torch_peak_allocated_mib"] = p.get("cuda_max_allocated_mib")
    record["torch_peak_reserved_mib"] = p.get("cuda_max_reserved_mib")
    record["peak_rss_mib"] = p.get("max_rss_mib")
    record["smi_baseline_mib"] = smi.baseline_mib
    record["smi_peak_mib"] = None if smi.peak_mib is None else smi.peak_mib - (smi.baseline_mib or 0.0)
    return record


def run_wrapper(preset, preset_path: Path, limit_s: float, warmup: int, peaks: Path) -> tuple[dict, Optional[RunLayout]]:
    """`train` as the CLI calls it; at the limit it gets SIGINT, the wrapper's own Ctrl-C path."""
    record: dict = {"how": "wrapper"}
    timer = threading.Timer(limit_s, lambda: os.kill(os.getpid(), signal.SIGINT))
    start = time.monotonic()
    result = None
    with _peak_dir(peaks), SmiPeak() as smi:
        timer.start()
        try:
            result = train(preset, preset_path, confirmed=True)
        except KeyboardInterrupt:
            pass
        finally:
            timer.cancel()
    record["total_s"] = time.monotonic() - start
    if result is None or result.interrupted:
        record["status"] = "timeout"
    else:
        record["status"] = "ok" if result.ok else f"failed: {result.diagnosis.reason if result.diagnosis else '?'}"
        record["wall_s"] = result.seconds
        record["prepare_s"] = record["total_s"] - result.seconds
        record["lora"] = str(result.final) if result.final else None
    run = result.run if result else None
    return _measured(record, warmup, peaks, smi, run.log if run else Path("/nonexistent")), run


def run_by_hand(run: RunLayout, name: str, limit_s: float, warmup: int, peaks: Path) -> dict:
    """`sh command.sh` from the run folder, in the environment the wrapper gives the trainer, its output
    straight into a file (nothing reads it meanwhile). The LoRA and the latents cached to disk by an earlier
    run in this folder are removed first (same work both ways)."""
    shutil.rmtree(run.model, ignore_errors=True)
    for cached in run.root.rglob("*.npz"):
        cached.unlink()
    record: dict = {"how": "by hand", "command": str(run.command)}
    fired: list[bool] = []
    with _peak_dir(peaks), SmiPeak() as smi, open(run.root / "by_hand.log", "wb") as log:
        start = time.monotonic()
        proc = subprocess.Popen(["sh", str(run.command)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=trainer_env(), start_new_session=True)
        watchdog = threading.Timer(limit_s, lambda: (fired.append(True), _kill_group(proc)))
        watchdog.start()
        code = proc.wait()
        watchdog.cancel()
        record["wall_s"] = time.monotonic() - start
    lora = run.model / f"{name}.safetensors"
    record["status"] = "timeout" if fired else ("ok" if code == 0 and lora.is_file() else f"failed: exit {code}")
    return _measured(record, warmup, peaks, smi, run.root / "by_hand.log")


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        time.sleep(3)


# ---------------------------------------------------------------- per preset
def summarize(entry: dict) -> dict:
    runs = entry.get("runs", [])

    def median_of(how: str, key: str):
        values = [r[key] for r in runs if r["how"] == how and r.get("status") == "ok" and r.get(key) is not None]
        return statistics.median(values) if values else None

    def peak(key: str):
        values = [r[key] for r in runs if r.get(key) is not None]
        return max(values) if values else None

    s = {"s_per_it_wrapper": median_of("wrapper", "s_per_it"), "s_per_it_by_hand": median_of("by hand", "s_per_it"),
         "wall_s_wrapper": median_of("wrapper", "wall_s"), "wall_s_by_hand": median_of("by hand", "wall_s"),
         "prepare_s": median_of("wrapper", "prepare_s"),
         "torch_peak_allocated_mib": peak("torch_peak_allocated_mib"), "torch_peak_reserved_mib": peak("torch_peak_reserved_mib"),
         "smi_peak_mib": peak("smi_peak_mib"), "peak_rss_mib": peak("peak_rss_mib")}
    s["ratio"] = s["s_per_it_wrapper"] / s["s_per_it_by_hand"] if s["s_per_it_wrapper"] and s["s_per_it_by_hand"] else None
    used = s["smi_peak_mib"] if s["smi_peak_mib"] is not None else s["torch_peak_reserved_mib"]
    gib = entry.get("budget_gib")
    s["within_budget"] = None if used is None or gib is None else used <= gib * 1024
    s["budget_measure"] = "nvidia-smi" if s["smi_peak_mib"] is not None else ("torch reserved" if used is not None else None)
    return s
