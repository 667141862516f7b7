"""Built-in sample subject photos: variants of the public-domain astronaut portrait shipped with
scikit-image (Eileen Collins, NASA), for trying the whole chain with no photos of your own."""

from __future__ import annotations

from pathlib import Path

from faceswap_kohya.config.paths import home
from faceswap_kohya.errors import UserError

SAMPLE_PHOTOS = "builtin:sample-photos"


def sample_photos(folder: Path | None = None) -> Path:
    """Write (once) six photo variants: crops, a mirror, brighter/darker/warmer versions."""
    folder = Path(folder or home() / "sample-photos")
    if len(list(folder.glob("*.jpg"))) >= 6:
        return folder
    try:
        from skimage import data
    except ImportError:
        raise UserError("the built-in sample photos need scikit-image: pip install scikit-image") from None
    from PIL import Image, ImageEnhance, ImageOps

    portrait = Image.fromarray(data.astronaut())  # 512x512, face near the top centre
    warm = lambda im: Image.merge("RGB", [c.point(lambda v, k=k: min(255, int(v * k))) for c, k in zip(im.split(), (1.1, 1.0, 0.88))])  # noqa: E731
    # Different framings, so that none is a near duplicate of another (preparation drops those).
    variants = {
        "portrait": portrait,
        "head": portrait.crop((96, 0, 416, 320)).resize((512, 512), Image.LANCZOS),
        "mirrored": ImageOps.mirror(portrait.crop((40, 0, 512, 472))),
        "close-up": ImageEnhance.Brightness(portrait.crop((150, 20, 370, 240)).resize((512, 512), Image.LANCZOS)).enhance(1.25),
        "tilted": ImageEnhance.Brightness(portrait.crop((40, 0, 480, 440)).rotate(12, Image.BICUBIC, fillcolor=(128, 128, 128))
                                          .crop((30, 30, 410, 410))).enhance(0.75),
        "shoulders": warm(portrait.crop((0, 0, 420, 512))),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, im in variants.items():
        im.convert("RGB").save(folder / f"astronaut_{name}.jpg", quality=92)
    return folder


def resolve_images(value: str | None) -> str | None:
    return str(sample_photos()) if value == SAMPLE_PHOTOS else value
