"""Starting and stopping the service: the store opened, jobs a dead server left running queued again, a Ray session
(a local instance, or `--ray-address`), then uvicorn on the host and port; on SIGTERM (or Ctrl-C) the running job is
stopped gently and left to continue at the next start, webhooks in flight are kept for then, and Ray shuts down."""

from __future__ import annotations

import importlib.util
import os
import signal
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Optional

from faceswap_kohya.config.hosts import is_loopback
from faceswap_kohya.errors import SPACE_FIELD_ENV, UserError
from faceswap_kohya.service.store import Store, database_url

NEEDED = ("fastapi", "uvicorn", "sqlalchemy", "standardwebhooks", "multipart", "httpx")


def check_installed() -> None:
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"serve needs {', '.join(missing)}: pip install -e '.[service]' (scripts/setup.sh installs it)")


def open_store(output: Path, database: Optional[str]) -> Store:
    return Store(database_url(output, database))


def serve(output: Path, host: str = "127.0.0.1", port: int = 8000, database: Optional[str] = None,
          ray_address: Optional[str] = None, max_upload_mb: int = 200, max_queued_per_key: int = 10,
          hold: bool = False, echo: Callable[[str], None] = print) -> bool:
    """Serve until stopped; True when SIGTERM stopped it (its running jobs are left queued for the next start)."""
    check_installed()
    import uvicorn

    from faceswap_kohya.service.app import create_app
    from faceswap_kohya.service.queue import Queue, recover
    from faceswap_kohya.service.submit import Config
    from faceswap_kohya.service.webhooks import Deliverer
    from faceswap_kohya.sweeps.runner import ray_session

    output = Path(output).expanduser().absolute()
    output.mkdir(parents=True, exist_ok=True)
    # a full disk during a job names the server's folder (the jobs run in Ray workers, which inherit the environment)
    os.environ.setdefault(SPACE_FIELD_ENV, "the server's output folder (faceswap-kohya serve --output)")
    store = open_store(output, database)
    if not is_loopback(host) and store.active_keys() == 0:
        raise UserError(f"--host {host}: the service would listen beyond this machine with no API key to guard it; "
                        "create one first: faceswap-kohya keys create NAME" + (f" --database {database}" if database
                                                                               else f" --output {output}"))
    for job_id in recover(store):
        echo(f"{job_id}: the server stopped while it ran; queued again")
    stopped = []
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))  # uvicorn re-raises it when done
    try:
        with ExitStack() as stack:
            cluster = None if hold else stack.enter_context(ray_session(ray_address))
            if cluster is not None:
                echo(f"jobs run on {cluster.describe()}")
            else:
                echo("--hold: jobs are accepted and queued; none is started")
            cfg = Config(output, max_upload_mb * 2**20, max_queued_per_key)
            app = create_app(store, cfg, Queue(store, cluster), Deliverer(store))
            where = store.engine.url.render_as_string(hide_password=True)
            echo(f"serving on http://{host}:{port} (OpenAPI: /openapi.json); jobs in {output / 'jobs'}; store {where}")
            config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5,
                                    lifespan="on", access_log=False)
            uvicorn.Server(config).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        store.close()
    echo("stopped (SIGTERM): any job it was running is queued again and goes on when the server starts again"
         if stopped else "stopped")
    return bool(stopped)
