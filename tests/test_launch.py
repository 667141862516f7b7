"""The trainer launcher against a small fake trainer (tests/fake_trainer.py): progress events, Ctrl-C that
stops the whole process group — children that ignore SIGINT included — with no orphan left, a stalled
trainer reported with its last line, a launcher that sleeps while the trainer is quiet, and the watchdog
that stops the trainer of a killed launcher. No sd-scripts needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from faceswap_kohya.events import CheckpointWritten, Epoch, ModelSaved, Step
from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.trainer.launch import judge, launch

FAKE = Path(__file__).parent / "fake_trainer.py"
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads process states from /proc (Linux)")


def state(pid: int) -> str:
    """A process's state letter from /proc ("Z": a zombie, ended but not reaped; "gone": no such process)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return "gone"


def running(pids) -> list[int]:
    return [p for p in pids if state(p) not in ("gone", "Z", "X")]


def assert_no_orphans(pgid: int, pids: list[int]) -> None:
    """Nothing of the trainer's process group runs any more: kill(0) finds no process, or only zombies
    (a container's init may never reap them); pgrep agrees."""
    try:
        os.killpg(pgid, 0)
        group = [int(p) for p in subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()]
        assert not running(group), f"left running in group {pgid}: {running(group)}"
    except ProcessLookupError:
        pass
    assert not running(pids), f"left running: {running(pids)}"


def start(mode: str, tmp_path: Path, on_line=lambda line: None, **kwargs):
    """Run the fake trainer through `launch`; returns (code, interrupted, events, lines, run)."""
    run = RunLayout(tmp_path / "run")
    run.root.mkdir()
    events, lines = [], []
    code, interrupted = launch([sys.executable, str(FAKE), mode, str(run.root)], tmp_path, run.log, events.append,
                               lambda line: (lines.append(line), on_line(line)), **kwargs)
    return code, interrupted, events, lines, run


def pids_of(run: RunLayout) -> tuple[int, list[int]]:
    pids = [int(p) for p in (run.root / "pids").read_text().split()]
    return pids[0], pids[1:]


def test_progress_events_log_and_no_child_left_behind(tmp_path):
    code, interrupted, events, lines, run = start("ok", tmp_path)
    assert (code, interrupted) == (0, False)
    steps = [e for e in events if isinstance(e, Step)]
    assert [(s.step, s.total, s.loss) for s in steps] == [(1, 2, 0.1), (2, 2, 0.2)]
    assert Epoch(1, 1) in events and isinstance(events[-1], ModelSaved)
    assert any(isinstance(e, CheckpointWritten) and e.path.endswith("myface-000001.safetensors") for e in events)
    log = run.log.read_text()
    assert log.startswith("$ cd ") and str(FAKE) in log.splitlines()[0] and "model saved." in log
    pgid, pids = pids_of(run)
    assert_no_orphans(pgid, pids)  # the child it left running was stopped with it


def test_ctrl_c_stops_the_whole_group_even_children_that_ignore_it(tmp_path):
    folder = tmp_path / "run"

    def press_ctrl_c():
        deadline = time.monotonic() + 60
        while not (folder / "pids").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends on Ctrl-C

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    started = time.monotonic()
    code, interrupted, events, lines, run = start("stubborn", tmp_path, stop_grace=1.0)
    assert interrupted and code != 0
    assert any(isinstance(e, Step) for e in events), "it was training when stopped"
    pgid, (trainer, ignores_int, ignores_both) = pids_of(run)
    assert_no_orphans(pgid, [trainer, ignores_int, ignores_both])
    assert time.monotonic() - started < 30
    assert signal.getsignal(signal.SIGINT) is not None  # the launcher gave the handler back


def test_a_stalled_trainer_is_stopped_and_reported_with_its_last_line(tmp_path):
    started = time.monotonic()
    code, interrupted, events, lines, run = start("stall", tmp_path, stall_seconds=2, stop_grace=1.0)
    assert not interrupted and code != 0 and time.monotonic() - started < 30
    pgid, pids = pids_of(run)
    assert_no_orphans(pgid, pids)
    result = judge(run, "myface", code, interrupted)
    assert not result.ok
    assert result.diagnosis.reason == ("the trainer stalled: no output for 2 s; its last line was: "
                                       "caching latents: 3/8 [00:02<00:03]")
    assert "kohya.stall_minutes" in result.diagnosis.hint and result.diagnosis.lines == ["caching latents: 3/8 [00:02<00:03]"]


def test_a_trainer_that_prints_is_never_taken_for_stalled(tmp_path):
    code, interrupted, events, lines, run = start("ok", tmp_path, stall_seconds=2)
    assert code == 0 and "stalled" not in run.log.read_text()


def thread_usage() -> tuple[float, int]:
    """This thread's CPU seconds and how often it went to sleep (voluntary context switches)."""
    switches = int(Path("/proc/thread-self/status").read_text().split("voluntary_ctxt_switches:")[1].split()[0])
    return time.thread_time(), switches


def test_the_launcher_sleeps_while_the_trainer_prints_nothing(tmp_path):
    """3 s without output (a stall limit set, so select has a timeout): the reading thread sleeps once and
    wakes when the trainer prints again: no polling, no CPU time."""
    seen = {}

    def on_line(line: str) -> None:
        if line.startswith("quiet"):
            seen[line] = thread_usage()

    started = time.monotonic()
    code, interrupted, events, lines, run = start("quiet", tmp_path, stall_seconds=60, on_line=on_line)
    assert (code, interrupted) == (0, False) and Step(1, 1, "00:03", "00:00", 3.0, 0.1) in events
    assert time.monotonic() - started < 10  # the watchdog was released at once, not waited for
    (cpu0, sleeps0), (cpu1, sleeps1) = seen["quiet from now"], seen["quiet no more"]
    assert cpu1 - cpu0 < 0.05, f"the launcher used {cpu1 - cpu0:.3f} s of CPU while the trainer was quiet"
    assert sleeps1 - sleeps0 <= 2, f"the launcher woke {sleeps1 - sleeps0} times in 3 quiet seconds"


def test_a_killed_launcher_s_watchdog_stops_the_trainer(tmp_path):
    """SIGKILL of the process that launched the trainer: the watchdog (blocked on a pipe only the launcher
    holds) sees it die and stops the trainer's whole group."""
    folder = tmp_path / "run"
    folder.mkdir()
    code = ("import sys; from pathlib import Path; from faceswap_kohya.trainer.launch import launch; "
            f"launch([sys.executable, {str(FAKE)!r}, 'long', {str(folder)!r}], Path({str(tmp_path)!r}), "
            f"Path({str(folder / 'train.log')!r}))")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    launcher = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    while not (folder / "pids").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (folder / "pids").is_file(), "the fake trainer never started"
    pgid, pids = pids_of(RunLayout(folder))
    assert running(pids) == pids, "trainer and child run"
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 20
    while running(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert_no_orphans(pgid, pids)


def test_the_trainer_gets_huge_page_allocation_unless_the_user_chose(monkeypatch):
    from faceswap_kohya.config.torchenv import TORCH_ENV
    from faceswap_kohya.trainer.launch import trainer_env

    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    assert TORCH_ENV == {"THP_MEM_ALLOC_ENABLE": "1"} and trainer_env()["THP_MEM_ALLOC_ENABLE"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    assert trainer_env()["THP_MEM_ALLOC_ENABLE"] == "0", "a value the user set is kept"
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    assert "PYTHONPATH" not in trainer_env()
