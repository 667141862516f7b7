"""A throwaway PostgreSQL cluster for tests: Debian's `postgresql` binaries (initdb, pg_ctl), a temporary folder,
loopback only, trust authentication; run as the `postgres` user when the tests run as root (initdb refuses root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def missing_reason() -> str | None:
    if pg_bin() is None:
        return "PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run initdb as"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_cluster():
    """Yields a `postgresql://postgres@127.0.0.1:PORT/postgres` URL; the cluster and its folder go afterwards."""
    bindir = pg_bin()
    parent = Path(tempfile.mkdtemp(prefix="fsk-pg-"))
    data = parent / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(parent, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    os.chmod(parent, 0o755)
    port = free_port()

    def run(*argv):
        return subprocess.run(as_user + [str(a) for a in argv], capture_output=True, text=True, timeout=120, cwd=parent)

    out = run(bindir / "initdb", "-D", data, "-U", "postgres", "--auth", "trust", "-E", "UTF8")
    assert out.returncode == 0, out.stderr
    out = run(bindir / "pg_ctl", "-D", data, "-l", parent / "log", "-w", "-o",
              f"-k {parent} -c listen_addresses=127.0.0.1 -p {port}", "start")
    assert out.returncode == 0, out.stderr + (parent / "log").read_text(errors="replace")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(parent, ignore_errors=True)
