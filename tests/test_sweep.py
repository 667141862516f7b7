"""Sweeps and batches: grid parsing and validation, the leaderboard, Ray end to end.

Grid, plan and leaderboard tests need no Ray. The Ray tests start a real local Ray instance; the fast
ones train with a stand-in for sdxl_train_network.py (prints steps, writes a tiny LoRA that a tiny SDXL
loads), the `trainer` ones run the real sd-scripts on the pipeline-check model (~22 GB each trial: run
them alone, e.g. under a lock).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import needs_kohya
from sweep_data import (  # noqa: F401
    VARIANTS,
    alive_with,
    fake_kohya,
    fake_plan,
    fake_row,
    fast_settings,
    make_subjects,
    real_scores_of,
    real_settings,
)

from faceswap_kohya import events as ev
from faceswap_kohya.config import presets
from faceswap_kohya.errors import UserError
from faceswap_kohya.scoring.summary import summarize_scores
from faceswap_kohya.sweeps import leaderboard
from faceswap_kohya.sweeps.grid import combinations, parse_args, read_variants, split_values
from faceswap_kohya.sweeps.plan import plan_batch, plan_sweep, read_plan
from faceswap_kohya.sweeps.runner import Cluster, GiB, fit, trial_resources
from faceswap_kohya.sweeps.trials import score_summary

# ---------------------------------------------------------------- grid


def test_values_split_on_top_level_commas_only():
    assert split_values("16,32") == ["16", "32"]
    assert split_values("[1e-5,2e-5],0") == ["[1e-5,2e-5]", "0"]
    assert split_values('"a, b",c') == ['"a, b"', "c"]
    assert split_values("{trigger} {class}") == ["{trigger} {class}"]


def test_one_value_is_fixed_several_make_an_axis():
    fixed, grid = parse_args(["network.dim=16,32", "training.max_steps=3", "optimizer.text_encoder_lr=[1e-5,2e-5],0"])
    assert fixed == {"training.max_steps": 3}
    assert grid == {"network.dim": [16, 32], "optimizer.text_encoder_lr": [["1e-5", "2e-5"], 0]}
    for bad, message in [(["network.dim"], "expected key=value"), (["network.dim=1,1"], "listed twice"),
                         (["network.dim=1,2", "network.dim=3"], "given twice"), (["net work=1,2"], "not a preset key")]:
        with pytest.raises(UserError, match=message):
            parse_args(bad)


def test_variants_file_times_the_grid(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("- {network.dim: 8}\n- network: {dim: 16, alpha: 4}\n")
    variants = read_variants(path)
    assert variants == [{"network.dim": 8}, {"network.dim": 16, "network.alpha": 4}]
    combos = combinations({"optimizer.unet_lr": [1e-4, 2e-4]}, variants)
    assert len(combos) == 4 and combos[0] == {"network.dim": 8, "optimizer.unet_lr": 1e-4}
    with pytest.raises(UserError, match="network.dim: set both"):
        combinations({"network.dim": [1, 2]}, variants)
    for text, message in [("network.dim: 4\n", "expected a list"), ("- 4\n", "variant 1 is a int"), ("- [\n", "invalid YAML")]:
        path.write_text(text)
        with pytest.raises(UserError, match=message):
            read_variants(path)


def test_every_variant_is_validated_before_anything_starts(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError) as caught:
        plan_sweep("cpu-check", ["network.dim=4,0", "optimizer.unet_lr=1e-4,2e-4", f"output.dir={out}"])
    message = str(caught.value)
    assert message.startswith("2 of 4 trials would have an invalid preset (nothing was started)")
    assert "network.dim: Input should be greater than or equal to 1 (got 0)" in message
    assert message.count("\n") == 1, "one problem, one line"
    with pytest.raises(UserError, match=r"network.dimm: unknown key"):
        plan_sweep("cpu-check", ["network.dimm=2,4", f"output.dir={out}"])
    with pytest.raises(UserError, match=r"training.epochs: .*\(got 'x'\)  \[every trial\]"):
        plan_sweep("cpu-check", ["network.dim=2,4", "training.epochs=x", f"output.dir={out}"])
    for args, message in [(["evaluate.seeds=[1],[2]"], "can't differ between trials"),
                          (["output.dir=a,b"], "can't differ"), (["network.dim=4"], "at least two trials")]:
        with pytest.raises(UserError, match=message):
            plan_sweep("cpu-check", args)
    assert not out.exists(), "nothing may be written for a sweep that does not start"


def test_trial_ids_are_stable_and_follow_the_settings(tmp_path):
    a = plan_sweep("cpu-check", ["network.dim=2,4", f"output.dir={tmp_path}"])
    b = plan_sweep("cpu-check", [f"output.dir={tmp_path}", "network.dim=4,2"])
    assert {t.label: t.id for t in a.trials} == {t.label: t.id for t in b.trials}
    assert len({t.id for t in a.trials}) == 2
    c = plan_sweep("cpu-check", ["network.dim=2,4", "training.max_steps=3", f"output.dir={tmp_path}"])
    assert not {t.id for t in a.trials} & {t.id for t in c.trials}, "other fixed settings make other trials"
    assert a.folder == tmp_path / "sweeps" / "cpu-check"
    data = a.trial_preset(a.trials[0])
    assert data["output"]["dir"] == str(a.folder / a.trials[0].id) and data["evaluate"]["enabled"] is True
    presets.validate(data, "trial")  # the worker validates it again


def test_relative_paths_become_absolute(tmp_path, photos, monkeypatch):
    monkeypatch.chdir(photos.parent)
    plan = plan_sweep("cpu-check", ["network.dim=2,4", f"dataset.images={photos.name}", "output.dir=out"])
    assert plan.trial_preset(plan.trials[0])["dataset"]["images"] == str(photos.resolve())
    assert plan.folder == (photos.parent / "out" / "sweeps" / "cpu-check")


def test_batch_has_one_trial_per_subject_folder(tmp_path, photos):
    subjects = make_subjects(tmp_path / "people", photos, bob="trigger: ohwx\nclass_word: man\n")
    plan = plan_batch("cpu-check", subjects, [f"output.dir={tmp_path / 'out'}"])
    assert [t.label for t in plan.trials] == ["alice", "bob"], "a folder without photos is no subject"
    alice, bob = (plan.trial_preset(t) for t in plan.trials)
    assert bob["subject"] == {"trigger": "ohwx", "class_word": "man"}
    assert alice["subject"] == {"trigger": "myface", "class_word": "woman"}, "no subject.yaml: the preset's"
    assert alice["dataset"]["images"] == str(subjects / "alice") and alice["output"]["name"] == "alice"
    assert plan.trials[0].id.startswith("alice-") and plan.folder == tmp_path / "out" / "batches" / "people"
    (subjects / "bob" / "subject.yaml").write_text("trigger: ohwx\nclass: man\n")
    with pytest.raises(UserError, match=r"subject.yaml: unknown key 'class'"):
        plan_batch("cpu-check", subjects)
    (subjects / "bob" / "subject.yaml").write_text("trigger: two words\n")
    with pytest.raises(UserError, match=r"subject.trigger: must be one word"):
        plan_batch("cpu-check", subjects)
    with pytest.raises(UserError, match="no subfolder with photos"):
        plan_batch("cpu-check", subjects / "empty")


# ---------------------------------------------------------------- resources


def test_resources_come_from_the_preset():
    cpu = Cluster(True, "local", [{"CPU": 2, "memory": 23 * GiB}])
    gpu = Cluster(False, "head:6379", [{"CPU": 16, "GPU": 2, "memory": 120 * GiB}])
    preset, _ = presets.load("cpu-check")
    data = preset.model_dump(mode="json")
    assert trial_resources(data, cpu) == {"num_cpus": 2.0, "num_gpus": 0.0, "memory": 20 * GiB}
    assert trial_resources(data, gpu) == {"num_cpus": 2.0, "num_gpus": 1.0, "memory": 22 * GiB}  # measured: 21.1 GiB
    flux, _ = presets.load("flux-24gb")
    assert trial_resources(flux.model_dump(mode="json"), gpu)["memory"] == 36 * GiB  # measured: 34.3 GiB
    from faceswap_kohya.service.submit import ray_ask

    assert trial_resources(ray_ask(flux.model_dump(mode="json")), gpu) == trial_resources(flux.model_dump(mode="json"), gpu)
    data["resources"] = {"gpus": 2, "cpus": 8, "memory_gb": 40}
    assert trial_resources(data, gpu) == {"num_cpus": 8.0, "num_gpus": 2.0, "memory": 40 * GiB}
    assert fit(trial_resources(data, gpu), gpu) == (trial_resources(data, gpu), None)
    data["resources"]["memory_gb"] = 200
    with pytest.raises(UserError, match="no node of the Ray cluster has that much.*resources.memory_gb"):
        fit(trial_resources(data, gpu), gpu)
    cut, warning = fit(trial_resources(data, cpu), cpu)
    assert cut == {"num_cpus": 2, "num_gpus": 0, "memory": 23 * GiB} and "one at a time" in warning


# ---------------------------------------------------------------- leaderboard


def test_old_and_new_scores_give_the_same_fields():
    old = score_summary({"embedder": "dlib", "base": {"mean": 0.3}, "best": {"label": "a", "file": "f", "mean": 0.5,
                                                                            "above_base": 0.2},
                         "checkpoints": [{"label": "a", "file": "f", "summary": {"faces": 3, "images": 4}}]})
    assert old["identity"] == 0.5 and old["held_out"] is None and old["basis"] == "identity" and old["faces"] == "3/4"
    scores = real_scores_of("good")
    new = score_summary(scores)
    best = scores["best"]
    assert (new["held_out"], new["identity"], new["basis"]) == (best["held_out_mean"], best["mean"], "held_out")
    assert new["base_identity"] == scores["base"]["held_out_mean"] and new["faces"] == "2/2"
    assert new["verdict"] == summarize_scores(scores).verdict and new["verdict"].startswith("use final: held-out identity")
    none = score_summary(real_scores_of("faceless"))
    assert none["identity"] is None and none["faces"] == "0/2" and "no checkpoint produced a face" in none["why"]


def test_ranking_by_identity_failed_and_faceless_rows_last(tmp_path):
    plan = fake_plan(tmp_path, 5)
    summaries = {"t0": fake_row("t0", kind="weaker", held_out=False), "t1": fake_row("t1", kind="good", held_out=False),
                 "t2": fake_row("t2", state="failed"), "t3": fake_row("t3", kind="faceless", held_out=False),
                 "t4": fake_row("t4", kind="good", held_out=False)}
    summaries["t2"]["error"] = "base_model.path: /nonexistent.safetensors does not exist"
    assert summaries["t1"]["identity"] > summaries["t0"]["identity"]  # another person's face pulls "weaker" down
    doc = leaderboard.build(plan, summaries)
    assert [r["id"] for r in doc["rows"]] == ["t1", "t4", "t0", "t2", "t3"], "a tie goes to the earlier trial"
    assert [r["rank"] for r in doc["rows"]] == [1, 2, 3, None, None]
    assert doc["basis"] == "identity" and doc["winner"]["id"] == "t1"
    assert doc["winner"]["score"] == real_scores_of("good", held_out=False)["best"]["mean"]
    assert doc["winner"]["lora"] == "/runs/x/model/myface-final.safetensors"
    assert doc["counts"] == {"finished": 4, "failed": 1}


def test_held_out_identity_ranks_when_every_trial_has_it_and_overtrained_goes_last(tmp_path):
    plan = fake_plan(tmp_path, 3)
    summaries = {"t0": fake_row("t0", kind="weaker"), "t1": fake_row("t1", kind="good"), "t2": fake_row("t2", kind="overtrained")}
    assert summaries["t2"]["overtrained"] and summaries["t2"]["held_out"] > summaries["t0"]["held_out"]
    doc = leaderboard.build(plan, summaries)
    assert doc["basis"] == "held_out" and [r["id"] for r in doc["rows"]] == ["t1", "t0", "t2"]
    assert doc["winner"]["score"] == real_scores_of("good")["best"]["held_out_mean"]
    summaries["t1"] = fake_row("t1", kind="good", held_out=False)  # no held-out photos in one trial: rank all by identity
    assert leaderboard.build(plan, summaries)["basis"] == "identity"


def test_leaderboard_files_and_a_batch_is_not_ranked(tmp_path):
    plan = fake_plan(tmp_path, 3)
    doc = leaderboard.write(plan, {"t0": fake_row("t0", kind="good"), "t1": fake_row("t1", state="failed")})
    for name in (leaderboard.JSON, leaderboard.HTML, leaderboard.CHART):
        assert (plan.folder / name).stat().st_size > 200
    assert leaderboard.read(plan.folder) == json.loads(json.dumps(doc))
    page = (plan.folder / leaderboard.HTML).read_text()
    assert "Winner: network.dim=1" in page and "data:image/png;base64," in page and page.count("<tr") == 4
    assert f"held-out identity {doc['winner']['score']:.3f}" in page
    assert [r["state"] for r in doc["rows"]] == ["finished", "failed", "waiting"]
    batch = leaderboard.build(fake_plan(tmp_path, 2, "batch"), {"t0": fake_row("t0", kind="good"),
                                                                "t1": fake_row("t1", kind="weaker")})
    assert batch["winner"] is None and [r["id"] for r in batch["rows"]] == ["t0", "t1"]
    assert all(r["rank"] is None for r in batch["rows"])


def test_trial_board_prints_a_line_when_a_trial_changes_state():
    import io

    from faceswap_kohya.cli.sweep import TrialBoard

    out = io.StringIO()
    board = TrialBoard(out)
    for e in [ev.TrialProgress("t0", "network.dim=2", "waiting"), ev.TrialProgress("t0", "network.dim=2", "training", 1, 4),
              ev.TrialProgress("t0", "network.dim=2", "training", 2, 4), ev.Message("note"),
              ev.TrialProgress("t0", "network.dim=2", "finished", detail="identity 0.512")]:
        board(e)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[1].split()[:3] == ["t0", "network.dim=2", "training"] and "identity 0.512" in lines[3]


# ---------------------------------------------------------------- Ray, with a stand-in trainer



def test_sweep_on_local_ray_failed_trial_reported_rerun_skips(fake_kohya, photos, tmp_path):  # noqa: F811
    from faceswap_kohya.jobs.sweep import sweep

    variants = tmp_path / "variants.yaml"
    variants.write_text(VARIANTS)
    settings = fast_settings(fake_kohya, photos, tmp_path / "out", "training.max_steps=8")
    seen = []
    result = sweep("cpu-check", settings, variants, on_event=seen.append)
    assert not result.interrupted
    rows = {r["label"]: r for r in result.rows}
    assert len(rows) == 3
    failed = rows["network.dim=4 base_model.path=/nonexistent.safetensors"]
    assert failed["state"] == "failed" and "base_model.path: /nonexistent.safetensors does not exist" in failed["error"]
    for label in ("network.dim=2", "network.dim=4"):
        row = rows[label]
        assert row["state"] == "finished", row
        assert Path(row["lora"]).is_file() and Path(row["scores"]).is_file() and row["faces"] == "0/1"
        assert row["train_seconds"] > 2 and row["seconds"] >= row["train_seconds"]
        live = [e.state for e in seen if isinstance(e, ev.TrialProgress) and e.trial == row["id"]]
        assert "training" in live and live[-1] == "finished", live
        assert Path(row["run"]).parent.parent == result.folder / row["id"]
    assert any(isinstance(e, ev.Warning) and "failed: base_model.path" in e.text for e in seen)
    assert [r["state"] for r in leaderboard.read(result.folder)["rows"]].count("finished") == 2
    assert {t["id"] for t in read_plan(result.folder)["trials"]} == {r["id"] for r in result.rows}

    seen.clear()
    start = time.monotonic()
    again = sweep("cpu-check", settings, variants, on_event=seen.append)
    skipped = {e.trial for e in seen if isinstance(e, ev.TrialProgress) and e.state == "skipped"}
    assert skipped == {rows["network.dim=2"]["id"], rows["network.dim=4"]["id"]}
    assert {r["id"]: r["run"] for r in again.rows if r.get("skipped")} == \
        {r["id"]: r["run"] for r in result.rows if r["state"] == "finished"}, "no new run for a finished trial"
    assert [r["state"] for r in again.rows].count("failed") == 1, "the failed trial is tried again, and fails again"
    print(f"rerun: {time.monotonic() - start:.1f} s")

    # a finished trial whose evaluation is gone is evaluated again, not trained again
    import shutil

    dim4 = rows["network.dim=4"]
    shutil.rmtree(Path(dim4["scores"]).parent.parent)
    third = {r["id"]: r for r in sweep("cpu-check", settings, variants).rows}[dim4["id"]]
    assert third["state"] == "finished" and not third.get("skipped") and third["run"] == dim4["run"]
    assert Path(third["scores"]).is_file()


def test_batch_trains_one_lora_per_subject(fake_kohya, photos, tmp_path):  # noqa: F811
    from faceswap_kohya.jobs.batch import batch

    subjects = make_subjects(tmp_path / "people", photos, bob="trigger: ohwx\nclass_word: man\n")
    result = batch("cpu-check", subjects, fast_settings(fake_kohya, photos, tmp_path / "out"), evaluate=False)
    assert [r["state"] for r in result.rows] == ["finished", "finished"]
    loras = sorted(Path(r["lora"]).name for r in result.rows)
    assert loras == ["alice.safetensors", "bob.safetensors"]
    from safetensors import safe_open

    for row in result.rows:  # the stand-in trainer writes the subsets it was given into the LoRA, as sd-scripts does
        with safe_open(row["lora"], "pt") as f:
            dirs = json.loads(f.metadata()["ss_dataset_dirs"])
            downs = [f.get_slice(k).get_shape() for k in f.keys() if k.endswith("lora_down.weight")]
            assert all(k.startswith("lora_unet_") for k in f.keys())  # cpu-check trains the UNet only
        assert downs and {shape[0] for shape in downs} == {4}  # cpu-check's network.dim
        assert list(dirs) == [{"alice": "1_myface woman", "bob": "1_ohwx man"}[row["label"]]], (row["label"], dirs)
        assert (Path(row["run"]) / "img" / next(iter(dirs))).is_dir()


def test_ctrl_c_stops_every_trial_and_leaves_no_trainer(fake_kohya, photos, tmp_path):  # noqa: F811
    """SIGINT to the command's process group (a terminal's Ctrl-C) while two trials train."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "faceswap_kohya", "sweep", "cpu-check", "network.dim=2,4",
           *fast_settings(fake_kohya, photos, out, "training.max_steps=2000")]
    env = dict(os.environ, FACESWAP_KOHYA_PRESETS=str(presets.PRESETS_DIR))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            start_new_session=True)
    folder = out / "sweeps" / "cpu-check"
    deadline, training = time.monotonic() + 240, []
    while time.monotonic() < deadline and len(training) < 2 and proc.poll() is None:
        training = [p for p in folder.glob("*/*/*/status.json") if json.loads(p.read_text()).get("state") == "training"]
        time.sleep(0.5)
    assert len(training) == 2, f"both trials should be training: {proc.communicate(timeout=60)[0] if proc.poll() is not None else ''}"
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, output
    assert "interrupted" in output
    assert alive_with(str(folder)) == "", "no trainer may be left running"
    rows = leaderboard.read(folder)["rows"]
    assert [r["state"] for r in rows] == ["interrupted", "interrupted"], rows
    for status in training:
        assert json.loads(status.read_text())["state"] == "interrupted"
        assert "model saved." not in (status.parent / "train.log").read_text()


