"""Trials as Ray tasks, on this machine or on a Ray cluster.

With no address (neither `--ray-address` nor RAY_ADDRESS) a local Ray instance starts for the sweep and
stops after it: no dashboard, a 100 MiB object store (trials return small summaries; the trainer needs
the memory), its memory resource set to the machine's RAM, Ray's own out-of-memory killer off (it would
kill the worker and leave its trainer running), and workers at normal priority (Ray's default niceness 15
starves a trainer on a busy machine). With an address the driver joins that cluster.

Each trial asks for the preset's resources (`resources.*`, else worked out from the preset: one GPU per
trainer process when the cluster has GPUs; host RAM as measured: with a GPU 22 GiB for SDXL and 36 for FLUX, on a
CPU ~20 GiB, so trials run one at a time), and Ray runs as many at once as fit. A worker runs one trial and exits
(`max_calls=1`), giving its memory back.
A worker that dies mid-trial (SIGKILL, the OOM killer) fails that trial alone, saying so (WORKER_DIED, also in
the trial's run folder: a WorkerDied event, status `failed`), and its trainer is stopped; the others go on, and
running the sweep again retries only the trials not finished.
Ctrl-C cancels every trial (KeyboardInterrupt in the worker: the train job stops the trainer's process
group), waits for them to stop, and on this machine stops any trainer still left. `run_task` runs one such task
(the training service's jobs), polling and cancelling it on request.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from faceswap_kohya import events as ev
from faceswap_kohya.errors import UserError
from faceswap_kohya.runs.status import fail_dead_run, pid_alive, read_status
from faceswap_kohya.sweeps.trials import TrialWatch, summarize_run

OBJECT_STORE_BYTES = 100 * 2**20
GiB = 2**30
CPU_TRIAL_GB = 20  # host RAM of one trial on a CPU: the SDXL check model peaks near 22 GB, flux-check near 15
# With a GPU the trainer process still holds the model in host RAM: measured on an H200 (benchmarks/gpu-runs), its
# peak was 21.1 GiB for face-24gb and 34.3 GiB for flux-24gb.
GPU_TRIAL_GB = {"sdxl": 22, "flux": 36}
POLL_S = 1.0
STOP_WAIT_S = 120  # a trainer gets SIGINT, then SIGTERM, then SIGKILL within ~35 s
TASK_WORKER_DIED = "the worker process running it died (a Ray worker: killed from outside, or out of memory?)"
WORKER_DIED = TASK_WORKER_DIED + "; run the sweep again to retry this trial only"


@dataclass
class Cluster:
    local: bool
    address: str
    nodes: list = field(default_factory=list)  # each alive node's total resources

    @property
    def gpus(self) -> float:
        return sum(n.get("GPU", 0) for n in self.nodes)

    def describe(self) -> str:
        cpus = sum(n.get("CPU", 0) for n in self.nodes)
        mem = sum(n.get("memory", 0) for n in self.nodes) / GiB
        where = "a local Ray instance" if self.local else f"the Ray cluster at {self.address}"
        return f"{where}: {len(self.nodes)} node{'s' if len(self.nodes) != 1 else ''}, {cpus:g} CPUs, " \
               f"{self.gpus:g} GPUs, {mem:.0f} GiB of memory to schedule"


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("sweep and batch run on Ray, which is not installed: pip install 'faceswap_kohya[sweep]' "
                        "(scripts/setup.sh installs it)") from None
    return ray


@contextmanager
def ray_session(address: Optional[str] = None):
    """Start a local Ray instance (no address) or join a cluster; shut down afterwards."""
    ray = _import_ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    package_root = str(Path(__file__).resolve().parents[2])
    # ray.init puts its own SIGTERM handler in (it logs and exits 1): give the command's back, so SIGTERM stops
    # every trial as Ctrl-C does.
    term = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address="local", num_cpus=os.cpu_count(), object_store_memory=OBJECT_STORE_BYTES,
                     include_dashboard=False, _memory=physical_memory(), log_to_driver=False,
                     logging_level=logging.ERROR, _system_config={"memory_monitor_refresh_ms": 0, "worker_niceness": 0},
                     runtime_env={"env_vars": {"PYTHONPATH": package_root}})  # workers import this very package
    except (ConnectionError, RuntimeError, ValueError) as e:
        if not address:
            raise
        raise UserError(f"--ray-address {address}: cannot join the Ray cluster ({str(e).splitlines()[0]}); is its head "
                        "started (`ray start --head`)? With token authentication set RAY_AUTH_MODE=token here, with the "
                        "cluster's token in ~/.ray/auth_token (see README: Sweeps)") from None
    if callable(term):
        signal.signal(signal.SIGTERM, term)
    try:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        yield Cluster(local=not address, address=address or "local", nodes=nodes)
    finally:
        ray.shutdown()


# ---------------------------------------------------------------- what a trial asks for
def trial_resources(preset: dict, cluster: Cluster) -> dict:
    """Ray options for one trial (num_cpus, num_gpus, memory in bytes) from the preset."""
    r = preset.get("resources") or {}
    k = preset.get("kohya") or {}
    procs = k.get("num_processes") or 1
    gpus = r["gpus"] if r.get("gpus") is not None else (procs if cluster.gpus else 0)
    cpus = r.get("cpus") or (k.get("num_cpu_threads_per_process") or 2) * procs
    family = (preset.get("base_model") or {}).get("family") or "sdxl"
    memory_gb = r.get("memory_gb") or (GPU_TRIAL_GB.get(family, GPU_TRIAL_GB["sdxl"]) if gpus else CPU_TRIAL_GB)
    return {"num_cpus": float(cpus), "num_gpus": float(gpus), "memory": int(memory_gb * GiB)}


def _fits(ask: dict, node: dict) -> bool:
    return (node.get("CPU", 0) >= ask["num_cpus"] and node.get("GPU", 0) >= ask["num_gpus"]
            and node.get("memory", 0) >= ask["memory"])


def _shown(ask: dict) -> str:
    return f"{ask['num_cpus']:g} CPUs, {ask['num_gpus']:g} GPUs, {ask['memory'] / GiB:.0f} GiB"


def fit(ask: dict, cluster: Cluster) -> tuple[dict, Optional[str]]:
    """The ask as given when some node can take it; on this machine, cut to what it has (with a warning);
    on a cluster, a UserError (Ray would wait forever)."""
    if any(_fits(ask, n) for n in cluster.nodes):
        return ask, None
    if not cluster.local or not cluster.nodes:
        biggest = ", ".join(sorted({_shown({"num_cpus": n.get("CPU", 0), "num_gpus": n.get("GPU", 0),
                                            "memory": n.get("memory", 0)}) for n in cluster.nodes})) or "none"
        raise UserError(f"resources: a trial asks for {_shown(ask)} but no node of the Ray cluster has that much "
                        f"(nodes: {biggest}); set resources.cpus / resources.gpus / resources.memory_gb")
    node = cluster.nodes[0]
    cut = {"num_cpus": min(ask["num_cpus"], node.get("CPU", 1)), "num_gpus": min(ask["num_gpus"], node.get("GPU", 0)),
           "memory": min(ask["memory"], int(node.get("memory", ask["memory"])))}
    return cut, f"a trial asks for {_shown(ask)}; this machine has {_shown(cut)}: trials run one at a time and may run short"


# ---------------------------------------------------------------- running and stopping
def _trial_task(trial: Callable[[dict], dict], spec: dict) -> dict:
    """The Ray task: `trial(spec)` in a worker."""
    # Ray starts its processes with SIGINT blocked, and a child inherits that: unblock it so the trainer
    # can be stopped gently (launch sends SIGINT first).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # Ray starts workers at niceness 15: on a busy machine the trainer would crawl. Back to normal where allowed.
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:
        pass

    return trial(spec)


def _outcome(ray, ref, spec: dict, watch: TrialWatch) -> dict:
    """The trial's summary, also when Ray itself failed it (cancelled, worker died, out of memory)."""
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        state, error = "interrupted", "stopped before it started" if watch.run is None else "stopped"
    except ray.exceptions.RayTaskError as e:
        state, error = "failed", f"{type(e.cause).__name__}: {str(e.cause).splitlines()[0] if str(e.cause) else ''}"
    except ray.exceptions.WorkerCrashedError:
        state, error = "failed", WORKER_DIED
    except ray.exceptions.RayError as e:
        state, error = "failed", f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
    run = summarize_run(watch.run) if watch.run else {}
    return {"id": spec["id"], "label": spec["label"], **run, "state": state, "error": error}


