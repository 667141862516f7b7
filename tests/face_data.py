"""Real face photos for tests, none committed: scikit-image's astronaut portrait, and the photos of
one person (plus one of another) in the `face_recognition` 1.3.0 source distribution, downloaded
once from the package index into a cache outside the repository (skipped when unreachable).

Its fixtures are registered in conftest.py; test modules import only the constants.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SDIST = "face_recognition==1.3.0"
CACHE = Path(os.environ.get("FACESWAP_KOHYA_TEST_DATA", "~/.cache/faceswap_kohya/test-data")).expanduser()
MEMBERS = "face_recognition-1.3.0/tests/test_images/"
ONE_PERSON = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg", "32bit.png"]
SOMEONE_ELSE = "biden.jpg"


@pytest.fixture(scope="session")
def astronaut():
    from PIL import Image
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="session")
def face_recognition_photos() -> Path:
    """A read-only cache folder: six photos of one person (32bit.png is obama2.jpg as RGBA PNG) and biden.jpg."""
    folder = CACHE / "face_recognition_test_images"
    if not (folder / SOMEONE_ELSE).is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        sdist = CACHE / "face_recognition-1.3.0.tar.gz"
        if not sdist.is_file():
            try:
                proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                       SDIST, "-d", str(CACHE), "-q"], capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired:
                pytest.skip(f"the {SDIST} source distribution (real face photos) could not be downloaded: timeout")
            if proc.returncode or not sdist.is_file():
                pytest.skip(f"the {SDIST} source distribution (real face photos) could not be downloaded: "
                            + (proc.stderr.strip().splitlines() or ["pip failed"])[-1])
        tmp = folder.with_name(folder.name + ".part")
        tmp.mkdir(exist_ok=True)
        with tarfile.open(sdist) as tar:
            for m in tar.getmembers():
                if m.isfile() and m.name.startswith(MEMBERS):
                    (tmp / Path(m.name).name).write_bytes(tar.extractfile(m).read())
        tmp.rename(folder)
    return folder
