"""faceswap_kohya: photos of one person → an SDXL identity LoRA with Kohya's sd-scripts."""

__version__ = "0.1.0"
