"""faceswap_kohya: photos of one person → an SDXL (or FLUX.1) identity LoRA with Kohya's sd-scripts."""

__version__ = "0.1.0"
