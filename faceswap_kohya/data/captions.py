"""Captions that start with "<trigger> <class>" and never compete with it.

Whatever the source (a template, the person's own .txt, BLIP), `with_trigger` puts the instance
tokens first as their own comma-separated part (so `keep_tokens: 1` keeps them in place when
captions are shuffled) and rewrites the class words in the rest ("a woman", "the girl"): a caption
that also says "a woman" teaches the model that the woman, not the trigger, is this person.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from faceswap_kohya.errors import UserError

# Words for a person, by group: a class word pulls in its whole group ("woman" → girl, lady, ...).
PERSON_WORDS = {
    "female": ["woman", "women", "girl", "girls", "lady", "ladies", "female"],
    "male": ["man", "men", "boy", "boys", "guy", "guys", "gentleman", "male"],
    "neutral": ["person", "people", "human", "child", "kid"],
}
# BLIP artefacts and openers that say nothing about the photo.
OPENER = re.compile(r"^\s*(?:(?:there is|there are|this is|it is)\s+)?(?:(?:a|an)\s+)?"
                    r"(?P<kind>(?:(?:close[- ]up|black and white|blurry|old)\s+)?(?:photo|picture|image|portrait|selfie))"
                    r"\s+of\s+", re.I)
THERE_IS = re.compile(r"^\s*(?:there is|there are|this is|it is)\s+", re.I)
ARTEFACTS = re.compile(r"\b(?:arafed|araffe|arafe|araffed|arafly)\b\s*", re.I)
ARTICLE = r"(?:(?:a|an|the|this|that)\s+)?"
DANGLING = re.compile(r"(?:\s+(?:of|a|an|the|with|and))+\s*$", re.I)


def class_nouns(class_word: str) -> list[str]:
    """The words that compete with `class_word`: its own words and its group's (all for person-like words)."""
    head = class_word.lower().split()[-1]
    nouns = {class_word.lower(), head}
    if head in PERSON_WORDS["neutral"]:
        groups = list(PERSON_WORDS.values())
    else:
        groups = [g for g in PERSON_WORDS.values() if head in g]
    for g in groups:
        nouns.update(g)
    return sorted(nouns, key=len, reverse=True)


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"(?:,\s*){2,}", ", ", text)
    return text.strip(" ,.;:")


def with_trigger(text: str, trigger: str, class_word: str) -> str:
    """`"<trigger> <class>, <the rest>"` with the rest's own trigger and class words taken out.

    "a woman sitting on a bench" → "myface woman, sitting on a bench";
    "a photo of the girl with a dog" → "myface woman, with a dog, photo";
    "a man holding a woman's hand" (class woman) → "myface woman, a man holding myface woman's hand".
    """
    instance = f"{trigger} {class_word}"
    rest = " ".join(line.strip() for line in text.splitlines() if line.strip())
    rest = ARTEFACTS.sub("", rest)
    # the instance tokens (or the trigger alone) wherever the text already has them
    rest = re.sub(rf"{ARTICLE}\b{re.escape(trigger)}\b(?:\s+{re.escape(class_word)}\b)?", " ", rest, flags=re.I)
    opener = OPENER.match(rest)
    kind = opener["kind"].lower() if opener else ""
    rest = THERE_IS.sub("", rest[opener.end():] if opener else rest, count=1)
    nouns = "|".join(re.escape(n) for n in class_nouns(class_word))
    if nouns:
        # The caption's subject ("a young woman ...") is what the instance tokens now say: drop it,
        # together with up to two words describing her (those belong to the trigger too).
        rest = re.sub(rf"^\s*{ARTICLE}(?:[\w-]+\s+){{0,2}}?(?:{nouns})\b", "", rest, count=1, flags=re.I)
        # Any later mention of the class means this person.
        rest = re.sub(rf"{ARTICLE}\b(?:{nouns})\b", instance, rest, flags=re.I)
    parts = [p for p in (_tidy(DANGLING.sub("", _tidy(rest))), kind) if p]
    return ", ".join([instance, *parts])


def template_caption(template: str, trigger: str, class_word: str) -> str:
    return with_trigger(template.format(trigger=trigger, **{"class": class_word}), trigger, class_word)


CAPTION_SUFFIXES = (".txt", ".caption")


def caption_files(photo: Path) -> list[Path]:
    """The caption files beside a photo (`photo.txt`, `photo.caption`) that are not empty, unread."""
    found = []
    for suffix in CAPTION_SUFFIXES:
        path = photo.with_suffix(suffix)
        try:
            if path.is_file() and path.stat().st_size > 0:
                found.append(path)
        except OSError:
            continue
    return found


def own_caption_file(photo: Path) -> Optional[tuple[Path, str]]:
    """(file, text) of the person's caption beside a photo: `photo.txt` or `photo.caption`, the first with any text."""
    for path in caption_files(photo):
        try:
            text = path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            raise UserError(f"{path}: caption file is not UTF-8 text; save it as UTF-8") from None
        except OSError as e:
            raise UserError(f"{path}: cannot read this caption file ({e.strerror})") from None
        if text:
            return path, text
    return None


def own_caption(photo: Path) -> Optional[str]:
    """The person's caption text beside a photo, when it has any text."""
    found = own_caption_file(photo)
    return found[1] if found else None


class BlipCaptioner:
    """Automatic captions with a BLIP model through transformers (a hub id or a local folder)."""

    def __init__(self, model: str, max_new_tokens: int = 30):
        try:
            from transformers import BlipForConditionalGeneration, BlipProcessor
        except ImportError:
            raise UserError("captions.mode blip needs transformers and torch: pip install 'faceswap_kohya[generate]'") from None
        local = Path(model).expanduser()
        source = str(local) if local.is_dir() else model
        try:
            self.processor = BlipProcessor.from_pretrained(source, local_files_only=local.is_dir())
            self.model = BlipForConditionalGeneration.from_pretrained(source, local_files_only=local.is_dir()).eval()
        except (OSError, ValueError) as e:  # missing files; a path that is not a valid hub id
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"dataset.captions.blip_model: cannot load {model!r} ({first[:200]}); give a local "
                            "folder with a BLIP model, or use captions mode template or files") from None
        self.max_new_tokens = max_new_tokens

    def __call__(self, image) -> str:
        import torch

        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt")
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=1, do_sample=False)
        return self.processor.decode(out[0], skip_special_tokens=True).strip()
