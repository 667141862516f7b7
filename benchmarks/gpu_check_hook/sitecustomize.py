"""Peak memory of every Python process of a trainer run, for benchmarks/gpu_check.py.

On PYTHONPATH (with GPU_CHECK_PEAK_DIR set) this module is imported at start-up by each process; at
exit it writes `<pid>.json` there: torch's max_memory_allocated / max_memory_reserved when the
process used CUDA, and the peak resident memory. It then runs a sitecustomize found further down
sys.path, so an installation's own one still runs.
"""

import atexit
import json
import os
import sys


def _write_peak() -> None:
    folder = os.environ.get("GPU_CHECK_PEAK_DIR")
    if not folder:
        return
    import resource

    peak = {"pid": os.getpid(), "argv": sys.argv[:2],
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            peak["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
            peak["cuda_max_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    except Exception as e:  # noqa: BLE001 - never fail the trainer's exit
        peak["error"] = repr(e)
    try:
        with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as f:
            json.dump(peak, f)
    except OSError:
        pass


def _chain() -> None:
    """Import the next sitecustomize on sys.path, which this one shadows."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


atexit.register(_write_peak)
_chain()
