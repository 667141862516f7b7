"""The `regularize` job: generate the preset's class images with the base model into the cache."""

from __future__ import annotations

from pathlib import Path

from faceswap_kohya.config.schema import Preset
from faceswap_kohya.errors import UserError
from faceswap_kohya.events import Finished, OnEvent, Step, echo_to, ignore


def regularize(preset: Preset, on_event: OnEvent = ignore, confirmed: bool = False) -> tuple[list[Path], int]:
    """Make the missing class images (cached, resumable); returns (all files, how many were generated now)."""
    from faceswap_kohya.data.regularization import cache_dir, check_cost, ensure_cached

    if not preset.regularization.generate:
        raise UserError("regularization.generate is 0: set how many class images to make, e.g. regularization.generate=100")
    echo = echo_to(on_event)
    check_cost(preset, confirmed, echo)
    files, made = ensure_cached(preset, echo=echo,
                                progress=lambda done, total: on_event(Step(done, total, unit="image")))
    on_event(Finished(f"{len(files)} class images ready ({made} generated, {len(files) - made} from the cache) "
                      f"in {cache_dir()}", [str(f) for f in files]))
    return files, made
