"""What a trial's folder says about it: its finished run, its summary, and its live progress followed from the driver.

A trial's summary is a small dict (numbers and paths; no images, no embeddings) built from its run folder
alone, so it is the same whether a worker returns it or a later sweep reads it from disk.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

from faceswap_kohya import events as ev
from faceswap_kohya.runs.artifacts import REPORT, final_lora, latest_scores, read_scores
from faceswap_kohya.runs.read import UNKNOWN, read_run
from faceswap_kohya.runs.status import list_runs, read_events, read_status
from faceswap_kohya.scoring.summary import summarize_scores


# ---------------------------------------------------------------- reading a trial's folder
def finished_run(trial_folder: Path) -> Optional[Path]:
    """The newest run of the trial whose training finished, if any."""
    return next((run for run, status in list_runs(trial_folder) if status.get("state") == "finished"), None)


def is_done(trial_folder: Path, evaluate: bool) -> bool:
    """Finished (and evaluated, when the sweep evaluates): a rerun skips it."""
    run = finished_run(trial_folder)
    return run is not None and (not evaluate or evaluated(run))


def evaluated(run_dir: Path) -> bool:
    """Whether the run has an evaluation whose scores can be read (a torn scores.json is evaluated again)."""
    return read_scores(latest_scores(run_dir)) is not None


def _seconds(status: dict) -> Optional[float]:
    try:
        return round((dt.datetime.fromisoformat(status["ended"]) - dt.datetime.fromisoformat(status["started"])).total_seconds(), 1)
    except (KeyError, TypeError, ValueError):
        return None


def score_summary(scores: dict) -> dict:
    """The leaderboard's numbers from one evaluation's scores.json: those of `scoring.summary` (what `evaluate`
    prints and the Evaluate page shows): the best checkpoint's identity, held-out identity and bleed, the base
    model's, the verdict, and why no checkpoint won."""
    return summarize_scores(scores).numbers()


def summarize_run(run_dir: Path) -> dict:
    """State, error, times, LoRAs and the latest evaluation's numbers of one run folder (a status torn or
    missing reads as interrupted)."""
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    status, stages = record.status, {k: round(v, 1) for k, v in record.stages.items()}
    eval_error = f"evaluation failed: {record.evaluation_error}" if record.evaluation_error else None
    loras = record.loras
    final = final_lora(run_dir, status.get("name")) or (loras[-1] if loras else None)
    out = {"run": str(run_dir), "state": "interrupted" if record.state == UNKNOWN else record.state,
           "error": status.get("error") or eval_error, "seconds": _seconds(status), "train_seconds": stages.get("training"),
           "eval_seconds": stages.get("evaluating"), "lora": str(final) if final else None, "checkpoints": len(loras),
           "scores": None, "report": None}
    scores_path = latest_scores(run_dir)
    scores = read_scores(scores_path)
    if scores is not None:
        out.update(score_summary(scores), scores=str(scores_path), report=str(scores_path.parent / REPORT))
        out["error"] = status.get("error")
    return out


def new_run_since(trial_folder: Path, before: set) -> Optional[Path]:
    return next((run for run, _ in list_runs(trial_folder) if run not in before), None)


# ---------------------------------------------------------------- followed from the driver
def describe(summary: dict) -> str:
    """A trial's result in a few words."""
    state = summary.get("state")
    if state in ("failed", "interrupted"):
        return (summary.get("error") or state).splitlines()[0][:160]
    minutes = f", {summary['seconds'] / 60:.1f} min" if summary.get("seconds") else ""
    if summary.get("identity") is not None:
        held = f"held-out {summary['held_out']:.3f}, " if summary.get("held_out") is not None else ""
        bleed = f", bleed {summary['bleed']:.3f}" if summary.get("bleed") is not None else ""
        return f"{held}identity {summary['identity']:.3f}{bleed} (best {summary['best_checkpoint']}){minutes}"
    if summary.get("scores"):
        return f"no face found in the LoRA images ({summary.get('faces')}){minutes}"
    return f"LoRA {Path(summary['lora']).name if summary.get('lora') else 'written'}{minutes}" + (
        f"; {summary['error']}" if summary.get("error") else "")


def progress_of(summary: dict) -> ev.TrialProgress:
    state = "skipped" if summary.get("skipped") else summary.get("state", "failed")
    return ev.TrialProgress(summary["id"], summary["label"], state, detail=describe(summary))


class TrialWatch:
    """Follows a running trial's newest run folder (events.jsonl) and says when its progress changed."""

    def __init__(self, trial_id: str, label: str, folder: Path):
        self.id, self.label, self.folder = trial_id, label, Path(folder)
        self.before = {run for run, _ in list_runs(self.folder)}
        self.run: Optional[Path] = None
        self.offset = 0
        self.state, self.step, self.total, self.loss, self.detail = "waiting", 0, 0, None, ""
        self.last: Optional[ev.TrialProgress] = None

    def _apply(self, e: ev.Event) -> None:
        if isinstance(e, ev.StageStarted):
            self.state, self.step, self.total, self.detail = e.stage, 0, 0, ""
        elif isinstance(e, ev.Step):
            self.step, self.total = e.step, e.total
            if e.unit == "step":
                self.loss = e.loss if e.loss is not None else self.loss
                self.detail = f"step {e.step}/{e.total}" + (f", loss {self.loss:.4f}" if self.loss is not None else "")
            else:
                self.detail = f"{e.unit} {e.step}/{e.total}"
        elif isinstance(e, ev.Error):
            self.detail = e.message.splitlines()[0]
        elif isinstance(e, ev.EvaluationFailed):
            self.detail = f"evaluation failed: {e.message}".splitlines()[0]

    def poll(self) -> Optional[ev.TrialProgress]:
        """The trial's progress when it changed since the last call, else None."""
        if self.run is None:
            self.run = new_run_since(self.folder, self.before)
        if self.run is not None:
            found, self.offset = read_events(self.run, self.offset)
            for e in found:
                self._apply(e)
        now = ev.TrialProgress(self.id, self.label, self.state, self.step, self.total, self.loss, self.detail)
        if now == self.last:
            return None
        self.last = now
        return now

    def trainer_pid(self) -> Optional[int]:
        status = read_status(self.run) if self.run else None
        return (status or {}).get("trainer_pid")
