"""Prompts for generation: `<lora:name:w>` tags, A1111 weights → compel (long/weighted prompts), prompt files,
size checks and the sampler switch."""

from __future__ import annotations

import re
from pathlib import Path

from faceswap_kohya.config.samplers import SAMPLERS, check_sampler
from faceswap_kohya.errors import UserError

TAG = re.compile(r"<lora:([^:<>]+)(?::([^:<>]*))?(?::[^<>]*)?>", re.I)
COMPEL_SYNTAX = re.compile(r"[()]|\w[+-]+(?=[\s,]|$)|\.(?:and|blend)\(")


# ---------------------------------------------------------------- prompts
def parse_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """Strip `<lora:NAME:WEIGHT>` tags (A1111): the cleaned prompt and [(name, weight)] (weight 1 when omitted)."""
    tags = []
    for m in TAG.finditer(prompt):
        name, raw = m.group(1).strip(), (m.group(2) or "").strip()
        try:
            weight = float(raw) if raw else 1.0
        except ValueError:
            raise UserError(f"prompt tag {m.group(0)!r}: the weight must be a number, e.g. <lora:{name}:0.8>") from None
        tags.append((name, weight))
    clean = TAG.sub("", prompt)
    clean = re.sub(r"\s*,\s*(,\s*)+", ", ", clean)
    clean = re.sub(r"\s{2,}", " ", clean).strip().strip(",").strip()
    return clean, tags


def a1111_to_compel(prompt: str) -> str:
    """A1111's `(word:1.2)` → compel's `(word)1.2`, nested groups too; compel syntax passes through."""
    out: list[str] = []
    opened: list[int] = []
    for ch in prompt:
        if ch == "(":
            opened.append(len(out))
        elif ch == ")" and opened:
            start = opened.pop()
            m = re.fullmatch(r"(.*):\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*", "".join(out[start + 1:]), re.S)
            if m:
                out[start + 1:] = list(f"{m.group(1)}){float(m.group(2)):g}")
                continue
        out.append(ch)
    return "".join(out)


def read_prompts_file(path: Path) -> list[str]:
    """One prompt a line; blank lines and `#` comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"prompts file {path}: cannot read it ({e})") from None
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise UserError(f"prompts file {path}: no prompts in it (one a line)")
    return prompts


def check_size(width: int, height: int) -> None:
    for label, v in (("width", width), ("height", height)):
        if v < 64 or v % 8:
            raise UserError(f"{label} {v}: must be a multiple of 8 and at least 64 (e.g. {max(64, round(v / 8) * 8)})")


# ---------------------------------------------------------------- encoding and sampling
def set_sampler(pipe, sampler: str) -> str:
    """Switch the scheduler (any name of config.samplers); returns the A1111 name for metadata. FLUX keeps its
    flow-matching Euler (the SD samplers do not apply to it): "Euler"."""
    import diffusers

    if getattr(pipe, "fsk_family", "sdxl") == "flux":
        check_sampler(sampler)
        return "Euler"
    chosen = SAMPLERS[check_sampler(sampler)]
    if type(pipe.scheduler).__name__ != chosen.diffusers or chosen.config:
        pipe.scheduler = getattr(diffusers, chosen.diffusers).from_config(pipe.scheduler.config, **chosen.config)
    return chosen.a1111


def _n_tokens(pipe, text: str) -> int:
    return len(pipe.tokenizer(text, truncation=False, add_special_tokens=False).input_ids)


def prompt_conditioning(pipe, prompt: str, negative: str) -> dict:
    """Pipeline text arguments: plain strings when diffusers handles them as is, else compel embeddings
    (weighted terms, prompts over 75 tokens)."""
    if getattr(pipe, "fsk_family", "sdxl") == "flux":
        # FLUX.1: T5 reads long prompts, to the run's token count when it has one; no negative pass (cfg is its
        # embedded guidance)
        tokens = getattr(pipe, "fsk_t5_tokens", None)
        return {"prompt": prompt} | ({"max_sequence_length": tokens} if tokens else {})
    prompt, negative = a1111_to_compel(prompt), a1111_to_compel(negative or "")
    long = max(_n_tokens(pipe, prompt), _n_tokens(pipe, negative)) > pipe.tokenizer.model_max_length - 2
    if not long and not COMPEL_SYNTAX.search(prompt) and not COMPEL_SYNTAX.search(negative):
        return {"prompt": prompt, "negative_prompt": negative or None}
    import torch
    from compel import CompelForSDXL

    with torch.no_grad():
        cond = CompelForSDXL(pipe, device=str(pipe._execution_device))(prompt, negative_prompt=negative or "")
    neg, neg_pooled = cond.negative_embeds, cond.negative_pooled_embeds
    if not negative and pipe.config.force_zeros_for_empty_prompt:  # as diffusers does for an empty negative prompt
        neg, neg_pooled = torch.zeros_like(cond.embeds), torch.zeros_like(cond.pooled_embeds)
    return {"prompt_embeds": cond.embeds, "pooled_prompt_embeds": cond.pooled_embeds,
            "negative_prompt_embeds": neg, "negative_pooled_prompt_embeds": neg_pooled}
