"""Faults caused for real: two processes at once on one output folder or one run, a lock holder killed with
SIGKILL. (Faults inside a real training live beside the training they break, in the trainer tests.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
        with pytest.raises(UserError, match="already being resumed by another process; wait for it"):
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


# ---------------------------------------------------------------- SIGTERM (docker stop, systemd, Kubernetes)
# Sent to the command alone, not to its process group: whatever the command started must be stopped by it.
from sweep_data import alive_with, fake_kohya, fast_settings  # noqa: E402,F401  (fake_kohya is a fixture)


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, FACESWAP_KOHYA_PRESETS=str(presets.PRESETS_DIR))
    return subprocess.Popen([sys.executable, "-m", "faceswap_kohya", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, text=True, cwd=cwd, start_new_session=True)


def wait_for(predicate, proc: subprocess.Popen, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if found := predicate():
            return found
        time.sleep(0.3)
    output = proc.communicate(timeout=60)[0] if proc.poll() is not None else "(still running)"
    raise AssertionError(f"{what} never happened: {output}")


def training_statuses(folder: Path, pattern: str) -> list[Path]:
    found = []
    for p in folder.glob(pattern):
        try:
            if json.loads(p.read_text()).get("state") == "training":
                found.append(p)
        except ValueError:
            continue
    return found


def test_sigterm_to_train_stops_the_trainer_keeps_the_run_interrupted_and_says_how_to_go_on(fake_kohya, photos, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    proc = start(["train", "cpu-check", *fast_settings(fake_kohya, photos, out, "training.max_steps=2000")], tmp_path)
    status = wait_for(lambda: training_statuses(out, "*/*/status.json"), proc, 180, "training")[0]
    wait_for(lambda: "steps:" in (status.parent / "train.log").read_text(errors="replace"), proc, 60, "a step")
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "interrupted: the trainer was stopped" in output and "train again to start over" in output, output
    assert "Traceback" not in output
    assert json.loads(status.read_text())["state"] == "interrupted"
    assert alive_with(str(status.parent / "config.toml")) == "", "no trainer may be left running"


def test_sigterm_to_sweep_stops_every_trial_and_leaves_no_trainer(fake_kohya, photos, tmp_path):  # noqa: F811
    pytest.importorskip("ray", reason="sweeps need Ray: pip install 'faceswap_kohya[sweep]'")
    out = tmp_path / "out"
    proc = start(["sweep", "cpu-check", "network.dim=2,4",
                  *fast_settings(fake_kohya, photos, out, "training.max_steps=2000")], tmp_path)
    folder = out / "sweeps" / "cpu-check"
    wait_for(lambda: len(training_statuses(folder, "*/*/*/status.json")) == 2, proc, 240, "both trials training")
    training = training_statuses(folder, "*/*/*/status.json")
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert alive_with(str(folder)) == "", "no trainer may be left running"
    for status in training:
        assert json.loads(status.read_text())["state"] == "interrupted"


def test_sigterm_to_the_web_app_closes_it_with_a_non_zero_exit(tmp_path):
    pytest.importorskip("gradio", reason="the web app needs gradio: pip install -e '.[ui]'")
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start(["ui", "--port", str(port), "--output", str(tmp_path / "ws")], tmp_path)

    def up():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status == 200
        except OSError:
            return False

    wait_for(up, proc, 240, "the web app answering")
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "stopped (SIGTERM)" in output and "Traceback" not in output
    assert not up()


# ---------------------------------------------------------------- the trainer dies while the wrapper lives
def trainer_pid(status: Path) -> int:
    return json.loads(status.read_text())["trainer_pid"]


@pytest.mark.parametrize("sig,says", [(signal.SIGKILL, "the trainer was killed (SIGKILL): out of memory?"),
                                      (signal.SIGSEGV, "the trainer crashed (SIGSEGV)")])
def test_a_trainer_killed_from_outside_fails_the_run_naming_the_signal(fake_kohya, photos, tmp_path, sig, says):  # noqa: F811
    """As the kernel's OOM killer does (SIGKILL), or a segfault: the run reads failed, the message names how the
    trainer died and what to try, with no traceback."""
    out = tmp_path / "out"
    proc = start(["train", "cpu-check", *fast_settings(fake_kohya, photos, out, "training.max_steps=2000")], tmp_path)
    status = wait_for(lambda: training_statuses(out, "*/*/status.json"), proc, 180, "training")[0]
    wait_for(lambda: "steps:" in (status.parent / "train.log").read_text(errors="replace"), proc, 60, "a step")
    os.kill(trainer_pid(status), sig)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, output
    assert f"training failed: {says}" in output and "hint: " in output and "Traceback" not in output, output
    state = json.loads(status.read_text())
    assert state["state"] == "failed" and says in (state["error"] or ""), state


@pytest.mark.trainer
def test_the_real_trainer_killed_mid_training_is_named_and_nothing_is_left(photos, tmp_path):
    """sd-scripts under accelerate's launcher, SIGKILLed after its first step (the trainer itself, not the
    launcher): the message names SIGKILL and memory, the run reads failed, no trainer process is left."""
    from conftest import kohya_available

    if not kohya_available():
        pytest.skip("sd-scripts not set up (vendor/sd-scripts + .venv-kohya): run scripts/setup.sh")
    out = tmp_path / "out"
    proc = start(["train", "cpu-check", f"dataset.images={photos}", f"output.dir={out}", "training.max_steps=20",
                  "sampling.prompts=[]", "sampling.every_n_epochs=null", "evaluate.enabled=false"], tmp_path)
    status = wait_for(lambda: training_statuses(out, "*/*/status.json"), proc, 600, "training")[0]
    log = status.parent / "train.log"
    wait_for(lambda: "steps:" in log.read_text(errors="replace") and " 1/" in log.read_text(errors="replace"),
             proc, 600, "the first step")
    script = subprocess.run(["pgrep", "-f", f"sdxl_train_network.py --config_file {status.parent / 'config.toml'}"],
                            capture_output=True, text=True).stdout.split()
    assert script, "the trainer process must be found to kill it"
    for pid in script:
        os.kill(int(pid), signal.SIGKILL)
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 1, output
    assert "the trainer was killed (SIGKILL): out of memory?" in output and "Traceback" not in output, output
    assert json.loads(status.read_text())["state"] == "failed"
    assert alive_with(str(status.parent / "config.toml")) == ""
