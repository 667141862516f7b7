"""A stand-in for sdxl_train_network.py in launcher tests: sd-scripts-like output, and the process-group
behaviour the launcher must handle. Usage: fake_trainer.py MODE FOLDER

- ok: a short run (epoch, tqdm steps redrawn with \\r, a checkpoint, "model saved.") that exits 0 and
  leaves a child process running behind it;
- stubborn: starts a child that ignores SIGINT and one that ignores SIGINT and SIGTERM, then trains on;
- stall: starts a step bar, then prints nothing more;
- quiet: a line, nothing for 3 s, a line and a step, then exits 0 (the launcher must sleep meanwhile);
- long: starts a child (that stops on SIGINT) and trains on until stopped.

Each writes the pids of its process group into FOLDER/pids (one a line; the first is the group id) once
its children run.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

mode, folder = sys.argv[1], Path(sys.argv[2])
IGNORE = {"ok": "", "stubborn-int": "signal.signal(signal.SIGINT, signal.SIG_IGN)",
          "stubborn-term": "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN)"}


def child(ignore: str) -> int:
    code = f"import signal, time\n{ignore}\nwhile True: time.sleep(0.1)"
    return subprocess.Popen([sys.executable, "-c", code]).pid


def write_pids(*children: int) -> None:
    time.sleep(0.5)  # the children have set their signal handlers
    (folder / "pids.part").write_text("\n".join(str(p) for p in (os.getpgid(0), os.getpid(), *children)) + "\n")
    (folder / "pids.part").rename(folder / "pids")


print("loading model", flush=True)
if mode == "ok":
    write_pids(child(IGNORE["ok"]))
    print("epoch 1/1", flush=True)
    for step in (1, 2):
        sys.stderr.write(f"\rsteps:  {step * 50}%|█████     | {step}/2 [00:0{step}<00:00,  1.00s/it, avr_loss=0.{step}]")
        sys.stderr.flush()
        time.sleep(0.1)
    print(f"\nsaving checkpoint: {folder}/myface-000001.safetensors", flush=True)
    print("model saved.", flush=True)
elif mode == "stubborn":
    write_pids(child(IGNORE["stubborn-int"]), child(IGNORE["stubborn-term"]))
    for step in range(1, 10_000):
        sys.stderr.write(f"\rsteps:   0%|          | {step}/10000 [00:01<99:00,  1.00s/it, avr_loss=0.5]")
        sys.stderr.flush()
        time.sleep(0.2)
elif mode == "stall":
    write_pids()
    sys.stderr.write("\rcaching latents: 3/8 [00:02<00:03]")
    sys.stderr.flush()
    time.sleep(600)
elif mode == "quiet":
    write_pids()
    print("quiet from now", flush=True)
    time.sleep(3)
    print("quiet no more", flush=True)
    sys.stderr.write("\rsteps: 100%|██████████| 1/1 [00:03<00:00,  3.00s/it, avr_loss=0.1]\n")
    sys.stderr.flush()
elif mode == "long":
    write_pids(child(IGNORE["ok"]))
    for step in range(1, 10_000):
        sys.stderr.write(f"\rsteps:   0%|          | {step}/10000 [00:01<99:00,  1.00s/it, avr_loss=0.5]")
        sys.stderr.flush()
        time.sleep(0.2)
