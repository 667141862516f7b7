"""One process at a time on a run folder: an advisory lock (`flock`) on a small file inside it, released by the
kernel when the holding process ends however it ends (exit, Ctrl-C, SIGKILL), so it can never be left stale."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from faceswap_kohya.errors import UserError

RESUME_LOCK = ".resume.lock"


@contextmanager
def held(folder: Path, doing: str, name: str = RESUME_LOCK) -> Iterator[None]:
    """Hold `folder/name` for the duration; a second holder gets a UserError saying which process has it.

    `doing` says what the holder does, e.g. "being resumed"."""
    path = Path(folder) / name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"{folder}: cannot lock it ({e.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise UserError(f"{folder}: already {doing} by process {holder}; wait for it to end "
                            f"(or stop it) and try again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
