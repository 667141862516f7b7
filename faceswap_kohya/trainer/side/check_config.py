"""Check rendered TOMLs with sd-scripts' own code: the dataset TOML through config_util's validator,
every config key against the training script's `setup_parser()` and its type.

Usage (cwd = sd-scripts): python check_config.py CONFIG.toml DATASET.toml [SCRIPT]
(SCRIPT: sdxl_train_network, the default, or flux_train_network)
Prints one JSON object: {"ok": bool, "errors": [...], "checked": N}.
Or: python check_config.py --many LIST.json, LIST a JSON list of [CONFIG, DATASET, SCRIPT]: one JSON list of
those objects, in order, from one process (sd-scripts is imported once, not once per pair).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.getcwd())  # sd-scripts (the cwd) provides `library`

import toml


def option_errors(parser: argparse.ArgumentParser, config: dict, script: str = "sdxl_train_network") -> list[str]:
    actions = {a.dest: a for a in parser._actions}
    errors = []
    for section, values in config.items():
        for key, value in (values.items() if isinstance(values, dict) else [(section, values)]):
            action = actions.get(key)
            if action is None:
                errors.append(f"{key}: not an option of {script}.py")
                continue
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
                if not isinstance(value, bool):
                    errors.append(f"{key}: flag expects true/false, got {value!r}")
                continue
            items = value if isinstance(value, list) else [value]
            if isinstance(value, list) and action.nargs not in ("*", "+") and not isinstance(action.nargs, int):
                errors.append(f"{key}: takes one value, got a list")
            for item in items:
                if action.type is not None and not isinstance(item, bool):
                    try:
                        action.type(str(item))
                    except Exception as e:  # noqa: BLE001 - report any conversion failure
                        errors.append(f"{key}: {item!r} is not valid ({e})")
                        continue
                    if action.type is str and not isinstance(item, str):
                        errors.append(f"{key}: sd-scripts uses this as text, got {type(item).__name__} {item!r}")
                    elif action.type in (int, float) and isinstance(item, str):
                        errors.append(f"{key}: sd-scripts would keep {item!r} as a string; write a number")
                if action.choices is not None and item not in action.choices:
                    errors.append(f"{key}: {item!r} not one of {list(action.choices)}")
    return errors


def dataset_errors(path: str) -> list[str]:
    from library import config_util

    try:
        user = config_util.load_user_config(path)
        validator = config_util.ConfigSanitizer(True, True, False, True)
        validator.sanitize_user_config(user)
    except Exception as e:  # noqa: BLE001
        errs = getattr(e, "errors", None) or [e]
        return [f"dataset: {x}" for x in errs]
    return []


def check(config_path: str, dataset_path: str, script: str = "sdxl_train_network") -> dict:
    import importlib

    if script not in ("sdxl_train_network", "flux_train_network"):
        raise SystemExit(f"unknown training script {script}")
    parser = importlib.import_module(script).setup_parser()
    config = toml.load(config_path)
    errors = option_errors(parser, config, script) + dataset_errors(dataset_path)
    checked = sum(len(v) if isinstance(v, dict) else 1 for v in config.values())
    return {"ok": not errors, "errors": errors, "checked": checked}


def main(argv: list) -> int:
    if argv[:1] == ["--many"]:
        with open(argv[1]) as f:
            results = [check(*item) for item in json.load(f)]
        print(json.dumps(results))
        return 0 if all(r["ok"] for r in results) else 1
    result = check(*argv[:3])
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
