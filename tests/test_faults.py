"""Faults caused for real: two processes at once on one output folder or one run, a lock holder killed with
SIGKILL, SIGTERM to the commands, a trainer killed from outside, a full disk (a small loop-mounted ext4 as
output.dir, filled during a real training and an evaluation; needs root), status.json and events.jsonl cut in
half before every reader, a Ray worker killed mid-trial, two web tabs pressing Start at once."""

from __future__ import annotations

import json
import os
import re
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


# ---------------------------------------------------------------- a state half-written by a kill during its save
def saved_state(model: Path, name: str, step: int, mtime: float) -> Path:
    """A state folder with the files accelerate's save_state writes for sd-scripts (torch.save, safetensors)."""
    import torch
    from safetensors.torch import save_file

    state = model / name
    state.mkdir(parents=True)
    (state / "train_state.json").write_text(json.dumps({"current_epoch": 1, "current_step": step}))
    save_file({"lora_unet_a.lora_down.weight": torch.randn(4, 64), "lora_unet_a.alpha": torch.tensor(4.0)},
              str(state / "model.safetensors"))
    torch.save({"state": {0: {"exp_avg": torch.randn(4, 64)}}, "param_groups": [{"lr": 1e-4}]}, state / "optimizer.bin")
    torch.save({"last_epoch": step, "_last_lr": [1e-4]}, state / "scheduler.bin")
    torch.save({"random_state": (3, tuple(range(625)), None), "torch_manual_seed": torch.get_rng_state()},
               state / "random_states_0.pkl")
    for p in [*state.iterdir(), state]:
        os.utime(p, (mtime, mtime))
    return state


def cut(path: Path, keep: float = 0.5) -> None:
    """Cut a file short for real, as a kill mid-write leaves it."""
    with open(path, "r+b") as f:
        f.truncate(int(path.stat().st_size * keep))


def test_a_state_cut_short_or_missing_a_file_is_not_whole(tmp_path):
    """state_problem on real files: each of sd-scripts' state files missing or cut short is named."""
    import pickle

    from faceswap_kohya.runs.artifacts import state_problem

    base = tmp_path / "model"
    assert state_problem(saved_state(base, "whole-state", 3, time.time())) is None
    for i, (name, damage, says) in enumerate([
            ("model.safetensors", cut, "model.safetensors is cut short"),
            ("optimizer.bin", cut, "optimizer.bin is cut short or unreadable"),
            ("scheduler.bin", lambda p: cut(p, 0.9), "scheduler.bin is cut short or unreadable"),
            ("random_states_0.pkl", Path.unlink, "random_states_0.pkl is missing"),
            ("optimizer.bin", Path.unlink, "optimizer.bin is missing"),
            ("train_state.json", lambda p: cut(p, 0.5), "train_state.json can't be read"),
            ("train_state.json", Path.unlink, "train_state.json is missing")]):
        state = saved_state(base, f"s{i}-state", 3, time.time())
        damage(state / name)
        assert (state_problem(state) or "").startswith(says), (name, state_problem(state))
    plain = saved_state(base, "plain-state", 3, time.time())  # a plain (not zip) pickle: its opcodes must reach STOP
    (plain / "random_states_0.pkl").write_bytes(pickle.dumps({"seed": list(range(2000))}))
    assert state_problem(plain) is None
    cut(plain / "random_states_0.pkl")
    assert state_problem(plain) == "random_states_0.pkl is cut short or unreadable"


def test_resume_skips_a_half_written_newest_state_and_says_so(fake_kohya, photos, tmp_path):  # noqa: F811
    """The newest state lost its optimizer.bin's second half (the trainer killed mid-save): resume continues from the
    one before, warning which state was skipped and why; the earlier run is left as it was."""
    from faceswap_kohya import events as ev

    run = RunLayout(tmp_path / "out" / "myface" / "20260101-000000")
    run.root.mkdir(parents=True)
    preset, _ = presets.load("cpu-check", fast_settings(fake_kohya, photos, tmp_path / "out", "training.save_state=true"))
    run.preset.write_text(presets.dump(preset))
    run.config_toml.write_text("")
    import shutil

    shutil.copytree(photos, run.img / "1_myface woman")  # the earlier run's photo folder (resume copies it)
    older = saved_state(run.model, "myface-000001-state", 2, time.time() - 60)
    newer = saved_state(run.model, "myface-000002-state", 4, time.time() - 30)
    cut(newer / "optimizer.bin")
    before = tree(run.root)
    events = []
    result = resume(run.root, on_event=events.append)
    assert result.ok, result.diagnosis
    warned = [e.text for e in events if isinstance(e, ev.Warning)]
    assert warned == [f"skipped the newer saved state {newer.name} (optimizer.bin is cut short or unreadable): the trainer "
                      "was stopped while saving it"], warned
    assert f"resuming {run.root.name} from {older.name} in {result.run.root}" in [getattr(e, "text", "") for e in events]
    assert f"--resume {older} --skip_until_initial_step" in result.run.log.read_text().splitlines()[0]
    assert tree(run.root) == before


