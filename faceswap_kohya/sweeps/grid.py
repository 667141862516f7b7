"""A sweep's settings: `key=v1,v2` values and a `--variants` YAML list become one set of settings per trial,
and every trial's preset is validated before anything starts (a FLUX trial's model files too).

`key=value` with one value is a fixed override (as for `train`); with several top-level commas it is a grid
axis. Commas inside brackets or quotes do not split (`optimizer.text_encoder_lr=[1e-5,2e-5],0`). The trials
are every combination of the axes, times every entry of the variants file.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import yaml

from faceswap_kohya.errors import UserError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Keys a trial may not change: the sweep decides where runs go, and scores of different measurements can't be ranked.
FIXED_KEYS = {
    "output.dir": "the sweep puts every trial's runs in its own folder",
    "evaluate": "every trial must be measured the same way for the leaderboard to compare them",
    "resources": "set it once for the whole sweep",
}
# Preset keys holding local paths: made absolute so that a worker with another working directory finds them.
PATH_KEYS = ("base_model.path", "base_model.vae", "base_model.ae", "base_model.clip_l", "base_model.t5xxl",
             "dataset.images", "regularization.images", "kohya.sd_scripts",
             "kohya.python", "kohya.tokenizer_cache", "evaluate.insightface_root", "evaluate.arcface_models")


@dataclass(frozen=True)
class Trial:
    """One training of a sweep or batch: the settings it changes and its whole validated preset (as data)."""

    id: str  # a stable hash of the preset: the same settings give the same trial, in any sweep
    label: str  # what people read: "network.dim=16 optimizer.unet_lr=0.0002", or a subject's name
    settings: dict = field(default_factory=dict)
    preset: dict = field(default_factory=dict)  # output.dir not set yet: the plan puts it in the trial's folder


def split_values(raw: str) -> list[str]:
    """`a,b,[c,d],"e,f"` → ['a', 'b', '[c,d]', '"e,f"']: commas at the top level only."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(raw):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(raw[start:i])
            start = i + 1
    parts.append(raw[start:])
    return [p.strip() for p in parts]


def parse_value(raw: str):
    """A value as `train`'s overrides read it: YAML (`12` → int, `[a, b]` → list, `1e-4` → float)."""
    if not raw.strip():
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _check_key(key: str, where: str) -> None:
    if not _KEY.match(key):
        raise UserError(f"{where}: {key!r} is not a preset key (e.g. network.dim; `faceswap-kohya schema` lists them)")


def parse_args(args: Sequence[str]) -> tuple[dict, dict]:
    """(fixed settings, grid axes) from `key=value` / `key=v1,v2` arguments."""
    fixed, grid = {}, {}
    for item in args:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"{item!r}: expected key=value or key=v1,v2 (e.g. network.dim=16,32)")
        _check_key(key, item)
        if key in fixed or key in grid:
            raise UserError(f"{key}: given twice; list every value once, e.g. {key}=a,b")
        values = split_values(raw)
        if len(values) > 1:
            if len(set(values)) != len(values):
                raise UserError(f"{item}: a value is listed twice")
            grid[key] = [parse_value(v) for v in values]
        else:
            fixed[key] = parse_value(raw)
    return fixed, grid


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def read_variants(path: Path) -> list[dict]:
    """A YAML list of mappings (`- {network.dim: 16, optimizer.unet_lr: 2e-4}`; nested sections work too)."""
    from faceswap_kohya.config.presets import read_text

    path = Path(path)
    try:
        data = yaml.safe_load(read_text(path, "a YAML list of variants"))
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    example = "- {network.dim: 16}\n- {network.dim: 32, optimizer.unet_lr: 2.0e-4}"
    if not isinstance(data, list) or not data:
        raise UserError(f"{path}: expected a list of variants, one mapping of settings each, e.g.\n{example}")
    variants = []
    for i, entry in enumerate(data, 1):
        if not isinstance(entry, dict):
            raise UserError(f"{path}: variant {i} is a {type(entry).__name__}, not a mapping of settings, e.g.\n{example}")
        flat = _flatten(entry)
        for key in flat:
            _check_key(key, f"{path}: variant {i}")
        variants.append({k: parse_value(v) if isinstance(v, str) else v for k, v in flat.items()})
    return variants


