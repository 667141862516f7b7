"""User-facing errors: one message, no traceback, a non-zero exit."""

from __future__ import annotations

import errno
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError


class UserError(Exception):
    """A problem the user can fix; the CLI prints it and exits with code 2."""


# Union branches and validator wrappers that pydantic puts into an error's location.
_BRANCH = re.compile(r"^(int|float|str|bool|none|list|tuple|dict)$|\[|^function-|^constrained-")


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and _BRANCH.search(p))]
    return ".".join(parts) or "(top level)"


def format_validation_error(err: ValidationError | None, source: str, problems=()) -> str:
    """Every error of one preset as `field.path: message (got VALUE)`, under the file's name: the field errors of
    `err`, then `problems`, (field path, message, value) triples (the cross-field rules)."""
    lines, seen = [], {}
    for e in err.errors(include_url=False) if err is not None else ():
        msg = e["msg"].removeprefix("Value error, ")
        where = _location(e["loc"])
        if e["type"] == "extra_forbidden":
            msg = "unknown key (misspelt? `faceswap-kohya schema` lists every key)"
        got = e.get("input")
        shown = "" if e["type"] in ("missing",) or isinstance(got, dict) else f" (got {got!r})"
        if where in seen:  # one line per field: the branches of a union are alternatives
            i = seen[where]
            lines[i] = lines[i].replace(f"{shown}", "", 1) + f"; or {msg[0].lower()}{msg[1:]}{shown}"
            continue
        seen[where] = len(lines)
        lines.append(f"  {where}: {msg}{shown}")
    for where, msg, got in problems:
        lines.append(f"  {where}: {msg}" + ("" if isinstance(got, dict) else f" (got {got!r})"))
    n = len(lines)
    return f"{source}: {n} error{'s' if n != 1 else ''}\n" + "\n".join(lines)


class Terminated(KeyboardInterrupt):
    """SIGTERM (`docker stop`, systemd, Kubernetes), raised where Ctrl-C would be: every job stops the same way,
    keeping what was saved, and the command exits with 130 as after Ctrl-C."""


# A full disk (or a full quota): never an internal error, always where and what to do.
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NO_SPACE = "no space left on device"


def is_no_space(err: BaseException) -> bool:
    """Whether `err` is an OSError of a full disk or quota."""
    return isinstance(err, OSError) and err.errno in NO_SPACE_ERRNOS


def free_bytes(folder) -> int | None:
    """Free bytes on the disk that holds `folder` (its nearest existing parent); None when it can't be told."""
    probe = Path(folder).expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def size_text(n: float) -> str:
    """1.2 GB, 340 MB, 12 KB."""
    for unit, size in (("GB", 1024**3), ("MB", 1024**2)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1024:.0f} KB"


SPACE_FIELD_ENV = "FACESWAP_KOHYA_SPACE_FIELD"  # set by a front end (web app, service) for the jobs it starts


def space_field() -> str:
    """The setting a user changes to put runs on another disk: `output.dir` for the CLI, or what the front end that
    started this job named in SPACE_FIELD_ENV (the web app's and the server's own output folder)."""
    return os.environ.get(SPACE_FIELD_ENV) or "output.dir"


def no_space_message(folder, writing: str = "", field: str | None = None) -> str:
    """"no space left on device in FOLDER (N free) ...: free space on that disk or set output.dir to a folder on another
    disk" — what a full disk is reported as, wherever it happened (`writing`: what was being written; `field`: the
    setting to change, by default space_field())."""
    field = field or space_field()
    free = free_bytes(folder)
    shown = f" ({size_text(free)} free)" if free is not None else ""
    what = f" while writing {writing}" if writing else ""
    return (f"{NO_SPACE} in {folder}{shown}{what}: free space on that disk, or set {field} to a folder on another disk "
            "and run again")


class NoSpace(UserError):
    """The disk filled up while a job wrote its files (see no_space_message)."""


@contextmanager
def no_space_in(folder, field: str | None = None, what: str = "evaluation"):
    """A full disk met inside → NoSpace naming `folder`; what was made in `folder` meanwhile (unfinished) is removed."""
    folder = Path(folder)
    before = set(folder.iterdir()) if folder.is_dir() else set()
    try:
        yield
    except OSError as e:
        if not is_no_space(e):
            raise
        made = sorted(set(folder.iterdir()) - before) if folder.is_dir() else []
        for p in made:
            shutil.rmtree(p, ignore_errors=True)
        removed = f" (the unfinished {what} {', '.join(p.name for p in made)} was removed)" if made else ""
        raise NoSpace(no_space_message(folder, field=field) + removed) from None
