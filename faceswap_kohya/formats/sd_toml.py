"""Kohya TOML files: a flat sd-scripts config or a sectioned kohya-colab one → sd-scripts arguments (sections
flattened, their names ignored), and a dataset TOML ([general], [[datasets]] and its subsets) → dataset,
regularization and subject fields."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from faceswap_kohya.config.presets import read_text
from faceswap_kohya.errors import UserError
from faceswap_kohya.formats.report import Report, SdArgs, gui_unset, toml_value
from faceswap_kohya.formats.sd_args import put_setting
from faceswap_kohya.formats.sd_keys import DIRECT_KEYS

try:  # Python 3.11+
    import tomllib
except ImportError:  # pragma: no cover
    import tomli as tomllib


# ---------------------------------------------------------------- TOML (flat / sectioned) + dataset TOML
COLAB_SECTIONS = ("network_arguments", "optimizer_arguments", "training_arguments", "saving_arguments",
                  "model_arguments", "dataset_arguments", "sample_prompt_arguments", "logging_arguments")


def toml_to_sd_args(config: dict, report: Report) -> SdArgs:
    """sd-scripts flattens sections (names ignored); the report names `section.key`."""
    out = SdArgs()
    for name, value in config.items():
        if isinstance(value, dict):
            for key, v in value.items():
                out.set(key, v, f"{name}.{key}")
        else:
            out.set(name, value, name)
    if "dataset_config" in out.values:
        out.values.pop("dataset_config")
        report.add(out.origin.pop("dataset_config")[0], "ignored", "read as the dataset TOML when it exists")
    return out


def is_dataset_toml(data: dict) -> bool:
    return "datasets" in data and isinstance(data.get("datasets"), list)


def dataset_toml_to_preset(ds: dict, data: dict, report: Report, prefix: str = "dataset TOML") -> None:
    """[general] + first [[datasets]] + its subsets → dataset/regularization/subject fields."""
    general = ds.get("general", {}) or {}
    datasets = ds.get("datasets", []) or []
    first = datasets[0] if datasets else {}
    for i, extra_ds in enumerate(datasets[1:], 2):
        report.add(f"{prefix}: datasets[{i}]", "unsupported", "only one dataset is trained; this one is not applied")
    layers = [("general", general), ("datasets[1]", {k: v for k, v in first.items() if k != "subsets"})]
    subsets = first.get("subsets", []) or []
    inst = [s for s in subsets if not s.get("is_reg")]
    reg = [s for s in subsets if s.get("is_reg")]
    if inst:
        layers.append(("subsets[instance]", inst[0]))
    for section, group in (("dataset", inst), ("regularization", reg)):
        here = _subsets_here(group)
        if here:  # sd-scripts' own reading of them: each folder with its repeats and class tokens
            put_setting(data, section, "subsets", here)
            report.add(f"{prefix}: subsets[{'reg' if section == 'regularization' else 'instance'}]", "transformed",
                       f"{section}.subsets = " + "; ".join(f"{s['folder']} ×{s['repeats']} '{s['class_tokens']}'" for s in here))
        elif section == "dataset":
            for s in inst[1:]:
                report.add(f"{prefix}: subsets[{s.get('image_dir', '?')}]", "unsupported",
                           "several instance subsets are trained only when their folders exist here with class_tokens; not applied")
    for where, layer in layers:
        for key, value in layer.items():
            src = f"{prefix}: {where}.{key}"
            try:
                _dataset_key(key, value, src, data, report)
            except (TypeError, ValueError, IndexError):
                raise UserError(f"{src}: {value!r} is not a valid value for {key}") from None
    _reg_subset(reg[:1], data, report, prefix)


def _dataset_key(key: str, value, src: str, data: dict, report: Report) -> None:
    """One key of the dataset TOML's general / dataset / instance subset layers → preset fields."""
    if key in ("resolution",):
        parts = value if isinstance(value, list) else [value, value]
        w, h = int(parts[0]), int(parts[-1])
        side = w if w == h and w % 64 == 0 else max(64, round(math.sqrt(w * h) / 64) * 64)
        put_setting(data, "dataset", "resolution", side)
        report.add(src, "mapped" if side == w == h else "transformed", f"dataset.resolution = {side}")
    elif key == "batch_size":
        put_setting(data, "training", "batch_size", int(value))
        report.add(src, "transformed", f"training.batch_size = {value}")
    elif key == "num_repeats":
        put_setting(data, "dataset", "repeats", int(value))
        report.add(src, "transformed", f"dataset.repeats = {value}")
    elif key == "image_dir":
        if Path(str(value)).expanduser().is_dir():
            put_setting(data, "dataset", "images", str(value))
            report.add(src, "transformed", f"dataset.images = {value}")
        else:
            report.add(src, "ignored", "a folder that does not exist here; set dataset.images=...")
    elif key == "class_tokens":
        words = str(value).split()
        if len(words) >= 2 and re.fullmatch(r"[A-Za-z0-9]+", words[0]):
            put_setting(data, "subject", "trigger", words[0])
            put_setting(data, "subject", "class_word", " ".join(words[1:]))
            report.add(src, "transformed", f"subject.trigger = {words[0]}, subject.class_word = {' '.join(words[1:])}")
        else:
            report.add(src, "unsupported", f"{value!r}: expected 'trigger class', e.g. 'myface woman'")
    elif key == "face_crop_aug_range":
        put_setting(data, "dataset", "face_crop_aug_range", list(value))
        report.add(src, "mapped", f"dataset.face_crop_aug_range = {value}")
    elif key in DIRECT_KEYS and DIRECT_KEYS[key][0].startswith("dataset"):
        section, name, typ = DIRECT_KEYS[key]
        bad = key == "bucket_reso_steps" and int(value) % 32
        if bad:
            report.add(src, "unsupported", f"{value}: SDXL bucket steps must be a multiple of 32; kept 64")
            return
        put_setting(data, section, name, bool(value) if typ is bool else typ(value))
        report.add(src, "mapped", f"{section}.{name} = {toml_value(value)}")
    elif key == "caption_extension":
        report.add(src, "ignored", "the dataset step writes .txt captions")
    elif key == "is_reg":
        return
    elif gui_unset(value):
        report.add(src, "ignored", f"unset ({toml_value(value)})")
    else:
        report.add(src, "unsupported", f"{toml_value(value)}: not applied")


