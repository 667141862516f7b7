"""What the API returns for a job, read from the store and the job's run folders: the training, generation and
swap objects (status, queue position, progress, error, times, URLs), and the evaluation summary of a training."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from faceswap_kohya import events as ev
from faceswap_kohya.runs.artifacts import REPORT, final_lora, latest_scores, read_scores
from faceswap_kohya.runs.status import read_events, read_status
from faceswap_kohya.scoring.summary import summarize_scores
from faceswap_kohya.service import store as st
from faceswap_kohya.service.joblog import latest_run

PATHS = {"training": "trainings", "generation": "generations", "swap": "swaps"}
# The licence of each face model whose likeness numbers the API returns (README: Service API).
EMBEDDER_LICENCES = {
    "dlib-resnet-128": "dlib's face ResNet model: CC0 (public domain)",
    "arcface-w600k-mbf": "InsightFace's ArcFace weights: non-commercial research only",
}


def eta_seconds(eta: str) -> Optional[int]:
    """tqdm's `1:02:03` / `02:03` (or `12s`) as seconds; None when unknown."""
    text = (eta or "").strip()
    if text.endswith("s") and text[:-1].isdigit():
        return int(text[:-1])
    parts = text.split(":")
    if not text or not all(p.isdigit() for p in parts):
        return None
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + int(p)
    return seconds


def evaluation_summary(run_dir: Optional[Path]) -> Optional[dict]:
    """Best checkpoint, held-out likeness and bleed from the run's latest scores.json; None where none ran.
    `baseline_likeness`: the person's own photos against each other (same face model, else None);
    `baseline_share`: the best checkpoint's likeness to the centroid of the photos (the same statistic) as a share of it.

    The one adapter between the scores' own summary (`scoring.summary`: what `evaluate` prints, the Evaluate page
    and the leaderboard show) and the API's fields."""
    scores = read_scores(latest_scores(run_dir)) if run_dir else None
    if scores is None:
        return None
    s = summarize_scores(scores).numbers()
    return {"best_checkpoint": s["best_checkpoint"], "held_out_likeness": s["held_out"], "likeness": s["identity"],
            "bleed": s["bleed"], "base_likeness": s["base_identity"],
            "baseline_likeness": s["baseline"], "baseline_share": s["baseline_share"], "above_base": s["above_base"],
            "overtrained": s["overtrained"], "faces": s["faces"], "verdict": s["verdict"], "note": s["why"], "embedder": s["embedder"],
            "embedder_licence": EMBEDDER_LICENCES.get(s["embedder"] or "", "see README: Service API")}


def progress(run_dir: Optional[Path]) -> dict:
    status = (read_status(run_dir) or {}) if run_dir else {}
    eta = None
    if run_dir:
        found, _ = read_events(run_dir)
        last = next((e for e in reversed(found) if isinstance(e, ev.Step) and e.unit == "step"), None)
        eta = eta_seconds(last.eta) if last else None
    return {"step": status.get("step") or 0, "total": status.get("total"), "loss": status.get("loss"),
            "val_loss": status.get("val_loss"), "eta_s": eta}


def job_object(job: dict, store: st.Store) -> dict:
    """The API's object for a job of any kind."""
    base = f"/v1/{PATHS[job['kind']]}/{job['id']}"
    out = {"id": job["id"], "status": job["status"],
           "queue_position": store.queue_position(job["seq"]) if job["status"] == st.QUEUED else None,
           "error": job["error"], "created_at": st.iso(job["created_at"]), "started_at": st.iso(job["started_at"]),
           "completed_at": st.iso(job["completed_at"]),
           "urls": {"self": base, "cancel": f"{base}/cancel", "events": f"{base}/events"}}
    req = job["request"]
    if job["kind"] == "training":
        run = latest_run(Path(job["folder"]))
        out.update(preset=req["preset"], trigger=req["trigger"], class_word=req["class_word"], progress=progress(run),
                   attempts=job["attempts"])
        if job["status"] == st.SUCCEEDED:
            out["lora_url"] = f"{base}/lora" if run and final_lora(run) else None
            out["report_url"] = f"{base}/report" if report_path(run) else None
            out["evaluation"] = evaluation_summary(run)
    else:
        out["training"] = req["training"]
        images = (job["result"] or {}).get("images") or []
        out["images"] = [f"{base}/images/{i}" for i in range(len(images))]
        if job["kind"] == "swap" and job["result"]:
            out["identity"] = job["result"].get("identity")
    return out


def report_path(run: Optional[Path]) -> Optional[Path]:
    scores = latest_scores(run) if run else None
    path = scores.parent / REPORT if scores else None
    return path if path is not None and path.is_file() else None