def _kill_left_trainers(watches: list[TrialWatch], on_event: ev.OnEvent) -> None:
    """On this machine: stop a trainer whose worker is gone (its own process group, SIGKILL)."""
    for w in watches:
        pid = w.trainer_pid()
        if not pid or not pid_alive(pid) or w.run is None:
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(w.run / "config.toml") in cmdline:
            on_event(ev.Warning(f"trial {w.id}: stopping its trainer (process group {pid})"))
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def record_worker_death(watch: TrialWatch) -> None:
    """The trial's run folder (when the worker had made one) reads `failed`, saying its worker died, not the
    `interrupted` a dead writer's status reads as."""
    status = read_status(watch.run) if watch.run else None
    if status is not None:
        fail_dead_run(watch.run, ev.WorkerDied(WORKER_DIED, status.get("pid")))


def _stop(ray, pending: dict, cluster: Cluster, on_event: ev.OnEvent, on_summary) -> None:
    """Cancel every trial gently, wait for them; a second Ctrl-C (or the time limit) forces them."""
    for ref in pending:
        ray.cancel(ref, force=False)
    deadline = time.monotonic() + STOP_WAIT_S
    try:
        while pending and time.monotonic() < deadline:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                spec, watch = pending.pop(ref)
                on_summary(spec, _outcome(ray, ref, spec, watch))  # a trial may have finished meanwhile
    except KeyboardInterrupt:
        on_event(ev.Warning("forcing every trial to stop"))
    for ref, (spec, watch) in list(pending.items()):
        ray.cancel(ref, force=True)
        watch.poll()
        on_summary(spec, {"id": spec["id"], "label": spec["label"], **(summarize_run(watch.run) if watch.run else {}),
                          "state": "interrupted", "error": "stopped"})
    if cluster.local:
        time.sleep(1.0)
        _kill_left_trainers([w for _, w in pending.values()], on_event)