def test_resume_with_no_whole_state_is_refused_naming_the_folder_and_leaves_no_run(tmp_path):
    """Every state half-written: `train --resume` exits 2 with one message naming the model folder and each state's
    fault, before anything starts; no new run folder is made."""
    run = RunLayout(tmp_path / "out" / "myface" / "20260101-000000")
    run.root.mkdir(parents=True)
    preset, _ = presets.load("cpu-check", [f"output.dir={tmp_path / 'out'}", "training.save_state=true"])
    run.preset.write_text(presets.dump(preset))
    run.config_toml.write_text("")
    cut(saved_state(run.model, "myface-000001-state", 2, time.time() - 60) / "model.safetensors")
    (saved_state(run.model, "myface-000002-state", 4, time.time() - 30) / "random_states_0.pkl").unlink()
    before = tree(tmp_path)
    proc = start(["train", "--resume", str(run.root)], tmp_path)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, output
    assert (f"error: {run.model}: no complete saved training state to resume from: myface-000002-state "
            "(random_states_0.pkl is missing); myface-000001-state (model.safetensors is cut short (shorter than its "
            "header says)) (the trainer was stopped while saving); train again to start over") in output, output
    assert "Traceback" not in output, output
    assert sorted(p.name for p in (tmp_path / "out" / "myface").iterdir()) == [run.root.name], "no new run folder"
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- SIGTERM (docker stop, systemd, Kubernetes)
# Sent to the command alone, not to its process group: whatever the command started must be stopped by it.
from sweep_data import alive_with, fake_kohya, fast_settings  # noqa: E402,F401  (fake_kohya is a fixture)


def start(argv: list[str], cwd: Path, **env_vars) -> subprocess.Popen:
    env = dict(os.environ, FACESWAP_KOHYA_PRESETS=str(presets.PRESETS_DIR), **env_vars)
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


def test_sigterm_to_serve_mid_training_stops_the_trainer_and_leaves_the_job_queued(fake_kohya, photos, tmp_path,  # noqa: F811
                                                                                    monkeypatch):
    """`serve` stopped by SIGTERM while a job trains (the stand-in trainer: process handling only): exit 130, its
    message says the job goes on at the next start, no trainer is left, the run reads interrupted and the job queued."""
    pytest.importorskip("fastapi", reason="the service needs its extra: pip install 'faceswap_kohya[service]'")
    from service_server import Server, create_key

    folder = tmp_path / "presets"  # a preset of the stand-in trainer, as the server's own presets folder
    folder.mkdir()
    preset, _ = presets.load("cpu-check", fast_settings(fake_kohya, photos, tmp_path / "unused", "training.max_steps=2000"))
    (folder / "fake-check.yaml").write_text(presets.dump(preset))
    monkeypatch.setenv("FACESWAP_KOHYA_PRESETS", str(folder))
    out = tmp_path / "serve"
    key, _ = create_key(out, None, "app")
    server = Server(out, None)
    with server.client(key) as c:
        files = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in sorted(photos.glob("*.jpg"))]
        r = c.post("/v1/trainings", files=files, data={"preset": "fake-check", "trigger": "obm", "class_word": "man"})
        assert r.status_code == 201, r.text
        job = r.json()["id"]
    runs = out / "jobs" / job / "runs"
    status = wait_for(lambda: training_statuses(runs, "*/*/status.json"), server.proc, 240, "training")[0]
    wait_for(lambda: "steps:" in (status.parent / "train.log").read_text(errors="replace"), server.proc, 60, "a step")
    assert server.stop() == 130, server.log()
    assert "stopped (SIGTERM): any job it was running is queued again and goes on when the server starts again" \
        in server.log() and "Traceback" not in server.log(), server.log()
    assert alive_with(str(runs)) == "", "no trainer may be left running"
    assert json.loads(status.read_text())["state"] == "interrupted"
    held = Server(out, None, "--hold")  # started again, holding: the job waits in the queue
    try:
        with held.client(key) as c:
            assert c.get(f"/v1/trainings/{job}").json()["status"] == "queued"
    finally:
        assert held.stop() == 130, held.log()


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


