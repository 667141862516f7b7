"""Faults caused for real: two processes at once on one output folder or one run, a lock holder killed with
SIGKILL. (Faults inside a real training live beside the training they break, in the trainer tests.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from faceswap_kohya.config import presets
from faceswap_kohya.errors import UserError
from faceswap_kohya.jobs.train import resume
from faceswap_kohya.runs.layout import RunLayout

ROOT = Path(__file__).resolve().parents[1]


def run_folder(tmp_path: Path) -> RunLayout:
    run = RunLayout(tmp_path / "run")
    run.root.mkdir()
    preset, _ = presets.load("cpu-check")
    run.preset.write_text(presets.dump(preset))
    run.config_toml.write_text("")
    return run


def test_a_second_resume_of_a_run_being_resumed_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path):
    run = run_folder(tmp_path)
    code = ("import sys, time; from faceswap_kohya.runs.lock import held\n"
            "with held(sys.argv[1], 'being resumed'):\n    print('held', flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run.root)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"already being resumed by process {holder.pid}; wait for it"):
            resume(run.root)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # the kernel dropped the dead holder's lock: the next resume gets as far as the run's own problem
    with pytest.raises(UserError, match="no saved training state"):
        resume(run.root)


def test_two_prepares_at_the_same_second_into_one_output_folder_get_two_run_folders(tmp_path, photos):
    """Two real `prepare` processes started together into one output folder: two distinct run folders, both
    complete, the photos untouched."""
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "faceswap_kohya", "prepare", "cpu-check", f"dataset.images={photos}",
            "dataset.framing=as_is", "dataset.mask=none", "dataset.holdout=0", f"output.dir={out}"]
    env = dict(os.environ, FACESWAP_KOHYA_DEBUG="1")
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    runs = sorted(p for p in out.glob("*/*") if p.is_dir())
    assert len(runs) == 2 and runs[0] != runs[1], runs
    assert all((r / "dataset.json").is_file() and (r / "preset.yaml").is_file() and any((r / "img").rglob("*.png"))
               for r in runs)
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
    started = [os.stat(r).st_mtime for r in runs]
    assert abs(started[0] - started[1]) < 60
