"""Generated regularization images: Kohya layout, cache hits, partial regeneration, resume, cost check."""

from __future__ import annotations

import pytest
from conftest import needs_kohya
from PIL import Image
from tiny_sdxl import save_tiny_pipeline

from faceswap_kohya.config import presets
from faceswap_kohya.data import regularization
from faceswap_kohya.diffusion import pipeline as loader
from faceswap_kohya.errors import UserError
from faceswap_kohya.runs.layout import RunLayout


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "tiny-sdxl")


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FACESWAP_KOHYA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def reg_preset(model, **reg):
    return presets.validate({"base_model": str(model), "dataset": {"resolution": 64},
                             "regularization": {"generate": 3, "steps": 2, **reg}}, "p")


@pytest.fixture
def count_loads(monkeypatch):
    calls = []
    real = loader.load_pipeline

    def counting(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(loader, "load_pipeline", counting)
    return calls


def test_generates_class_images_in_kohya_layout_then_reuses_them(tiny_model, cache_home, tmp_path, count_loads):
    preset = reg_preset(tiny_model)
    run = RunLayout(tmp_path / "run")
    dest = regularization.ensure_regularization(preset, run, echo=lambda s: None)
    assert dest == run.reg / "1_woman"
    pngs = sorted(dest.glob("*.png"))
    assert len(pngs) == 3 and all(Image.open(p).size == (64, 64) for p in pngs)
    assert {p.with_suffix(".txt").read_text() for p in pngs} == {"woman\n"}
    assert len(count_loads) == 1

    files, made = regularization.ensure_cached(preset, echo=lambda s: None)
    assert made == 0 and len(count_loads) == 1, "a second run with the same settings generates nothing"
    assert [f.read_bytes() for f in files] == [p.read_bytes() for p in pngs]


def test_changed_setting_regenerates_only_what_differs(tiny_model, cache_home, count_loads):
    first = reg_preset(tiny_model, generate=4, prompts=["photo of a {class}", "portrait of a {class}"])
    _, made = regularization.ensure_cached(first, echo=lambda s: None)
    assert made == 4
    changed = reg_preset(tiny_model, generate=4, prompts=["photo of a {class}", "close-up of a {class}"])
    assert len(regularization.missing(changed)) == 2
    _, made = regularization.ensure_cached(changed, echo=lambda s: None)
    assert made == 2
    more = reg_preset(tiny_model, generate=5, prompts=["photo of a {class}", "close-up of a {class}"])
    assert len(regularization.missing(more)) == 1


def test_interrupted_generation_resumes_image_by_image(tiny_model, cache_home):
    preset = reg_preset(tiny_model, generate=4)

    def interrupt_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        regularization.ensure_cached(preset, progress=interrupt_after_two)
    assert len(regularization.missing(preset)) == 2
    assert not list(regularization.cache_dir().glob("*.part.png"))
    _, made = regularization.ensure_cached(preset, echo=lambda s: None)
    assert made == 2 and not regularization.missing(preset)


@pytest.fixture
def machine(monkeypatch):
    """Make this machine look like one with or without a CUDA GPU (the cost check detects the device itself)."""
    import torch

    def make(cuda: bool):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)

    return make


def test_large_cpu_jobs_need_confirmation(tiny_model, cache_home, machine):
    preset = presets.validate({"base_model": str(tiny_model), "regularization": {"generate": 100}}, "p")
    machine(cuda=False)
    lines = []
    with pytest.raises(UserError, match=r"regularization.generate=100: ~.* on this CPU; rerun with --yes"):
        regularization.check_cost(preset, confirmed=False, echo=lines.append)
    assert "100 to generate" in lines[0] and "estimated time on cpu" in lines[1]
    regularization.check_cost(preset, confirmed=True, echo=lambda s: None)


def test_the_same_job_on_a_gpu_needs_no_confirmation(tiny_model, cache_home, machine):
    preset = presets.validate({"base_model": str(tiny_model), "regularization": {"generate": 100}}, "p")
    machine(cuda=True)
    lines = []
    regularization.check_cost(preset, confirmed=False, echo=lines.append)
    assert "estimated time on cuda" in lines[1]
    cpu = regularization.estimate_seconds(100, 30, 1024, "cpu")
    assert regularization.estimate_seconds(100, 30, 1024, "cuda") < cpu / 20 and cpu > regularization.CONFIRM_ABOVE_SECONDS


def test_a_missing_base_model_fails_before_the_estimate(cache_home, tmp_path):
    preset = presets.validate({"base_model": str(tmp_path / "none.safetensors"), "regularization": {"generate": 2}}, "p")
    with pytest.raises(UserError, match="none.safetensors: does not exist"):
        regularization.check_cost(preset, confirmed=True, echo=lambda s: None)


def test_balance_advice():
    p = presets.validate({"base_model": "m", "dataset": {"repeats": 10}, "regularization": {"generate": 20}}, "p")
    assert "(20×1) than training images (10×10)" in regularization.balance_advice(p, n_train=10, n_reg=20)
    assert "regularization.repeats=5 or use about 100 class images" in regularization.balance_advice(p, 10, 20)
    assert regularization.balance_advice(p, n_train=10, n_reg=100) is None
    assert "never seen" in regularization.balance_advice(p, n_train=2, n_reg=200)


def test_images_and_generate_are_exclusive():
    with pytest.raises(UserError, match=r"either regularization\.images .* or generate"):
        presets.validate({"base_model": "m", "regularization": {"generate": 3, "images": "/x"}}, "p")


@pytest.mark.trainer
@needs_kohya
def test_generated_class_images_train_with_the_real_trainer(trained_run, monkeypatch):
    """regularization.generate on the pipeline-check model (the session's shared run: 2 class images, 1 step): the
    base model generates the class images in the training process before the trainer starts, into the cache, and
    sd-scripts trains with them as regularization images."""
    import re

    from faceswap_kohya import events as ev

    result = trained_run.result
    assert result.ok, result.diagnosis
    said = [e.text for e in trained_run.events if isinstance(e, ev.Message)]
    assert "regularization: 2 class images, 0 cached, 2 to generate" in said, said
    monkeypatch.setenv("FACESWAP_KOHYA_HOME", str(trained_run.home))  # the cache it trained with
    assert not regularization.missing(trained_run.preset)
    reg = result.run.reg / "1_woman"
    assert len(list(reg.glob("*.png"))) == 2
    log = result.run.log.read_text()
    assert re.search(r"\b2 reg images with repeats", log)
    assert log.index("2 reg images with repeats") < log.index("model saved.")
