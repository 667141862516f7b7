"""The environment every process of ours that runs PyTorch starts with: the trainer, the command line (and so
the web app, the service and their Ray workers, which inherit it).

`THP_MEM_ALLOC_ENABLE=1` makes PyTorch's CPU allocator ask Linux for transparent huge pages for large tensors.
A CPU training allocates and frees gigabytes of activations and gradients every step; with 4 KiB pages each of
those is hundreds of thousands of page faults (in a virtual machine each one a trip to the host). On a quiet
2-core machine the cpu-check training takes 64 s with it instead of 78 s (on a busy one 86 s instead of 123 s). It changes nothing on a GPU and nothing
where the kernel has no huge pages. PyTorch reads it once, when it first allocates, so it must be set before
torch is imported. A value the user set is kept.
"""

from __future__ import annotations

import os
from typing import MutableMapping

TORCH_ENV = {"THP_MEM_ALLOC_ENABLE": "1"}


def with_torch_env(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """`env` with TORCH_ENV added where the user set nothing else; returned for chaining."""
    for key, value in TORCH_ENV.items():
        env.setdefault(key, value)
    return env


def use_torch_env() -> None:
    """Put TORCH_ENV into this process's environment (before torch is imported) and so into every child's."""
    with_torch_env(os.environ)
