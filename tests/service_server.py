"""The training service as the tests run it: `faceswap-kohya serve` in a subprocess on a free loopback port,
`keys create` through the CLI, and a loopback webhook receiver that can fail its first calls."""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from postgres import free_port

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "faceswap_kohya", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def store_args(output: Path, database: str | None) -> list[str]:
    return ["--output", str(output)] + (["--database", database] if database else [])


def create_key(output: Path, database: str | None, name: str) -> tuple[str, str]:
    out = cli("keys", "create", name, *store_args(output, database))
    assert out.returncode == 0, out.stderr
    key = re.search(r"^key: (\S+)$", out.stdout, re.M)
    secret = re.search(r"^webhook secret: (whsec_\S+)$", out.stdout, re.M)
    assert key and secret, out.stdout
    return key.group(1), secret.group(1)


class Server:
    """One `serve` process; `url`, `client(key)`, `kill()` (SIGKILL), `stop()` (SIGTERM) and `log()`."""

    def __init__(self, output: Path, database: str | None = None, *extra: str, port: int | None = None):
        self.output, self.database, self.extra = output, database, extra
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = output.parent / f"serve-{self.port}-{time.monotonic_ns()}.log"
        output.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "faceswap_kohya", "serve", "--port", str(self.port),
                                      *store_args(output, database), *extra], stdout=self.log_file,
                                     stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve ended: {self.log()}"
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"serve did not answer: {self.log()}")

    def log(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def client(self, key: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kw.pop("timeout", 120), **kw)

    def stop(self, timeout: float = 180) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log_file.close()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log_file.close()


class Receiver:
    """A loopback HTTP server recording each webhook call (headers, body); the first `fail` calls get a 500."""

    def __init__(self, fail: int = 0):
        self.calls: list[tuple[dict, bytes, int]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = 500 if len(outer.calls) < fail else 200
                outer.calls.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.calls):
                return self.calls
            time.sleep(0.2)
        raise AssertionError(f"webhook calls: {[(h.get('webhook-id'), s, b[:200]) for h, b, s in self.calls]}")

    def close(self):
        self.httpd.shutdown()
