"""The preset's `resources` section: what one trial of `sweep` / `batch` asks the Ray scheduler for."""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from faceswap_kohya.config.sections import Section


class Resources(Section):
    """What one trial of `sweep` / `batch` asks the Ray scheduler for; unset: worked out from the preset."""

    gpus: Optional[float] = Field(None, ge=0, description="GPUs per trial; unset: kohya.num_processes when the cluster has GPUs, else 0")
    cpus: Optional[float] = Field(None, gt=0, description="CPU cores per trial; unset: kohya.num_cpu_threads_per_process x num_processes")
    memory_gb: Optional[float] = Field(
        None, gt=0, description="host RAM per trial in GiB; unset: 20 on a CPU (SDXL training there peaks near it); with a "
                                   "GPU 22 for SDXL, 36 for FLUX (the trainer process's peaks measured on a GPU)")
