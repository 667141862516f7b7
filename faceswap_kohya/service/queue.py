"""The service's queue: first in, first out across keys, one job per GPU (one at a time on a CPU), each a Ray task
on the same code as sweeps (`sweeps.runner.run_task`); and what a restart finds. Jobs left `preparing`/`training`/
`evaluating` by a server that died are stopped (a trainer left behind is stopped by its process group) and queued
again at their old place; a training then resumes from its saved state, or starts over, and says so in its events.
On SIGTERM each running job is cancelled gently (the trainer's process group stopped, as Ctrl-C does) and left
queued, to continue when the server starts again."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Optional

from faceswap_kohya import events as ev
from faceswap_kohya.runs.status import ACTIVE, STATUS, fail_dead_run, pid_alive, read_status
from faceswap_kohya.service import store as st
from faceswap_kohya.service import webhooks
from faceswap_kohya.service.joblog import job_runs, latest_run, note
from faceswap_kohya.service.tasks import TASKS
from faceswap_kohya.service.views import job_object
from faceswap_kohya.sweeps.runner import TASK_WORKER_DIED, Cluster, run_task

PROGRESS_EVERY_S = 30.0
FIELD = re.compile(r"^\s{2}([A-Za-z_][\w.]*): ", re.M)


def error_of(message: str) -> dict:
    """`{"message", "field"}` for a job's error; the field is the first `  key.path: ...` line of a preset error."""
    m = FIELD.search(message or "")
    return {"message": message, "field": m.group(1) if m else None}


def stop_left_trainers(folder: Path, wait_s: float = 30.0) -> list[int]:
    """Stop the trainer of any run of the job that a dead server left running (SIGINT to its process group, then
    SIGKILL); returns the groups it stopped."""
    stopped = []
    for run in job_runs(folder):
        try:
            status = json.loads((run / STATUS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        pid = status.get("trainer_pid")
        if status.get("state") not in ACTIVE or not pid_alive(pid):
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(run / "config.toml") not in cmdline:
            continue  # the pid was reused by another process
        for sig, grace in ((signal.SIGINT, wait_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + grace
            while pid_alive(pid) and time.monotonic() < end:
                time.sleep(0.5)
        stopped.append(pid)
    return stopped


def recover(store: st.Store) -> list[str]:
    """After a restart: every job a dead server left running is queued again at its place (its events say so)."""
    recovered = []
    for job in store.jobs_in(st.RUNNING):
        folder = Path(job["folder"])
        stopped = stop_left_trainers(folder)
        if store.update(job["id"], only_from=st.RUNNING, status=st.QUEUED, cancel_requested=0):
            extra = f"; stopped the trainer it left (process group {', '.join(map(str, stopped))})" if stopped else ""
            note(folder, ev.Warning(f"the server stopped while this job was {job['status']}{extra}: it is queued "
                                    "again at its place"))
            recovered.append(job["id"])
    return recovered


class Queue:
    """Worker threads that take the oldest queued job and run it as a Ray task until the server stops."""

    def __init__(self, store: st.Store, cluster: Optional[Cluster]):
        self.store, self.cluster = store, cluster
        self.stopping = threading.Event()
        slots = int(cluster.gpus) if cluster is not None and cluster.gpus >= 1 else 1
        self.threads = [threading.Thread(target=self.loop, name=f"queue-{i}", daemon=True) for i in range(slots)]
        self.running: dict[str, float] = {}

    def start(self) -> None:
        if self.cluster is None:  # --hold: accept and queue, start nothing
            return
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            if t.is_alive():
                t.join()

    def loop(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.store.claim_next()
            except Exception:  # noqa: BLE001 - the database is away for a moment: try again
                job = None
            if job is None:
                self.stopping.wait(0.5)
                continue
            try:
                self.run(job)
            except Exception as e:  # noqa: BLE001 - a job must end in a state, whatever went wrong
                self.finish(job, st.FAILED, error_of(f"the service failed to run the job ({type(e).__name__}: {e})"))

    def spec(self, job: dict) -> dict:
        req, folder = job["request"], Path(job["folder"])
        spec = dict(req, folder=str(folder), kind=job["kind"], preset=req.get("ask") or {})
        if job["kind"] == "training":
            spec["recover"] = bool(job_runs(folder))
        return spec

    def run(self, job: dict) -> None:
        folder = Path(job["folder"])
        note(folder, ev.Message(f"started (attempt {job['attempts']})"))
        webhooks.enqueue(self.store, job, "start", job_object(job, self.store))
        seen = {"status": st.PREPARING, "at": time.monotonic()}

        def poll():
            if job["kind"] != "training":
                return
            run = latest_run(folder)
            state = (read_status(run) or {}).get("state") if run else None
            now = time.monotonic()
            if state in st.RUNNING and state != seen["status"]:
                self.store.update(job["id"], only_from=st.RUNNING, status=state)
                seen.update(status=state, at=now)
                webhooks.enqueue(self.store, job, "progress", job_object(self.store.job(job["id"]), self.store))
            elif now - seen["at"] > PROGRESS_EVERY_S:
                seen["at"] = now
                webhooks.enqueue(self.store, job, "progress", job_object(self.store.job(job["id"]), self.store))

        def should_stop() -> bool:
            if self.stopping.is_set():
                return True
            fresh = self.store.job(job["id"])
            return bool(fresh and fresh["cancel_requested"])

        outcome = run_task(TASKS[job["kind"]], self.spec(job), self.cluster, f"{job['kind']}-{job['id']}",
                           should_stop=should_stop, on_poll=poll)
        fresh = self.store.job(job["id"])
        value = outcome.value if outcome.state == "finished" else None
        ok = value is not None and not value.get("interrupted") and not value.get("error")
        if fresh["cancel_requested"]:
            note(folder, ev.Message("canceled"))
            self.finish(job, st.CANCELED, None)
        elif self.stopping.is_set() and not ok:
            note(folder, ev.Warning("the server is stopping: the job stays queued and continues when it starts again"))
            self.store.update(job["id"], only_from=st.RUNNING, status=st.QUEUED)
        elif ok:
            self.finish(job, st.SUCCEEDED, None, value)
        elif outcome.error == TASK_WORKER_DIED:
            message = f"{TASK_WORKER_DIED}; submit the job again"
            run = latest_run(folder) if job["kind"] == "training" else None
            if run is not None:  # its run folder reads failed, saying why, not the `interrupted` of a dead writer
                fail_dead_run(run, ev.WorkerDied(message, (read_status(run) or {}).get("pid")))
            self.finish(job, st.FAILED, error_of(message))
        else:
            message = (value or {}).get("error") or (
                "the trainer was stopped from outside the service" if value else outcome.error or "failed")
            self.finish(job, st.FAILED, error_of(message))

    def finish(self, job: dict, status: str, error: Optional[dict], result: Optional[dict] = None) -> None:
        if self.store.update(job["id"], only_from=st.RUNNING + (st.QUEUED,), status=status, error=error, result=result,
                             completed_at=time.time()):
            if error:
                note(Path(job["folder"]), ev.Error(error["message"]))
            webhooks.enqueue(self.store, job, "completed", job_object(self.store.job(job["id"]), self.store))
