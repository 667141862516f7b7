"""Kohya files imported as presets, in two steps: a kohya_ss GUI JSON (formats.gui_json) or a TOML
(formats.sd_toml) → sd-scripts arguments, then those → preset fields (formats.sd_args), validated, with a
report of every key of the input. `load_any` takes a preset name/YAML or a Kohya file alike."""

from __future__ import annotations

from pathlib import Path

from faceswap_kohya.config.presets import apply_overrides, dump, load, validate
from faceswap_kohya.errors import UserError
from faceswap_kohya.formats.gui_json import gui_to_sd_args
from faceswap_kohya.formats.report import KOHYA_SUFFIXES, Report, check_family_gui, lycoris_available, lycoris_status
from faceswap_kohya.formats.sd_args import sd_args_to_preset
from faceswap_kohya.formats.sd_toml import (
    dataset_toml_to_preset,
    find_dataset_toml,
    is_dataset_toml,
    read_kohya_file,
    toml_to_sd_args,
)


def import_file(path, dataset=None) -> tuple[dict, Report]:
    """A Kohya preset file (+ optional dataset TOML) → (preset dict, report). Not yet validated.

    Every problem is one UserError naming the file (and the key, where the checks know it)."""
    try:
        return _import_file(Path(path), dataset)
    except (TypeError, ValueError, KeyError, AttributeError) as e:  # a value of a shape no check foresaw
        raise UserError(f"{path}: cannot import it: a value has the wrong type or form ({type(e).__name__}: {e})") from None


def _import_file(path: Path, dataset=None) -> tuple[dict, Report]:
    raw = read_kohya_file(path)
    if path.suffix.lower() == ".json":
        report = Report(str(path), "kohya_ss GUI JSON")
        check_family_gui(raw, str(path))
        sd = gui_to_sd_args(raw, report)
        data = sd_args_to_preset(sd, report, from_gui=True)
        if not dataset:
            import_folders(raw, data, report)
    else:
        if is_dataset_toml(raw):
            raise UserError(f"{path}: this is a dataset TOML ([[datasets]]); import the training config TOML and "
                            "give this one with --dataset")
        sectioned = any(isinstance(v, dict) for v in raw.values())
        report = Report(str(path), "kohya-colab sectioned TOML" if sectioned else "sd-scripts TOML")
        sd = toml_to_sd_args(raw, report)
        data = sd_args_to_preset(sd, report, from_gui=False)
        ds_path = Path(dataset) if dataset else find_dataset_toml(path, raw)
        if ds_path:
            ds = read_kohya_file(ds_path)
            if not is_dataset_toml(ds) and "general" not in ds:
                raise UserError(f"{ds_path}: not a dataset TOML (expected [general] and [[datasets]])")
            dataset_toml_to_preset(ds, data, report, prefix=ds_path.name)
            report.kind += f" + dataset {ds_path.name}"
        else:  # sd-scripts reads train_data_dir / reg_data_dir only without a dataset TOML
            import_folders({k: v for sec in raw.values() if isinstance(sec, dict) for k, v in sec.items()} | raw,
                           data, report)
    if dataset and path.suffix.lower() == ".json":
        ds = read_kohya_file(Path(dataset))
        dataset_toml_to_preset(ds, data, report, prefix=Path(dataset).name)
    return data, report


def import_folders(values: dict, data: dict, report: Report) -> None:
    """`train_data_dir` / `reg_data_dir` that are Kohya folders on this machine → dataset.images /
    regularization.images (and the subject their names give), as kohya_ss would train on them."""
    from faceswap_kohya.data.kohya_folders import kohya_subsets, subject_words

    for key, section in (("train_data_dir", "dataset"), ("reg_data_dir", "regularization")):
        value = values.get(key)
        folder = Path(value).expanduser() if isinstance(value, str) and value else None
        if folder is None or not folder.is_dir():
            continue
        try:
            subsets = kohya_subsets(folder, key)
        except UserError as e:
            report.warnings.append(f"{e}; {section}.images is not set")
            continue
        if not subsets:
            report.warnings.append(f"{key}: {folder} holds no `N_<tokens>` folders (sd-scripts would find no data); "
                                   f"{section}.images is not set")
            continue
        labels = [e.key for e in report.entries if e.key == key or e.key.endswith("." + key)] or [key]
        report.entries = [e for e in report.entries if e.key not in labels]
        data.setdefault(section, {})["images"] = str(folder)
        found = ", ".join(f"{Path(s.folder).name} (×{s.repeats})" for s in subsets)
        detail = f"{section}.images = {folder}: Kohya folders {found}"
        if section == "dataset":
            subject = dict(zip(("trigger", "class_word"), subject_words(subsets[0].class_tokens)))
            for name, word in subject.items():
                if word:
                    data.setdefault("subject", {})[name] = word
                    detail += f"; subject.{name} = {word}"
        report.add(labels[0], "transformed", detail)


def import_preset(path, dataset=None):
    """Import and validate: (Preset, report)."""
    data, report = import_file(path, dataset)
    return validate(data, f"{path} (imported)"), report


def to_yaml(preset, report: Report) -> str:
    head = [f"# {Path(report.source).stem}: imported from {Path(report.source).name} ({report.kind})",
            "# VRAM: ?",
            "# Run: faceswap-kohya train THIS.yaml" + ("" if preset.dataset.images else
                                                        " dataset.images=~/photos subject.trigger=myface subject.class_word=woman")]
    head += [f"# {status}: {n}" for status, n in report.counts().items()]
    return "\n".join(head) + "\n" + dump(preset)


def is_kohya_file(path) -> bool:
    p = Path(path)
    return p.suffix.lower() in KOHYA_SUFFIXES and p.is_file()


def load_any(name_or_path: str, overrides=(), for_training: bool = False):
    """A preset name/YAML, or a Kohya file imported on the fly: (Preset, Path, report or None).

    `for_training` also checks that the trainer can run the preset's network (LyCORIS installed)."""
    if is_kohya_file(name_or_path):
        data, report = import_file(name_or_path)
        preset = validate(apply_overrides(data, list(overrides)), f"{name_or_path} (imported)")
        path = Path(name_or_path)
    else:
        preset, path = load(name_or_path, overrides)
        report = None
    if for_training and preset.network.module == "lycoris.kohya" and not lycoris_available(preset):
        raise UserError(f"{path}: network.module is lycoris.kohya but {lycoris_status(preset)}")
    return preset, path, report


