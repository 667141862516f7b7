"""Every job runs from Python with an event callback (no click, no printing): a tiny SDXL, real photos.

Each test asserts the sequence of events the job reports and that the run folder records its own story."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from faceswap_kohya import events as ev
from faceswap_kohya.config import presets
from faceswap_kohya.config.schema import Preset
from faceswap_kohya.runs.status import RunRecorder, list_runs, read_events, read_status

pytestmark = pytest.mark.usefixtures("user_home")  # a private FACESWAP_KOHYA_HOME


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


def squeeze(names: list[str]) -> list[str]:
    """Runs of the same event type as one (Step, Step, Step → Step)."""
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


# ---------------------------------------------------------------- events and run folders
def test_events_round_trip_as_json():
    for event in (ev.Message("hi"), ev.Step(3, 10, "00:03", "00:07", 1.0, 0.12, 1e-4), ev.ValidationLoss(4, 0.2),
                  ev.ImageWritten("/a.png", "grid"), ev.CheckpointWritten("/m.safetensors"), ev.ModelSaved(),
                  ev.Finished("done", ["/m.safetensors"]), ev.Error("bad"), ev.StageStarted("training")):
        data = json.loads(json.dumps(ev.to_dict(event)))
        assert data["type"] == type(event).__name__ and ev.from_dict(data) == event


def test_a_run_folder_records_events_and_status(tmp_path):
    output = tmp_path
    tmp_path = output / "me" / "20260101-120000"
    tmp_path.mkdir(parents=True)
    rec = RunRecorder(tmp_path, "me")
    emit = rec.wrap(lambda e: None)
    assert read_status(tmp_path)["state"] == "preparing" and read_status(tmp_path)["pid"] == os.getpid()
    for i in range(1, 4):
        emit(ev.Step(i, 3, loss=0.5 / i))
    emit(ev.CheckpointWritten("/x/me.safetensors"))
    rec.set(state="finished")
    rec.close()
    status = read_status(tmp_path)
    assert (status["state"], status["step"], status["total"], status["loras"]) == ("finished", 3, 3, ["/x/me.safetensors"])
    assert status["ended"] is not None
    found, offset = read_events(tmp_path)
    assert kinds(found) == ["Step", "Step", "Step", "CheckpointWritten"] and found[2].loss == pytest.approx(0.5 / 3)
    assert read_events(tmp_path, offset) == ([], offset)  # following: nothing new yet
    assert [p for p, _ in list_runs(output)] == [tmp_path]


def test_a_status_left_active_by_a_dead_process_reads_interrupted(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (tmp_path / "status.json").write_text(json.dumps({"state": "training", "pid": child.pid, "started": "x"}))
    assert read_status(tmp_path)["state"] == "training"
    child.kill()
    child.wait()
    assert read_status(tmp_path)["state"] == "interrupted"


# ---------------------------------------------------------------- jobs on a tiny SDXL
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder as `train` leaves it (preset, training photos, LoRA checkpoints) on a tiny SDXL."""
    pytest.importorskip("diffusers", reason="diffusers is not installed (pip install -e '.[generate]')")
    from skimage import data
    from tiny_sdxl import save_tiny_pipeline, write_kohya_lora

    from faceswap_kohya.diffusion.pipeline import load_pipeline

    root = tmp_path_factory.mktemp("jobs")
    tiny = save_tiny_pipeline(root / "tiny-sdxl")
    run = root / "myface" / "20260101-120000"
    photos = run / "img" / "1_myface woman"
    photos.mkdir(parents=True)
    (run / "model").mkdir()
    preset = Preset.model_validate({
        "base_model": str(tiny), "subject": {"trigger": "myface", "class_word": "woman"},
        "dataset": {"resolution": 64, "repeats": 1}, "output": {"name": "myface", "dir": str(root)},
        "evaluate": {"prompts": ["{trigger} {class}, portrait"], "seeds": [7], "steps": 2, "cfg": 5.0}})
    (run / "preset.yaml").write_text(presets.dump(preset))
    portrait = Image.fromarray(data.astronaut())
    portrait.crop((0, 0, 512, 512)).save(photos / "001.png")
    portrait.crop((64, 0, 448, 384)).save(photos / "002.png")
    pipe = load_pipeline(str(tiny), device="cpu")
    for i, name in enumerate(("myface-000001", "myface")):
        write_kohya_lora(pipe, run / "model" / f"{name}.safetensors", seed=10 + i, scale=0.5)
    return run


def test_prepare_job(photos, tmp_path):
    from faceswap_kohya.jobs.prepare import prepare

    preset, _ = presets.load("cpu-check", [f"dataset.images={photos}", f"output.dir={tmp_path / 'out'}"])
    seen = []
    run, summary = prepare(preset, seen.append)
    names = kinds(seen)
    assert names[0] == "Message" and names[-2:] == ["ImageWritten", "Finished"]
    assert seen[-2].kind == "contact_sheet" and Path(seen[-2].path).is_file()
    assert len(summary.photos) >= 3 and str(run.root) in seen[-1].summary  # augmented copies too
    assert read_status(run.root)["state"] == "finished"
    recorded, _ = read_events(run.root)
    assert kinds(recorded) == names  # the run folder holds the same story


