"""Shared fixtures: where sd-scripts and its python are, whether the trainer tests may run, the runs the real
trainer makes once per session (`trained_run`, tests/trained.py; FLUX: `trained_flux_run`, tests/trained_flux.py),
and the browser with its pages (tests/web_browser.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from face_data import astronaut, face_recognition_photos  # noqa: F401  (fixtures for every test module)
from trained import trained_run  # noqa: F401  (the run trained once per session)
from trained_flux import trained_flux_run  # noqa: F401  (the FLUX run trained once per session)
from web_browser import browser, page_of  # noqa: F401  (the browser and its pages, for every test module)

from faceswap_kohya.config.paths import default_sd_scripts, default_trainer_python
from faceswap_kohya.config.torchenv import use_torch_env

use_torch_env()  # as `faceswap-kohya` does, before a test imports torch: the in-process jobs allocate the same way

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started as `command &`: the processes the tests stop with
    signal.signal(signal.SIGINT, signal.default_int_handler)  # SIGINT (Ctrl-C) must not inherit SIGINT ignored

SD_SCRIPTS = default_sd_scripts()  # FACESWAP_KOHYA_SD_SCRIPTS / FACESWAP_KOHYA_PYTHON point at another install
KOHYA_PYTHON = default_trainer_python()


def kohya_available() -> bool:
    return (SD_SCRIPTS / "sdxl_train_network.py").is_file() and KOHYA_PYTHON.is_file()


needs_kohya = pytest.mark.skipif(
    not kohya_available(), reason="sd-scripts not set up (vendor/sd-scripts + .venv-kohya): run scripts/setup.sh")


@pytest.fixture
def photos(tmp_path) -> Path:
    """Three small real-looking photos (the astronaut portrait, cropped) in a folder of their own."""
    from PIL import Image
    from skimage import data

    folder = tmp_path / "my photos"
    folder.mkdir()
    portrait = Image.fromarray(data.astronaut())
    for i, box in enumerate([(0, 0, 512, 512), (64, 0, 448, 384), (100, 0, 400, 300)]):
        portrait.crop(box).save(folder / f"photo {i}.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def user_home(tmp_path_factory):
    """A private FACESWAP_KOHYA_HOME (config folder, hashes, caches), reusing the real offline tokenizers."""
    from faceswap_kohya.models.tokenizers import ensure_tokenizers

    tokenizers = ensure_tokenizers()
    home = tmp_path_factory.mktemp("home")
    (home / "tokenizers").symlink_to(tokenizers, target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACESWAP_KOHYA_HOME", str(home))
        yield home
