"""Live likeness: the samples the trainer writes while it trains, scored against the person's photos as they appear
(scoring/live.py), recorded (events.jsonl, status.json), read back (runs/read.py) and shown (CLI line, the web Train
page's likeness per epoch). Real face photos (tests/data/faces) as samples, through the stand-in trainer
(tests/fake_trainer.py) and the real `train` command; the real sd-scripts' samples (no face) are checked in
test_train.py on the session's trained run."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from face_data import FACES
from sweep_data import fast_settings, make_fake_kohya

from faceswap_kohya import events as ev
from faceswap_kohya.config import presets
from faceswap_kohya.errors import UserError
from faceswap_kohya.runs.artifacts import sample_when
from faceswap_kohya.runs.layout import RunLayout, instance_dir, validation_dir
from faceswap_kohya.runs.read import read_run
from faceswap_kohya.runs.status import RunRecorder, read_status
from faceswap_kohya.scoring import live

SAME_PERSON = 0.4  # faces.identity.SAME_PERSON_SCORE: dlib's "same person" rule of thumb as a score


def needs_dlib():
    pytest.importorskip("dlib", reason="scoring faces needs the faces extra (dlib)")


def wait_until(predicate, seconds: float = 60.0, what: str = "it"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} never happened within {seconds:g} s")


def sample_name(epoch=None, step=None, prompt=0) -> str:
    """A sample file name as sd-scripts writes it."""
    when = f"e{epoch:06d}" if epoch is not None else f"{step:06d}"
    return f"myface-check_{when}_{prompt:02d}_20260101120000_1.png"


def test_sample_file_names_give_their_epoch_or_step():
    assert sample_when(Path(sample_name(epoch=3))) == (3, None)
    assert sample_when(Path(sample_name(step=500))) == (None, 500)
    assert sample_when(Path("my_face_e000012_01_20260101120000.png")) == (12, None)  # no seed suffix, "_" in the name
    assert sample_when(Path("portrait.png")) == (None, None)


def test_only_a_training_that_writes_samples_is_watched(tmp_path):
    run = RunLayout(tmp_path)
    quiet, _ = presets.load("cpu-check", ["sampling.prompts=[]", "sampling.every_n_epochs=null"])
    assert not live.wanted(quiet) and live.watch(run, quiet, lambda e: None) is None
    never, _ = presets.load("cpu-check", ["sampling.every_n_epochs=null"])
    assert not live.wanted(never)
    every, _ = presets.load("cpu-check", ["sampling.every_n_epochs=null", "sampling.every_n_steps=5"])
    assert live.wanted(every) and live.wanted(presets.load("cpu-check")[0])


def photo_run(tmp_path: Path):
    """A run folder with obama.jpg, obama3.jpg as training photos and obama_partial_face2.jpg held out."""
    preset, _ = presets.load("cpu-check")
    run = RunLayout(tmp_path / "run")
    for folder, names in ((instance_dir(preset, run), ["obama.jpg", "obama3.jpg"]),
                          (validation_dir(preset, run), ["obama_partial_face2.jpg"])):
        folder.mkdir(parents=True)
        for name in names:
            shutil.copy(FACES / name, folder / name)
    run.samples.mkdir(parents=True)
    return preset, run


def png_bytes(image) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_samples_are_scored_as_they_appear_once_completely_written(tmp_path):
    """A face sample gets its likeness to the training and held-out photos; a sample with no face says so; one half
    written waits until it is whole; the step and epoch come from the file name, else from the trainer's events;
    nothing is sent after stop()."""
    needs_dlib()
    from PIL import Image

    preset, run = photo_run(tmp_path)
    got = []
    watcher = live.LiveLikeness(run, preset, got.append, poll_s=0.05).start()
    try:
        watcher.seen(ev.Epoch(1, 3))
        watcher.seen(ev.Step(5, 10))
        noise = png_bytes(Image.effect_noise((256, 256), 80).convert("RGB"))
        half = run.samples / sample_name(epoch=1)
        half.write_bytes(noise[: len(noise) // 2])
        time.sleep(0.6)  # many looks at a file that does not decode
        assert got == []
        half.write_bytes(noise)
        (blank,) = wait_until(lambda: list(got), what="the sample with no face scored")
        assert blank == ev.SampleLikeness(str(half), 1, 5, None, None, 0, "dlib-resnet-128", f"no face found in sample {half.name}")
        assert blank.text == f"no face found in sample {half.name} (epoch 1, step 5)"

        watcher.seen(ev.Epoch(2, 3))
        face = run.samples / sample_name(step=7)
        face.write_bytes(png_bytes(Image.open(FACES / "obama2.jpg").convert("RGB")))
        wait_until(lambda: len(got) == 2, what="the face sample scored")
        scored = got[1]
        assert (scored.image, scored.epoch, scored.step, scored.faces, scored.note) == (str(face), 2, 7, 1, "")
        assert scored.identity > SAME_PERSON and scored.held_out > SAME_PERSON, scored
        assert re.fullmatch(r"sample likeness \(epoch 2, step 7\): 0\.\d\d to your photos, held-out photos 0\.\d\d "
                            rf"\(dlib-resnet-128; {re.escape(face.name)}\)", scored.text), scored.text
    finally:
        watcher.stop()
    assert not watcher.thread.is_alive()
    shutil.copy(face, run.samples / sample_name(epoch=3))
    time.sleep(0.3)
    assert len(got) == 2  # nothing after stop


def test_samples_left_at_the_end_are_scored_by_stop_and_a_damaged_one_is_named(tmp_path):
    needs_dlib()
    preset, run = photo_run(tmp_path)
    got = []
    watcher = live.LiveLikeness(run, preset, got.append, poll_s=30).start()  # no look before stop
    shutil.copy(FACES / "obama2.jpg", run.samples / sample_name(epoch=1))  # a JPEG named .png: still decodes
    (run.samples / sample_name(epoch=2)).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    watcher.stop()
    assert [e.epoch for e in got] == [1, 2]
    assert got[0].identity > SAME_PERSON
    assert got[1].identity is None and got[1].note.startswith(f"sample {sample_name(epoch=2)} could not be read: ")


def test_without_the_face_model_the_samples_are_skipped_with_one_note(tmp_path):
    """No face model (here: an ArcFace model folder without its files; the scoring process loads it, so a monkeypatch
    here would not reach it): one warning says why, no sample is scored and the watcher ends by itself."""
    from faceswap_kohya.faces import identity

    models = tmp_path / "no-models"
    models.mkdir()
    preset, run = photo_run(tmp_path)
    preset = preset.model_copy(update={"evaluate": preset.evaluate.model_copy(
        update={"embedder": "arcface", "arcface_models": str(models)})})
    try:
        identity.get_embedder("arcface", str(models))
    except UserError as e:
        why = str(e)
    else:
        pytest.fail("an empty ArcFace model folder loaded")
    got = []
    watcher = live.LiveLikeness(run, preset, got.append, poll_s=0.05).start()
    for epoch in (1, 2):
        shutil.copy(FACES / "obama2.jpg", run.samples / sample_name(epoch=epoch))
    wait_until(lambda: not watcher.thread.is_alive(), 60, "the watcher ending")
    watcher.stop()
    assert got == [ev.Warning(f"the samples are not scored for likeness: {why}")]


def test_the_pipe_reader_never_waits_on_a_sample_being_scored(tmp_path):
    """While samples are scored (in the scoring child process: dlib holds the GIL while it embeds and while its CNN
    detector looks for a face that is not there), the lines a stand-in trainer prints every 10 ms are read in this
    process without a pause longer than 0.3 s."""
    needs_dlib()
    import threading

    from PIL import Image

    preset, run = photo_run(tmp_path)
    got, gaps, stamps = [], [], []
    trainer = subprocess.Popen([sys.executable, "-u", "-c", "import time\nwhile True:\n    print('step', flush=True)\n"
                                "    time.sleep(0.01)"], stdout=subprocess.PIPE, text=True)

    def read():  # as the launcher reads the trainer's output: a line at a time
        last = time.monotonic()
        for _ in trainer.stdout:
            now = time.monotonic()
            gaps.append(now - last)
            stamps.append(now)
            last = now

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    watcher = live.LiveLikeness(run, preset, lambda e: got.append((time.monotonic(), e)), poll_s=0.05).start()
    try:
        wait_until(lambda: len(gaps) > 20, what="the trainer's first lines")
        begun = time.monotonic()
        face = Image.open(FACES / "obama2.jpg").convert("RGB")
        face = face.resize((1024, round(1024 * face.height / face.width)))
        noise = Image.effect_noise((1024, 1024), 80).convert("RGB")  # no face: dlib's CNN detector looks too
        for epoch, sample in ((1, face), (2, noise)):  # the first also loads the face model and embeds the photos
            (run.samples / sample_name(epoch=epoch)).write_bytes(png_bytes(sample))
            wait_until(lambda: len(got) == epoch, what=f"sample {epoch} scored")
        scored = time.monotonic()
        time.sleep(0.2)
    finally:
        watcher.stop()
        trainer.kill()
        reader.join(5)
    (_, scored_face), (_, faceless) = got
    assert (scored_face.epoch, faceless.epoch) == (1, 2) and scored_face.identity > SAME_PERSON, got
    assert faceless.identity is None and faceless.note.startswith("no face found in sample"), faceless
    during = [g for g, t in zip(gaps, stamps) if begun <= t <= scored + 0.2]
    assert scored - begun > 0.5 and len(during) > 20, (scored - begun, len(during))  # the lines went on meanwhile
    assert max(during) < 0.3, f"the reader waited {max(during):.2f} s while a sample was scored"


def test_the_latest_likeness_is_kept_in_status_json_and_read_back(tmp_path):
    recorder = RunRecorder(tmp_path, "myface")
    emit = recorder.wrap(lambda e: None)
    first = ev.SampleLikeness("/r/model/sample/a.png", 1, 5, 0.61, 0.55, 1, "dlib-resnet-128")
    second = ev.SampleLikeness("/r/model/sample/b.png", 2, 10, None, None, 0, "dlib-resnet-128", "no face found in sample b.png")
    emit(first)
    assert read_status(tmp_path)["sample_likeness"] == dataclasses.asdict(first)
    emit(second)
    recorder.close()
    assert read_status(tmp_path)["sample_likeness"] == dataclasses.asdict(second)
    record = read_run(tmp_path)
    assert record.likeness == [first, second] and record.sample_likeness == second
    (tmp_path / "status.json").write_text('{"state": "fini')  # torn: the events still say it
    assert read_run(tmp_path).sample_likeness == second


def test_the_train_page_draws_likeness_per_epoch(tmp_path):
    pytest.importorskip("pandas", reason="the web app's plots need pandas (the ui extra)")
    from faceswap_kohya.web import follow
    from faceswap_kohya.web.train import likeness_frame

    empty = likeness_frame(follow.RunView(tmp_path))
    assert list(empty.columns) == ["epoch", "likeness", "series"] and len(empty) == 0
    assert (str(empty["epoch"].dtype), str(empty["likeness"].dtype)) == ("int64", "float64")
    (tmp_path / "r1").mkdir()
    recorder = RunRecorder(tmp_path / "r1", "myface")
    for e in (ev.SampleLikeness("a.png", 1, 5, 0.5, 0.4, 1), ev.SampleLikeness("b.png", 1, 5, 0.7, None, 1),
              ev.SampleLikeness("c.png", 2, 10, None, None, 0, note="no face found in sample c.png"),
              ev.SampleLikeness("d.png", 3, 15, 0.8, 0.75, 2)):
        recorder.record(e)
    recorder.close()
    view = follow.view_of(tmp_path / "r1")
    frame = likeness_frame(view)
    assert [tuple(r) for r in frame.itertuples(index=False)] == [
        (1, 0.4, "held-out photos"), (1, 0.6, "your photos"), (3, 0.75, "held-out photos"), (3, 0.8, "your photos")]
    assert "sample likeness 0.80, held-out 0.75" in view.headline()
    assert "no face found in sample c.png (epoch 2, step 10)" in view.lines
    (tmp_path / "r2").mkdir()
    recorder = RunRecorder(tmp_path / "r2", "myface")
    recorder.record(ev.SampleLikeness("e.png", 1, 2, None, None, 0, note="no face found in sample e.png"))
    recorder.close()
    assert "latest sample: no face" in follow.view_of(tmp_path / "r2").headline()


def test_train_shows_the_likeness_of_face_samples_as_the_trainer_writes_them(tmp_path):
    """`faceswap-kohya train` with the stand-in trainer writing real photos as its samples (obama2.jpg at epoch 1,
    biden.jpg at epoch 2) of a run trained on obama's photos: one line per sample, the person's sample scored
    above the other's; events.jsonl has both, status.json the latest."""
    needs_dlib()
    pytest.importorskip("diffusers", reason="the stand-in trainer's base model is a tiny SDXL (diffusers)")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("obama.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"):
        shutil.copy(FACES / name, photos / name)
    out = tmp_path / "out"
    settings = fast_settings(make_fake_kohya(tmp_path), photos, out, "dataset.resolution=256",
                             "sampling.prompts=['{trigger} {class}, portrait']", "sampling.every_n_epochs=1")
    env = dict(os.environ, FACESWAP_KOHYA_PRESETS=str(presets.PRESETS_DIR),
               FAKE_TRAINER_SAMPLES=os.pathsep.join(str(FACES / n) for n in ("obama2.jpg", "biden.jpg")))
    proc = subprocess.run([sys.executable, "-m", "faceswap_kohya", "train", "cpu-check", *settings], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("sample likeness")]
    assert len(lines) == 2, proc.stdout
    pattern = r"sample likeness \(epoch (\d), step 2\): (0\.\d\d) to your photos, held-out photos (0\.\d\d) " \
              r"\(dlib-resnet-128; myface-check_e00000\1_00_\d{14}_\d+\.png\)"
    found = [re.fullmatch(pattern, line) for line in lines]
    assert all(found), lines
    (run,) = [p for p in out.glob("*/*") if (p / "status.json").is_file()]
    record = read_run(run)
    obama, biden = record.likeness
    assert (obama.epoch, biden.epoch) == (1, 2) and obama.faces == biden.faces == 1
    assert Path(obama.image).parent == RunLayout(run).samples and "biden" not in obama.image
    assert obama.identity > SAME_PERSON > biden.identity and obama.held_out > biden.held_out, record.likeness
    assert [float(m[2]) for m in found] == [round(obama.identity, 2), round(biden.identity, 2)]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["sample_likeness"] == dataclasses.asdict(biden)
