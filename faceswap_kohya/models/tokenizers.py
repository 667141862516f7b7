"""Offline CLIP tokenizers for SDXL and FLUX, built from the BPE vocabulary that the open_clip_torch wheel ships,
and the stand-in T5 tokenizer of the FLUX check model (see `t5_standin_json`).

sd-scripts loads `openai/clip-vit-large-patch14` and `laion/CLIP-ViT-bigG-14-...` from the hub unless
`--tokenizer_cache_dir D` holds both under those names with '/' → '_'. We write exactly those folders;
the token ids match open_clip's (and the hub files').
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

from faceswap_kohya.config.paths import home
from faceswap_kohya.errors import UserError

TOKENIZER_NAMES = ("openai/clip-vit-large-patch14", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k")
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2


def default_cache() -> Path:
    return home() / "tokenizers"


def find_bpe() -> Path:
    """open_clip's BPE file, located without importing open_clip (it needs timm/torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            if (Path(loc) / BPE_FILE).is_file():
                return Path(loc) / BPE_FILE
    raise UserError("offline tokenizers need open_clip's vocabulary file: run `pip install --no-deps open-clip-torch` "
                    "(scripts/setup.sh does), or set kohya.tokenizer_cache to null to download from the hub")


@lru_cache(maxsize=None)
def _bytes_to_unicode() -> tuple[str, ...]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return tuple(chr(c) for c in cs)


def vocab_and_merges(bpe: Path) -> tuple[dict[str, int], list[str]]:
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")
    merges = lines[1:1 + N_MERGES]
    symbols = list(_bytes_to_unicode())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def write_tokenizer(folder: Path, vocab: dict, merges: list[str], pad_token: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": pad_token}
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, "errors": "replace",
              "add_prefix_space": False, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")


def ensure_tokenizers(cache: Path | None = None) -> Path:
    """Write both tokenizer folders into `cache` (once) and return it, for `--tokenizer_cache_dir`."""
    cache = Path(cache or default_cache())
    folders = [cache / name.replace("/", "_") for name in TOKENIZER_NAMES]
    if all((f / "merges.txt").is_file() and (f / "vocab.json").is_file() for f in folders):
        return cache
    vocab, merges = vocab_and_merges(find_bpe())
    for folder, pad in zip(folders, ("<|endoftext|>", "!")):
        write_tokenizer(folder, vocab, merges, pad)
    return cache


# --- FLUX: T5 ---------------------------------------------------------------------------------------------------------
T5_TOKENIZER_NAME = "google/t5-v1_1-xxl"
T5_PIECES = 32000  # sentencepiece pieces in T5's spiece.model (ids 0-2: <pad> </s> <unk>); then 100 <extra_id_N>
T5_EXTRA_IDS = 100


def check_tokenizer_cache() -> Path:
    """The tokenizer folder of the FLUX check model only: CLIP-L as for SDXL, and a stand-in T5 tokenizer."""
    return home() / "tokenizers-flux-check"


def t5_standin_json(bpe: Path) -> dict:
    """A `tokenizers` Unigram tokenizer shaped as T5's: 32000 sentencepiece-style pieces (`▁` marks a word start)
    taken from CLIP's BPE vocabulary in merge order (its scores falling with the rank), the same special ids
    (<pad> 0, </s> 1, <unk> 2, `</s>` appended to every text) and the 100 `<extra_id_N>` tokens after them.

    The token ids are not Google's: Google's spiece.model ships in no registry package. That is enough for the
    random-weight check model (any id below 32128 is a valid row of its embedding); a real FLUX model needs the
    real tokenizer, which sd-scripts downloads into kohya.tokenizer_cache (or finds there)."""
    vocab, _ = vocab_and_merges(bpe)
    pieces, seen = [], set()
    for token in sorted(vocab, key=vocab.get):
        if token.startswith("<|"):
            continue
        piece = "\u2581" + token[:-4] if token.endswith("</w>") else token
        if piece not in seen and piece.strip("\u2581") and all(ord(ch) < 0x2500 or ch == "\u2581" for ch in piece):
            seen.add(piece)
            pieces.append(piece)
        if len(pieces) == T5_PIECES - 4:
            break
    model_vocab = [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["\u2581", -2.0]]
    model_vocab += [[p, -3.0 - i / 1000] for i, p in enumerate(pieces)]
    extras = [f"<extra_id_{i}>" for i in reversed(range(T5_EXTRA_IDS))]
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, c in enumerate(["<pad>", "</s>", "<unk>"])]
    added += [{"id": len(model_vocab) + i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
               "normalized": False, "special": True} for i, c in enumerate(extras)]
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"},
                                                          {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": metaspace,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": 2, "vocab": model_vocab, "byte_fallback": False},
    }


def write_t5_standin(folder: Path, bpe: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(t5_standin_json(bpe), ensure_ascii=False), encoding="utf-8")
    extras = [f"<extra_id_{i}>" for i in range(T5_EXTRA_IDS)]
    special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "additional_special_tokens": extras}
    config = {"tokenizer_class": "T5Tokenizer", "model_max_length": 512, "extra_ids": T5_EXTRA_IDS,
              "legacy": True, "clean_up_tokenization_spaces": True, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")


def ensure_flux_check_tokenizers(cache: Path | None = None) -> Path:
    """CLIP-L (as for SDXL) and the stand-in T5 tokenizer, for the FLUX check model's `--tokenizer_cache_dir`."""
    cache = Path(cache or check_tokenizer_cache())
    ensure_tokenizers(cache)
    t5 = cache / T5_TOKENIZER_NAME.replace("/", "_")
    if not (t5 / "tokenizer.json").is_file():
        write_t5_standin(t5, find_bpe())
    return cache