# ---------------------------------------------------------------- a full disk: a small real ext4 as output.dir
@pytest.fixture
def small_disk(tmp_path):
    """mount(megabytes) → the mount point of a fresh loop-mounted ext4 of that size (no blocks reserved for root, so
    that "full" means full for everyone); unmounted afterwards. Skipped, saying why, without root or loop devices."""
    import shutil as sh

    why = ("not root" if os.geteuid() != 0 else "no mkfs.ext4" if not sh.which("mkfs.ext4")
           else "no loop device (/dev/loop-control)" if not Path("/dev/loop-control").exists() else "")
    if why:
        print(f"SKIPPED the full-disk test: {why}; it needs root and a loop device to mount a small ext4")
        pytest.skip(f"a full disk needs a loop-mounted ext4: {why}")
    mounted = []

    def mount(megabytes: int) -> Path:
        image, point = tmp_path / f"disk{len(mounted)}.img", tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        subprocess.run(["truncate", "-s", f"{megabytes}M", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-m", "0", "-F", str(image)], check=True)
        done = subprocess.run(["mount", "-o", "loop", str(image), str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"SKIPPED the full-disk test: mount -o loop failed: {done.stderr.strip()}")
            pytest.skip(f"mount -o loop failed: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the disk with one file until `leave` bytes are free (0: until no byte more can be written), at once:
    the bulk allocated in one call, the rest written."""
    import shutil as sh

    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        bulk = sh.disk_usage(disk).free - leave - 1024**2
        if bulk > 0:
            os.posix_fallocate(fd, 0, bulk)
        os.lseek(fd, 0, os.SEEK_END)
        for chunk in (65536, 4096, 512):
            try:
                while sh.disk_usage(disk).free - chunk >= leave or (leave == 0 and chunk == 512):
                    os.write(fd, bytes(chunk))
            except OSError:
                pass
        os.fsync(fd)
    finally:
        os.close(fd)
    return filler


def tree(folder: Path, skip: Path = None) -> dict:
    """Every file under `folder` (but under `skip`) → (size, mtime): to see that nothing else was touched."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file() and not (skip and p.is_relative_to(skip))}


def assert_failed_for_lack_of_space(output: str, code: int, status: Path, disk: Path, outside: dict, filler: Path,
                                    field: str = "output.dir"):
    from faceswap_kohya.runs.artifacts import checkpoints, whole_safetensors
    from faceswap_kohya.runs.status import RESERVE

    run = status.parent
    assert code == 1, output
    assert f"training failed: no space left on device in {run}" in output, output
    assert f"free space on that disk, or set {field} to a folder on another disk" in output, output
    assert "Traceback" not in output and "failed unexpectedly" not in output and "LoRA written" not in output, output
    state = json.loads(status.read_text())  # whole, and not left at `training`
    assert state["state"] == "failed" and "no space left on device" in state["error"], state
    assert state["loras"] == [], "no half-written LoRA may be listed"
    assert all(whole_safetensors(p) for p in run.rglob("*.safetensors")), "a half-written LoRA was left in the run"
    assert checkpoints(run) == []
    for line in (run / "events.jsonl").read_bytes().splitlines():
        json.loads(line)  # no torn line
    assert not (run / RESERVE).exists()
    assert alive_with(str(run / "config.toml")) == "", "no trainer may be left running"
    assert tree(disk, skip=run) == outside, "only the run folder may change"
    assert sorted(p.name for p in disk.iterdir()) == ["filler", "lost+found", "out"]


def test_free_space_is_checked_against_what_the_run_will_write(fake_kohya, photos, small_disk, tmp_path):  # noqa: F811
    """A 40 MB disk can't hold a rank-64 SDXL LoRA: refused before anything is written, saying how much is needed."""
    disk = small_disk(40)
    proc = start(["train", "cpu-check", *fast_settings(fake_kohya, photos, disk / "out", "network.dim=64")], tmp_path)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, output
    assert re.search(r"output.dir: this run needs about [\d.]+ MB \(1 LoRA file of 3\d\d\.\d MB, ", output), output
    assert f"is free in {disk}; free space there or set output.dir to a folder on another disk" in output, output
    assert sorted(p.name for p in disk.iterdir()) == ["lost+found"], "nothing may be written"


@pytest.mark.parametrize("front_end", ["cli", "web"])
def test_a_disk_filled_mid_training_fails_the_run_naming_the_folder(fake_kohya, photos, small_disk, tmp_path, front_end):  # noqa: F811
    """The stand-in trainer: the disk filled after its first step (its log can't be written any more, nor its LoRA).
    Started by the web app (which names its own folder to the CLI it starts), the message names the app's folder."""
    from faceswap_kohya.errors import SPACE_FIELD_ENV
    from faceswap_kohya.web.common import SPACE_FIELD

    disk = small_disk(192)
    before = tree(photos)
    field = {"cli": "output.dir", "web": SPACE_FIELD}[front_end]
    env = {SPACE_FIELD_ENV: SPACE_FIELD} if front_end == "web" else {}
    proc = start(["train", "cpu-check", *fast_settings(fake_kohya, photos, disk / "out", "training.max_steps=12")], tmp_path,
                 **env)
    status = wait_for(lambda: training_statuses(disk / "out", "*/*/status.json"), proc, 120, "training")[0]
    wait_for(lambda: " 1/12 " in (status.parent / "train.log").read_text(errors="replace"), proc, 60, "a step")
    filler = fill(disk)
    outside = tree(disk, skip=status.parent)
    output, _ = proc.communicate(timeout=120)
    assert_failed_for_lack_of_space(output, proc.returncode, status, disk, outside, filler, field)
    assert tree(photos) == before
    if front_end == "web":
        assert "output.dir" not in output, output


def test_the_web_app_tells_the_cli_it_starts_to_name_the_app_s_folder(tmp_path, monkeypatch):
    """What the web app's Train button starts (spawn_cli) carries the app's folder setting in its environment, so a
    full disk during that training names the app's folder (the test above runs the CLI with that environment)."""
    from faceswap_kohya.errors import SPACE_FIELD_ENV
    from faceswap_kohya.web import follow
    from faceswap_kohya.web.common import SPACE_FIELD, Workspace

    monkeypatch.delenv(SPACE_FIELD_ENV, raising=False)
    started = []
    real_popen = subprocess.Popen

    def recording_popen(argv, **kwargs):
        started.append(kwargs.get("env"))
        return real_popen(argv, **kwargs)

    monkeypatch.setattr(follow.subprocess, "Popen", recording_popen)
    launch = follow.spawn_cli(["--help"], Workspace(tmp_path / "out"))
    assert launch.proc.wait(timeout=60) == 0
    assert started and started[0][SPACE_FIELD_ENV] == SPACE_FIELD
    assert SPACE_FIELD_ENV not in os.environ, "only the started process gets it"


@pytest.mark.trainer
def test_the_real_trainer_on_a_disk_that_fills_up_fails_cleanly(photos, small_disk, tmp_path):
    """sd-scripts, the disk filled after its first step: its LoRA save fails; the run reads failed, naming the folder,
    and the half-written LoRA is neither listed nor kept."""
    from conftest import kohya_available

    if not kohya_available():
        pytest.skip("sd-scripts not set up (vendor/sd-scripts + .venv-kohya): run scripts/setup.sh")
    disk = small_disk(160)
    before = tree(photos)
    proc = start(["train", "cpu-check", f"dataset.images={photos}", f"output.dir={disk / 'out'}", "training.max_steps=3",
                  "sampling.prompts=[]", "sampling.every_n_epochs=null", "evaluate.enabled=false"], tmp_path)
    status = wait_for(lambda: training_statuses(disk / "out", "*/*/status.json"), proc, 600, "training")[0]
    log = status.parent / "train.log"
    wait_for(lambda: "steps:" in log.read_text(errors="replace") and " 1/3 " in log.read_text(errors="replace"),
             proc, 600, "the first step")
    filler = fill(disk)
    outside = tree(disk, skip=status.parent)
    output, _ = proc.communicate(timeout=300)
    assert_failed_for_lack_of_space(output, proc.returncode, status, disk, outside, filler)
    assert tree(photos) == before


def test_a_disk_filled_mid_evaluation_removes_the_unfinished_evaluation(fake_kohya, photos, small_disk, tmp_path):  # noqa: F811
    """`evaluate` on a disk with room for a few images only: one message naming the folder and what to set (the CLI's
    --out), no half evaluation left; the web app's Evaluate button on the same disk names the app's own folder."""
    disk = small_disk(128)
    proc = start(["train", "cpu-check", *fast_settings(fake_kohya, photos, disk / "out", "evaluate.enabled=false")], tmp_path)
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, output
    (run,) = [p.parent for p in (disk / "out").glob("*/*/status.json")]
    status_before = (run / "status.json").read_bytes()
    fill(disk, leave=48 * 1024)
    outside = tree(disk, skip=run / "eval")
    proc = start(["evaluate", str(run)], tmp_path)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2, output
    assert f"error: no space left on device in {run / 'eval'}" in output, output
    assert re.search(r"the unfinished evaluation \d{8}-\d{6} was removed", output) and "Traceback" not in output, output
    assert "free space on that disk, or set --out to a folder on another disk" in output, output
    assert "base: " in output, "it failed mid-evaluation, after the first images"
    assert not any((run / "eval").glob("*/*")), "no unfinished evaluation may be left"
    assert (run / "status.json").read_bytes() == status_before
    assert tree(disk, skip=run / "eval") == outside

    # the web app's Evaluate button (what its click runs), the app's output folder on that disk: the page's own words
    from faceswap_kohya.web import evaluate as evaluate_page
    from faceswap_kohya.web.common import Workspace, run_job

    ws = Workspace(disk / "out")
    states = list(run_job("evaluate", lambda emit: evaluate_page.evaluate(ws, str(run), emit)))
    shown = states[-1].progress
    assert shown.startswith("**evaluate: failed**"), shown
    assert f"error: no space left on device in {run / 'eval'}" in shown, shown
    assert ("free space on that disk, or set the app's output folder (faceswap-kohya ui --output) to a folder on "
            "another disk and run again") in shown and "--out " not in shown, shown
    assert re.search(r"the unfinished evaluation \d{8}-\d{6} was removed", shown), shown
    assert "base: " in states[-1].log, "it failed mid-evaluation, after the first images"
    assert not any((run / "eval").glob("*/*")), "no unfinished evaluation may be left"
    assert (run / "status.json").read_bytes() == status_before
    assert tree(disk, skip=run / "eval") == outside


# ---------------------------------------------------------------- torn files: every reader
def torn_run(job: Path) -> Path:
    """A service job's folder holding one real run whose status.json and events.jsonl were both cut mid-write."""
    from faceswap_kohya import events as ev
    from faceswap_kohya.runs.status import RunRecorder

    root = job / "runs" / "myface" / "20260101-000000"
    root.mkdir(parents=True)
    preset, _ = presets.load("cpu-check")
    (root / "preset.yaml").write_text(presets.dump(preset))
    (root / "config.toml").write_text("")
    recorder = RunRecorder(root, "myface")
    recorder.set(state="training")
    for step in (1, 2, 3):
        recorder.record(ev.Step(step, 10, eta="00:09", loss=0.5 / step))
    recorder.close()
    for name in ("status.json", "events.jsonl"):
        data = (root / name).read_bytes()
        (root / name).write_bytes(data[: len(data) // 2 + 7])
    return root


def test_every_reader_takes_a_torn_run_as_unknown_or_interrupted_never_a_crash(tmp_path):
    """The runs list, the web app's pages, the sweeps' trial summaries and live status, resume, and the service API's
    views on a run whose status.json and events.jsonl were cut in half (power lost mid-write)."""
    from faceswap_kohya.jobs.sweeps_status import live
    from faceswap_kohya.runs.read import UNKNOWN, read_run
    from faceswap_kohya.runs.status import list_runs
    from faceswap_kohya.sweeps.trials import summarize_run
    from faceswap_kohya.web import runs as runs_page
    from faceswap_kohya.web.common import Workspace, run_choices
    from faceswap_kohya.web.follow import running_training, stop_run, view_of

    job = tmp_path / "job"
    root = torn_run(job)
    before = tree(tmp_path)
    out = job / "runs"
    # the runs list: listed, as unknown, saying why
    ((listed, status),) = list_runs(out)
    assert listed == root and status["state"] == UNKNOWN and "status.json can't be read" in status["error"]
    record = read_run(root)
    assert record.state == UNKNOWN and not record.active and record.steps >= 1  # the whole event lines still tell
    # the web app: the Runs page, the run pickers, a followed run, Stop
    ws = Workspace(out)
    (row,) = runs_page.rows(ws)
    assert row[2] == UNKNOWN and "can't be read" in row[7] and row[8] == str(root)
    assert [v for _, v in run_choices(ws)] == [str(root)] and "unknown" in run_choices(ws)[0][0]
    assert running_training(ws) is None
    assert view_of(root).headline().startswith(f"**myface/{root.name}**: ")
    with pytest.raises(UserError, match="no status.json"):
        stop_run(root)
    # sweeps: a trial's summary and its live status
    assert summarize_run(root)["state"] == "interrupted"
    assert live(out) == ""
    # resume: the run's own problem, one message
    with pytest.raises(UserError, match="no saved training state"):
        resume(root)
    # the service API
    pytest.importorskip("fastapi", reason="the service needs fastapi: pip install -e '.[service]'")
    from faceswap_kohya.runs.status import read_json_lines
    from faceswap_kohya.service.queue import stop_left_trainers
    from faceswap_kohya.service.views import evaluation_summary, progress

    assert progress(root)["step"] == 0 and progress(root)["eta_s"] in (None, 9)
    assert evaluation_summary(root) is None
    assert stop_left_trainers(job, wait_s=0) == []
    lines, offset = read_json_lines(root / "events.jsonl", 0)
    assert all(isinstance(line, dict) for line in lines) and offset < (root / "events.jsonl").stat().st_size
    assert tree(tmp_path) == before, "reading must change nothing"


# ---------------------------------------------------------------- a Ray worker killed mid-trial
def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_a_service_job_whose_ray_worker_dies_fails_saying_so(tmp_path, monkeypatch):
    """The service's queue (a real store, a real Ray instance): the worker running a training is SIGKILLed after it
    made its run folder. The job fails saying the worker died and to submit it again, and its run folder reads
    `failed` with that reason (a WorkerDied event), not the `interrupted` of a writer that vanished."""
    pytest.importorskip("ray", reason="the service runs jobs on Ray: pip install 'faceswap_kohya[service]'")
    from faceswap_kohya import events as ev
    from faceswap_kohya.runs.read import read_run
    from faceswap_kohya.runs.status import read_events
    from faceswap_kohya.service import queue as q
    from faceswap_kohya.service import store as st
    from faceswap_kohya.service.joblog import latest_run
    from faceswap_kohya.service.submit import Config, new_job
    from faceswap_kohya.sweeps.runner import TASK_WORKER_DIED, ray_session

    def dies_mid_training(spec: dict) -> dict:  # a local function: Ray pickles it by value
        import os
        import signal
        from pathlib import Path

        from faceswap_kohya.runs.status import RunRecorder

        root = Path(spec["folder"]) / "runs" / "myface" / "20260101-000000"
        root.mkdir(parents=True)
        RunRecorder(root, "myface").set(state="training")
        os.kill(os.getpid(), signal.SIGKILL)
        return {}

    monkeypatch.setitem(q.TASKS, "training", dies_mid_training)
    store = st.Store(st.database_url(tmp_path, None))
    job, folder = new_job(store, Config(tmp_path, 2**20, 10), "training", "app",
                          {"preset": "cpu-check", "trigger": "obm", "class_word": "man"})
    folder.mkdir(parents=True)  # as submitting does: the job's folder holds its photos and its events
    store.add_job(job)
    with ray_session() as cluster:
        queue = q.Queue(store, cluster)
        queue.run(store.claim_next())
    done = store.job(job["id"])
    assert done["status"] == st.FAILED, done
    assert done["error"]["message"] == f"{TASK_WORKER_DIED}; submit the job again", done["error"]
    run = latest_run(folder)
    record = read_run(run)
    assert record.state == "failed" and record.error == done["error"]["message"], record
    died = [e for e in read_events(run)[0] if isinstance(e, ev.WorkerDied)]
    assert len(died) == 1 and died[0].message == done["error"]["message"] and died[0].pid, died
    store.close()


def test_a_ray_worker_killed_mid_trial_fails_that_trial_only_and_a_rerun_retries_it(fake_kohya, photos, tmp_path):  # noqa: F811
    """SIGKILL to the Ray worker process running one trial (its trainer's parent): that trial is failed with the
    reason, its trainer stopped, the other trial finishes; the same sweep again retries only the killed one."""
    pytest.importorskip("ray", reason="sweeps need Ray: pip install 'faceswap_kohya[sweep]'")
    from faceswap_kohya.sweeps import leaderboard
    from faceswap_kohya.sweeps.runner import WORKER_DIED

    out = tmp_path / "out"
    argv = ["sweep", "cpu-check", "network.dim=2,4", *fast_settings(fake_kohya, photos, out, "training.max_steps=40")]
    proc = start(argv, tmp_path)
    folder = out / "sweeps" / "cpu-check"
    status = wait_for(lambda: training_statuses(folder, "*/*/*/status.json"), proc, 240, "a trial training")[0]
    wait_for(lambda: "steps:" in (status.parent / "train.log").read_text(errors="replace"), proc, 60, "a step")
    trainer = trainer_pid(status)
    worker = parent_of(trainer)
    assert "ray" in Path(f"/proc/{worker}/cmdline").read_bytes().decode(errors="replace").lower(), "the worker itself"
    killed = status.parent.parent.parent.name  # the trial's id: <sweep folder>/<trial>/<name>/<run>
    os.kill(worker, signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, output
    assert f"failed: {killed} " in output and WORKER_DIED in output and "Traceback" not in output, output
    rows = {r["id"]: r for r in leaderboard.read(folder)["rows"]}
    assert rows[killed]["state"] == "failed" and rows[killed]["error"] == WORKER_DIED
    (other,) = [r for i, r in rows.items() if i != killed]
    assert other["state"] == "finished", other
    assert alive_with(str(status.parent / "config.toml")) == "", "the killed worker's trainer must be stopped"
    # its run folder says the worker died (not the `interrupted` a dead writer's `training` reads as)
    from faceswap_kohya import events as ev
    from faceswap_kohya.runs.read import read_run
    from faceswap_kohya.runs.status import read_events

    written = json.loads(status.read_text())
    assert written["state"] == "failed" and written["error"] == WORKER_DIED and written["ended"], written
    assert written["pid"] == worker and trainer_pid(status) == trainer, written
    died = [e for e in read_events(status.parent)[0] if isinstance(e, ev.WorkerDied)]
    assert died == [ev.WorkerDied(WORKER_DIED, worker)], died
    assert WORKER_DIED.startswith("the worker process running it died")
    record = read_run(status.parent)
    assert record.state == "failed" and record.error == WORKER_DIED
    runs_before = {p.parent for p in folder.glob("*/*/*/status.json")}

    proc = start(argv, tmp_path)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    new = {p.parent for p in folder.glob("*/*/*/status.json")} - runs_before
    assert [p.parent.parent.name for p in new] == [killed], "only the killed trial is trained again"
    rows = {r["id"]: r for r in leaderboard.read(folder)["rows"]}
    assert rows[killed]["state"] == "finished" and rows[other["id"]].get("skipped"), rows


def test_a_dead_writer_s_run_is_failed_by_the_process_that_saw_it_die(tmp_path):
    """fail_dead_run: a run whose writer was SIGKILLed mid-training reads failed with the reason, as a WorkerDied event;
    a run whose writer lives, or that ended, is left as it is."""
    from faceswap_kohya import events as ev
    from faceswap_kohya.runs.read import read_run
    from faceswap_kohya.runs.status import RunRecorder, fail_dead_run, read_events

    code = ("import sys, time; from faceswap_kohya.runs.status import RunRecorder\n"
            "r = RunRecorder(sys.argv[1], 'myface'); r.set(state='training'); print('training', flush=True); time.sleep(120)\n")
    dead, live = tmp_path / "dead", tmp_path / "live"
    procs = []
    for root in (dead, live):
        root.mkdir()
        procs.append(subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                      env=dict(os.environ, PYTHONPATH=str(ROOT))))
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["training", "training"]
        procs[0].kill()
        procs[0].wait(timeout=30)
        assert read_run(dead).state == "interrupted"  # what a dead writer's `training` reads as
        died = ev.WorkerDied("the worker process running it died", procs[0].pid)
        live_before = (live / "status.json").read_bytes()
        assert fail_dead_run(live, died) is False and (live / "status.json").read_bytes() == live_before
        assert fail_dead_run(dead, died) is True
        record = read_run(dead)
        assert record.state == "failed" and record.error == died.message and record.status["ended"]
        assert read_events(dead)[0][-1] == died
        assert fail_dead_run(dead, died) is False, "an ended run is not failed twice"
        assert [e for e in read_events(dead)[0] if isinstance(e, ev.WorkerDied)] == [died]
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)
    ended = tmp_path / "ended"
    ended.mkdir()
    recorder = RunRecorder(ended, "myface")
    recorder.set(state="finished")
    recorder.close()
    assert fail_dead_run(ended, ev.WorkerDied("x", 1)) is False and read_run(ended).state == "finished"


# ---------------------------------------------------------------- two web tabs pressing Start at once
def test_two_web_tabs_starting_trainings_one_runs_and_the_other_is_told(fake_kohya, photos, tmp_path, page_of):  # noqa: F811
    """Two browser pages on one real app, each with the preset uploaded, click Start at the same moment (the stand-in
    trainer, launched as the real CLI): one page says started, the other that one runs at a time; one run folder.
    A third Start while it trains names the run; Stop on the first page leaves no trainer."""
    from web_browser import App, open_tab, text_of, wait_text

    from faceswap_kohya.runs.status import read_status

    app = App(tmp_path / "ws", tmp_path / "app.log")
    preset, _ = presets.load("cpu-check", fast_settings(fake_kohya, photos, app.output, "training.max_steps=2000"))
    quick = tmp_path / "quick.yaml"
    quick.write_text(presets.dump(preset))
    before = tree(photos)
    app.start()
    try:
        pages = [page_of(app.url) for _ in range(2)]
        for page in pages:
            open_tab(page, "2 · Train")
            page.locator("#train-preset-file input[type=file]").set_input_files(str(quick))
            wait_text(page, "train-check", "quick.yaml")
            wait_text(page, "train-check", f"photos: {photos}")
        buttons = [page.locator("#train-start") for page in pages]
        for button in buttons:
            button.wait_for(state="visible")
        for button in buttons:  # one after the other at once: both handlers run together (the app's queue takes 4)
            button.click(no_wait_after=True)
        page_said = {i: wait_until_settled(page) for i, page in enumerate(pages)}
        started = [i for i, said in page_said.items() if said.startswith("started ")]
        refused = [i for i, said in page_said.items() if "one runs at a time" in said]
        assert len(started) == 1 and len(refused) == 1, page_said
        (status,) = sorted(app.output.glob("*/*/status.json"))
        root = status.parent
        assert page_said[started[0]].startswith(f"started {root.parent.name}/{root.name} (process "), page_said
        assert "error: a training is" in page_said[refused[0]], page_said
        wait_text(pages[started[0]], "train-progress", f"{root.parent.name}/{root.name}", timeout=60)
        deadline = time.monotonic() + 120
        while (read_status(root) or {}).get("state") != "training" and time.monotonic() < deadline:
            time.sleep(0.3)
        other = pages[refused[0]]
        other.locator("#train-start").click()  # a third Start while it trains names the run
        wait_text(other, "train-message", f"a training is already running: {root.parent.name}/{root.name}; one runs",
                  timeout=120)
        assert sorted(app.output.glob("*/*/status.json")) == [status], "one run folder only"
        pages[started[0]].locator("#train-stop").click()
        deadline = time.monotonic() + 60
        while (read_status(root) or {}).get("state") in ("preparing", "training") and time.monotonic() < deadline:
            time.sleep(0.3)
        assert (read_status(root) or {}).get("state") == "interrupted", text_of(pages[started[0]], "train-message")
    finally:
        app.stop()
    assert alive_with(str(root / "config.toml")) == "", "no trainer may be left running"
    assert tree(photos) == before
    assert all(page.hosts == {f"127.0.0.1:{app.port}"} for page in pages)


def wait_until_settled(page, seconds: float = 180) -> str:
    """The Train page's message once it holds an answer (started, or the error), not gradio's pending text."""
    deadline = time.monotonic() + seconds
    said = ""
    while time.monotonic() < deadline:
        said = " ".join(page.locator("#train-message").inner_text().split())
        if said.startswith("started ") or "error:" in said:
            return said
        page.wait_for_timeout(300)
    raise AssertionError(f"the Train page's message never settled: {said!r}")
