#!/usr/bin/env python
"""Generate images with a trained LoRA: the same as `faceswap-kohya generate` (see --help).

    python scripts/generate.py output/myface/<run> "myface woman, portrait photo" -n 4 --weight 0.8
    python scripts/generate.py my.safetensors --base sd_xl_base_1.0.safetensors "myface woman" --seed 1
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faceswap_kohya.cli.images import generate  # noqa: E402

if __name__ == "__main__":
    generate.main(args=sys.argv[1:], prog_name="generate.py")
