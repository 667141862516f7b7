"""What a service job runs inside its Ray worker: a training (the `train` job, or `resume` after a restart when a
state was saved), a generation (the `generate` job) or a swap (the `swap` job). Each returns a small dict; user
mistakes raise UserError with the CLI's own text. The server passes these functions to `sweeps.runner.run_task`."""

from __future__ import annotations

from pathlib import Path

from faceswap_kohya import events as ev
from faceswap_kohya.runs.artifacts import resumable_state
from faceswap_kohya.service.joblog import images_dir, job_runs, note


def run_training(spec: dict) -> dict:
    """Train in the job's folder; with `spec["recover"]` continue the job's last run from its saved state, or
    start it over where none was saved, saying which in the job's events."""
    from faceswap_kohya.formats.importer import load_any
    from faceswap_kohya.jobs import train as train_job

    folder = Path(spec["folder"])
    previous = job_runs(folder) if spec.get("recover") else []
    state_run = next((run for run in reversed(previous) if resumable_state(run).state is not None), None)
    if state_run is not None:  # a state half-written when the server stopped is passed over (resumable_state)
        note(folder, ev.Message(f"the server stopped during this training: resuming {state_run.name} from its saved "
                                f"state {resumable_state(state_run).state.name}"))
        result = train_job.resume(state_run)
    else:
        torn = [choice.skipped_text() for choice in map(resumable_state, previous) if choice.skipped]
        if torn:
            note(folder, ev.Message(f"the server stopped during this training while it saved its state ({'; '.join(torn)}): "
                                    "training again from the start"))
        elif previous:
            note(folder, ev.Message("the server stopped during this training and no training state was saved "
                                    "(training.save_state: false): training again from the start"))
        preset, path, _ = load_any(spec["preset_name"], spec["overrides"], for_training=True)
        result = train_job.train(preset, path, overrides=spec["overrides"], confirmed=True)
    reason = result.diagnosis.reason if result.diagnosis else None
    return {"run": str(result.run.root), "interrupted": result.interrupted, "error": reason,
            "lora": str(result.final) if result.final else None}


def run_generation(spec: dict) -> dict:
    """The `generate` job on the training's final LoRA; images into the job's `images/`."""
    from faceswap_kohya.diffusion.source import image_settings, resolve_source
    from faceswap_kohya.jobs.generate import run_generate

    folder = Path(spec["folder"])
    source = resolve_source(spec["run"])
    size = f"{spec['width']}x{spec['height']}" if spec.get("width") else None
    settings = image_settings(spec.get("negative") or "", spec["steps"], spec.get("cfg"), size, "euler", source)
    seeds = list(range(spec["seed"], spec["seed"] + spec["n"]))
    paths = run_generate(source, spec["prompts"], seeds, settings, images_dir(folder), weight=spec["weight"],
                         on_event=lambda e: note(folder, e))
    return {"images": [str(p) for p in paths]}


def run_swap(spec: dict) -> dict:
    """The `swap` job: the training's face into the uploaded photo; the PNG into the job's `images/`."""
    from faceswap_kohya.diffusion.source import Settings, default_cfg, resolve_source
    from faceswap_kohya.jobs import swap as swap_job

    folder = Path(spec["folder"])
    source = resolve_source(spec["run"])
    settings = Settings(steps=spec["steps"], cfg=default_cfg(source))
    result = swap_job.run_swap(source, Path(spec["photo"]), settings, images_dir(folder), seed=spec["seed"], strength=spec["strength"], face=spec["face"],
                               on_event=lambda e: note(folder, e))
    return {"images": [str(result.path)], "identity": result.identity}


TASKS = {"training": run_training, "generation": run_generation, "swap": run_swap}
