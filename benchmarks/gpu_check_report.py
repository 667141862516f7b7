"""The GPU check's results: `gpu_check.json` (everything) and `gpu_check.md` (tables), rewritten after every part."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional


def _num(value, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return f"{value:.{digits}f}{unit}"


def _cell(text, limit: int) -> str:
    """Text that keeps a table row intact: one line, no '|', at most `limit` characters."""
    return str(text).replace("|", "/").replace("\n", " ")[:limit]


def _mib_as_gib(value) -> str:
    return "–" if value is None else f"{value / 1024:.1f} GiB"


def training_table(train: dict) -> list[str]:
    rows = ["| preset | budget | optimizer | px, steps | s/it wrapper | s/it by hand | ratio | trainer wall s (wrapper / hand) "
            "| torch peak allocated | torch peak reserved | nvidia-smi peak | within budget | trainer peak RAM |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in train.items():
        s = entry.get("summary", {})
        rows.append(
            f"| {name} | {entry.get('budget', '?')} | {entry.get('optimizer', '?')} | {entry.get('resolution')}, {entry.get('steps')} "
            f"| {_num(s.get('s_per_it_wrapper'), 3)} | {_num(s.get('s_per_it_by_hand'), 3)} | {_num(s.get('ratio'), 3)} "
            f"| {_num(s.get('wall_s_wrapper'), 1)} / {_num(s.get('wall_s_by_hand'), 1)} "
            f"| {_mib_as_gib(s.get('torch_peak_allocated_mib'))} | {_mib_as_gib(s.get('torch_peak_reserved_mib'))} "
            f"| {_mib_as_gib(s.get('smi_peak_mib'))} | {_num(s.get('within_budget'))} | {_mib_as_gib(s.get('peak_rss_mib'))} |")
    return rows


def generation_table(generate: dict) -> list[str]:
    rows = ["| dtype | size, steps | base s/image | LoRA unfused s/image | LoRA fused s/image | unfused / base "
            "| fused / base | LoRA load s | fuse s | pipeline load s | torch peak allocated |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for dtype, g in generate.items():
        if not isinstance(g, dict) or "error" in g and "base_s" not in g:
            rows.append(f"| {dtype} | failed: {_cell((g or {}).get('error', '?'), 80)} |" + " |" * 9)
            continue
        label = f"{dtype} (then: {_cell(g['error'], 60)})" if "error" in g else dtype
        rows.append(
            f"| {label} | {g.get('size')}, {g.get('steps')} | {_num(g.get('base_s'))} | {_num(g.get('unfused_s'))} "
            f"| {_num(g.get('fused_s'))} | {_num(g.get('unfused_ratio'), 3)} | {_num(g.get('fused_ratio'), 3)} "
            f"| {_num(g.get('lora_load_s'))} | {_num(g.get('fuse_s'))} | {_num(g.get('load_s'), 1)} "
            f"| {_mib_as_gib(g.get('torch_peak_allocated_mib'))} |")
    return rows


def parts_table(parts: dict) -> list[str]:
    rows = ["| part | status | seconds | limit s | note |", "|---|---|---|---|---|"]
    for name, p in parts.items():
        note = _cell(p.get("error") or p.get("note") or "", 160)
        rows.append(f"| {name} | {p.get('status')} | {_num(p.get('seconds'), 1)} | {_num(p.get('limit_s'), 0)} | {note} |")
    return rows


def markdown(results: dict) -> str:
    env = results.get("environment", {})
    lines = [f"# GPU check: {results.get('mode')}", "",
             f"{env.get('gpu', 'no GPU')}; torch {env.get('torch', '?')} (CUDA {env.get('cuda') or '–'}); "
             f"started {results.get('started')}; {results.get('elapsed_s', 0):.0f} s of {results.get('budget_s')} s.", ""]
    if results.get("notes"):
        lines += [f"- {n}" for n in results["notes"]] + [""]
    lines += ["## Training (sd-scripts through the wrapper vs the same command by hand)", ""]
    lines += training_table(results.get("train", {})) + [""]
    lines += ["s/it: after the first steps (warm-up), by the trainer's own clock (step × the mean rate its progress bar "
              "shows), read alike from the wrapper's train.log and the by-hand run's output. "
              "Within budget: nvidia-smi's peak, less what was in use before the run, against the preset's VRAM "
              "(torch's peak reserved memory where nvidia-smi is not there).", ""]
    lines += ["## Generation (diffusers, median of the timed images, the LoRA at weight 1)", "",
              f"LoRA: {results.get('generate_lora') or '–'}.", ""]
    lines += generation_table(results.get("generate", {})) + [""]
    swap = results.get("swap")
    if swap:
        lines += ["## Swap", "",
                  f"one face at {swap.get('size')} px, {swap.get('steps')} steps × strength {swap.get('strength')}: "
                  f"{_num(swap.get('seconds'), 1)} s in all (loading the pipeline and the LoRA included), "
                  f"torch peak allocated {_mib_as_gib(swap.get('torch_peak_allocated_mib'))}; {swap.get('note', '')}", ""]
    lines += ["## Parts", ""] + parts_table(results.get("parts", {})) + [""]
    return "\n".join(lines)


def write(results: dict, out_dir: Path) -> None:
    """Both files, each written whole then renamed into place (a reader never sees half a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("gpu_check.json", json.dumps(results, indent=2, default=str)), ("gpu_check.md", markdown(results))):
        tmp = out_dir / f".{name}.partial"
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, out_dir / name)


def peak_summary(runs: list[dict], key: str) -> Optional[float]:
    values = [r[key] for r in runs if r.get(key) is not None]
    return max(values) if values else None
