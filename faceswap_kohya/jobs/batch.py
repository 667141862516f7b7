"""The `batch` job: one LoRA per subfolder of a subjects folder (each person's photos, an optional
`subject.yaml` with `trigger:` and `class_word:`), trained as Ray tasks, each evaluated, one summary."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from faceswap_kohya.events import Message, OnEvent, ignore
from faceswap_kohya.jobs.sweep import SweepResult, run_plan
from faceswap_kohya.sweeps.plan import plan_batch


def batch(preset: str, subjects_dir: Path, overrides: Sequence[str] = (), name: Optional[str] = None,
          out: Optional[Path] = None, ray_address: Optional[str] = None, evaluate: bool = True,
          confirmed: bool = False, on_event: OnEvent = ignore) -> SweepResult:
    """Train (and evaluate, unless `evaluate` is False) one LoRA per subject; reruns skip finished subjects."""
    plan = plan_batch(preset, subjects_dir, overrides, name, out, evaluate=evaluate, confirmed=confirmed)
    n = len(plan.trials)
    on_event(Message(f"batch {plan.name}: {n} subject{'s' if n != 1 else ''} in {plan.folder}"))
    return run_plan(plan, ray_address, on_event)
