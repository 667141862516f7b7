"""The FLUX LoRA the real flux_train_network.py made once per test session, for every FLUX test that only reads it.

`trained_flux_run` trains flux-check (the random-weight FLUX.1 check model: one double and one single block, the
full-size AE, CLIP-L and T5-XXL) on its sample photos, copied into a folder of the test's own, with the preset's
head masks and one photo held out, no samples, and a UNet learning rate large enough for the LoRA to change the
image. It builds the FLUX check model first when it is not cached (~2 min, ~10 GB RAM), then trains (2 steps at
64 px, ~1 min, ~15 GB RAM): tests that use it are marked `trainer` and `needs_kohya`. They must not change the
run (swaps write into a folder of their own); a test that needs other settings trains its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

TRAINED_FLUX_OVERRIDES = ("sampling.prompts=[]", "sampling.every_n_epochs=null", "optimizer.unet_lr=0.01")


@dataclass
class TrainedFluxRun:
    """The shared FLUX run: its preset, what `train` returned and every event it reported."""

    preset: object
    preset_path: Path
    result: object  # jobs.train.RunResult
    events: list
    photos: Path


@pytest.fixture(scope="session")
def trained_flux_run(tmp_path_factory) -> TrainedFluxRun:
    from faceswap_kohya.config import presets
    from faceswap_kohya.data.samples import sample_photos
    from faceswap_kohya.jobs.train import train

    root = tmp_path_factory.mktemp("trained-flux")
    photos = sample_photos(root / "photos")
    preset, path = presets.load("flux-check", [f"dataset.images={photos}", f"output.dir={root / 'out'}",
                                               *TRAINED_FLUX_OVERRIDES])
    events = []
    result = train(preset, path, on_event=events.append)
    return TrainedFluxRun(preset, path, result, events, photos)
