"""The web app (`faceswap-kohya ui`): safety (loopback unless a login is set, files only from the workspace, upload
names kept inside their folder), the pieces the pages use, and the real app in Debian's chromium via Playwright.

The end-to-end test (marked `trainer`) trains on the pipeline-check model through the browser: ~22 GB RAM.
Screenshots of every page go to tests/.artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import needs_kohya
from web_browser import (
    SCREENSHOTS,
    App,
    drawn_lines,
    fill,
    images_in,
    open_tab,
    pick,
    shot,
    text_of,
    wait_images,
    wait_text,
    whole_images,
    y_axis_rises,
)

from faceswap_kohya.cli.main import cli
from faceswap_kohya.config import presets
from faceswap_kohya.errors import UserError
from faceswap_kohya.runs.status import list_runs
from faceswap_kohya.web import follow
from faceswap_kohya.web.common import Workspace, safe_name, save_upload


def test_gradio_loads_only_when_the_app_starts():
    code = ("import sys, faceswap_kohya.jobs, faceswap_kohya.cli, faceswap_kohya.web, faceswap_kohya.web.common, "
            "faceswap_kohya.web.follow; print(sorted(m for m in ('gradio', 'fastapi', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


# ---------------------------------------------------------------- safety, without a browser
@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_non_loopback_host_needs_a_login(tmp_path, host):
    out = tmp_path / "ws"
    r = subprocess.run([sys.executable, "-m", "faceswap_kohya", "ui", "--host", host, "--output", str(out)],
                       capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 2, r.stderr
    assert f"--host {host} makes the app reachable from other machines: give --auth USER:PASSWORD" in r.stderr
    assert not out.exists(), "nothing may be started or made before the refusal"


def test_auth_must_be_user_and_password(tmp_path):
    r = CliRunner().invoke(cli, ["ui", "--host", "0.0.0.0", "--auth", "justaname", "--output", str(tmp_path / "ws")])
    assert r.exit_code == 2 and "--auth: expected USER:PASSWORD" in r.output


def test_workspace_may_not_be_home_or_root(tmp_path):
    for bad in ("/", str(Path.home())):
        r = CliRunner().invoke(cli, ["ui", "--output", bad])
        assert r.exit_code == 2 and "the app serves every file under this folder" in r.output


@pytest.mark.parametrize("name,expected", [
    ("../x.jpg", "x.jpg"), ("..\\..\\x.jpg", "x.jpg"), ("/etc/passwd", "passwd"), (".bashrc", "bashrc"),
    ("a b(1).JPG", "a b(1).JPG"), ("évé.png", "évé.png"), ("..", "file"), ("x;rm -rf.jpg", "x_rm -rf.jpg"),
])
def test_upload_names_stay_plain(name, expected):
    assert safe_name(name) == expected


def test_upload_lands_inside_its_folder(tmp_path):
    src = tmp_path / "photo.jpg"
    src.write_bytes(b"jpeg")
    folder = tmp_path / "uploads" / "one"
    folder.mkdir(parents=True)
    first = save_upload(src, folder, "../x.jpg")
    second = save_upload(src, folder, "../x.jpg")
    assert first == folder / "x.jpg" and second == folder / "x-2.jpg"
    assert not (tmp_path / "uploads" / "x.jpg").exists() and first.read_bytes() == b"jpeg"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real app (no browser needed) with one file in a run folder of its workspace."""
    root = tmp_path_factory.mktemp("web")
    app = App(root / "ws", root / "app.log").start()
    run = app.output / "myface" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "note.txt").write_text("run file")
    yield app
    app.stop()


def test_files_only_from_the_workspace(server):
    project = Path(__file__).parents[1]
    assert server.get(f"/gradio_api/file={server.output}/myface/20260101-000000/note.txt") == 200
    for path in ("/etc/passwd", f"{project}/pyproject.toml", f"{server.output}/../app.log",
                 f"{server.output}/myface/20260101-000000/../../../app.log", "http://127.0.0.1:1/x.png",
                 "https://example.com/x.png"):
        assert server.get(f"/gradio_api/file={path}") == 403, path


