"""The GPU check: the figures this project claims, measured in one run of at most 9 1/3 minutes.

For face-24gb, face-12gb and face-8gb at 1024 px (20 steps), through the wrapper (face-24gb also through the
same rendered command by hand: the wrapper's cost): s/it after warm-up, torch's peak memory inside the
trainer's processes and nvidia-smi's peak, against each preset's VRAM budget. Then generation with
diffusers at 1024², 30 steps, fp16 (base vs LoRA unfused vs fused, LoRA load and fuse times)
and one face swap. Base model: the random-weight SDXL check model, built there (random weights cost the
same time and memory as real ones). Every part has a time limit; gpu_check.json and gpu_check.md are
rewritten after each, so what was measured survives a failure or a timeout.

GPU machine (no network): `scripts/gpu-wheels.sh` made the wheels folder here; it is installed with
`pip --no-index --no-deps --target` into one folder for the trainer and one for generation.
`--dry-run`: the same plan on this machine's CPU at toy sizes, with the project's .venv and .venv-kohya:
face-12gb by hand and through the wrapper (two trainer runs: see DRY_PLAN), and generation in fp32 only (half precision is for the GPU: a CPU without native bf16/fp16 takes many
times longer in it).

`--family flux`: flux-24gb, flux-16gb and flux-12gb instead, each through the wrapper at 1024 px (20 steps),
in a check of their own (its own 9 minutes): the base model is a full-size random-weight FLUX.1-dev (the DiT's
19 double and 38 single blocks, ~22 GiB bf16; AE, CLIP-L and T5-XXL in fp8 as the check model's), built there
on the GPU, with the check model's stand-in T5 tokenizer (no network there). GPU only: a full-size FLUX.1 does
not train on this CPU, so `--dry-run` keeps to the SDXL presets (the CPU checks FLUX with `train flux-check`).

    scripts/gpu-check.sh [--dry-run] [OUT_DIR] [-- --family flux]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

import gpu_check_report as report  # noqa: E402  (standard library only: usable before set-up)

HOOK = BENCH / "gpu_check_hook"
CHILD = BENCH / "gpu_check_child.py"
PRESETS = ("face-24gb", "face-12gb", "face-8gb")
FLUX_PRESETS = ("flux-24gb", "flux-16gb", "flux-12gb")
FAMILY_PRESETS = {"sdxl": PRESETS, "flux": FLUX_PRESETS}
GEN_PACKAGES = ["diffusers", "transformers", "accelerate", "peft", "huggingface_hub", "compel", "pydantic", "safetensors"]
TRAINER_PACKAGES = ["transformers", "diffusers", "accelerate", "huggingface_hub", "tokenizers", "safetensors", "bitsandbytes"]


@dataclass(frozen=True)
class Plan:
    resolution: int
    steps: int
    warmup: int  # steps before s/it is counted
    rounds: int  # alternations per preset (wrapper + by hand each)
    gen_size: int
    gen_steps: int
    gen_images: int  # images per timing (median)
    budget_s: float
    limits: dict = field(default_factory=dict)  # seconds per part
    reserve: dict = field(default_factory=dict)  # seconds kept for the parts after this kind
    overrides: tuple = ()  # preset overrides for this machine
    by_hand: tuple = PRESETS  # presets also run by hand (wrapper vs by hand); the others through the wrapper only
    gen_dtypes: tuple = ("fp16", "bf16")  # none: no generation or swap part
    family: str = "sdxl"  # which presets it trains (FAMILY_PRESETS) and on which random-weight base model
    presets: tuple = ()  # the presets trained: none named, the family's all
    gen_warmup: bool = True  # an untimed image before each timing (kernels, autotuning, the adapters' first call)


# On the GPU: the wrapper against the same command by hand for face-24gb (the trainer is the same for all three),
# every preset's memory through the wrapper, generation in fp16. Measured on an H200 (2026-12-04): one training at
# 1024 px, 20 steps takes 83-93 s (about 65 s of it loading and caching), so six trainings, two dtypes of generation
# and a swap did not fit in 540 s (face-8gb was skipped); this plan does, in ~525 s.
GPU_PLAN = Plan(1024, 20, 5, 1, 1024, 30, 2, 560.0,
                {"setup": 90, "environment": 90, "model": 150, "train": 110, "generate": 170, "swap": 100},
                {"train": 130, "generate": 50}, by_hand=("face-24gb",), gen_dtypes=("fp16",), presets=PRESETS)
# On a CPU: fp32, batch 1, the UNet only and rank 4, as the cpu-check preset (at 64 px a rank-64 LoRA
# and its optimizer cost a CPU several times the base model); the dry run checks the plan, not the figures.
DRY_PLAN = Plan(64, 2, 1, 1, 64, 2, 1, 4800.0,
                {"setup": 60, "environment": 180, "model": 900, "train": 900, "generate": 900, "swap": 600}, {},
                ("dataset.enable_bucket=false", "training.mixed_precision='no'", "training.full_bf16=false",
                 "training.batch_size=1", "optimizer.text_encoder_lr=0", "network.dim=4", "network.alpha=2"),
                ("face-12gb",), ("fp32",), presets=("face-12gb",), gen_warmup=False)
# The dry run trains face-12gb only, by hand first (the run folder laid out the wrapper's way) and through the
# wrapper: at toy sizes on a CPU the three presets differ in nothing the trainer does differently there (fp32,
# rank 4, batch 1, 64 px), and every shipped preset's command is checked by sd-scripts' own parser in
# tests/test_render.py; the GPU run trains all three. No warm-up image before a timing there: a CPU has no kernels to
# compile or tune, and each image of the full-size model costs it ~5 s.
# FLUX: the three flux presets through the wrapper only, no generation or swap (a full-size DiT: building it and
# loading it per run take most of the budget); the model part builds ~27 GB of random weights on the GPU.
FLUX_GPU_PLAN = Plan(1024, 20, 5, 1, 1024, 30, 2, 540.0,
                     {"setup": 90, "environment": 90, "model": 180, "train": 150}, {}, (), (), (), "flux", FLUX_PRESETS)


def plan_for(family: str, dry_run: bool) -> Plan:
    """The plan of a check: SDXL on the GPU or (dry run) the CPU; FLUX on the GPU only."""
    if family == "flux":
        if dry_run:
            raise SystemExit("gpu-check: --family flux runs on a GPU only (a full-size FLUX.1 does not train on a CPU; "
                             "`faceswap-kohya train flux-check` checks the FLUX chain there)")
        return FLUX_GPU_PLAN
    return DRY_PLAN if dry_run else GPU_PLAN


def base_overrides(family: str, model, flux_files: dict) -> list[str]:
    """Preset keys for the random-weight base model: the SDXL check model, or the four full-size FLUX files and the
    stand-in T5 tokenizer's cache (a real FLUX model would fetch Google's from the hub: there is no network there)."""
    if family != "flux":
        return ["base_model=builtin:pipeline-check"]
    from faceswap_kohya.models.tokenizers import ensure_flux_check_tokenizers

    keys = {"dit": "path", "ae": "ae", "clip_l": "clip_l", "t5xxl": "t5xxl"}
    return [f"base_model.{keys[k]}={flux_files[k]}" for k in keys] + [f"kohya.tokenizer_cache={ensure_flux_check_tokenizers()}"]


class PartFailed(Exception):
    pass


def run_limited(argv: list, limit_s: float, **kw) -> subprocess.CompletedProcess:
    """A command in its own process group, killed whole at the limit (TimeoutError)."""
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kw)
    try:
        out, _ = proc.communicate(timeout=max(1.0, limit_s))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError(f"over its {limit_s:.0f} s limit") from None
    if proc.returncode != 0:
        raise PartFailed(f"exit {proc.returncode}: " + " / ".join(out.strip().splitlines()[-4:])[-600:])
    return subprocess.CompletedProcess(argv, 0, out, "")


class Check:
    def __init__(self, args, plan: Plan):
        self.args, self.plan, self.out = args, plan, Path(args.out).absolute()
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-")).absolute()
        self.work.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        self.results = {"mode": "dry-run (CPU, toy sizes)" if args.dry_run else "gpu", "started": dt.datetime.now().isoformat(timespec="seconds"),
                        "budget_s": plan.budget_s, "plan": asdict(plan), "notes": [], "environment": {}, "parts": {},
                        "train": {}, "generate": {}, "swap": None}
        self.trainer_python = self.sd_scripts = self.model = self.lora = None
        self.flux_files: dict = {}  # family flux: the full-size random FLUX.1 files
        self.results["family"] = plan.family
        self.overrides: list[str] = list(plan.overrides)

    # ------------------------------------------------------------ bookkeeping
    def remaining(self) -> float:
        return self.plan.budget_s - (time.monotonic() - self.t0)

    def save(self) -> None:
        self.results["elapsed_s"] = time.monotonic() - self.t0
        report.write(self.results, self.out)

    def part(self, name: str, kind: str, fn, min_s: float = 15.0):
        """Run fn(limit_s) as one part: its status, time and error are recorded and the files rewritten."""
        limit = min(self.plan.limits[kind], self.remaining() - self.plan.reserve.get(kind, 0.0))
        record = self.results["parts"][name] = {"limit_s": round(limit, 1)}
        if limit < min_s:
            record.update(status="skipped", note="no time left in the budget")
            self.save()
            return None
        print(f"[gpu-check] {name} (limit {limit:.0f} s)", flush=True)
        start = time.monotonic()
        value = None
        try:
            value = fn(limit)
            record["status"] = "ok"
        except TimeoutError as e:
            record.update(status="timeout", error=str(e))
        except Exception as e:  # noqa: BLE001 - a part's failure is a result, not the end of the check
            record.update(status="failed", error=f"{type(e).__name__}: {str(e)[:600]}")
        record["seconds"] = round(time.monotonic() - start, 2)
        if isinstance(value, dict) and value.get("status") not in (None, "ok"):
            record["status"] = value["status"]
        self.save()
        return value

    # ------------------------------------------------------------ parts
    def setup(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        a = self.args
        if a.dry_run:
            base_python = Path(a.trainer_python or os.environ.get("FACESWAP_KOHYA_PYTHON") or ROOT / ".venv-kohya" / "bin" / "python")
            site = None
        else:
            base_python = Path(a.trainer_python or sys.executable)
            wheels = Path(a.wheels).absolute()
            sites = {}
            for name in ("trainer", "generate"):
                found = sorted((wheels / name).glob("*.whl"))
                if not found:
                    raise PartFailed(f"{wheels / name}: no wheels; run scripts/gpu-wheels.sh here and carry {wheels.name}")
                sites[name] = self.work / f"site-{name}"
                run_limited([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                             "--disable-pip-version-check", "--target", sites[name], *found], deadline - time.monotonic())
            site = sites["trainer"]
            sys.path.insert(0, str(sites["generate"]))
            os.environ["PYTHONPATH"] = os.pathsep.join([str(sites["generate"]), str(ROOT)])
        self.sd_scripts = self._sd_scripts()
        wrapper = self.work / "trainer-python"
        path = os.pathsep.join(str(p) for p in (site, HOOK) if p)
        wrapper.write_text("#!/bin/sh\n# the trainer's python: its own packages and the peak-memory hook first on the path\n"
                           f"export PYTHONPATH='{path}'\nexec '{base_python}' \"$@\"\n")
        wrapper.chmod(0o755)
        self.trainer_python = wrapper
        self.results["environment"]["trainer_python"] = str(base_python)

    def _sd_scripts(self) -> Path:
        for candidate in filter(None, [self.args.sd_scripts, os.environ.get("FACESWAP_KOHYA_SD_SCRIPTS"), ROOT / "vendor" / "sd-scripts"]):
            if (Path(candidate) / "sdxl_train_network.py").is_file():
                return Path(candidate).absolute()
        packed = Path(self.args.wheels) / "sd-scripts.tar.gz"
        if not packed.is_file():
            raise PartFailed("no sd-scripts: neither vendor/sd-scripts nor a packed copy in the wheels folder")
        with tarfile.open(packed) as tar:
            tar.extractall(self.work, filter="data")
        return self.work / "sd-scripts"

    def environment(self, limit: float) -> None:
        env = self.results["environment"]
        deadline = time.monotonic() + limit
        gen = run_limited([sys.executable, CHILD, "env", *GEN_PACKAGES], limit)
        env.update(json.loads(gen.stdout.strip().splitlines()[-1]))
        trainer = run_limited([self.trainer_python, CHILD, "env", *TRAINER_PACKAGES], deadline - time.monotonic())
        env["trainer"] = json.loads(trainer.stdout.strip().splitlines()[-1])
        if shutil.which("nvidia-smi"):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30)
            env["nvidia_smi"] = smi.stdout.strip()
        self.faces_or_no_mask()
        self.save()
        try:
            check = run_limited([self.trainer_python, CHILD, "optimizer"], deadline - time.monotonic())
            env["adamw8bit"] = json.loads(check.stdout.strip().splitlines()[-1])
        except (PartFailed, TimeoutError, ValueError) as e:
            env["adamw8bit"] = {"error": str(e)[:300]}
            self.overrides.append("optimizer.type=AdamW")
            self.results["notes"].append("bitsandbytes' AdamW8bit did not run here: the presets train with AdamW "
                                         "instead (more optimizer memory than with AdamW8bit)")

    def faces_or_no_mask(self) -> None:
        """The presets' loss masks need dlib and its landmark models (about 100 MB: they don't travel)."""
        from faceswap_kohya.errors import UserError
        from faceswap_kohya.faces.identity import get_embedder

        try:
            get_embedder("dlib")
            self.results["environment"]["face_detection"] = "dlib"
        except UserError as e:
            self.results["environment"]["face_detection"] = str(e)
            self.overrides.append("dataset.mask=none")
            self.results["notes"].append("no dlib here: trained with dataset.mask=none (the presets weight the loss by a "
                                         "head mask: a per-pixel weight, next to nothing in memory or time)")

    def build_model(self, limit: float) -> None:
        from faceswap_kohya.models.checkmodel import build_check_model
        from faceswap_kohya.models.tokenizers import ensure_tokenizers
        from faceswap_kohya.trainer.install import Trainer

        trainer = Trainer(self.trainer_python, self.sd_scripts)
        start = time.monotonic()
        if self.plan.family == "flux":
            return self.build_flux_model(trainer, limit)
        self.model = build_check_model(trainer, echo=lambda s: None, device="cpu" if self.args.dry_run else "cuda",
                                       timeout=limit)
        info = {"path": str(self.model), "gib": self.model.stat().st_size / 2**30, "build_s": time.monotonic() - start}
        start = time.monotonic()
        info["tokenizers"], info["tokenizers_s"] = str(ensure_tokenizers()), time.monotonic() - start
        self.results["environment"]["check_model"] = info

    def build_flux_model(self, trainer, limit: float) -> None:
        from faceswap_kohya.models.checkmodel import build_flux_model
        from faceswap_kohya.models.tokenizers import ensure_flux_check_tokenizers

        start = time.monotonic()
        files = build_flux_model(trainer, self.work / "flux-model", full=True,
                                 device="cpu" if self.args.dry_run else "cuda", timeout=limit)
        info = {"files": {k: str(p) for k, p in files.items()}, "build_s": time.monotonic() - start,
                "gib": {k: p.stat().st_size / 2**30 for k, p in files.items()}}
        start = time.monotonic()
        info["tokenizers"], info["tokenizers_s"] = str(ensure_flux_check_tokenizers()), time.monotonic() - start
        self.results["environment"]["flux_model"] = info
        self.results["notes"].append("FLUX: a full-size random-weight FLUX.1-dev DiT (bf16) with AE, CLIP-L and T5-XXL "
                                     "(fp8) as the check model's, and its stand-in T5 tokenizer (same shapes and ids range)")
        self.flux_files = files
        self.model = files["dit"]

    def base_overrides(self) -> list[str]:
        """The preset keys that point a run at this check's random-weight base model."""
        return base_overrides(self.plan.family, self.model, self.flux_files)

    def photos(self) -> Path:
        """The sample photos, each resized to a square of the training resolution (one bucket, full size)."""
        from PIL import Image

        from faceswap_kohya.data.samples import sample_photos

        folder = self.work / "photos"
        folder.mkdir(exist_ok=True)
        side = self.plan.resolution
        for src in sorted(sample_photos(self.work / "sample-photos").glob("*.jpg")):
            Image.open(src).convert("RGB").resize((side, side), Image.LANCZOS).save(folder / src.name, quality=95)
        return folder

    def run_preset(self, name: str, photos: Path, round_no: int, hand_first: bool) -> None:
        import gpu_check_train as tr

        from faceswap_kohya.config import presets
        from faceswap_kohya.jobs.train import prepare_run
        from faceswap_kohya.runs.layout import new_run

        p = self.plan
        overrides = [f"dataset.images={photos}", "dataset.framing=as_is", f"dataset.resolution={p.resolution}",
                     f"training.max_steps={p.steps}", "sampling.prompts=[]", "sampling.every_n_epochs=null",
                     "sampling.every_n_steps=null", f"output.dir={self.work / 'runs'}", *self.base_overrides(),
                     f"kohya.python={self.trainer_python}", f"kohya.sd_scripts={self.sd_scripts}", *self.overrides]
        loaded = self.part(f"train {name} preset", "train", lambda limit: presets.load(name, overrides))
        if loaded is None:
            return
        preset, path = loaded
        entry = self.results["train"].setdefault(name, {
            "budget": presets.describe(path).vram, "optimizer": preset.optimizer.type, "resolution": p.resolution,
            "steps": p.steps, "batch_size": preset.training.batch_size, "overrides": overrides[3:], "runs": []})
        entry["budget_gib"] = tr.budget_gib(entry["budget"])
        peaks = self.work / "peaks" / f"{name}-{round_no}"
        run = None

        def wrapper(limit):
            nonlocal run
            record, run = tr.run_wrapper(preset, path, limit, p.warmup, peaks / "wrapper")
            if record.get("lora") and (self.lora is None or name == "face-24gb"):  # the largest LoRA is preferred
                self.keep_lora(Path(record["lora"]), name)
            return self._add_run(entry, record, round_no)

        def by_hand(limit):
            nonlocal run
            if run is None:  # by hand first: lay out a run folder the wrapper's way, without training
                run = new_run(preset)
                prepare_run(preset, path, run, echo=lambda s: None)
            return self._add_run(entry, tr.run_by_hand(run, preset.output.name, limit, p.warmup, peaks / "hand"), round_no)

        order = (("by hand", by_hand), ("wrapper", wrapper)) if hand_first else (("wrapper", wrapper), ("by hand", by_hand))
        for how, fn in order:
            if how == "by hand" and name not in p.by_hand:
                continue
            self.part(f"train {name} {how} #{round_no + 1}", "train", fn)
        entry["summary"] = tr.summarize(entry)
        self.save()

    def _add_run(self, entry: dict, record: dict, round_no: int) -> dict:
        record["round"] = round_no + 1
        entry["runs"].append(record)
        return record

    def keep_lora(self, lora: Path, preset_name: str) -> None:
        """A copy of a run's LoRA to generate with: outside its run folder, where a later run can't remove it."""
        self.lora = self.work / "lora" / "myface.safetensors"
        self.lora.parent.mkdir(exist_ok=True)
        shutil.copyfile(lora, self.lora)
        self.results["generate_lora"] = f"{preset_name}'s, trained here"

    def child_part(self, kind: str, limit: float, extra: list) -> dict:
        out = self.work / f"{kind}.json"
        lora = self.lora or self.work / "lora" / "myface.safetensors"  # missing: the child makes a random one
        try:
            run_limited([sys.executable, CHILD, kind, self.model, lora, out, *extra], limit)
        finally:  # what the child measured before a failure or the limit
            data = json.loads(out.read_text()) if out.is_file() else {}
            if kind == "generate":
                self.results["generate"] = {k: v for k, v in data.items() if isinstance(v, dict)}
                if self.lora is None and data.get("lora"):
                    self.results["generate_lora"] = data["lora"]
            else:
                self.results["swap"] = data or None
        return data

    def run(self) -> int:
        p = self.plan
        self.save()
        self.part("setup", "setup", self.setup)
        if self.trainer_python is None:
            return 1
        self.part("environment", "environment", self.environment)
        self.part("check model", "model", self.build_model)
        if self.model is not None:
            photos = self.photos()
            for r in range(p.rounds):
                order = FAMILY_PRESETS[p.family]
                for name in p.presets or order:  # who goes first alternates along the family's order
                    self.run_preset(name, photos, r, hand_first=(order.index(name) + r) % 2 == 1)
            if p.gen_dtypes:
                gen = ["--size", p.gen_size, "--steps", p.gen_steps, "--images", p.gen_images, "--dtypes", ",".join(p.gen_dtypes),
                       *([] if p.gen_warmup else ["--no-warmup"])]
                self.part("generate", "generate", lambda limit: self.child_part("generate", limit, gen))
                swap = ["--size", p.gen_size, "--steps", p.gen_steps, "--work", self.work]
                self.part("swap", "swap", lambda limit: self.child_part("swap", limit, swap))
        self.save()
        print(report.markdown(self.results))
        print(f"[gpu-check] {self.out / 'gpu_check.json'}, {self.out / 'gpu_check.md'}")
        not_ok = [name for name, part in self.results["parts"].items() if part["status"] != "ok"]
        if not_ok:
            print(f"[gpu-check] not ok: {', '.join(not_ok)}")
        return 1 if not_ok else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="the same plan on the CPU at toy sizes")
    ap.add_argument("--out", default=str(ROOT / "output" / "gpu-check" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")))
    ap.add_argument("--wheels", default=str(ROOT / ".gpu-wheels"), help="made by scripts/gpu-wheels.sh")
    ap.add_argument("--work", help="scratch folder (check model, runs); default: a new temporary one, removed at the end")
    ap.add_argument("--sd-scripts", help="default: FACESWAP_KOHYA_SD_SCRIPTS, vendor/sd-scripts, the wheels folder's packed copy")
    ap.add_argument("--trainer-python", help="default: FACESWAP_KOHYA_PYTHON or .venv-kohya's (dry run), this python (GPU)")
    ap.add_argument("--budget-s", type=float, help="the whole check's time budget")
    ap.add_argument("--family", choices=sorted(FAMILY_PRESETS), default="sdxl",
                    help="sdxl: the face-* presets (default); flux: the flux-* presets, on a GPU only")
    args = ap.parse_args(argv)
    plan = plan_for(args.family, args.dry_run)
    if args.budget_s:
        plan = Plan(**{**asdict(plan), "budget_s": args.budget_s})
    check = Check(args, plan)
    try:
        return check.run()
    finally:
        if not args.work:
            shutil.rmtree(check.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
