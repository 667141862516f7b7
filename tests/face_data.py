"""Real face photos for tests, all offline: scikit-image's astronaut portrait, and the photos of one person
(plus one of another) from the `face_recognition` 1.3.0 sample set, committed under tests/data/faces/.

Its fixtures are registered in conftest.py; test modules import only the constants.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FACES = Path(__file__).parent / "data" / "faces"
ONE_PERSON = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg", "32bit.png"]
SOMEONE_ELSE = "biden.jpg"


@pytest.fixture(scope="session")
def astronaut():
    from PIL import Image
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="session")
def face_recognition_photos(tmp_path_factory) -> Path:
    """A folder with six photos of one person and biden.jpg: the committed ones, plus 32bit.png, which is
    obama2.jpg as an RGBA PNG (as in the face_recognition sample set). Tests copy from it; none writes into it."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("face_recognition_photos")
    for photo in FACES.glob("*.jpg"):
        shutil.copy(photo, folder / photo.name)
    with Image.open(FACES / "obama2.jpg") as im:
        im.convert("RGBA").save(folder / "32bit.png")
    return folder
