"""Captions: trigger first, class words rewritten, the person's files read, BLIP through a tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from face_data import ONE_PERSON

from faceswap_kohya.data import captions
from faceswap_kohya.errors import UserError


@pytest.mark.parametrize("text, expected", [
    ("a woman sitting on a bench", "myface woman, sitting on a bench"),
    ("arafed woman with long hair smiling", "myface woman, with long hair smiling"),
    ("a photo of the girl with a dog", "myface woman, with a dog, photo"),
    ("close-up portrait of a blonde woman", "myface woman, close-up portrait"),
    ("there is a young lady in a red dress", "myface woman, in a red dress"),
    ("a man holding a woman's hand", "myface woman, a man holding myface woman's hand"),
    ("myface woman, red dress", "myface woman, red dress"),
    ("Myface Woman smiling, outdoors", "myface woman, smiling, outdoors"),
    ("photo of myface woman", "myface woman, photo"),
    ("myface", "myface woman"),
    ("", "myface woman"),
    ("first line\nsecond line", "myface woman, first line second line"),
])
def test_trigger_first_and_class_words_rewritten(text, expected):
    assert captions.with_trigger(text, "myface", "woman") == expected


def test_class_word_groups():
    assert captions.with_trigger("an old man next to an old car", "sks", "old man") == "sks old man, next to an old car"
    assert captions.with_trigger("a boy and a dog", "sks", "man") == "sks man, and a dog"
    assert captions.with_trigger("a person and a woman", "sks", "person") == "sks person, and sks person"
    assert captions.with_trigger("a dog on a sofa", "sks", "dog") == "sks dog, on a sofa"
    assert "women" in captions.class_nouns("woman") and "man" not in captions.class_nouns("woman")


def test_templates_always_start_with_the_instance_tokens():
    assert captions.template_caption("{trigger} {class}, photo", "myface", "woman") == "myface woman, photo"
    assert captions.template_caption("photo of {trigger} {class}", "myface", "woman") == "myface woman, photo"
    assert captions.template_caption("{class}", "myface", "woman") == "myface woman"


def test_own_caption_files(tmp_path):
    photo = tmp_path / "me.jpg"
    assert captions.own_caption(photo) is None
    (tmp_path / "me.caption").write_text("smiling\n")
    assert captions.own_caption(photo) == "smiling"
    (tmp_path / "me.txt").write_text("   \n")  # empty .txt: the .caption is used
    assert captions.own_caption(photo) == "smiling"
    (tmp_path / "me.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(UserError, match="me.txt: caption file is not UTF-8"):
        captions.own_caption(photo)


# ---------------------------------------------------------------- BLIP plumbing with a tiny model built from config
WORDS = ["a", "woman", "girl", "sitting", "on", "bench", "with", "dog", "photo", "of", "smiling", "red", "dress", "hat"]


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[generate]')")
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder = tmp_path_factory.mktemp("tiny-blip")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *WORDS]) + "\n")
    tokenizer = BertTokenizer(str(vocab), bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    config = BlipConfig(
        text_config=dict(vocab_size=6 + len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=64, pad_token_id=0, bos_token_id=5,
                         eos_token_id=3, sep_token_id=3, encoder_hidden_size=32),
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                           image_size=32, patch_size=16),
        projection_dim=32)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config)
    with torch.no_grad():  # never a special token ([SEP] ends a caption): every caption has max_new_tokens words
        model.text_decoder.cls.predictions.bias[:6] = -1e4
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_blip_captioner_runs_a_local_model(tiny_blip):
    from PIL import Image

    blip = captions.BlipCaptioner(str(tiny_blip), max_new_tokens=8)
    text = blip(Image.new("RGB", (100, 80), "red"))
    assert len(text.split()) == 8 and set(text.split()) <= set(WORDS), text
    caption = captions.with_trigger(text, "myface", "woman")
    assert caption.startswith("myface woman, ") and len(caption) > len("myface woman, "), caption


def test_blip_model_missing_is_a_clear_error(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[generate]')")
    with pytest.raises(UserError, match="dataset.captions.blip_model: cannot load"):
        captions.BlipCaptioner(str(tmp_path / "no such model"))


def test_prepare_with_blip_captions(tmp_path, tiny_blip, face_recognition_photos):
    pytest.importorskip("dlib", reason="dlib is not installed (pip install -e '.[faces]')")
    from faceswap_kohya.config import presets
    from faceswap_kohya.data import dataset
    from faceswap_kohya.runs.layout import RunLayout

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ONE_PERSON[:3]:
        shutil.copy(face_recognition_photos / name, photos / name)
    preset, _ = presets.load("cpu-check", [f"dataset.images={photos}", "dataset.captions.mode=blip",
                                           f"dataset.captions.blip_model={tiny_blip}", "dataset.resolution=128"])
    run = RunLayout(tmp_path / "run")
    run.root.mkdir()
    summary = dataset.layout(preset, run)
    texts = [p.with_suffix(".txt").read_text(encoding="utf-8").strip() for p in summary.photos]
    assert len(texts) == 3 + 3 and all(t.startswith("myface woman, ") for t in texts), texts
    rests = [t.removeprefix("myface woman, ").replace(",", " ").split() for t in texts]
    assert all(rest and set(rest) <= {*WORDS, "myface"} for rest in rests), texts  # BLIP's words, never empty
    assert {e.caption_source for e in summary.entries if e.status == "kept"} == {"BLIP"}
