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

Copied into a folder as `sdxl_train_network.py` (the sweep and batch tests' stand-in sd-scripts), it is called
as sd-scripts is (`--config_file config.toml --dataset_config dataset.toml`): it prints "loading model", one
step line per `max_train_steps` and "model saved.", and writes `output_dir/output_name.safetensors` from the
template `lora.safetensors` beside it (a LoRA for the tiny SDXL) as the settings say: rank `network_dim`, alpha
`network_alpha`, no text-encoder modules with `network_train_unet_only`, weights seeded by `seed` and the rank,
and sd-scripts' metadata (`ss_network_dim`, `ss_network_alpha`, `ss_output_name`, `ss_seed`,
`ss_max_train_steps`, `ss_dataset_dirs` from the dataset's subsets as sd-scripts counts them). When the config
asks for samples (`sample_prompts` and `sample_every_n_epochs`) and `FAKE_TRAINER_SAMPLES` names image files (joined
with os.pathsep, e.g. real face photos from tests/data/faces), it writes each as the sample of the next epoch, named
and logged as sd-scripts does (`output_dir/sample/<output_name>_e000001_00_<time>_<seed>.png`).
"""

import os
import subprocess
import sys
import time
from pathlib import Path


def write_samples(config: dict, out: Path, steps: int) -> None:
    """FAKE_TRAINER_SAMPLES' images as sd-scripts' samples of epochs 1, 2, ... (when the config asks for samples)."""
    from PIL import Image

    wanted = [p for p in os.environ.get("FAKE_TRAINER_SAMPLES", "").split(os.pathsep) if p]
    if not (wanted and config.get("sample_prompts") and config.get("sample_every_n_epochs")):
        return
    folder = out / "sample"
    folder.mkdir(parents=True, exist_ok=True)
    for epoch, source in enumerate(wanted, start=1):
        print(f"epoch {epoch}/{len(wanted)}", flush=True)
        print(f"generating sample images at step / サンプル画像生成 ステップ: {steps}", flush=True)
        name = f"{config['output_name']}_e{epoch:06d}_00_{time.strftime('%Y%m%d%H%M%S')}_{config.get('seed', 42)}.png"
        Image.open(source).convert("RGB").save(folder / name)


def sd_scripts_stand_in(args: list[str]) -> None:
    import json

    import numpy as np  # not torch: a trial's stand-in starts in a fraction of a second
    import tomllib
    from safetensors.numpy import load_file, save_file

    def section_values(path: str) -> dict:  # config.toml's sections are flattened, as sd-scripts reads them
        sections = tomllib.loads(Path(path).read_text())
        return {k: v for part in sections.values() if isinstance(part, dict) for k, v in part.items()}

    config = section_values(args[args.index("--config_file") + 1])
    dataset = tomllib.loads(Path(args[args.index("--dataset_config") + 1]).read_text())
    steps = int(config.get("max_train_steps") or 2)
    print("loading model", flush=True)
    for i in range(1, steps + 1):
        time.sleep(0.3)
        print(f"steps: {100 * i // steps}%|#| {i}/{steps} [00:01<00:00, 3.00it/s, avr_loss=0.{i}]", flush=True)
    dim, alpha, seed = int(config["network_dim"]), float(config.get("network_alpha", 1.0)), int(config.get("seed", 42))
    rng = np.random.default_rng(seed * 1000 + dim)
    template = load_file(str(Path(__file__).with_name("lora.safetensors")))
    tensors = {}
    for key, value in template.items():
        module = key.split(".")[0]
        if config.get("network_train_unet_only") and not module.startswith("lora_unet_"):
            continue
        if key.endswith(".alpha"):
            tensors[key] = np.array(alpha, dtype=np.float32)
        elif key.endswith(".lora_down.weight"):
            tensors[key] = (rng.standard_normal((dim, *value.shape[1:])) * 0.3).astype(np.float32)
        else:  # lora_up: (out, rank, ...)
            tensors[key] = (rng.standard_normal((value.shape[0], dim, *value.shape[2:])) * 0.3).astype(np.float32)
    dirs = {}
    for subsets in (d.get("subsets", []) for d in dataset.get("datasets", []) if not d.get("validation_split")):
        for sub in subsets:
            folder = Path(sub["image_dir"])
            images = [p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")]
            dirs[folder.name] = {"n_repeats": int(sub.get("num_repeats", 1)), "img_count": len(images)}
    out = Path(config["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    write_samples(config, out, steps)
    meta = {"ss_network_module": "networks.lora", "ss_network_dim": str(dim), "ss_network_alpha": str(alpha),
            "ss_output_name": config["output_name"], "ss_seed": str(seed), "ss_max_train_steps": str(steps),
            "ss_dataset_dirs": json.dumps(dirs)}
    save_file(tensors, str(out / (config["output_name"] + ".safetensors")), metadata=meta)
    print("model saved.", flush=True)


if "--config_file" in sys.argv:
    sd_scripts_stand_in(sys.argv[1:])
    sys.exit(0)

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
