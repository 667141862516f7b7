"""Build the FLUX.1 pipeline-check model: random weights in the four files `flux_train_network.py` reads.

Every shape comes from sd-scripts' own builders, so the files are what its loaders expect: the DiT is
`flux_models.Flux` with FLUX.1-dev's params but one double and one single block (sd-scripts reads the
block counts from the checkpoint), the AE `flux_models.AutoEncoder`, CLIP-L and T5-XXL the models that
`flux_utils.load_clip_l` / `load_t5xxl` build (full size: they load with strict=False onto empty weights,
so a smaller file would leave weights unset). T5-XXL is stored in fp8 (e4m3fn), as the common
`t5xxl_fp8_e4m3fn.safetensors` is, to halve its disk size (~4.8 GB instead of ~9.5 GB).

It produces noise, by design: it exists to check an installation end to end with no download.
`full`: the DiT at FLUX.1-dev's full depth (19 double, 38 single blocks: ~22 GiB bf16), for the GPU check to
measure the flux presets at their real size (random weights cost the same time and memory as real ones).
Usage (cwd = sd-scripts): python make_flux_check_model.py OUT_FOLDER [DEVICE [full]]
(DEVICE: where the random values are drawn, default cpu; cuda is much faster.)
"""

import math
import os
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.getcwd())  # sd-scripts (the cwd) provides `library`

import torch
from accelerate import init_empty_weights
from safetensors.torch import save_file

from library import flux_models, flux_utils

METADATA = {"faceswap_kohya.kind": "pipeline-check FLUX.1 (random weights: generates noise)"}
FILES = {"dit": "flux1-check-dit.safetensors", "ae": "ae.safetensors", "clip_l": "clip_l.safetensors",
         "t5xxl": "t5xxl_fp8_e4m3fn.safetensors"}


def random_weights(module: torch.nn.Module, dtype: torch.dtype, generator: torch.Generator) -> dict:
    """Random values for every parameter of a (meta) module, drawn on the generator's device and kept on the CPU:
    norms' weights 1, biases small, the rest N(0, 1/fan_in) so activations keep their scale through the layers."""
    out = {}
    device = generator.device
    for name, p in module.named_parameters():
        shape = tuple(p.shape)
        leaf = name.rsplit(".", 1)[-1]
        if len(shape) == 1 and ("norm" in name or leaf == "scale"):
            t = torch.ones(shape, device=device)
        elif len(shape) == 1:
            t = torch.randn(shape, generator=generator, device=device) * 0.01
        else:
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=generator, dtype=torch.bfloat16, device=device) * (1 / math.sqrt(fan_in))
        out[name] = t.to(dtype).contiguous().cpu()
    return out


def save(weights: dict, path: str) -> None:
    save_file(weights, path, metadata=METADATA)
    print(f"saved {len(weights)} tensors, {os.path.getsize(path) / 2**30:.2f} GiB to {path}", flush=True)


def main(folder: str, device: str = "cpu", size: str = "check") -> None:
    os.makedirs(folder, exist_ok=True)
    g = torch.Generator(device).manual_seed(0)
    start = time.time()
    params = flux_models.configs[flux_utils.MODEL_NAME_DEV].params
    if size != "full":
        params = replace(params, depth=1, depth_single_blocks=1)
    with torch.device("meta"):
        dit = flux_models.Flux(params)
        ae = flux_models.AutoEncoder(flux_models.configs[flux_utils.MODEL_NAME_DEV].ae_params)
    clip_l = flux_utils.load_clip_l(None, torch.float16, "cpu", state_dict={})
    with init_empty_weights():
        t5xxl = flux_utils.load_t5xxl(None, None, "cpu", state_dict={})
    save(random_weights(dit, torch.bfloat16, g), os.path.join(folder, FILES["dit"]))
    save(random_weights(ae, torch.bfloat16, g), os.path.join(folder, FILES["ae"]))
    save(random_weights(clip_l, torch.float16, g), os.path.join(folder, FILES["clip_l"]))
    save(random_weights(t5xxl, torch.float8_e4m3fn, g), os.path.join(folder, FILES["t5xxl"]))
    print(f"built in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
