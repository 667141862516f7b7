"""One process at a time on a run folder: an advisory lock (`flock`) on the folder itself, so nothing is written
into it, released by the kernel when the holding process ends however it ends (exit, Ctrl-C, SIGKILL): it can
never be left stale."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from faceswap_kohya.errors import UserError


@contextmanager
def held(folder: Path, doing: str) -> Iterator[None]:
    """Hold `folder` for the duration; a second holder gets a UserError. `doing` says what, e.g. "being resumed"."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise UserError(f"{folder}: cannot lock it ({e.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{folder}: already {doing} by another process; wait for it to end "
                            "(or stop it) and try again") from None
        yield
    finally:
        os.close(fd)
