"""Evaluate a run: how much the generated person looks like the photos, per checkpoint, against the base model.

The base pipeline is loaded once. The base model (no LoRA) and then every checkpoint of the run
(`model/<name>-000001.safetensors` ..., the final `model/<name>.safetensors`), each attached in turn
as an adapter, render the same evaluation set (`preset.evaluate.prompts` × `preset.evaluate.seeds`).
Each image is scored against the reference photos (the run's training photos) with `faces`:

- `score`: the identity score of its face vs the nearest reference (as `faceswap-kohya identity`);
- `centroid_score`: its similarity to the mean embedding of all references;
- `copy_gap = score - centroid_score`: large when a face matches one training photo much better than
  the person as a whole (a copy of one photo is not success); around zero or below for a face that
  resembles the person across photos.

Images with no face are counted and reported ("no face"), never dropped. Per checkpoint: mean and
spread of the scores over the faces found, faces found / images. The best checkpoint has the highest
mean (ties go to the earlier one); the top-3 images are the highest-scoring LoRA images. Everything
goes into a new `<run>/eval/<timestamp>/` folder: the images, `scores.json` (every number of the
report can be recomputed from it: summaries from the per-image scores, scores from the embeddings),
`report.html` (self-contained) and `identity.png` (score per checkpoint with the base-model line).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .errors import UserError

SCHEMA_VERSION = 1
LORA_WEIGHT = 1.0
SAMPLER = "euler"  # the same deterministic sampler for every checkpoint
DECIMALS = 4  # per-image scores are stored rounded; summaries are computed from the stored values
THUMB_PX, TOP_PX = 256, 512  # inline JPEG sizes in the report


# ---------------------------------------------------------------- checkpoints
@dataclass
class Checkpoint:
    """One model to evaluate: the base (path None) or a LoRA file of the run."""

    label: str  # "base", "epoch 3", "step 500", "final", or the file stem
    path: Optional[Path] = None
    epoch: Optional[int] = None
    step: Optional[int] = None

    @property
    def slug(self) -> str:
        """File-name prefix of its images."""
        if self.path is None:
            return "base"
        if self.epoch is not None:
            return f"e{self.epoch:06d}"
        if self.step is not None:
            return f"s{self.step:08d}"
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.label)


BASE = Checkpoint("base")


def find_checkpoints(model_dir: Path, name: str) -> list[Checkpoint]:
    """The run's LoRA files in training order: `<name>-NNNNNN` (epochs), `<name>-stepNNNNNNNN` (steps),
    then the final `<name>.safetensors`. With both epoch and step files, file times give the order."""
    if not Path(model_dir).is_dir():
        return []
    numbered, final = [], None
    for p in sorted(Path(model_dir).glob("*.safetensors")):
        if p.stem == name:
            final = Checkpoint("final", p)
        elif m := re.fullmatch(re.escape(name) + r"-(\d{6})", p.stem):
            numbered.append(Checkpoint(f"epoch {int(m.group(1))}", p, epoch=int(m.group(1))))
        elif m := re.fullmatch(re.escape(name) + r"-step(\d+)", p.stem):
            numbered.append(Checkpoint(f"step {int(m.group(1))}", p, step=int(m.group(1))))
    if any(c.epoch is not None for c in numbered) and any(c.step is not None for c in numbered):
        numbered.sort(key=lambda c: (c.path.stat().st_mtime, c.path.name))
    else:
        numbered.sort(key=lambda c: c.epoch if c.epoch is not None else c.step)
    return numbered + ([final] if final else [])


# ---------------------------------------------------------------- references and scoring
@dataclass
class References:
    """The reference faces: their files, embeddings and mean embedding, and the photos not used."""

    folder: Path
    metric: str
    files: list[str]
    vectors: list[np.ndarray]
    entries: list[dict] = field(default_factory=list)  # every photo: {"file", "face_box"} or {"file", "error"}

    @property
    def centroid(self) -> np.ndarray:
        return centroid(self.vectors, self.metric)


def centroid(vectors: Sequence[np.ndarray], metric: str = "euclidean") -> np.ndarray:
    """The mean embedding (of unit vectors for cosine embedders)."""
    arr = np.asarray(vectors, dtype=np.float64)
    if metric == "cosine":
        arr = arr / (np.linalg.norm(arr, axis=1, keepdims=True) + 1e-12)
    return arr.mean(axis=0)


def load_references(folder: Path, embedder) -> References:
    """Embed the main face of every photo in `folder`; UserError when none has a face."""
    from .dataset import list_images
    from .faces import face_of

    folder = Path(folder)
    files = list_images(folder) if folder.is_dir() else []
    if not files:
        raise UserError(f"reference photos {folder}: no photos in this folder (give --refs PHOTOS_DIR)")
    entries = [face_of(p, embedder) for p in files]
    usable = [e for e in entries if "embedding" in e]
    if not usable:
        why = ", ".join(f"{Path(e['file']).name} ({e['error']})" for e in entries[:6])
        raise UserError(f"reference photos {folder}: no face found in any of its {len(files)} photos ({why}); "
                        "give clear photos of the person's face (--refs)")
    vectors = [e.pop("embedding") for e in usable]
    for e in entries:
        e["file"] = Path(e["file"]).name
    return References(folder, embedder.metric, [e["file"] for e in usable], vectors, entries)


def score_embedding(embedding: np.ndarray, refs: References) -> dict:
    """{"score", "nearest", "centroid_score", "copy_gap"} of one face embedding (rounded as stored)."""
    from .faces import identity_score, similarity

    score, nearest = identity_score(embedding, refs.vectors, refs.metric)
    score = round(score, DECIMALS)
    to_mean = round(similarity(embedding, refs.centroid, refs.metric), DECIMALS)
    return {"score": score, "nearest": refs.files[nearest], "centroid_score": to_mean,
            "copy_gap": round(score - to_mean, DECIMALS)}


def score_image(image, refs: References, embedder) -> dict:
    """The main face of a PIL image scored against the references, or {"face_box": None, "error": "no face"}."""
    from .faces import detect

    found = detect(image)
    embedding = embedder.embed(image, found[0]) if found else None
    if embedding is None:
        return {"face_box": None, "error": "no face"}
    return {"face_box": list(found[0].box), **score_embedding(embedding, refs),
            "embedding": [round(float(x), 6) for x in embedding]}


def summarize(images: Sequence[dict]) -> dict:
    """Per-checkpoint numbers from its images' stored scores (faces only; "no face" images are counted)."""
    scores = [im["score"] for im in images if im.get("score") is not None]
    gaps = [im["copy_gap"] for im in images if im.get("score") is not None]
    to_mean = [im["centroid_score"] for im in images if im.get("score") is not None]
    nearest: dict[str, int] = {}
    for im in images:
        if im.get("score") is not None:
            nearest[im["nearest"]] = nearest.get(im["nearest"], 0) + 1

    def r(x):
        return round(float(x), DECIMALS)

    return {
        "images": len(images), "faces": len(scores), "no_face": len(images) - len(scores),
        "mean": r(np.mean(scores)) if scores else None,
        "std": r(np.std(scores)) if scores else None,  # population standard deviation (ddof 0)
        "min": r(min(scores)) if scores else None,
        "max": r(max(scores)) if scores else None,
        "centroid_mean": r(np.mean(to_mean)) if scores else None,
        "copy_gap_mean": r(np.mean(gaps)) if scores else None,
        "nearest_counts": dict(sorted(nearest.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def rank(checkpoints: Sequence[dict], top: int = 3) -> tuple[Optional[dict], list[dict]]:
    """(best checkpoint entry, top images) from scores.json-style checkpoint entries in training order.

    The best checkpoint has the highest mean identity; a tie goes to the earlier one. Entries with no
    face at all can't be ranked. The top images are the highest scores among LoRA images (not the
    base model's); ties keep the earlier checkpoint, then generation order.
    """
    loras = [c for c in checkpoints if c.get("file")]
    rankable = [(i, c) for i, c in enumerate(loras) if c["summary"]["mean"] is not None]
    best = max(rankable, key=lambda ic: (ic[1]["summary"]["mean"], -ic[0]))[1] if rankable else None
    pool = [(im["score"], -ci, -ii, c["label"], im) for ci, c in enumerate(loras)
            for ii, im in enumerate(c["images"]) if im.get("score") is not None]
    pool.sort(key=lambda t: (t[0], t[1], t[2]), reverse=True)
    tops = [{"checkpoint": label, **{k: im[k] for k in ("file", "prompt", "seed", "score", "nearest", "copy_gap")}}
            for _, _, _, label, im in pool[:top]]
    return best, tops


# ---------------------------------------------------------------- what to evaluate
@dataclass
class Plan:
    """Everything one evaluation needs."""

    preset: object  # schema.Preset: subject, evaluate settings, resolution, negative prompt
    base_model: str
    checkpoints: list[Checkpoint]
    refs: Path
    out_parent: Path
    run_dir: Optional[Path] = None
    width: int = 1024
    height: int = 1024

    @property
    def prompts(self) -> list[str]:
        from .render import fill

        return [fill(p, self.preset) for p in self.preset.evaluate.prompts]


def _read_run_preset(run_dir: Path):
    from . import presets

    path = run_dir / "preset.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run folder (no preset.yaml); give a run folder, or --lora FILE --refs PHOTOS")
    return presets.validate(presets.read_yaml(path), str(path))


def run_refs(run_dir: Path, preset) -> Path:
    from .render import RunLayout, instance_dir

    folder = instance_dir(preset, RunLayout(run_dir))
    if folder.is_dir():
        return folder
    others = sorted(p for p in (run_dir / "img").glob("*_*") if p.is_dir()) if (run_dir / "img").is_dir() else []
    if len(others) == 1:
        return others[0]
    raise UserError(f"{run_dir}: no training photos in {folder} to compare with; give --refs PHOTOS_DIR")


def subject_from_lora(path: Path) -> Optional[tuple[str, str]]:
    """(trigger, class) from the dataset folder name sd-scripts records in a LoRA (`ss_dataset_dirs`: `10_myface woman`)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            dirs = json.loads((f.metadata() or {}).get("ss_dataset_dirs", "{}"))
    except Exception:  # noqa: BLE001 - metadata is optional
        return None
    for name in dirs:
        m = re.fullmatch(r"\d+_([A-Za-z0-9]+) ([A-Za-z]+(?: [A-Za-z]+)?)", str(name))
        if m:
            return m.group(1), m.group(2)
    return None


def plan_run(run_dir: Path, refs: Optional[Path] = None, base: Optional[str] = None, size: Optional[int] = None,
             out: Optional[Path] = None) -> Plan:
    """The base model and every checkpoint of a run folder, against its training photos (or `refs`)."""
    run_dir = Path(run_dir).expanduser().absolute()
    preset = _read_run_preset(run_dir)
    checkpoints = find_checkpoints(run_dir / "model", preset.output.name)
    if not checkpoints:
        raise UserError(f"{run_dir}: no LoRA checkpoints in {run_dir / 'model'} ({preset.output.name}*.safetensors); "
                        "has the run saved one yet?")
    side = size or preset.dataset.resolution
    return Plan(preset, base or preset.base_model.path, checkpoints, Path(refs) if refs else run_refs(run_dir, preset),
                Path(out) if out else run_dir / "eval", run_dir, side, side)


def plan_lora(lora: Path, refs: Optional[Path] = None, base: Optional[str] = None, trigger: Optional[str] = None,
              class_word: Optional[str] = None, size: Optional[int] = None, out: Optional[Path] = None) -> Plan:
    """One LoRA file (and the base model). Inside a run's model/ folder the run's preset fills the gaps."""
    from . import presets

    lora = Path(lora).expanduser().absolute()
    if not lora.is_file() or lora.suffix != ".safetensors":
        raise UserError(f"--lora {lora}: no such .safetensors file")
    run_dir = lora.parent.parent if lora.parent.name == "model" and (lora.parent.parent / "preset.yaml").is_file() else None
    if run_dir is not None:
        data = _read_run_preset(run_dir).model_dump()
    else:
        if not base:
            raise UserError(f"--lora {lora.name}: not inside a run folder, so give --base (the model it was trained on)")
        if not refs:
            raise UserError(f"--lora {lora.name}: not inside a run folder, so give --refs (photos of the person)")
        found = subject_from_lora(lora)
        if not found and not (trigger and class_word):
            raise UserError(f"--lora {lora.name}: its trigger word and class are unknown (no run folder, not in the "
                            "file's metadata); give --trigger WORD --class WORD (e.g. --trigger myface --class woman)")
        data = {"base_model": base, "subject": {"trigger": found[0], "class_word": found[1]} if found else {}}
    if trigger:
        data["subject"]["trigger"] = trigger
    if class_word:
        data["subject"]["class_word"] = class_word
    if base:
        data["base_model"] = {"path": base}
    preset = presets.validate(data, f"--lora {lora.name}")
    side = size or preset.dataset.resolution
    parent = Path(out) if out else (run_dir / "eval" if run_dir else Path.cwd() / "eval")
    return Plan(preset, preset.base_model.path, [Checkpoint(lora.stem, lora)],
                Path(refs) if refs else run_refs(run_dir, preset), parent, run_dir, side, side)


# ---------------------------------------------------------------- the loop
@dataclass
class Result:
    folder: Path
    scores: dict

    @property
    def report(self) -> Path:
        return self.folder / "report.html"

    @property
    def chart(self) -> Path:
        return self.folder / "identity.png"

    @property
    def scores_json(self) -> Path:
        return self.folder / "scores.json"

    @property
    def best(self) -> Optional[dict]:
        return self.scores["best"]


def _line(label: str, s: dict) -> str:
    faces = f"{s['faces']}/{s['images']} faces"
    if s["mean"] is None:
        return f"{label}: no face found ({s['images']} image{'s' if s['images'] != 1 else ''})"
    return f"{label}: identity {s['mean']:.3f} ± {s['std']:.3f} ({faces}), copy gap {s['copy_gap_mean']:+.3f}"


def evaluate(plan: Plan, echo: Callable[[str], None] = print, device=None, dtype=None, offload=None) -> Result:
    """Generate the evaluation set with the base model and each checkpoint, score it, write the report."""
    from . import loader
    from .faces import get_embedder
    from .generate import ImageInfo, check_size, file_sha256, generate_images, save_image, set_sampler

    ev = plan.preset.evaluate
    start = time.monotonic()
    check_size(plan.width, plan.height)
    prompts, seeds = plan.prompts, [int(s) for s in ev.seeds]
    if not prompts or not seeds:
        raise UserError("evaluate.prompts and evaluate.seeds must each have at least one entry")
    embedder = get_embedder(ev.embedder, ev.insightface_root)
    refs = load_references(plan.refs, embedder)
    echo(f"{embedder.name}: {len(refs.vectors)} reference faces from {plan.refs}"
         + (f" ({len(refs.entries) - len(refs.vectors)} photos without a usable face)" if len(refs.entries) > len(refs.vectors) else ""))
    for c in plan.checkpoints:  # refuse broken files before the slow base model load
        loader.read_lora_modules(c.path)

    pipe = loader.load_pipeline(plan.base_model, device=device, dtype=dtype, offload=offload)
    sampler_label = set_sampler(pipe, SAMPLER)
    base_info = pipe.fsk_base
    model_hash = file_sha256(Path(base_info["path"])) if base_info.get("path") and Path(base_info["path"]).is_file() else None
    from .folders import new_folder

    folder = new_folder(plan.out_parent)
    images_dir = folder / "images"
    images_dir.mkdir()
    negative = plan.preset.sampling.negative_prompt
    entries = []
    for ckpt in [BASE] + list(plan.checkpoints):
        loras, adapter = [], None
        if ckpt.path is not None:
            modules = loader.attach_lora(pipe, ckpt.path, weight=LORA_WEIGHT)
            adapter = next(n for n, info in pipe.fsk_loras.items() if info.path == Path(ckpt.path))
            loras = [{"name": ckpt.path.stem, "adapter": adapter, "path": str(ckpt.path), "weight": LORA_WEIGHT,
                      "sha256": file_sha256(ckpt.path), "modules": modules}]
        try:
            pictures = generate_images(pipe, prompts, seeds, ev.steps, ev.cfg, plan.width, plan.height, negative)
        finally:
            if adapter is not None:  # switch adapters: the base weights stay loaded
                pipe.delete_adapters(adapter)
                del pipe.fsk_loras[adapter]
        scored = []
        for k, image in enumerate(pictures):
            pi, si = divmod(k, len(seeds))
            name = f"{ckpt.slug}-p{pi + 1}-s{seeds[si]}.png"
            info = ImageInfo(prompt=prompts[pi], negative_prompt=negative, seed=seeds[si], steps=ev.steps, cfg=ev.cfg,
                             width=plan.width, height=plan.height, sampler=sampler_label, model=base_info["label"],
                             model_hash=model_hash, loras=loras)
            save_image(image, images_dir / name, info)
            scored.append({"file": f"images/{name}", "p": pi + 1, "prompt": prompts[pi], "seed": seeds[si],
                           **score_image(image, refs, embedder)})
        entry = {"label": ckpt.label, "file": str(ckpt.path) if ckpt.path else None, "epoch": ckpt.epoch,
                 "step": ckpt.step, "images": scored, "summary": summarize(scored)}
        entries.append(entry)
        echo(_line(ckpt.label, entry["summary"]))

    best, top = rank(entries)
    scores = {
        "version": SCHEMA_VERSION,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "run": str(plan.run_dir) if plan.run_dir else None,
        "embedder": embedder.name, "metric": refs.metric,
        "score": "identity: similarity of the generated face to the nearest reference face (faces.identity_score); "
                 "centroid_score: to the mean reference embedding; copy_gap = score - centroid_score",
        "settings": {"base_model": plan.base_model, "prompts": prompts, "seeds": seeds, "steps": ev.steps, "cfg": ev.cfg,
                     "width": plan.width, "height": plan.height, "sampler": SAMPLER, "negative_prompt": negative,
                     "lora_weight": LORA_WEIGHT},
        "references": {"folder": str(plan.refs), "photos": refs.entries,
                       "embeddings": {f: [round(float(x), 6) for x in v] for f, v in zip(refs.files, refs.vectors)}},
        "base": entries[0]["summary"],
        "checkpoints": entries,
        "best": None if best is None else {"label": best["label"], "file": best["file"], "mean": best["summary"]["mean"],
                                           "above_base": _diff(best["summary"]["mean"], entries[0]["summary"]["mean"])},
        "top": top,
        "seconds": round(time.monotonic() - start, 1),
    }
    (folder / "scores.json").write_text(json.dumps(scores, indent=1), encoding="utf-8")
    write_chart(scores, folder / "identity.png")
    write_report(scores, folder)
    return Result(folder, scores)


def _diff(a, b):
    return None if a is None or b is None else round(a - b, DECIMALS)


# ---------------------------------------------------------------- chart and report
def write_chart(scores: dict, path: Path) -> Path:
    """Mean identity (± spread) per checkpoint in training order, with the base model as a dashed line."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot and no global backend

    loras = [c for c in scores["checkpoints"] if c["file"]]
    base = scores["base"]["mean"]
    fig = Figure(figsize=(max(5.0, 0.7 * len(loras) + 2), 4.0), dpi=110)
    ax = fig.subplots()
    xs = list(range(len(loras)))
    pts = [(x, c["summary"]["mean"], c["summary"]["std"]) for x, c in zip(xs, loras) if c["summary"]["mean"] is not None]
    if pts:
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                    color="tab:blue", label="LoRA: mean identity ± spread")
    missing = [x for x, c in zip(xs, loras) if c["summary"]["mean"] is None]
    if missing:
        ax.plot(missing, [0.02] * len(missing), marker="x", color="tab:red", linestyle="none", label="no face found")
    if base is not None:
        ax.axhline(base, color="gray", linestyle="--", label=f"base model {base:.3f}")
    else:
        ax.text(0.01, 0.97, "base model: no face found", transform=ax.transAxes, va="top", fontsize=8, color="gray")
    if scores["best"]:
        bx = next(i for i, c in enumerate(loras) if c["label"] == scores["best"]["label"])
        ax.plot([bx], [scores["best"]["mean"]], marker="*", markersize=14, color="tab:orange", linestyle="none", label="best")
    ax.set_xticks(xs, [c["label"] for c in loras], rotation=30 if len(loras) > 6 else 0, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"identity score ({scores['embedder']})")
    ax.set_title("identity vs the reference photos, per checkpoint", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    return path


def _inline(path: Path, side: int) -> str:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((side, side))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _fmt(x, spec=".3f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}tr.best{background:#fff3d6}tr.base{color:#666}
figure{display:inline-block;margin:4px;text-align:center;font-size:12px}figure img{display:block}
.noface{color:#b00}.note{color:#555;font-size:13px}"""


def write_report(scores: dict, folder: Path) -> Path:
    """report.html: summary table, chart, best checkpoint, top-3 images and every image, all inline."""
    e = html.escape
    base = scores["base"]
    best = scores["best"]
    rows = []
    for c in scores["checkpoints"]:
        s = c["summary"]
        cls = "base" if not c["file"] else ("best" if best and c["label"] == best["label"] else "")
        near = ", ".join(f"{e(k)} ×{v}" for k, v in list(s["nearest_counts"].items())[:2]) or "–"
        rows.append(f"<tr class='{cls}'><td>{e(c['label'])}{' (floor)' if not c['file'] else ''}</td>"
                    f"<td>{_fmt(s['mean'])}</td><td>{_fmt(s['std'])}</td><td>{_fmt(s['min'])}</td><td>{_fmt(s['max'])}</td>"
                    f"<td>{_fmt(_diff(s['mean'], base['mean']), '+.3f') if c['file'] else ''}</td>"
                    f"<td>{s['faces']}/{s['images']}</td><td>{s['no_face']}</td><td>{_fmt(s['centroid_mean'])}</td>"
                    f"<td>{_fmt(s['copy_gap_mean'], '+.3f')}</td><td>{near}</td></tr>")
    if best:
        verdict = (f"<p><b>Best checkpoint: {e(best['label'])}</b> — mean identity {best['mean']:.3f}"
                   + (f", {best['above_base']:+.3f} vs the base model ({base['mean']:.3f})" if best["above_base"] is not None
                      else " (the base model produced no face to compare with)")
                   + (f"<br><code>{e(best['file'])}</code></p>"))
    else:
        verdict = "<p class='noface'><b>No checkpoint produced a detectable face</b>: no identity score, no best checkpoint.</p>"
    top = "".join(f"<figure><a href='{e(t['file'])}'><img src='{_inline(folder / t['file'], TOP_PX)}' width='256'></a>"
                  f"{i + 1}. {t['score']:.3f} — {e(t['checkpoint'])}, seed {t['seed']}<br>{e(t['prompt'][:60])}</figure>"
                  for i, t in enumerate(scores["top"])) or "<p class='noface'>no faces found</p>"
    grids = []
    for c in scores["checkpoints"]:
        cells = "".join(
            f"<figure><a href='{e(im['file'])}'><img src='{_inline(folder / im['file'], THUMB_PX)}' width='160'></a>"
            + (f"{im['score']:.3f} (near {e(im['nearest'])})" if im.get("score") is not None else "<span class='noface'>no face</span>")
            + f"<br>p{im['p']} s{im['seed']}</figure>" for im in c["images"])
        grids.append(f"<h3>{e(c['label'])}</h3>{cells}")
    st = scores["settings"]
    refs_used = sum(1 for p in scores["references"]["photos"] if "face_box" in p)
    skipped = [f"{e(p['file'])} ({e(p['error'])})" for p in scores["references"]["photos"] if "error" in p]
    chart = "data:image/png;base64," + base64.b64encode((folder / "identity.png").read_bytes()).decode()
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>faceswap_kohya evaluation</title>
<style>{CSS}</style></head><body>
<h1>Identity evaluation</h1>
<p class="note">{e(scores['run'] or '')} — {e(scores['created'])} — embedder <b>{e(scores['embedder'])}</b> ({e(scores['metric'])});
{refs_used} reference face{'s' if refs_used != 1 else ''} from <code>{e(scores['references']['folder'])}</code>{'; not used: ' + ', '.join(skipped) if skipped else ''}.<br>
{len(st['prompts'])} prompts × {len(st['seeds'])} seeds (seeds {', '.join(map(str, st['seeds']))}), {st['steps']} steps, CFG {st['cfg']:g},
{st['width']}×{st['height']}, {e(st['sampler'])}, LoRA weight {st['lora_weight']:g}, base model <code>{e(st['base_model'])}</code>.</p>
{verdict}
<img src="{chart}" alt="identity per checkpoint">
<table><tr><th>checkpoint</th><th>identity mean</th><th>spread (sd)</th><th>min</th><th>max</th><th>vs base</th>
<th>faces found</th><th>no face</th><th>to mean face</th><th>copy gap</th><th>nearest photo</th></tr>
{''.join(rows)}</table>
<p class="note">Identity: similarity (0–1, higher = more alike) of each generated face to the nearest reference photo,
averaged over the images where a face was found; with dlib, photos of one person usually score above 0.4.
Images with no face are counted, not scored. <i>To mean face</i>: similarity to the mean of all reference faces.
<i>Copy gap</i> = identity − to mean face: clearly positive when faces match one training photo far better
than the person as a whole (a copy of one photo, a sign of overfitting). Every number here is recomputable from scores.json.</p>
<h2>Top 3 images</h2>{top}
<h2>Prompts</h2><ol>{''.join(f'<li>{e(p)}</li>' for p in st['prompts'])}</ol>
<h2>All images</h2>{''.join(grids)}
</body></html>"""
    path = folder / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path


# ---------------------------------------------------------------- entry points
def evaluate_run(run_dir: Path, echo: Callable[[str], None] = print, refs: Optional[Path] = None,
                 base: Optional[str] = None, size: Optional[int] = None, out: Optional[Path] = None,
                 device=None, dtype=None, offload=None) -> Result:
    """Evaluate every checkpoint of a run folder; returns where the report went and the scores."""
    return evaluate(plan_run(run_dir, refs, base, size, out), echo, device, dtype, offload)


def evaluate_after_training(run_dir: Path, echo: Callable[[str], None] = print) -> Optional[Result]:
    """`train`'s last step when the run's preset has `evaluate.enabled: true`. A failed evaluation does not
    fail the finished training: it is reported with the command to run it again."""
    run_dir = Path(run_dir)
    try:
        if not _read_run_preset(run_dir).evaluate.enabled:
            return None
        echo("evaluating the checkpoints (evaluate.enabled)")
        result = evaluate_run(run_dir, echo=echo)
    except Exception as err:  # noqa: BLE001 - e.g. out of GPU memory: the finished training must not look failed
        why = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        echo(f"evaluation failed: {why}\n  (the training itself succeeded; retry with: faceswap-kohya evaluate {run_dir})")
        return None
    for line in summary_lines(result):
        echo(line)
    return result


def summary_lines(result: Result) -> list[str]:
    s = result.scores
    lines = []
    if s["best"]:
        b = s["best"]
        vs = f" ({b['above_base']:+.3f} vs base model)" if b["above_base"] is not None else ""
        lines.append(f"best checkpoint: {b['label']}  identity {b['mean']:.3f}{vs}  {b['file']}")
    else:
        lines.append("best checkpoint: none (no face was found in any LoRA image)")
    for i, t in enumerate(s["top"], 1):
        lines.append(f"top {i}: {t['score']:.3f}  {result.folder / t['file']}")
    lines.append(f"report: {result.report}")
    return lines