def test_prepare_job_leaves_nothing_behind_on_failure(tmp_path):
    from faceswap_kohya.errors import UserError
    from faceswap_kohya.jobs.prepare import prepare

    empty = tmp_path / "empty"
    empty.mkdir()
    preset, _ = presets.load("cpu-check", [f"dataset.images={empty}", f"output.dir={tmp_path / 'out'}"])
    with pytest.raises(UserError):
        prepare(preset, lambda e: None)
    assert not any((tmp_path / "out").rglob("*.json"))


def test_generate_and_compare_jobs(tiny_run):
    from faceswap_kohya.diffusion.source import Settings, resolve_source
    from faceswap_kohya.jobs.compare import run_compare
    from faceswap_kohya.jobs.generate import run_generate

    source = resolve_source(str(tiny_run))
    settings = Settings(steps=2, width=64, height=64)
    seen = []
    paths = run_generate(source, ["{trigger} {class}, photo"], [1, 2], settings, tiny_run / "images", on_event=seen.append)
    assert squeeze(kinds(seen)) == ["Message", "Step", "ImageWritten", "Finished"]
    assert [e.path for e in seen if isinstance(e, ev.ImageWritten)] == [str(p) for p in paths]
    steps = [e for e in seen if isinstance(e, ev.Step)]
    assert steps[-1].step == steps[-1].total == 2 and steps[-1].unit == "image"

    seen = []
    grids = run_compare(source, ["{trigger} {class}"], [1], settings, tiny_run / "compare", weights=[0, 1],
                        on_event=seen.append)
    assert kinds(seen)[-1] == "Finished" and [e.path for e in seen if getattr(e, "kind", "") == "grid"] == [str(g) for g in grids]


def test_evaluate_job(tiny_run):
    pytest.importorskip("dlib", reason="dlib is not installed (pip install -e '.[faces]')")
    from faceswap_kohya.jobs.evaluate import evaluate, plan_run

    seen = []
    result = evaluate(plan_run(tiny_run), seen.append, device="cpu")
    written = {e.kind: Path(e.path) for e in seen if isinstance(e, ev.ImageWritten)}
    assert set(written) == {"chart", "report"} and all(p.is_file() for p in written.values())
    assert written["report"].parent == result.folder
    assert any(isinstance(e, ev.Message) and "reference faces" in e.text for e in seen)


def test_swap_job(tiny_run, tmp_path):
    pytest.importorskip("dlib", reason="dlib is not installed (pip install -e '.[faces]')")
    from skimage import data

    from faceswap_kohya.diffusion.source import Settings, resolve_source
    from faceswap_kohya.jobs.swap import run_swap

    photo = tmp_path / "photo.png"
    Image.fromarray(data.astronaut()).save(photo)
    seen = []
    result = run_swap(resolve_source(str(tiny_run)), photo, Settings(steps=2), tmp_path / "swaps", seed=1, size=64,
                      on_event=seen.append)
    assert [(e.kind, e.path) for e in seen if isinstance(e, ev.ImageWritten)] == [("swap", str(result.path))]


def test_identity_job(tmp_path):
    pytest.importorskip("dlib", reason="dlib is not installed (pip install -e '.[faces]')")
    from faceswap_kohya.jobs.identity import identity

    faces = Path(__file__).parent / "data" / "faces"
    refs = tmp_path / "refs"
    refs.mkdir()
    for name in ("obama.jpg", "obama2.jpg"):
        (refs / name).write_bytes((faces / name).read_bytes())
    seen = []
    result = identity(refs, [faces / "obama3.jpg", faces / "biden.jpg"], on_event=seen.append)
    scores = {Path(r["file"]).name: r["score"] for r in result["images"]}
    assert kinds(seen) == ["Finished"] and scores["obama3.jpg"] > scores["biden.jpg"]


def test_kohya_preset_jobs(tmp_path):
    from faceswap_kohya.jobs.kohya_presets import export_kohya, import_kohya

    seen = []
    lines = export_kohya("face-12gb", (), "sd-scripts", tmp_path / "face.toml", on_event=seen.append)
    assert kinds(seen) == ["Message"] * len(lines) and (tmp_path / "face.toml").is_file()
    text, report = import_kohya(tmp_path / "face.toml", out=tmp_path / "back.yaml", on_event=seen.append)
    assert isinstance(seen[-1], ev.Finished) and (tmp_path / "back.yaml").read_text() == text
    assert presets.load(str(tmp_path / "back.yaml"))[0].network.dim == presets.load("face-12gb")[0].network.dim


def test_regularize_job(tiny_run, tmp_path):
    from faceswap_kohya.jobs.regularize import regularize

    preset = presets.validate(presets.apply_overrides(presets.read_yaml(tiny_run / "preset.yaml"), [
        "regularization.generate=2", "regularization.steps=2", "dataset.resolution=64"]), "run preset")
    seen = []
    started = time.monotonic()
    files, made = regularize(preset, seen.append, confirmed=True)
    assert made == 2 and len(files) == 2 and all(Path(f).is_file() for f in files)
    steps = [e for e in seen if isinstance(e, ev.Step)]
    assert steps and steps[-1].step == steps[-1].total == 2 and kinds(seen)[-1] == "Finished"
    seen = []
    assert regularize(preset, seen.append)[1] == 0  # cached: nothing generated again
    assert time.monotonic() - started < 600