def run_specs(specs: list[dict], address: Optional[str], on_event: ev.OnEvent,
              on_summary: Callable[[dict, dict], None], trial: Callable[[dict], dict]) -> bool:
    """Run `trial(spec)` for every spec as a Ray task (`trial` is a module-level function the workers import);
    `on_summary(spec, summary)` as each ends. True when interrupted."""
    ray = _import_ray()
    with ray_session(address) as cluster:
        on_event(ev.Message(f"running {len(specs)} trial{'s' if len(specs) != 1 else ''} on {cluster.describe()}"))
        task = ray.remote(max_calls=1, max_retries=0)(_trial_task)
        pending, warned = {}, set()
        for spec in specs:
            ask, warning = fit(trial_resources(spec["preset"], cluster), cluster)
            if warning and warning not in warned:
                warned.add(warning)
                on_event(ev.Warning(warning))
            ref = task.options(name=f"trial-{spec['id']}", **ask).remote(trial, spec)
            pending[ref] = (spec, TrialWatch(spec["id"], spec["label"], Path(spec["folder"])))
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    spec, watch = pending.pop(ref)
                    watch.poll()
                    summary = _outcome(ray, ref, spec, watch)
                    if summary.get("error") == WORKER_DIED:
                        if cluster.local:  # its trainer must not train on, orphaned
                            _kill_left_trainers([watch], on_event)
                        record_worker_death(watch)
                    on_summary(spec, summary)
                for _, watch in pending.values():
                    if (progress := watch.poll()) is not None:
                        on_event(progress)
        except KeyboardInterrupt:
            on_event(ev.Warning("Ctrl-C: stopping every trial (press it again to force)"))
            _stop(ray, pending, cluster, on_event, on_summary)
            return True
    return False


@dataclass
class TaskOutcome:
    """How one task ended: state finished (value is what the function returned), interrupted or failed (error:
    TASK_WORKER_DIED when the worker running it died)."""

    state: str
    value: object = None
    error: Optional[str] = None
    warning: Optional[str] = None


def run_task(fn: Callable[[dict], dict], spec: dict, cluster: Cluster, name: str,
             should_stop: Callable[[], bool] = lambda: False, on_poll: Callable[[], None] = lambda: None) -> TaskOutcome:
    """`fn(spec)` as one Ray task in a `ray_session`, with the resources `spec["preset"]` (a preset as a dict) asks
    for; `on_poll()` about every second. When `should_stop()` turns true the task is cancelled gently (as Ctrl-C: the
    train job stops the trainer's process group), then forced after STOP_WAIT_S. `fn` is a module-level function."""
    ray = _import_ray()
    ask, warning = fit(trial_resources(spec.get("preset") or {}, cluster), cluster)
    ref = ray.remote(max_calls=1, max_retries=0)(_trial_task).options(name=name, **ask).remote(fn, spec)
    stopping = None
    while True:
        ready, _ = ray.wait([ref], num_returns=1, timeout=POLL_S)
        if ready:
            break
        on_poll()
        if stopping is None and should_stop():
            ray.cancel(ref, force=False)
            stopping = time.monotonic()
        elif stopping is not None and time.monotonic() - stopping > STOP_WAIT_S:
            ray.cancel(ref, force=True)
            break
    try:
        return TaskOutcome("finished", ray.get(ref), warning=warning)
    except ray.exceptions.TaskCancelledError:
        return TaskOutcome("interrupted", error="stopped", warning=warning)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause
        if isinstance(cause, UserError):
            return TaskOutcome("failed", error=str(cause), warning=warning)
        if isinstance(cause, KeyboardInterrupt):
            return TaskOutcome("interrupted", error="stopped", warning=warning)
        return TaskOutcome("failed", error=f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}",
                           warning=warning)
    except ray.exceptions.WorkerCrashedError:
        return TaskOutcome("failed", error=TASK_WORKER_DIED, warning=warning)
    except ray.exceptions.RayError as e:
        return TaskOutcome("failed", error=f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}",
                           warning=warning)
