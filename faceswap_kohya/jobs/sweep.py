"""The `sweep` job: train a grid of settings as Ray tasks, evaluate every trial, rank them on a leaderboard.

`run_plan` is shared with `batch`: trials that finished before (status finished, scores present) are
skipped, the rest run on Ray; the leaderboard is rewritten as each trial ends; a failed trial is reported
and the others go on; Ctrl-C stops them all and returns an interrupted result.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from faceswap_kohya.config import presets
from faceswap_kohya.errors import UserError
from faceswap_kohya.events import Finished, ImageWritten, Message, OnEvent, TrialProgress, Warning, ignore
from faceswap_kohya.jobs.evaluate import evaluate_run
from faceswap_kohya.jobs.train import train
from faceswap_kohya.runs.artifacts import latest_scores
from faceswap_kohya.runs.status import list_runs
from faceswap_kohya.sweeps import leaderboard
from faceswap_kohya.sweeps.plan import SweepPlan, plan_sweep
from faceswap_kohya.sweeps.trials import finished_run, is_done, new_run_since, progress_of, summarize_run


@dataclass
class SweepResult:
    folder: Path
    leaderboard: dict
    interrupted: bool = False

    @property
    def rows(self) -> list[dict]:
        return self.leaderboard["rows"]

    @property
    def winner(self) -> Optional[dict]:
        return self.leaderboard["winner"]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r.get("state") == "failed"]

    @property
    def html(self) -> Path:
        return self.folder / leaderboard.HTML


def _spec(plan: SweepPlan, trial) -> dict:
    return {"id": trial.id, "label": trial.label, "folder": str(plan.trial_folder(trial)), "source": str(plan.source),
            "preset": plan.trial_preset(trial), "evaluate": plan.evaluate, "confirmed": plan.confirmed}


def run_trial(spec: dict) -> dict:
    """Train (unless a finished run is there) and evaluate one trial; returns its summary, failures included.

    `spec`: id, label, folder, source (the preset file), preset (the whole preset as data), evaluate, confirmed.
    Ctrl-C (ray.cancel) arrives as KeyboardInterrupt: the train job stops the trainer's process group."""
    folder = Path(spec["folder"])
    head = {"id": spec["id"], "label": spec["label"], "host": socket.gethostname()}
    before = {run for run, _ in list_runs(folder)}
    try:
        preset = presets.validate(spec["preset"], spec["label"])
        done = finished_run(folder)
        if done is not None and (not spec["evaluate"] or latest_scores(done)):
            return {**head, **summarize_run(done), "skipped": True}
        if done is not None:  # trained before, evaluation missing: evaluate only
            evaluate_run(done)
            return {**head, **summarize_run(done)}
        result = train(preset, Path(spec["source"]), confirmed=spec.get("confirmed", False))
        summary = summarize_run(result.run.root)
        if result.interrupted:
            summary["state"] = "interrupted"
        return {**head, **summary}
    except KeyboardInterrupt:
        run = new_run_since(folder, before)
        return {**head, **(summarize_run(run) if run else {}), "state": "interrupted"}
    except Exception as e:  # noqa: BLE001 - every failure is reported as the trial's, and the sweep goes on
        run = new_run_since(folder, before)
        why = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        return {**head, **(summarize_run(run) if run else {}), "state": "failed", "error": why}


def _ending(plan: SweepPlan, doc: dict) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in doc["counts"].items())
    w = doc["winner"]
    if w:
        return f"{plan.kind} {plan.name} ({counts}): winner {w['label']}, {doc['basis_name']} {w['score']:.3f}, LoRA {w['lora']}"
    return f"{plan.kind} {plan.name} ({counts})"


def run_plan(plan: SweepPlan, ray_address: Optional[str] = None, on_event: OnEvent = ignore) -> SweepResult:
    """Run a planned sweep or batch (see the module's docstring); returns its leaderboard."""
    from faceswap_kohya.sweeps.runner import run_specs

    plan.write()
    summaries, specs = {}, []
    for trial in plan.trials:
        folder = plan.trial_folder(trial)
        if is_done(folder, plan.evaluate):
            summaries[trial.id] = {"id": trial.id, "label": trial.label, **summarize_run(finished_run(folder)), "skipped": True}
            on_event(progress_of(summaries[trial.id]))
        else:
            specs.append(_spec(plan, trial))
            on_event(TrialProgress(trial.id, trial.label, "waiting"))
    leaderboard.write(plan, summaries)

    def on_summary(spec: dict, summary: dict) -> None:
        summaries[spec["id"]] = summary
        on_event(progress_of(summary))
        if summary.get("state") == "failed":
            on_event(Warning(f"trial {spec['id']} ({spec['label']}) failed: {summary.get('error')}"))
        leaderboard.write(plan, summaries)

    if specs:
        interrupted = run_specs(specs, ray_address, on_event, on_summary, run_trial)
    else:
        interrupted = False
        on_event(Message(f"every trial finished before: nothing to run (their runs are in {plan.folder})"))
    doc = leaderboard.write(plan, summaries)
    on_event(ImageWritten(str(plan.folder / leaderboard.CHART), "chart"))
    on_event(ImageWritten(str(plan.folder / leaderboard.HTML), "report"))
    if not interrupted:
        paths = [str(plan.folder / leaderboard.HTML), str(plan.folder / leaderboard.JSON)]
        on_event(Finished(_ending(plan, doc), paths + ([doc["winner"]["lora"]] if doc["winner"] else [])))
    return SweepResult(plan.folder, doc, interrupted)


def sweep(preset: str, settings: Sequence[str] = (), variants: Optional[Path] = None, name: Optional[str] = None,
          out: Optional[Path] = None, ray_address: Optional[str] = None, confirmed: bool = False,
          on_event: OnEvent = ignore) -> SweepResult:
    """Train every combination of `settings` (`key=v1,v2`, fixed `key=value`) and of the `variants` file,
    evaluate each, rank them. Every trial's preset is validated before anything starts."""
    plan = plan_sweep(preset, settings, variants, name, out, evaluate=True, confirmed=confirmed)
    on_event(Message(f"sweep {plan.name}: {len(plan.trials)} trials in {plan.folder}"))
    return run_plan(plan, ray_address, on_event)
