"""What every preset section shares: strict keys, checked assignments, `~` expanded in paths."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def expand_home(value):
    return str(Path(value).expanduser()) if isinstance(value, str) and value.startswith("~") else value
