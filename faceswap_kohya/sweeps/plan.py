"""What a sweep or batch will run, and where: `sweep.json` and one folder per trial.

A sweep folder (`<output.dir>/sweeps/<name>/`, or `batches/<name>/` for a batch) holds `sweep.json` (the
plan: every trial's id, label, settings and whole preset), `leaderboard.{json,html,png}` and one folder per
trial named by its id; a trial's runs go in its folder like any run (`<trial>/<output.name>/<timestamp>/`).
Every worker must reach the sweep folder at the same path: on a cluster, put output.dir on shared storage.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import yaml

from faceswap_kohya.errors import UserError
from faceswap_kohya.sweeps.grid import (
    Trial,
    check_free_keys,
    combinations,
    label_of,
    make_trials,
    parse_args,
    read_variants,
    set_key,
)

PLAN_FILE = "sweep.json"
SUBJECT_FILE = "subject.yaml"
SUBJECT_KEYS = {"trigger": "subject.trigger", "class_word": "subject.class_word"}


@dataclass
class SweepPlan:
    kind: str  # "sweep" or "batch"
    name: str
    folder: Path
    source: Path  # the preset file
    trials: list[Trial]
    evaluate: bool = True
    confirmed: bool = False  # go ahead with long steps (e.g. class images generated on a CPU)
    fixed: dict = field(default_factory=dict)  # settings every trial shares (given as key=value)

    def trial_folder(self, trial: Trial) -> Path:
        return self.folder / trial.id

    def trial_preset(self, trial: Trial) -> dict:
        """The trial's whole preset, runs going to its folder, evaluated when the plan says so."""
        data = json.loads(json.dumps(trial.preset))
        data["output"]["dir"] = str(self.trial_folder(trial))
        data["evaluate"]["enabled"] = self.evaluate
        return data

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "source": str(self.source), "evaluate": self.evaluate,
                "pid": os.getpid(),  # the process running the sweep: the web app's Stop sends it Ctrl-C
                "fixed": self.fixed, "written": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "trials": [{"id": t.id, "label": t.label, "settings": t.settings, "folder": str(self.trial_folder(t)),
                            "preset": self.trial_preset(t)} for t in self.trials]}

    def write(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / PLAN_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, default=str), encoding="utf-8")
        os.replace(tmp, path)
        return path


def read_plan(folder: Path) -> Optional[dict]:
    try:
        return json.loads((Path(folder) / PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _base_data(preset: str, fixed: dict) -> tuple[dict, Path]:
    from faceswap_kohya.config import presets
    from faceswap_kohya.formats.importer import import_file, is_kohya_file

    if is_kohya_file(preset):  # a kohya_ss JSON or sd-scripts TOML works as the base preset too
        path = Path(preset)
        data, _ = import_file(path)
    else:
        path = presets.resolve(str(preset))
        data = presets.load_data(path)
    for key, value in fixed.items():
        set_key(data, key, value)
    return data, path


def _folder(data: dict, kind: str, name: str, out: Optional[Path]) -> Path:
    if out:
        return Path(out).expanduser().absolute()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UserError(f"--name {name!r}: use letters, digits, '_', '-', '.'")
    output_dir = Path(str((data.get("output") or {}).get("dir") or "output")).expanduser()
    return (output_dir / {"sweep": "sweeps", "batch": "batches"}[kind] / name).absolute()


def _check_folder(folder: Path, kind: str) -> None:
    earlier = read_plan(folder)
    if earlier and earlier.get("kind") != kind:
        raise UserError(f"{folder}: holds a {earlier.get('kind')}, not a {kind}; give another --name or --out")


def plan_sweep(preset: str, args: Sequence[str] = (), variants_file: Optional[Path] = None, name: Optional[str] = None,
               out: Optional[Path] = None, evaluate: bool = True, confirmed: bool = False) -> SweepPlan:
    """The grid (`key=v1,v2`) times the variants file, every trial's preset validated; nothing starts here."""
    fixed, grid = parse_args(args)
    variants = read_variants(variants_file) if variants_file else None
    settings = combinations(grid, variants)
    check_free_keys({k for s in settings for k in s})
    if len(settings) < 2:
        raise UserError("a sweep needs at least two trials: give a key with several values (e.g. network.dim=16,32) "
                        "or a --variants file with several entries")
    base, path = _base_data(preset, fixed)
    trials = make_trials(base, str(path), [(label_of(s), s) for s in settings])
    folder = _folder(base, "sweep", name or path.stem, out)
    _check_folder(folder, "sweep")
    return SweepPlan("sweep", folder.name, folder, path, trials, evaluate, confirmed, fixed)


def read_subject(folder: Path) -> dict:
    """A subject folder's `subject.yaml` (`trigger: ohwx`, `class_word: man`) as preset settings; {} without one."""
    path = folder / SUBJECT_FILE
    if not path.is_file():
        return {}
    from faceswap_kohya.config.presets import read_text

    try:
        data = yaml.safe_load(read_text(path, "a small YAML mapping (trigger: ohwx, class_word: man)")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping such as `trigger: ohwx` and `class_word: man`")
    unknown = sorted(set(data) - set(SUBJECT_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r} (a subject file holds {' and '.join(SUBJECT_KEYS)})")
    return {SUBJECT_KEYS[k]: v for k, v in data.items()}


def subject_folders(subjects_dir: Path) -> list[Path]:
    from faceswap_kohya.files.images import list_images

    subjects_dir = Path(subjects_dir).expanduser()
    if not subjects_dir.is_dir():
        raise UserError(f"SUBJECTS_DIR {subjects_dir}: no such folder (one subfolder of photos per person)")
    folders = [p for p in sorted(subjects_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    with_photos = [p for p in folders if list_images(p)]
    if not with_photos:
        raise UserError(f"SUBJECTS_DIR {subjects_dir}: no subfolder with photos; put each person's photos in a folder "
                        "of their own (alice/, bob/), with an optional subject.yaml (trigger: ohwx, class_word: man)")
    return with_photos


def plan_batch(preset: str, subjects_dir: Path, overrides: Sequence[str] = (), name: Optional[str] = None,
               out: Optional[Path] = None, evaluate: bool = True, confirmed: bool = False) -> SweepPlan:
    """One trial per subfolder of SUBJECTS_DIR: its photos, its trigger and class, the output named after it."""
    fixed, grid = parse_args(overrides)
    if grid:
        raise UserError(f"{next(iter(grid))}: a batch takes one value per key (sweep one subject to compare settings)")
    base, path = _base_data(preset, fixed)
    variants = []
    for folder in subject_folders(subjects_dir):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.name).strip("-.") or "subject"
        variants.append((folder.name, {"dataset.images": str(folder.absolute()), "output.name": slug,
                                       **read_subject(folder)}))
    trials = make_trials(base, str(path), variants)
    subjects_dir = Path(subjects_dir).expanduser().absolute()
    folder = _folder(base, "batch", name or subjects_dir.name, out)
    _check_folder(folder, "batch")
    named = [Trial(f"{t.settings['output.name']}-{t.id}", t.label, t.settings, t.preset) for t in trials]
    return SweepPlan("batch", folder.name, folder, path, named, evaluate, confirmed, fixed)
