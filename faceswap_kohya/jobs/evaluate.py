"""Evaluate a run: how much the generated person looks like the photos, per checkpoint, against the base model.

The base pipeline is loaded once. The base model (no LoRA) and then every checkpoint of the run
(`model/<name>-000001.safetensors` ..., the final `model/<name>.safetensors`), each attached in turn
as an adapter, render the same evaluation set (`preset.evaluate.prompts` × `preset.evaluate.seeds`)
and the bleed set (`evaluate.bleed_prompts`: class-only prompts without the trigger, same seeds).
Each image is scored with one face model (`evaluate.embedder`, named with every number) against the
reference photos: the run's photos, training and held-out; and against the held-out photos alone:

- `held_out_score`: the identity score vs the nearest held-out photo, one the LoRA never saw: the
  honest measure of likeness, and the one checkpoints are ranked by when the run has held-out photos;
- `score`: the identity score of its face vs the nearest reference (as `faceswap-kohya identity`);
- `centroid_score`: its similarity to the mean embedding of all references;
- `copy_gap = score - centroid_score`: large when a face matches one training photo much better than the person
  as a whole (a copy of one photo is not success); around zero or below for a face like the person's photos.

Bleed: every face in the bleed images is scored against the references; a checkpoint whose mean
bleed exceeds the base model's by more than `evaluate.bleed_margin` makes strangers look like the
person: it is marked overtrained. Images with no face are counted and reported ("no face"), never
dropped. Per checkpoint: mean and spread of the scores over the faces found, faces found / images.
The best checkpoint has the highest (held-out) identity among those not overtrained (ties go to the
earlier one), and scores.json and the report say why; the top-3 images are the highest-scoring LoRA
images. The run's validation losses (sd-scripts, on the held-out photos) come from its recorded events. Everything
goes into a new `<run>/eval/<timestamp>/` folder: the images, `scores.json` (every number of the
report can be recomputed from it: summaries from the per-image scores, scores from the embeddings),
`report.html` (self-contained) and `identity.png` (score per checkpoint with the base-model line).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from faceswap_kohya.config import presets
from faceswap_kohya.config.flux import t5_tokens
from faceswap_kohya.config.paths import new_folder
from faceswap_kohya.config.presets import read_run_preset
from faceswap_kohya.diffusion.images import ImageInfo, file_sha256, generate_images, save_image
from faceswap_kohya.diffusion.lora import attach_lora, read_lora_modules
from faceswap_kohya.diffusion.prompts import check_size, set_sampler
from faceswap_kohya.errors import UserError, no_space_in
from faceswap_kohya.events import EvaluationFailed, ImageWritten, Message, OnEvent, Warning, echo_to, ignore
from faceswap_kohya.models.base import generation_files
from faceswap_kohya.runs.artifacts import BASE, CHART, LORA_SUFFIX, Checkpoint, checkpoints, run_of_lora, write_scores
from faceswap_kohya.runs.layout import RunLayout
from faceswap_kohya.runs.status import append_event
from faceswap_kohya.scoring.document import scores_document
from faceswap_kohya.scoring.evaluation import Result, summary_lines
from faceswap_kohya.scoring.references import run_held_out, run_refs, subject_from_lora
from faceswap_kohya.scoring.report import write_chart, write_report
from faceswap_kohya.scoring.scores import (
    LORA_WEIGHT,
    SAMPLER,
    References,
    load_references,
    score_faces,
    score_image,
    summarize,
    summarize_bleed,
)


# ---------------------------------------------------------------- what to evaluate
@dataclass
class Plan:
    """Everything one evaluation needs."""

    preset: object  # schema.Preset: subject, evaluate settings, resolution, negative prompt
    base_model: str
    checkpoints: list[Checkpoint]
    refs: list[Path]  # the person's photos (a run's: training and held-out)
    out_parent: Path
    run_dir: Optional[Path] = None
    width: int = 1024
    height: int = 1024
    held_out: Optional[Path] = None  # photos the LoRA never saw
    skipped: list[dict] = field(default_factory=list)  # {"label", "file", "why"}: checkpoints that cannot be read
    modules: dict = field(default_factory=dict)  # checkpoint path → its LoRA module names

    def __post_init__(self):
        # The LoRA files first (headers only): one that is not a LoRA is named before any base model is opened.
        # Among a run's checkpoints a broken one (truncated, foreign) is skipped and named; the others are scored.
        readable = []
        for c in self.checkpoints:
            try:
                self.modules[c.path] = read_lora_modules(c.path)  # read once: attach_lora is given them
                readable.append(c)
            except UserError as e:
                if len(self.checkpoints) == 1:
                    raise
                self.skipped.append({"label": c.label, "file": str(c.path), "why": str(e)})
        if self.checkpoints and not readable:
            raise UserError("no checkpoint of the run can be read: " + "; ".join(s["why"] for s in self.skipped))
        self.checkpoints = readable
        # a missing or wrong base model fails here, before any work (a FLUX run: each of its files)
        self.flux = generation_files(getattr(self.preset, "base_model", None), self.base_model)

    @property
    def prompts(self) -> list[str]:
        from faceswap_kohya.config.texts import fill

        return [fill(p, self.preset) for p in self.preset.evaluate.prompts]

    @property
    def bleed_prompts(self) -> list[str]:
        from faceswap_kohya.config.texts import fill

        return [fill(p, self.preset) for p in self.preset.evaluate.bleed_prompts]


def _read_run_preset(run: RunLayout):
    if not run.preset.is_file():
        raise UserError(f"{run.root}: not a run folder (no preset.yaml); give a run folder, or --lora FILE --refs PHOTOS")
    return read_run_preset(run.root)


def plan_checkpoints(preset, run: RunLayout, found: list[Checkpoint], refs: Optional[Path] = None,
                     base: Optional[str] = None, size: Optional[int] = None, out: Optional[Path] = None) -> Plan:
    """The base model and the given checkpoints of a run, with its (validated) preset, against its photos (or `refs`)."""
    if not found:
        raise UserError(f"{run.root}: no LoRA checkpoints in {run.model} ({preset.output.name}*{LORA_SUFFIX}); "
                        "has the run saved one yet?")
    side = size or preset.dataset.resolution
    held = run_held_out(run, preset)
    photos = [Path(refs)] if refs else [run_refs(run, preset)] + ([held] if held else [])
    return Plan(preset, base or preset.base_model.path, list(found), photos,
                Path(out) if out else run.eval, run.root, side, side, held)


def plan_run(run_dir: Path, refs: Optional[Path] = None, base: Optional[str] = None, size: Optional[int] = None,
             out: Optional[Path] = None) -> Plan:
    """The base model and every checkpoint of a run folder, read back from the folder, against its training
    photos (or `refs`)."""
    run = RunLayout(Path(run_dir).expanduser().absolute())
    preset = _read_run_preset(run)
    return plan_checkpoints(preset, run, checkpoints(run, preset.output.name), refs, base, size, out)


def plan_lora(lora: Path, refs: Optional[Path] = None, base: Optional[str] = None, trigger: Optional[str] = None,
              class_word: Optional[str] = None, size: Optional[int] = None, out: Optional[Path] = None) -> Plan:
    """One LoRA file (and the base model). Inside a run's model/ folder the run's preset fills the gaps."""
    lora = Path(lora).expanduser().absolute()
    if not lora.is_file() or lora.suffix != LORA_SUFFIX:
        raise UserError(f"--lora {lora}: no such {LORA_SUFFIX} file")
    run_dir = run_of_lora(lora)
    run = RunLayout(run_dir) if run_dir is not None else None
    if run is not None:
        data = _read_run_preset(run).model_dump()
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
    parent = Path(out) if out else (run.eval if run else Path.cwd() / "eval")
    held = run_held_out(run, preset) if run and not refs else None
    photos = [Path(refs)] if refs else [run_refs(run, preset)] + ([held] if held else [])
    return Plan(preset, preset.base_model.path, [Checkpoint(lora.stem, lora)], photos, parent, run_dir, side, side, held)


# ---------------------------------------------------------------- the loop
def _line(label: str, s: dict, embedder: str) -> str:
    faces = f"{s['faces']}/{s['images']} faces"
    if s["mean"] is None:
        return f"{label}: no face found ({s['images']} image{'s' if s['images'] != 1 else ''})"
    held = f"held-out identity {s['held_out_mean']:.3f}, " if s.get("held_out_mean") is not None else ""
    return f"{label}: {held}identity {s['mean']:.3f} ± {s['std']:.3f} ({faces}, {embedder}), copy gap {s['copy_gap_mean']:+.3f}"


@dataclass
class Scoring:
    """The face model and the photos every generated face is compared with."""

    embedder: object
    refs: References
    held_out: Optional[References]


def load_scoring(plan: Plan, echo) -> Scoring:
    from faceswap_kohya.faces.identity import get_embedder

    ev = plan.preset.evaluate
    embedder = get_embedder(ev.embedder, ev.arcface_models)
    refs = load_references(plan.refs, embedder)
    echo(f"{embedder.name}: {len(refs.vectors)} reference faces from {' + '.join(map(str, plan.refs))}"
         + (f" ({len(refs.entries) - len(refs.vectors)} photos without a usable face)" if len(refs.entries) > len(refs.vectors) else ""))
    held = None
    if plan.held_out is not None:
        try:
            held = load_references(plan.held_out, embedder)
            echo(f"{embedder.name}: {len(held.vectors)} held-out faces (photos the LoRA never saw) from {plan.held_out}")
        except UserError as e:
            echo(f"held-out photos not used: {e}")
    return Scoring(embedder, refs, held)


def render_set(pipe, plan: Plan, ckpt: Checkpoint, prompts: list[str], tag: str, loras: list, info_of, save) -> list[dict]:
    """Generate prompts × seeds with the attached checkpoint; save each image; [{file, p, prompt, seed}, image]."""
    ev = plan.preset.evaluate
    seeds = [int(x) for x in ev.seeds]
    pictures = generate_images(pipe, prompts, seeds, ev.steps, ev.cfg, plan.width, plan.height,
                               plan.preset.sampling.negative_prompt)
    out = []
    for k, image in enumerate(pictures):
        pi, si = divmod(k, len(seeds))
        name = f"{ckpt.slug}-{tag}{pi + 1}-s{seeds[si]}.png"
        save(image, name, info_of(prompts[pi], seeds[si], loras))
        out.append(({"file": f"images/{name}", "p": pi + 1, "prompt": prompts[pi], "seed": seeds[si]}, image))
    return out


def evaluate(plan: Plan, on_event: OnEvent = ignore, device=None, dtype=None, offload=None) -> Result:
    """Generate the evaluation and bleed sets with the base model and each checkpoint, score them, write the report."""
    echo = echo_to(on_event)
    from faceswap_kohya.diffusion.pipeline import load_pipeline

    ev = plan.preset.evaluate
    start = time.monotonic()
    check_size(plan.width, plan.height)
    prompts, bleed_prompts, seeds = plan.prompts, plan.bleed_prompts, [int(s) for s in ev.seeds]
    if not prompts or not seeds:
        raise UserError("evaluate.prompts and evaluate.seeds must each have at least one entry")
    scoring = load_scoring(plan, echo)
    for s in plan.skipped:
        on_event(Warning(f"skipped {s['label']} ({Path(s['file']).name}): {s['why']}"))

    pipe = load_pipeline(plan.base_model, device=device, dtype=dtype, offload=offload, flux=plan.flux,
                         t5_tokens=t5_tokens(plan.preset))
    sampler_label = set_sampler(pipe, SAMPLER)
    base_info = pipe.fsk_base
    model_hash = file_sha256(Path(base_info["path"])) if base_info.get("path") and Path(base_info["path"]).is_file() else None

    folder = new_folder(plan.out_parent)
    images_dir = folder / "images"
    images_dir.mkdir()
    negative = plan.preset.sampling.negative_prompt

    def info_of(prompt, seed, loras):
        return ImageInfo(prompt=prompt, negative_prompt=negative, seed=seed, steps=ev.steps, cfg=ev.cfg, width=plan.width,
                         height=plan.height, sampler=sampler_label, model=base_info["label"], model_hash=model_hash, loras=loras,
                         t5_tokens=getattr(pipe, "fsk_t5_tokens", None))

    def save(image, name, info):
        save_image(image, images_dir / name, info)

    entries = []
    for ckpt in [BASE] + list(plan.checkpoints):
        loras, adapter = [], None
        if ckpt.path is not None:
            modules = attach_lora(pipe, ckpt.path, weight=LORA_WEIGHT, modules=plan.modules.get(ckpt.path))
            adapter = next(n for n, info in pipe.fsk_loras.items() if info.path == Path(ckpt.path))
            loras = [{"name": ckpt.path.stem, "adapter": adapter, "path": str(ckpt.path), "weight": LORA_WEIGHT,
                      "sha256": file_sha256(ckpt.path), "modules": modules}]
        try:
            made = render_set(pipe, plan, ckpt, prompts, "p", loras, info_of, save)
            bled = render_set(pipe, plan, ckpt, bleed_prompts, "b", loras, info_of, save) if bleed_prompts else []
        finally:
            if adapter is not None:  # switch adapters: the base weights stay loaded
                pipe.delete_adapters(adapter)
                del pipe.fsk_loras[adapter]
        scored = [meta | score_image(image, scoring.refs, scoring.embedder, scoring.held_out) for meta, image in made]
        entry = {"label": ckpt.label, "file": str(ckpt.path) if ckpt.path else None, "epoch": ckpt.epoch,
                 "step": ckpt.step, "images": scored, "summary": summarize(scored)}
        if bled:
            bleed_images = [meta | {"faces": score_faces(image, scoring.refs, scoring.embedder)} for meta, image in bled]
            entry["bleed"] = {"images": bleed_images, "summary": summarize_bleed(bleed_images)}
        entries.append(entry)
        echo(_line(ckpt.label, entry["summary"], scoring.embedder.name)
             + (f", bleed {entry['bleed']['summary']['mean']:.3f}" if bled and entry["bleed"]["summary"]["mean"] is not None else ""))

    scores = scores_document(plan.run_dir, plan.refs, plan.held_out, scoring, entries, {
        "base_model": plan.base_model, "prompts": prompts, "bleed_prompts": bleed_prompts, "seeds": seeds,
        "steps": ev.steps, "cfg": ev.cfg, "width": plan.width, "height": plan.height, "sampler": SAMPLER,
        "negative_prompt": negative, "lora_weight": LORA_WEIGHT, "bleed_margin": ev.bleed_margin})
    scores["skipped"] = plan.skipped
    scores["seconds"] = round(time.monotonic() - start, 1)
    write_scores(folder, scores)
    on_event(ImageWritten(str(write_chart(scores, folder / CHART)), "chart"))
    on_event(ImageWritten(str(write_report(scores, folder)), "report"))
    return Result(folder, scores)


# ---------------------------------------------------------------- entry points
def evaluate_run(run_dir: Path, on_event: OnEvent = ignore, refs: Optional[Path] = None,
                 base: Optional[str] = None, size: Optional[int] = None, out: Optional[Path] = None,
                 device=None, dtype=None, offload=None, space_field: str = "output.dir") -> Result:
    """Evaluate every checkpoint of a run folder: the report's folder and scores (a full disk: NoSpace naming space_field)."""
    with no_space_in(Path(out) if out else Path(run_dir).expanduser().absolute() / "eval", space_field):
        return evaluate(plan_run(run_dir, refs, base, size, out), on_event, device, dtype, offload)