def combinations(grid: dict, variants: Optional[list[dict]] = None) -> list[dict]:
    """Every combination of the grid's axes, for every variant (the variants' own order first)."""
    keys = list(grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*grid.values())]
    out = []
    for variant in variants or [{}]:
        if both := sorted(set(variant) & set(keys)):
            raise UserError(f"{both[0]}: set both in the variants file and as key=v1,v2; give it in one place")
        out.extend({**variant, **combo} for combo in combos)
    return out


def check_free_keys(keys) -> None:
    """Refuse trial settings the sweep itself owns (see FIXED_KEYS)."""
    for key in keys:
        for fixed, why in FIXED_KEYS.items():
            if key == fixed or key.startswith(fixed + "."):
                raise UserError(f"{key}: can't differ between trials ({why}); set it as one value")


def show(value) -> str:
    """A setting's value as people typed it."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()


def label_of(settings: dict) -> str:
    return " ".join(f"{k}={show(v)}" for k, v in settings.items()) or "(the preset as it is)"


def set_key(data: dict, key: str, value) -> None:
    node = data
    *parents, last = key.split(".")
    for i, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, str) and part == "base_model":  # `base_model: PATH` shorthand
            child = node[part] = {"path": child}
        if not isinstance(child, dict):
            raise UserError(f"{key}: {'.'.join(parents[:i + 1])} is a value, not a section")
        node = child
    node[last] = copy.deepcopy(value)


def _get(data: dict, key: str):
    node = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def absolute_paths(data: dict, cwd: Path) -> None:
    """Relative paths that exist here become absolute (workers may start elsewhere); others are left as written."""
    for key in PATH_KEYS:
        value = _get(data, key)
        local = isinstance(value, str) and value and ":" not in value.split("/")[0]  # not builtin:..., not a URL
        if local and not Path(value).is_absolute() and (cwd / value).exists():
            set_key(data, key, str((cwd / value).resolve()))


def stable_id(data: dict) -> str:
    """A short hash of a preset's settings: the same trial in any sweep, any order, any run."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def _grouped_errors(failures: list[tuple[str, str]], n_trials: int) -> str:
    """One message: each distinct problem once, with the trials it concerns."""
    by_problem: dict[str, list[str]] = {}
    for label, text in failures:
        for line in text.splitlines()[1:] or text.splitlines():
            by_problem.setdefault(line.strip(), []).append(label)
    lines = []
    for problem, labels in by_problem.items():
        who = "every trial" if len(set(labels)) == n_trials and n_trials > 1 else ", ".join(dict.fromkeys(labels))
        lines.append(f"  {problem}  [{who}]")
    bad = len({label for label, _ in failures})
    return f"{bad} of {n_trials} trial{'s' if n_trials != 1 else ''} would have an invalid preset (nothing was started):\n" \
        + "\n".join(lines)


def make_trials(base: dict, source: str, variants: list[tuple[str, dict]], cwd: Optional[Path] = None) -> list[Trial]:
    """Validate every variant's preset and return the trials; one UserError naming every bad key and value.

    `variants` holds (label, settings) pairs; identical presets are one trial."""
    from faceswap_kohya.config import presets
    from faceswap_kohya.trainer.install import check_flux_model

    cwd = Path(cwd or Path.cwd())
    trials, failures, seen = [], [], set()
    for label, settings in variants:
        data = copy.deepcopy(base)
        try:
            for key, value in settings.items():
                set_key(data, key, value)
            preset = presets.validate(data, label)
            check_flux_model(preset)  # a FLUX trial's model files, from their headers, as `train` checks them
        except UserError as e:
            failures.append((label, str(e)))
            continue
        resolved = preset.model_dump(mode="json")
        absolute_paths(resolved, cwd)
        resolved["output"].pop("dir", None)
        resolved["evaluate"].pop("enabled", None)
        trial_id = stable_id(resolved)
        if trial_id not in seen:
            seen.add(trial_id)
            trials.append(Trial(trial_id, label, dict(settings), resolved))
    if failures:
        raise UserError(_grouped_errors(failures, len(variants)))
    return trials
