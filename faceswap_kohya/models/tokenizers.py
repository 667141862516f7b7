"""Offline CLIP tokenizers for SDXL, built from the BPE vocabulary that the open_clip_torch wheel ships.

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