def evaluation_failed(err: BaseException, run_dir: Path) -> EvaluationFailed:
    """The event of a failed evaluation: its one-line reason, and the run to evaluate again."""
    return EvaluationFailed(str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}", str(run_dir))


def evaluate_after_training(preset, run: RunLayout, found: list[Checkpoint], on_event: OnEvent = ignore) -> Optional[Result]:
    """`train`'s last step when its preset has `evaluate.enabled: true`: the validated preset and the checkpoints
    training collected are evaluated as they are (nothing is read back). A failed evaluation does not fail the
    finished training: it is reported as an EvaluationFailed event (the run's recorder keeps it)."""
    if not preset.evaluate.enabled:
        return None
    on_event(Message("evaluating the checkpoints (evaluate.enabled)"))
    try:
        with no_space_in(run.eval): result = evaluate(plan_checkpoints(preset, run, found), on_event)  # noqa: E701
    except Exception as err:  # noqa: BLE001 - e.g. out of GPU memory: the finished training must not look failed
        on_event(evaluation_failed(err, run.root))
        return None
    for line in summary_lines(result):
        on_event(Message(line))
    return result


def evaluate_again(run_dir: Path, on_event: OnEvent = ignore) -> Optional[Result]:
    """Evaluate a finished run folder once more (a sweep trial whose scores are missing); a failure is added
    to the run's events.jsonl as EvaluationFailed, as after training, and None is returned."""
    try:
        return evaluate_run(run_dir, on_event)
    except Exception as err:  # noqa: BLE001 - the trained run stays finished; its record says what failed
        event = evaluation_failed(err, run_dir)
        append_event(Path(run_dir), event)
        on_event(event)
        return None
