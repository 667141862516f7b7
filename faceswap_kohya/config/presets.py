"""Preset files: YAML loading, `key=value` overrides, discovery in `presets/`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from faceswap_kohya.config import rules
from faceswap_kohya.config.paths import PROJECT_ROOT, presets_dir  # noqa: F401  (PROJECT_ROOT: re-exported)
from faceswap_kohya.config.schema import Preset
from faceswap_kohya.errors import UserError, format_validation_error

PRESETS_DIR = presets_dir()


@dataclass(frozen=True)
class PresetInfo:
    name: str
    path: Path
    vram: str
    description: str


def _header(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines


def describe(path: Path) -> PresetInfo:
    header = _header(path.read_text(encoding="utf-8"))
    vram = next((h.split(":", 1)[1].strip() for h in header if h.lower().startswith("vram:")), "?")
    first = header[0] if header else ""
    description = first.split(":", 1)[1].strip() if first.startswith(path.stem + ":") else first
    return PresetInfo(path.stem, path, vram, description)


def discover(folder: Path = None) -> list[PresetInfo]:
    """Every `*.yaml` in the presets folder, sorted by name (no hand-kept list)."""
    folder = Path(folder or PRESETS_DIR)
    return [describe(p) for p in sorted(folder.glob("*.yaml"))]


def resolve(name_or_path: str) -> Path:
    """A file path as given, else a shipped preset by name."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    for candidate in (PRESETS_DIR / name_or_path, PRESETS_DIR / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    names = ", ".join(i.name for i in discover()) or "none"
    raise UserError(f"{name_or_path}: no such preset file (shipped presets: {names})")


def read_text(path: Path, expected: str) -> str:
    """A settings file's text, or one UserError naming the file (`expected` says what it should be)."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (expected {expected})") from None


def read_yaml(path: Path) -> dict:
    text = read_text(path, "a YAML preset")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise UserError(f"{path}: the file is empty; copy a shipped preset with `faceswap-kohya presets cp NAME {path}`")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of sections (base_model:, dataset:, ...), got a {type(data).__name__}")
    return data


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """`section.key=value` pairs; values are parsed as YAML (`12` → int, `[a, b]` → list)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not _KEY.match(key):
            raise UserError(f"override {item!r}: expected key=value, e.g. training.epochs=12")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            if raw.lstrip().startswith(("[", "{")):  # meant as a list or a mapping
                problem = getattr(e, "problem", None) or "invalid YAML"
                raise UserError(f"override {item!r}: the value is not a valid YAML list or mapping ({problem}); "
                                "quote each item, e.g. key='[\"a, b\", c]'") from None
            value = raw
        node = data
        *parents, last = key.split(".")
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"override {item!r}: {'.'.join(parents[:i + 1])} is a value, not a section")
            node = child
        node[last] = value
    return data


def override_keys(overrides) -> set[str]:
    """The dotted keys of `key=value` overrides (what the command line set)."""
    return {item.partition("=")[0] for item in overrides if "=" in item}


def load_data(path: Path, overrides=()) -> dict:
    data = read_yaml(path)
    if isinstance(data.get("base_model"), str):  # the `base_model: PATH` shorthand, so base_model.vae=... works
        data["base_model"] = {"path": data["base_model"]}
    return apply_overrides(data, overrides)


def validate(data: dict, source: str) -> Preset:
    """The preset of `data`, or one UserError listing every field error and every broken cross-field rule."""
    preset, errors = None, None
    try:
        preset = Preset.model_validate(data, context={"rules": False})
    except ValidationError as e:
        errors = e
    problems = rules.check(data, Preset)
    if errors is not None or problems:
        raise UserError(format_validation_error(errors, source, problems))
    return preset


def load(name_or_path: str, overrides=()) -> tuple[Preset, Path]:
    """Read, override and validate a preset; every problem raises one UserError."""
    path = resolve(name_or_path)
    label = str(path) + (" (with overrides)" if overrides else "")
    return validate(load_data(path, overrides), label), path


def dump(preset: Preset) -> str:
    """The resolved preset as YAML (defaults included), for the run folder."""
    return yaml.safe_dump(preset.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def read_run_preset(run_dir: Path, overrides=()) -> Preset:
    """A run folder's own resolved preset (`preset.yaml`), with optional `key=value` overrides on top."""
    path = Path(run_dir) / "preset.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run folder (no preset.yaml)")
    return validate(apply_overrides(read_yaml(path), overrides), str(path))
