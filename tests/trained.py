"""A run the real sd-scripts trainer made once per test session, for every test that only reads a trained run.

`trained_run` trains cpu-check (random-weight full-size SDXL, 64 px, 2 steps) on its six sample photos, copied
into a folder of the test's own, with the preset's head masks and one photo held out, plus: a saved training
state (what `resume` continues from), the text encoders trained too (both, at 1e-5) and LoCon convs (rank 2),
a UNet learning rate large enough for the LoRA to change generated images, and two class images the base model
generates first (one step each, into an empty cache of the run's own: `TrainedRun.home`) as regularization images.
The preset's one sample at the end of its epoch is rendered (64 px, 2 steps, a few seconds) and scored live: the
random-weight model draws no face, which the run must report. The fixture trains when a test first asks for it,
~2 min and ~22 GB RAM: tests that use it are marked `trainer` and `needs_kohya`. They must not change the run; a
test that needs a fault of its own (SIGINT, SIGKILL) or other settings trains its own run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

TRAINED_OVERRIDES = ("training.save_state=true", "optimizer.text_encoder_lr=1e-5", "network.conv_dim=2", "optimizer.unet_lr=0.01",
                     "regularization.generate=2", "regularization.steps=1")


@dataclass
class TrainedRun:
    """The shared run: its preset, what `train` returned, every event it reported, and the user's photos."""

    preset: object
    preset_path: Path
    result: object  # jobs.train.RunResult
    events: list
    photos: Path
    photo_bytes: dict = field(default_factory=dict)  # each photo's bytes before training
    home: Path | None = None  # FACESWAP_KOHYA_HOME while it trained: its class-image cache started empty


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    from faceswap_kohya.config import presets
    from faceswap_kohya.data.samples import sample_photos
    from faceswap_kohya.jobs.train import train

    root = tmp_path_factory.mktemp("trained")
    photos = sample_photos(root / "my photos")
    photo_bytes = {p: p.read_bytes() for p in photos.iterdir()}
    preset, path = presets.load("cpu-check", [f"dataset.images={photos}", f"output.dir={root / 'out'}", *TRAINED_OVERRIDES])
    events = []
    with pytest.MonkeyPatch.context() as env:
        home = private_home(root / "home")
        env.setenv("FACESWAP_KOHYA_HOME", str(home))
        result = train(preset, path, on_event=events.append)
    return TrainedRun(preset, path, result, events, photos, photo_bytes, home)


def private_home(folder: Path) -> Path:
    """A cache folder with an empty class-image cache and the real one's check model and tokenizers."""
    from faceswap_kohya.config.paths import home

    real = home()
    folder.mkdir()
    for shared in ("pipeline-check", "tokenizers"):
        (real / shared).mkdir(parents=True, exist_ok=True)
        (folder / shared).symlink_to(real / shared, target_is_directory=True)
    return folder