# ---------------------------------------------------------------- Ray, with the real trainer (~22 GB a trial)
# One trial that trains and one that fails before training: ranking several finished trials is checked on real
# scores documents above, and on the stand-in trainer through Ray; a second real trial would train the same way.
REAL_VARIANTS = "- {network.dim: 2}\n- {network.dim: 4, base_model.path: /nonexistent.safetensors}\n"


@pytest.mark.trainer
@needs_kohya
def test_real_sweep_interrupted_then_finished_then_skipped(photos, tmp_path):
    pytest.importorskip("ray", reason="sweeps need Ray: pip install 'faceswap_kohya[sweep]'")
    from faceswap_kohya.jobs.sweep import sweep

    variants = tmp_path / "variants.yaml"
    variants.write_text(REAL_VARIANTS)
    out = tmp_path / "out"
    folder = out / "sweeps" / "cpu-check"
    settings = real_settings(photos, out)

    # Ctrl-C while the first trial's trainer loads the model: every trial stops, no trainer is left
    env = dict(os.environ, FACESWAP_KOHYA_PRESETS=str(presets.PRESETS_DIR))
    proc = subprocess.Popen([sys.executable, "-m", "faceswap_kohya", "sweep", "cpu-check", "--variants", str(variants),
                             *settings], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            start_new_session=True)
    deadline, log = time.monotonic() + 600, None
    while time.monotonic() < deadline and log is None and proc.poll() is None:
        log = next((p for p in folder.glob("*/*/*/train.log") if "loading model" in p.read_text(errors="replace")), None)
        time.sleep(1)
    assert log is not None, f"no trainer started: {proc.communicate(timeout=60)[0] if proc.poll() is not None else ''}"
    start = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    stop_s = time.monotonic() - start
    assert proc.returncode == 130, output
    assert "sdxl_train_network" not in alive_with(str(log.parent)), "the trainer must be stopped"
    assert alive_with(str(folder)) == ""
    assert json.loads((log.parent / "status.json").read_text())["state"] == "interrupted"
    assert {r["state"] for r in leaderboard.read(folder)["rows"]} == {"interrupted"}

    # the same sweep again, to the end: the failing trial is reported, the other trains and is evaluated
    start = time.monotonic()
    seen = []
    result = sweep("cpu-check", settings, variants, on_event=seen.append)
    full_s = time.monotonic() - start
    rows = {r["label"]: r for r in result.rows}
    failed = rows["network.dim=4 base_model.path=/nonexistent.safetensors"]
    assert failed["state"] == "failed" and "/nonexistent.safetensors does not exist" in failed["error"]
    for label in ("network.dim=2",):
        row = rows[label]
        assert row["state"] == "finished" and Path(row["lora"]).is_file(), row
        scores = json.loads(Path(row["scores"]).read_text())
        assert row["identity"] == (scores["best"] or {}).get("mean") and row["faces"].endswith("/1")
        assert row["embedder"] == scores["embedder"] and row["eval_seconds"] > 0
    interrupted_trial = log.parent.parent.parent
    assert len(list(interrupted_trial.glob("*/*/status.json"))) == 2, "the interrupted trial trained again, in a new run"
    board = leaderboard.read(folder)
    assert len(board["rows"]) == 2 and sum(r["state"] == "finished" for r in board["rows"]) == 1
    assert (folder / leaderboard.HTML).is_file() and (folder / leaderboard.CHART).is_file()

    # and again: nothing left to train
    start = time.monotonic()
    seen.clear()
    again = sweep("cpu-check", settings, variants, on_event=seen.append)
    rerun_s = time.monotonic() - start
    assert {e.trial for e in seen if isinstance(e, ev.TrialProgress) and e.state == "skipped"} == {rows["network.dim=2"]["id"]}
    assert [r["state"] for r in again.rows].count("finished") == 1
    assert rerun_s < full_s / 4
    print(f"stop after Ctrl-C {stop_s:.0f} s, full sweep {full_s:.0f} s, rerun {rerun_s:.0f} s")


