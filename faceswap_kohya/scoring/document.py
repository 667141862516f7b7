"""scores.json of an evaluation: every number with the face model that produced it, recomputable from
the stored per-image scores and embeddings; which checkpoint is best and why; the person's own baseline
(`baseline`: each reference photo against the leave-one-out centroid of the others, `faces.likeness`), which a
checkpoint's `centroid_mean` (its faces against the centroid of the reference photos) is read against."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

from faceswap_kohya.faces.likeness import own_baseline
from faceswap_kohya.runs.read import validation_losses
from faceswap_kohya.scoring.report import difference
from faceswap_kohya.scoring.scores import SCHEMA_VERSION, References, identity_basis, mark_overtrained, pick_best, rank


def _embeddings(refs: References) -> dict:
    return {f: [round(float(x), 6) for x in v] for f, v in zip(refs.files, refs.vectors)}


def scores_document(run_dir: Optional[Path], ref_folders: list[Path], held_folder: Optional[Path], scoring,
                    entries: list[dict], settings: dict) -> dict:
    """scores.json: settings, references, every checkpoint's images and summaries (marked overtrained or
    not), the validation losses, the best checkpoint and why. `scoring` holds the embedder and references."""
    margin = settings["bleed_margin"]
    mark_overtrained(entries, margin)
    best, top = rank(entries, margin=margin)
    _, why = pick_best(entries, margin)
    basis = identity_basis(entries)
    refs, held = scoring.refs, scoring.held_out
    baseline = own_baseline(refs.files, refs.vectors, scoring.embedder.name, refs.metric)
    return {
        "version": SCHEMA_VERSION,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "run": str(run_dir) if run_dir else None,
        "embedder": scoring.embedder.name, "metric": refs.metric,
        "score": "identity: similarity of the generated face to the nearest reference face (faces.identity_score); "
                 "held_out_score: to the nearest held-out photo (never trained on); centroid_score: to the mean "
                 "reference embedding, the statistic of the baseline (each reference photo against the mean of the "
                 "others), so centroid_mean / baseline mean is the share of the photos' own likeness; "
                 "copy_gap = score - centroid_score; bleed: every face in images of prompts "
                 "without the trigger, scored like identity",
        "identity_basis": basis,
        "settings": settings,
        "references": {"folder": " + ".join(map(str, ref_folders)), "photos": refs.entries, "embeddings": _embeddings(refs)},
        "baseline": baseline.to_dict() if baseline else None,
        "held_out": None if held is None else {"folder": str(held_folder), "photos": held.entries,
                                               "embeddings": _embeddings(held)},
        "validation_loss": run_validation_losses(run_dir),
        "base": entries[0]["summary"],
        "base_bleed": entries[0]["bleed"]["summary"] if entries[0].get("bleed") else None,
        "checkpoints": entries,
        "best": None if best is None else {
            "label": best["label"], "file": best["file"], "mean": best["summary"]["mean"],
            "held_out_mean": best["summary"]["held_out_mean"], "centroid_mean": best["summary"]["centroid_mean"],
            "above_base": difference(best["summary"][basis], entries[0]["summary"][basis]),
            "bleed": best["bleed"]["summary"]["mean"] if best.get("bleed") else None,
            "bleed_rise": best.get("bleed_rise"), "reason": why},
        "why_no_best": None if best else why,
        "top": top,
    }


def run_validation_losses(run_dir: Optional[Path]) -> list[dict]:
    """sd-scripts' validation losses on the held-out photos, as the run recorded them (empty without a run)."""
    return [{"kind": e.kind, "epoch": e.epoch, "step": e.step, "loss": e.loss} for e in validation_losses(run_dir)]