def test_with_a_login_nothing_is_served_without_it(tmp_path):
    app = App(tmp_path / "ws", tmp_path / "app.log", "--host", "0.0.0.0", "--auth", "user:secret").start()
    try:
        run = app.output / "myface" / "20260101-000000"
        run.mkdir(parents=True)
        (run / "note.txt").write_text("run file")
        assert app.get("/config") == 401
        assert app.get(f"/gradio_api/file={run}/note.txt") in (401, 403)
        req = urllib.request.Request(app.url + "/login", data=b"username=user&password=secret", method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=10) as r:
            cookie = "; ".join(h.split(";")[0] for h in r.headers.get_all("Set-Cookie"))
        req = urllib.request.Request(f"{app.url}/gradio_api/file={run}/note.txt", headers={"Cookie": cookie})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.read() == b"run file"
    finally:
        app.stop()


def test_http_upload_named_dotdot_stays_inside(server):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"../x.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\nnot really a jpeg\r\n--{boundary}--\r\n").encode()
    req = urllib.request.Request(server.url + "/gradio_api/upload", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        stored = [Path(p) for p in json.loads(r.read())]
    uploads = server.output / ".ui" / "gradio"
    assert stored and all(p.resolve().is_relative_to(uploads.resolve()) and p.is_file() for p in stored)
    assert not (uploads.parent / "x.jpg").exists() and not (server.output / "x.jpg").exists()


# ---------------------------------------------------------------- the pieces, without a browser
def test_prepared_photos_captions_and_checks(tmp_path, photos):
    from faceswap_kohya.jobs.prepare import prepare
    from faceswap_kohya.jobs.train import check_prepared
    from faceswap_kohya.web import photos as page

    preset, _ = presets.load("cpu-check", [f"dataset.images={photos}", f"output.dir={tmp_path}", "dataset.augment.mirror=0",
                                           "dataset.augment.relight=0"])
    run, _ = prepare(preset)
    rows = page.photo_rows(run.root)
    assert [r[0] for r in rows] == sorted(p.name for p in photos.iterdir()) and {r[1] for r in rows} == {"yes"}
    captions = page.caption_rows(run.root)
    first = captions[0][0]
    message = page.save_captions(run.root, [[first, "a woman in a red spacesuit"]] + captions[1:])
    assert message.startswith("saved 1 caption")
    txt = (page.instance_folder(run.root) / first).with_suffix(".txt").read_text(encoding="utf-8").strip()
    assert txt.startswith("myface woman") and "red spacesuit" in txt
    assert "edited" in [r[-1] for r in page.photo_rows(run.root)]
    with pytest.raises(UserError, match="empty"):
        page.save_captions(run.root, [[first, "  "]])
    with pytest.raises(UserError, match="not a training image"):
        page.save_captions(run.root, [["../../preset.yaml", "x"]])

    assert check_prepared(preset, run.root).name == "1_myface woman"
    other, _ = presets.load("cpu-check", ["subject.trigger=bob"])
    with pytest.raises(UserError, match=r"subject.trigger: the photos in .* were prepared with 'myface', the preset says 'bob'"):
        check_prepared(other, run.root)
    r = CliRunner().invoke(cli, ["train", "cpu-check", "subject.trigger=bob", "--prepared", str(run.root)])
    assert r.exit_code == 2 and "prepare again, or set subject.trigger=myface" in r.output


def test_training_on_prepared_photos_keeps_the_held_out_photo(tmp_path):
    """`train --prepared` (what the web app's Train runs after its Photos page) validates on the photo `prepare` held
    out, as a training straight from the photos does: its folder is copied and the dataset TOML names it."""
    from faceswap_kohya.data.samples import sample_photos
    from faceswap_kohya.jobs.prepare import prepare
    from faceswap_kohya.jobs.train import copy_prepared
    from faceswap_kohya.runs.layout import new_run, validation_dir
    from faceswap_kohya.trainer.render import dataset_config

    photos = sample_photos(tmp_path / "photos")  # six: enough for one to be held out
    preset, _ = presets.load("cpu-check", [f"dataset.images={photos}", f"output.dir={tmp_path / 'out'}", "dataset.holdout=1"])
    prepared, _ = prepare(preset)
    held = sorted(p.name for p in validation_dir(preset, prepared).glob("*.png"))
    assert len(held) == 1
    run = new_run(preset)
    copy_prepared(preset, prepared.root, run)
    assert sorted(p.name for p in validation_dir(preset, run).glob("*.png")) == held
    validation = [d for d in dataset_config(preset, run)["datasets"] if d.get("validation_split") == 1.0]
    assert [s["image_dir"] for d in validation for s in d["subsets"]] == [str(validation_dir(preset, run))]


def test_train_knobs_are_cli_overrides(tmp_path):
    from faceswap_kohya.web.train import Knobs, load

    ws = Workspace(tmp_path / "ws").make()
    knobs = Knobs("cpu-check", None, "bob", "old man", "steps", 7, 8, 4, 2e-4, 512, True)
    preset, _, _, args = load(knobs, ws, photos_dir=str(tmp_path))
    assert args[:2] == ["train", "cpu-check"] and f"dataset.images={tmp_path}" in args
    assert (preset.subject.trigger, preset.subject.class_word, preset.training.max_steps) == ("bob", "old man", 7)
    assert (preset.network.dim, preset.network.alpha, preset.optimizer.unet_lr) == (8, 4, 2e-4)
    assert preset.dataset.resolution == 512 and preset.training.save_state and preset.output.dir == str(ws.output)
    r = CliRunner().invoke(cli, ["validate", *args[1:]])  # the CLI takes the very same arguments
    assert r.exit_code == 0, r.output
    bad = Knobs("cpu-check", None, "two words", "woman", "epochs", 3, 8, 4, 1e-4, 500, False)
    with pytest.raises(UserError) as err:
        load(bad, ws)
    assert "subject.trigger: must be one word" in str(err.value)
    assert "dataset.resolution: must be a multiple of 64" in str(err.value)
    with pytest.raises(UserError, match=r"Rank: give a number \(got None\)"):
        load(Knobs("cpu-check", None, "bob", "woman", "steps", 7, None, 4, 1e-4, 512, False), ws)


def test_an_imported_kohya_preset_shows_its_report(tmp_path):
    from faceswap_kohya.web.train import Knobs, check_text, knob_values

    kohya_json = Path(__file__).parent / "data" / "kohya" / "kohya_ss" / "SDXL - LoRA face dogu_cat v1.0.json"
    values = knob_values("face-12gb", str(kohya_json))
    assert values[4:7] == [92, 46, 1e-4]  # rank, alpha, learning rate as the kohya_ss preset sets them
    text = check_text(Knobs("face-12gb", str(kohya_json), *values), Workspace(tmp_path / "ws").make(), str(tmp_path), "")
    assert "**valid**" in text and "imported" in text and "kohya_ss" in text.lower()


def test_follow_a_run_folder_and_stop_it(tmp_path):
    """Progress comes from events.jsonl (read incrementally), state from status.json; Stop is SIGINT to the run's
    process; a reloaded page finds the running training."""
    from faceswap_kohya import events as ev
    from faceswap_kohya.runs.status import RunRecorder
    from faceswap_kohya.web import follow

    ws = Workspace(tmp_path / "ws").make()
    root = ws.output / "myface" / "20260101-000000"
    root.mkdir(parents=True)
    flag = tmp_path / "flag"
    child = subprocess.Popen([sys.executable, "-c", f"import time, pathlib\nflag = pathlib.Path(r'{flag}')\n"
                              "flag.write_text('ready')\ntry:\n    time.sleep(60)\n"
                              "except KeyboardInterrupt:\n    flag.write_text('stopped')"])
    while not flag.exists():
        time.sleep(0.05)
    recorder = RunRecorder(root, "myface")
    recorder.set(state="training", pid=child.pid)
    for event in (ev.StageStarted("training"), ev.Step(1, 4, eta="0:09", loss=0.5), ev.Step(2, 4, loss=0.25),
                  ev.ValidationLoss(2, 0.3)):
        recorder.record(event)
    view = follow.view_of(root)
    assert view.active and view.losses == {1: 0.5, 2: 0.25} and view.val_losses == {2: 0.3}
    assert "step 2/4" in view.headline() and "validation loss 0.3000" in view.headline()
    assert follow.running_training(ws) == root
    offset = view.offset
    recorder.record(ev.Step(3, 4, loss=0.125))
    assert follow.view_of(root).offset > offset and view.losses[3] == 0.125  # only the new line was read
    (root / "train.log").write_text("loading\nsteps:  25%|#  | 1/4\rsteps:  50%|## | 2/4\n")
    assert follow.log_tail(root) == "loading\nsteps:  50%|## | 2/4"

    assert "SIGINT" in follow.stop_run(root)
    child.wait(timeout=30)
    assert flag.read_text() == "stopped"
    recorder.close()
    assert follow.view_of(root).state == "interrupted" and follow.running_training(ws) is None  # its process is gone
    with pytest.raises(UserError, match="not running"):
        follow.stop_run(root)


def test_starting_a_training_lets_the_kept_base_model_go(tmp_path):
    """The app keeps its base model between picture jobs; a training needs that memory, so Start lets it go."""
    pytest.importorskip("diffusers", reason="diffusers is not installed (pip install -e '.[generate]')")
    from tiny_sdxl import save_tiny_pipeline

    from faceswap_kohya.diffusion import pipeline as loader
    from faceswap_kohya.web.train import one_training

    tiny = str(save_tiny_pipeline(tmp_path / "tiny-sdxl"))
    loader.keep_between_jobs(True)
    try:
        kept = loader.load_pipeline(tiny, device="cpu")
        assert loader.load_pipeline(tiny, device="cpu") is kept
        with one_training(Workspace(tmp_path / "ws")):
            assert not loader.release_kept(), "let go before the training starts"
        assert loader.load_pipeline(tiny, device="cpu") is not kept
    finally:
        loader.keep_between_jobs(False)


def test_a_launch_that_fails_shows_the_cli_error(tmp_path):
    from faceswap_kohya.web import follow

    ws = Workspace(tmp_path / "ws").make()
    launch = follow.spawn_cli(["train", "cpu-check", "dataset.images=/no/such/folder", f"output.dir={ws.output}"], ws)
    with pytest.raises(UserError) as err:
        follow.wait_for_run(launch, ws, timeout=120)
    assert str(err.value) == "dataset.images: folder /no/such/folder does not exist"
    assert launch.proc.returncode == 2


# ---------------------------------------------------------------- in the browser
def upload_photos(page, folder: Path, extra: list[dict] = ()) -> str:
    files = [{"name": p.name, "mimeType": "image/jpeg", "buffer": p.read_bytes()} for p in sorted(folder.glob("*.jpg"))]
    page.locator("#photos-upload input[type=file]").set_input_files(files + list(extra))
    return wait_text(page, "photos-received", "received", timeout=60)


def test_browser_photos_page(tmp_path, page_of):
    """Every page renders; photos upload (one named ../x.jpg), prepare, contact sheet, table, a caption edited."""
    from faceswap_kohya.data.samples import sample_photos

    samples = sample_photos(tmp_path / "samples")
    app = App(tmp_path / "ws", tmp_path / "app.log").start()
    try:
        page = page_of(app.url)
        for name, tab in (("photos", "1 · Photos"), ("train", "2 · Train"), ("results", "3 · Results"),
                          ("evaluate", "4 · Evaluate"), ("swap", "5 · Swap"), ("runs", "Runs")):
            open_tab(page, tab)
            shot(page, f"empty-{name}")
        open_tab(page, "2 · Train")
        wait_text(page, "train-check", "valid")
        pick(page, "train-preset", "cpu-check — none (CPU)")
        wait_text(page, "train-check", "cpu-check.yaml")
        fill(page, "train-trigger", "my face")  # the preset's own message, before anything starts
        wait_text(page, "train-check", "subject.trigger: must be one word of letters and digits")
        fill(page, "train-trigger", "myface")
        wait_text(page, "train-check", "valid")
        open_tab(page, "1 · Photos")
        sneaky = {"name": "../x.jpg", "mimeType": "image/jpeg", "buffer": (samples / "astronaut_portrait.jpg").read_bytes()}
        received = upload_photos(page, samples, [sneaky])
        folder = Path(received.split("→")[-1].strip().strip("`"))
        assert folder.parent.parent == app.output / ".uploads" and (folder / "x.jpg").is_file()
        assert not (folder.parent / "x.jpg").exists() and not (app.output / ".uploads" / "x.jpg").exists()
        page.locator("#photos-prepare").click()
        wait_text(page, "photos-status", "prepare: done", timeout=300)
        assert wait_images(page, "photos-sheet")
        table = text_of(page, "photos-table")
        assert "astronaut_head.jpg" in table and "exact duplicate" in table  # x.jpg is the portrait again
        shot(page, "photos-prepared")
        cell = page.locator("#photos-captions [data-testid=cell-0-1]")
        cell.dblclick()
        page.keyboard.press("Control+A")
        page.keyboard.type("a woman in a red spacesuit")
        page.keyboard.press("Enter")
        page.locator("#photos-save-captions").click()
        wait_text(page, "photos-saved", "saved 1 caption")
        status = text_of(page, "photos-status")
        assert "usable photo" in status and "duplicate counted once" in status, status  # the photo gate's verdict
        run = Path(status.split("—", 1)[1].strip().splitlines()[0].strip())
        first = sorted((run / "img" / "1_myface woman").glob("*.txt"))[0]
        assert first.read_text(encoding="utf-8").strip() == "myface woman, in a red spacesuit"
    finally:
        app.stop()
    assert page.hosts == {f"127.0.0.1:{app.port}"}, f"the page talked to {page.hosts}"


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # what a terminal would act on (escape codes, carriage returns)
QUICK_EVAL = {"evaluate": {"prompts": ["{trigger} {class}, portrait photo"], "seeds": [1], "steps": 2}}


@pytest.mark.trainer
@needs_kohya
def test_browser_end_to_end(tmp_path, page_of):
    """Photos → prepare → train (cpu-check, its own process; the page reloaded mid-run re-attaches) → LoRA and sample
    → one generated image, the before/after grid, an evaluation and a swap, all in the browser."""
    import yaml

    from faceswap_kohya.data.samples import sample_photos

    samples = sample_photos(tmp_path / "samples")
    preset_file = tmp_path / "cpu-check-quick.yaml"
    data = yaml.safe_load((presets.PRESETS_DIR / "cpu-check.yaml").read_text()) | QUICK_EVAL
    preset_file.write_text(yaml.safe_dump(data))
    t0 = time.monotonic()
    phases = {}

    def phase(name):
        phases[name] = round(time.monotonic() - t0 - sum(phases.values()))

    app = App(tmp_path / "ws", tmp_path / "app.log").start()
    try:
        page = page_of(app.url)
        open_tab(page, "2 · Train")
        page.locator("#train-preset-file input[type=file]").set_input_files(str(preset_file))
        wait_text(page, "train-check", "cpu-check-quick.yaml")
        open_tab(page, "1 · Photos")
        upload_photos(page, samples)
        page.locator("#photos-prepare").click()
        wait_text(page, "photos-status", "prepare: done", timeout=300)
        phase("start and prepare")
        open_tab(page, "2 · Train")
        wait_text(page, "train-check", "as prepared in")
        page.locator("#train-start").click()
        wait_text(page, "train-message", "started", timeout=120)
        wait_text(page, "train-progress", ": training", timeout=600)
        shot(page, "train-running")

        page.reload()  # the run goes on in its own process; the page finds it again
        page.wait_for_selector("[role=tab]")
        open_tab(page, "2 · Train")
        headline = wait_text(page, "train-progress", "myface-check/", timeout=60)
        assert "finished" in headline or "training" in headline or "preparing" in headline
        finished = wait_text(page, "train-progress", ": finished", timeout=2400)  # ~2 min on a quiet machine
        assert "validation loss" in finished, f"the photo the Photos page held out validates the run: {finished}"
        page.wait_for_timeout(2500)  # the next refresh brings the LoRA files and samples
        assert "myface-check.safetensors" in text_of(page, "train-loras").replace("\n", "")  # name and suffix in two spans
        assert wait_images(page, "train-samples")
        lines = drawn_lines(page, "train-loss")
        view = follow.view_of(next(root for root, st in list_runs(app.output) if st.get("kind") == "train"))
        assert lines and max(ln["points"] for ln in lines) >= 2, \
            f"the finished run's loss chart draws a line: {lines}, losses {view.losses}, validation {view.val_losses}"
        assert y_axis_rises(page, "train-loss"), "the loss axis is a number axis, smallest at the bottom"
        log = page.locator("#train-log textarea").input_value()
        assert log and not CONTROL.search(log), f"control characters in the log box: {log[-300:]!r}"
        bars = [line.split("%|")[0].rsplit(" ", 1)[0] for line in log.splitlines() if "%|" in line]
        assert len(bars) == len(set(bars)), f"a progress bar shown more than once:\n{log}"
        shot(page, "train-finished")
        phase("train")

        open_tab(page, "3 · Results")
        fill(page, "results-steps", "2")
        fill(page, "results-size", "64")
        fill(page, "results-seed", "7")
        page.locator("#results-generate").click()
        wait_text(page, "results-status", "generate: done", timeout=600)
        assert wait_images(page, "results-gallery")
        assert ".png" in text_of(page, "results-files").replace("\n", "")
        from PIL import Image

        run = next(root for root, st in list_runs(app.output) if st.get("kind") == "train")
        made = Image.open(sorted((run / "images").glob("*/*.png"))[-1]).info["parameters"]
        assert "CFG scale: 6," in made, f"an empty CFG field generates with the run's evaluate.cfg: {made}"
        shot(page, "results-generated")
        phase("generate")
        page.locator("#results-compare").click()
        wait_text(page, "results-status", "compare: done", timeout=600)
        assert any("grid-p1" in s for s in images_in(page, "results-gallery"))
        wait_images(page, "results-grid")
        page.wait_for_timeout(1000)
        for im in whole_images(page, "results-grid"):  # the before/after grid is shown whole, not cropped
            assert im["fit"] != "cover" and abs(im["shown"] / im["natural"] - 1) < 0.05, im
        assert whole_images(page, "results-grid")
        shot(page, "results-grid")
        phase("compare")

        open_tab(page, "4 · Evaluate")
        page.locator("#evaluate-start").click()
        wait_text(page, "evaluate-status", "evaluate: done", timeout=900)
        summary = text_of(page, "evaluate-summary")
        assert "Best checkpoint" in summary and wait_images(page, "evaluate-chart")
        run = next(root for root, st in list_runs(app.output) if st.get("kind") == "train")
        printed = CliRunner().invoke(cli, ["evaluate", str(run), "--last"])
        assert printed.exit_code == 0, printed.output
        verdict = next(line for line in printed.output.splitlines() if line.startswith("verdict: ")).removeprefix("verdict: ")
        assert f"Verdict: {verdict}" in " ".join(summary.split()), (verdict, summary)  # the CLI's verdict, word for word
        headers = text_of(page, "evaluate-table")
        assert all(h in headers for h in ("held-out", "all photos", "bleed", "overtrained"))
        if not images_in(page, "evaluate-top"):  # random-weight images hold no face: the page says why
            assert "No top-3 images: no face was found in any LoRA image" in text_of(page, "evaluate-top-note")
        shot(page, "evaluate")
        phase("evaluate")

        open_tab(page, "5 · Swap")
        page.locator("#swap-upload input[type=file]").set_input_files(str(samples / "astronaut_portrait.jpg"))
        wait_text(page, "swap-status", "1 face found", timeout=120)
        fill(page, "swap-steps", "2")
        page.locator("#swap-go").click()
        wait_text(page, "swap-status", "swap: done", timeout=600)
        assert wait_images(page, "swap-after") and "identity" in text_of(page, "swap-status")
        shot(page, "swap")
        phase("swap")

        open_tab(page, "Runs")
        assert "finished" in wait_text(page, "runs-table", "train")
        heights = page.locator("#runs-table thead th").evaluate_all("els => els.map(e => e.getBoundingClientRect().height)")
        assert heights and max(heights) < 3 * min(heights) and max(heights) < 80, f"headers wrap: {heights}"
        shot(page, "runs")
    finally:
        app.stop()
        print(f"browser end to end, seconds per part: {phases}")
    assert page.hosts == {f"127.0.0.1:{app.port}"}, f"the page talked to {page.hosts}"
    assert sorted(SCREENSHOTS.glob("*.png"))