@pytest.mark.trainer
@needs_kohya
def test_real_batch_writes_one_lora_per_subject(photos, tmp_path):
    pytest.importorskip("ray", reason="sweeps need Ray: pip install 'faceswap_kohya[sweep]'")
    import shutil

    from safetensors import safe_open

    from faceswap_kohya.jobs.batch import batch

    # one subject, with its own subject.yaml: the real trainer reads the folder named after it (two subjects, one
    # without a subject.yaml: test_batch_trains_one_lora_per_subject, with the stand-in trainer)
    subjects = make_subjects(tmp_path / "people", photos, bob="trigger: ohwx\nclass_word: man\n")
    shutil.rmtree(subjects / "alice")
    start = time.monotonic()
    result = batch("cpu-check", subjects, [f"output.dir={tmp_path / 'out'}", "sampling.prompts=[]",
                                           "sampling.every_n_epochs=null"], evaluate=False)
    assert [r["state"] for r in result.rows] == ["finished"], result.rows
    for row, folder in zip(result.rows, ("1_ohwx man",)):
        assert Path(row["lora"]).name == f"{row['label']}.safetensors" == "bob.safetensors"
        with safe_open(row["lora"], "pt") as f:
            assert folder in json.loads(f.metadata()["ss_dataset_dirs"])
    print(f"batch of one: {time.monotonic() - start:.0f} s")
