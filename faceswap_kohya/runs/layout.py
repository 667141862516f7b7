"""Where everything of one run lives inside its run folder (`RunLayout`), the Kohya folder names of its photos,
and making a new run folder (never an existing one) or removing one that failed before it held anything."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from faceswap_kohya.config.paths import new_folder
from faceswap_kohya.config.schema import Preset, Subset


@dataclass(frozen=True)
class RunLayout:
    """Where everything of one run lives, inside its run folder."""

    root: Path

    @property
    def img(self) -> Path:
        return self.root / "img"

    @property
    def reg(self) -> Path:
        return self.root / "reg"

    @property
    def val(self) -> Path:
        """Held-out photos: sd-scripts computes the validation loss on them; evaluate scores likeness to them."""
        return self.root / "val"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def samples(self) -> Path:
        return self.model / "sample"

    @property
    def eval(self) -> Path:
        """Evaluations, one `<timestamp>/` folder each (images, scores, report, chart)."""
        return self.root / "eval"

    @property
    def dataset_toml(self) -> Path:
        return self.root / "dataset.toml"

    @property
    def config_toml(self) -> Path:
        return self.root / "config.toml"

    @property
    def sample_prompts(self) -> Path:
        return self.root / "sample_prompts.txt"

    @property
    def command(self) -> Path:
        return self.root / "command.sh"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def preset(self) -> Path:
        return self.root / "preset.yaml"


def subset_dir(parent: Path, subset: Subset) -> Path:
    """`<parent>/<repeats>_<class tokens>`: a Kohya folder's copy in the run folder."""
    return parent / f"{subset.repeats}_{subset.class_tokens}"


def instance_dir(preset: Preset, run: RunLayout) -> Path:
    """`img/10_myface woman`: Kohya reads repeats and class tokens from this name (the first Kohya subset's)."""
    if preset.dataset.subsets:
        return subset_dir(run.img, preset.dataset.subsets[0])
    return run.img / f"{preset.dataset.repeats}_{preset.instance_tokens}"


def validation_dir(preset: Preset, run: RunLayout) -> Path:
    """`val/1_myface woman`: the held-out photos, captioned like the training photos."""
    return run.val / f"1_{preset.instance_tokens}"


def reg_dir(preset: Preset, run: RunLayout) -> Path:
    if preset.regularization.subsets:
        return subset_dir(run.reg, preset.regularization.subsets[0])
    return run.reg / f"{preset.regularization.repeats}_{preset.subject.class_word}"


def has_regularization(preset: Preset) -> bool:
    r = preset.regularization
    return bool(r.images or r.generate or r.subsets)


def new_run(preset: Preset, now: Optional[dt.datetime] = None) -> RunLayout:
    """`<output.dir>/<name>/<timestamp>/`, never an existing folder."""
    return RunLayout(new_folder(Path(preset.output.dir) / preset.output.name, "output.dir", now))


def new_parents(preset: Preset) -> list[Path]:
    """The folders `new_run(preset)` is about to make above the run folder itself, deepest first."""
    parent = (Path(preset.output.dir) / preset.output.name).expanduser().absolute()
    return [p for p in (parent, *parent.parents) if not p.exists()]


def remove_run_folder(run: RunLayout, made: list[Path] = ()) -> None:
    """Remove a run folder that failed before anything worth keeping was in it, and the parents made for it
    (`new_parents`, while they are empty): a failed preparation leaves nothing behind."""
    shutil.rmtree(run.root, ignore_errors=True)
    for folder in made:
        try:
            folder.rmdir()
        except OSError:  # not empty: someone else's
            break