def _reg_subset(reg: list, data: dict, report: Report, prefix: str) -> None:
    for s in reg:
        if Path(str(s.get("image_dir", ""))).expanduser().is_dir():
            put_setting(data, "regularization", "images", str(s["image_dir"]))
            report.add(f"{prefix}: subsets[reg].image_dir", "transformed", f"regularization.images = {s['image_dir']}")
        else:
            report.add(f"{prefix}: subsets[reg].image_dir", "ignored", "a folder that does not exist here; set regularization.images=...")
        if "num_repeats" in s:
            if isinstance(s["num_repeats"], bool) or not isinstance(s["num_repeats"], int):
                raise UserError(f"{prefix}: subsets[reg].num_repeats: {s['num_repeats']!r} is not a whole number")
            put_setting(data, "regularization", "repeats", s["num_repeats"])
            report.add(f"{prefix}: subsets[reg].num_repeats", "transformed", f"regularization.repeats = {s['num_repeats']}")
        for key in set(s) - {"image_dir", "num_repeats", "is_reg"}:
            report.add(f"{prefix}: subsets[reg].{key}", "ignored", "the class word names the regularization folder")


def _subsets_here(subsets: list[dict]) -> list[dict]:
    """The subsets as preset subsets, when every folder exists here and has class tokens (else [])."""
    out = []
    for s in subsets:
        folder = Path(str(s.get("image_dir", ""))).expanduser()
        tokens = str(s.get("class_tokens", "")).strip()
        if not folder.is_dir() or not tokens:
            return []
        out.append({"folder": str(folder), "repeats": int(s.get("num_repeats", 1)), "class_tokens": tokens})
    return out


# ---------------------------------------------------------------- entry points
def read_kohya_file(path: Path):
    text = read_text(path, "a kohya_ss .json or sd-scripts .toml")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{path}: invalid TOML: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected one object of settings, got a {type(data).__name__}")
    return data


def find_dataset_toml(path: Path, config: dict) -> Path | None:
    flat = {k: v for sec in config.values() if isinstance(sec, dict) for k, v in sec.items()} | config
    named = flat.get("dataset_config")
    if isinstance(named, str) and named:
        p = Path(named).expanduser()
        p = p if p.is_absolute() else path.parent / p
        if p.is_file():
            return p
    for name in (f"{path.stem}.dataset.toml", "dataset_config.toml", "dataset.toml"):
        p = path.parent / name
        if p.is_file() and p != path:
            return p
    return None
