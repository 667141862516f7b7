"""The text fields of a preset: `fill` (a `{trigger}`/`{class}` template filled in), and the checks for
prompt and caption templates, the lines of sd-scripts' prompt file, sampler names, and the trainer options
a preset may add. Each check raises ValueError with what to change (pydantic puts the field's name in front)."""

from __future__ import annotations

import re
import string
from typing import Annotated

from pydantic import AfterValidator

from faceswap_kohya.config.samplers import SAMPLERS, SD_SCRIPTS_SAMPLERS, canonical

PLACEHOLDERS = ("trigger", "class")


def fill(text: str, preset) -> str:
    """`{trigger}` and `{class}` filled in from a preset's subject (the schema allows no other placeholder)."""
    return text.format(trigger=preset.subject.trigger, **{"class": preset.subject.class_word})

# sd-scripts options the run sets itself (kohya.extra_args must not change them), and what to set instead.
RUN_OPTIONS = {
    "output_dir": "the run folder is made per run", "logging_dir": "the run folder is made per run",
    "output_name": "set output.name", "config_file": "the run's config.toml", "dataset_config": "the run's dataset.toml",
    "train_data_dir": "set dataset.images", "reg_data_dir": "set regularization.images",
    "sample_prompts": "set sampling.prompts", "pretrained_model_name_or_path": "set base_model.path",
    "resume": "use `faceswap-kohya train --resume RUN`",
}


def check_template(text: str, allowed=PLACEHOLDERS) -> str:
    """A prompt or caption template: only `{trigger}` and `{class}` in braces (`{{ }}` for a brace)."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
    except ValueError:
        raise ValueError(f"unbalanced braces: only {_braces(allowed)} are filled in; write {{{{ or }}}} "
                         "for a literal brace") from None
    for name, spec, conv in fields:
        if name not in allowed or spec or conv:
            shown = name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "")
            raise ValueError(f"unknown placeholder {{{shown}}}: only {_braces(allowed)} are filled in; "
                             "write {{ or }} for a literal brace")
    return text


def _braces(names) -> str:
    return " and ".join(f"{{{n}}}" for n in names)


def check_prompt_line(text: str, what: str = "prompt") -> str:
    """One line of sd-scripts' prompt file: no newline, and no ` --` (it starts a sampler option there)."""
    if "\n" in text or "\r" in text:
        raise ValueError(f"the {what} must be one line (sd-scripts reads one prompt per line)")
    if " --" in text:
        raise ValueError("' --' would start a sampler option in sd-scripts' prompt file (--w, --h, --n, ...); remove it "
                         "(sampling.size, steps, cfg and seed set those)")
    return text


def check_sample_prompt(text: str) -> str:
    check_prompt_line(check_template(text))
    if not text.strip() or text.lstrip().startswith("#"):
        raise ValueError("a sample prompt must have text and not start with '#' (sd-scripts skips such lines)")
    return text


def check_prompt_text(text: str) -> str:
    if not text.strip():
        raise ValueError("a prompt must have text")
    return check_template(text)


def check_key_value(text: str) -> str:
    """One of network.args / optimizer.args: `key=value` with a plain key (never an option such as `--x=1`)."""
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*=", text):
        raise ValueError("must be 'key=value' with a plain key, e.g. 'weight_decay=0.01'")
    return text


def check_trigger(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9]+", v):
        raise ValueError("must be one word of letters and digits (no spaces, commas or underscores), e.g. 'myface'")
    return v


def check_class_word(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z]+( [A-Za-z]+)?", v):
        raise ValueError("must be one or two plain words, e.g. 'woman' or 'old man'")
    return v


Template = Annotated[str, AfterValidator(check_template)]
PromptLine = Annotated[str, AfterValidator(check_prompt_line)]
KeyValue = Annotated[str, AfterValidator(check_key_value)]
PromptTemplate = Annotated[str, AfterValidator(check_prompt_text)]
SamplePrompt = Annotated[str, AfterValidator(check_sample_prompt)]


def sampler_name(v):
    return canonical(v)


def sd_scripts_sampler(v):
    v = canonical(v)
    if v in SAMPLERS and v not in SD_SCRIPTS_SAMPLERS:
        raise ValueError(f"sd-scripts has no {v} sampler for its samples; use one of {', '.join(SD_SCRIPTS_SAMPLERS)}")
    return v


def check_extra_args(v: list[str]) -> list[str]:
    """kohya.extra_args must not set what the run sets itself (argparse also takes a prefix: --output_d)."""
    for arg in v:
        name = arg[2:].partition("=")[0] if arg.startswith("--") else ""
        taken = next((opt for opt in RUN_OPTIONS if name and opt.startswith(name)), None)
        if taken:
            raise ValueError(f"{arg!r}: --{taken} is set by faceswap-kohya ({RUN_OPTIONS[taken]}); remove it")
    return v
