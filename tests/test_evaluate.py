"""`evaluate`: scoring and ranking on fixed embeddings (known answers), real faces through the same
scoring, and the whole loop on a tiny SDXL pipeline with Kohya LoRAs as a run's checkpoints."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageEnhance, ImageOps

from faceswap_kohya.errors import UserError
from faceswap_kohya.jobs.evaluate import evaluate_after_training, evaluate_run, plan_lora
from faceswap_kohya.runs.artifacts import checkpoints, find_checkpoints
from faceswap_kohya.scoring.evaluation import summary_lines
from faceswap_kohya.scoring.references import subject_from_lora
from faceswap_kohya.scoring.scores import (
    SAMPLER,
    References,
    identity_basis,
    load_references,
    mark_overtrained,
    pick_best,
    rank,
    score_embedding,
    score_faces,
    score_image,
    summarize,
    summarize_bleed,
)

DATA = Path(__file__).parent / "data"


# ---------------------------------------------------------------- known answers on fixed embeddings
def refs_of(vectors, metric="euclidean", files=None):
    vectors = [np.asarray(v, dtype=np.float64) for v in vectors]
    return References(Path("refs"), metric, files or [f"ref{i}.png" for i in range(len(vectors))], vectors)


def unit(i, n=128, length=1.0):
    v = np.zeros(n)
    v[i] = length
    return v


def test_score_nearest_mean_face_and_copy_gap():
    refs = refs_of([np.zeros(128), unit(0, length=0.4), unit(1, length=0.4)])
    # a copy of ref0: identical to it, 0.4/3·√2 ≈ 0.1886 from the mean face → gap +0.1886
    s = score_embedding(np.zeros(128), refs)
    assert s == {"score": 1.0, "nearest": "ref0.png", "centroid_score": round(1 - 0.4 * np.sqrt(2) / 3, 4),
                 "copy_gap": round(0.4 * np.sqrt(2) / 3, 4)}
    # a face at the mean: as close to the person as a whole as possible → a negative gap
    s = score_embedding(refs.centroid, refs)
    assert s["centroid_score"] == 1.0 and s["copy_gap"] < 0 and s["score"] == round(1 - 0.4 * np.sqrt(2) / 3, 4)
    # cosine embedders: the mean of unit vectors; score = cosine to the nearest
    crefs = refs_of([unit(0), unit(1)], "cosine")
    s = score_embedding(unit(1, length=5.0), crefs)
    assert s["score"] == 1.0 and s["nearest"] == "ref1.png" and s["centroid_score"] == round(1 / np.sqrt(2), 4)


def image(score, nearest="a.png", gap=0.0, p=1, seed=1):
    if score is None:
        return {"file": f"images/x-{p}-{seed}.png", "p": p, "prompt": f"prompt {p}", "seed": seed,
                "face_box": None, "error": "no face"}
    return {"file": f"images/x-{p}-{seed}-{score}.png", "p": p, "prompt": f"prompt {p}", "seed": seed,
            "face_box": [0, 0, 10, 10], "score": score, "nearest": nearest, "centroid_score": round(score - gap, 4),
            "copy_gap": gap}


def test_summary_counts_no_face_and_never_drops_it():
    s = summarize([image(0.5, "a.png", 0.1), image(None), image(0.7, "b.png", -0.1), image(0.6, "a.png"), image(None)])
    assert (s["images"], s["faces"], s["no_face"]) == (5, 3, 2)
    assert s["mean"] == 0.6 and s["std"] == round(np.std([0.5, 0.7, 0.6]), 4) == 0.0816
    assert (s["min"], s["max"]) == (0.5, 0.7)
    assert s["copy_gap_mean"] == 0.0 and s["centroid_mean"] == 0.6
    assert s["nearest_counts"] == {"a.png": 2, "b.png": 1}
    empty = summarize([image(None), image(None)])
    assert (empty["faces"], empty["no_face"], empty["mean"], empty["std"]) == (0, 2, None, None)


def checkpoint(label, scores, file=True):
    images = [image(s, p=1, seed=i) for i, s in enumerate(scores)]
    for im in images:
        im["file"] = f"images/{label}-{im['seed']}.png"
    return {"label": label, "file": f"model/{label}.safetensors" if file else None, "images": images,
            "summary": summarize(images)}


def test_ranking_ties_go_to_the_earlier_epoch_and_top3_is_ordered():
    entries = [checkpoint("base", [0.95, 0.1], file=False),  # the base model is the floor, never "best" or top
               checkpoint("epoch 1", [0.3, None]),
               checkpoint("epoch 2", [0.6, 0.4]),     # mean 0.5
               checkpoint("epoch 3", [0.5, 0.5]),     # mean 0.5: a tie → epoch 2 wins
               checkpoint("final", [0.45, 0.2])]
    best, top = rank(entries)
    assert best["label"] == "epoch 2"
    assert [(t["checkpoint"], t["score"]) for t in top] == [("epoch 2", 0.6), ("epoch 3", 0.5), ("epoch 3", 0.5)]
    assert top[1]["file"] == "images/epoch 3-0.png"  # equal scores keep generation order
    # equal scores across checkpoints: the earlier one first
    best, top = rank([checkpoint("epoch 1", [0.7]), checkpoint("epoch 2", [0.7]), checkpoint("final", [0.9, 0.7])])
    assert best["label"] == "final" and [t["checkpoint"] for t in top] == ["final", "epoch 1", "epoch 2"]


def test_no_face_anywhere_means_no_best_and_no_top():
    best, top = rank([checkpoint("base", [0.4], file=False), checkpoint("epoch 1", [None, None])])
    assert best is None and top == []


def test_checkpoints_are_found_in_training_order(tmp_path):
    for name in ["myface.safetensors", "myface-000010.safetensors", "myface-000002.safetensors",
                 "myface-000001.safetensors", "other-000001.safetensors", "myface-old.bin"]:
        (tmp_path / name).write_bytes(b"x")
    found = find_checkpoints(tmp_path, "myface")
    assert [c.label for c in found] == ["epoch 1", "epoch 2", "epoch 10", "final"]
    assert [c.slug for c in found] == ["e000001", "e000002", "e000010", "final"]
    assert find_checkpoints(tmp_path / "missing", "myface") == []


# ---------------------------------------------------------------- real faces through the same scoring
def grace_hopper():
    import matplotlib

    return Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("dlib", reason="dlib is not installed (pip install -e '.[faces]')")
    from faceswap_kohya.faces.identity import get_embedder

    return get_embedder("dlib")


def test_real_faces_score_as_the_same_person_and_no_face_is_counted(astronaut, embedder, tmp_path):  # noqa: F811
    refs_dir = tmp_path / "refs"
    refs_dir.mkdir()
    astronaut.crop((0, 0, 512, 512)).save(refs_dir / "a.jpg", quality=92)
    astronaut.crop((100, 0, 400, 300)).resize((450, 450)).save(refs_dir / "b.jpg", quality=92)
    Image.new("RGB", (200, 200), "gray").save(refs_dir / "blank.png")  # no face: listed, not used
    refs = load_references(refs_dir, embedder)
    assert refs.files == ["a.jpg", "b.jpg"]
    assert {"file": "blank.png", "error": "no face"} in refs.entries

    generated = [ImageOps.mirror(astronaut), ImageEnhance.Brightness(astronaut).enhance(1.4),
                 astronaut.resize((400, 400)), ImageEnhance.Color(astronaut).enhance(0.0),
                 Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))]
    scored = [score_image(im, refs, embedder) for im in generated]
    assert all(s["score"] > 0.6 and s["nearest"] in refs.files for s in scored[:4]), scored
    assert scored[4] == {"face_box": None, "error": "no face"}
    summary = summarize(scored)
    assert (summary["faces"], summary["no_face"]) == (4, 1) and summary["mean"] > 0.6
    # someone else scores clearly lower than every variant of the same person
    other = score_image(grace_hopper(), refs, embedder)
    assert other["score"] < min(s["score"] for s in scored[:4]) - 0.2
    # the stored embedding gives back the stored score
    again = score_embedding(np.asarray(scored[0]["embedding"]), refs)
    assert abs(again["score"] - scored[0]["score"]) < 1e-4


def test_a_copy_of_one_training_photo_shows_a_copy_gap(astronaut, embedder, tmp_path):  # noqa: F811
    """Two different people as references: a copy of one of them is near that photo but far from the
    mean face, which is what a LoRA that memorised one photo looks like."""
    refs_dir = tmp_path / "refs"
    refs_dir.mkdir()
    astronaut.save(refs_dir / "astronaut.png")
    grace_hopper().save(refs_dir / "hopper.png")
    refs = load_references(refs_dir, embedder)
    copy = score_image(astronaut, refs, embedder)
    assert copy["nearest"] == "astronaut.png" and copy["score"] > 0.95
    assert copy["copy_gap"] > 0.2 and copy["copy_gap"] == round(copy["score"] - copy["centroid_score"], 4)


def test_reference_photos_without_any_face_are_refused(embedder, tmp_path):
    (tmp_path / "refs").mkdir()
    Image.new("RGB", (200, 200), "gray").save(tmp_path / "refs" / "blank.png")
    with pytest.raises(UserError, match=r"no face found in any of its 1 photos \(blank.png \(no face\)\)"):
        load_references(tmp_path / "refs", embedder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no photos in this folder"):
        load_references(tmp_path / "empty", embedder)


# ---------------------------------------------------------------- the loop, on a tiny real pipeline


def make_run(root: Path, tiny: Path, pipe, checkpoints=("myface-000001", "myface-000002", "myface"), **evaluate):
    """A run folder as `train` leaves it: preset.yaml, the training photos in img/, a held-out one in val/,
    LoRAs in model/."""
    from skimage import data
    from tiny_sdxl import write_kohya_lora

    from faceswap_kohya.config import presets
    from faceswap_kohya.config.schema import Preset

    run = root / "myface" / "20260101-120000"
    preset = Preset.model_validate({
        "base_model": str(tiny), "subject": {"trigger": "myface", "class_word": "woman"},
        "dataset": {"resolution": 64, "repeats": 1}, "output": {"name": "myface", "dir": str(root)},
        "evaluate": {"prompts": ["{trigger} {class}, portrait", "{trigger} {class}, outdoors"], "seeds": [7],
                     "steps": 2, "cfg": 5.0, **evaluate}})
    photos = run / "img" / "1_myface woman"
    photos.mkdir(parents=True)
    (run / "model").mkdir()
    (run / "preset.yaml").write_text(presets.dump(preset))
    portrait = Image.fromarray(data.astronaut())
    portrait.crop((0, 0, 512, 512)).save(photos / "001.png")
    portrait.crop((64, 0, 448, 384)).save(photos / "002.png")
    (run / "val" / "1_myface woman").mkdir(parents=True)
    portrait.crop((100, 0, 400, 300)).save(run / "val" / "1_myface woman" / "003.png")
    for i, name in enumerate(checkpoints):
        write_kohya_lora(pipe, run / "model" / f"{name}.safetensors", seed=10 + i, scale=0.5)
    return run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, user_home):
    from tiny_sdxl import save_tiny_pipeline

    from faceswap_kohya.diffusion.pipeline import load_pipeline

    root = tmp_path_factory.mktemp("tiny")
    folder = save_tiny_pipeline(root / "tiny-sdxl")
    return folder, load_pipeline(str(folder), device="cpu")


@pytest.fixture(scope="module")
def evaluated(tiny, tmp_path_factory):
    pytest.importorskip("dlib", reason="dlib is not installed (pip install -e '.[faces]')")
    folder, pipe = tiny
    run = make_run(tmp_path_factory.mktemp("runs"), folder, pipe)
    lines = []
    result = evaluate_run(run, lambda e: lines.append(e.text) if hasattr(e, 'text') else None, device="cpu")
    return run, result, lines


def test_every_checkpoint_and_the_base_are_generated_and_scored(evaluated):
    run, result, lines = evaluated
    assert result.folder.parent == run / "eval" and re.fullmatch(r"\d{8}-\d{6}(-\d+)?", result.folder.name)
    s = json.loads(result.scores_json.read_text())
    assert [c["label"] for c in s["checkpoints"]] == ["base", "epoch 1", "epoch 2", "final"]
    assert [c["epoch"] for c in s["checkpoints"]] == [None, 1, 2, None]
    assert s["settings"]["prompts"] == ["myface woman, portrait", "myface woman, outdoors"]
    assert (s["settings"]["width"], s["settings"]["steps"], s["embedder"]) == (64, 2, "dlib-resnet-128")
    assert sorted(s["references"]["embeddings"]) == ["001.png", "002.png", "003.png"]  # training + held-out
    assert list(s["held_out"]["embeddings"]) == ["003.png"] and s["held_out"]["folder"].endswith("val/1_myface woman")
    assert s["settings"]["bleed_prompts"] == ["photo of a woman", "photo of a woman and a friend at a cafe"]
    # noise has no face: every image is there, reported as "no face", and nothing is ranked
    for c in s["checkpoints"]:
        assert len(c["images"]) == 2 and all(im["error"] == "no face" and im["face_box"] is None for im in c["images"])
        assert c["summary"] | {"nearest_counts": None} == {
            "images": 2, "faces": 0, "no_face": 2, "mean": None, "std": None, "min": None, "max": None,
            "centroid_mean": None, "copy_gap_mean": None, "nearest_counts": None, "held_out_mean": None,
            "held_out_std": None}
        assert c["bleed"]["summary"] == {"images": 2, "faces": 0, "mean": None, "max": None}
        assert all("myface" not in im["prompt"] for im in c["bleed"]["images"])  # never the trigger
        assert all((result.folder / im["file"]).is_file() for im in c["images"] + c["bleed"]["images"])
    assert [c.get("overtrained") for c in s["checkpoints"][1:]] == [False] * 3  # no face, nothing to judge
    assert s["best"] is None and s["top"] == [] and s["base"] == s["checkpoints"][0]["summary"]
    assert s["why_no_best"] == "no checkpoint produced a face to score"
    assert "epoch 1: no face found (2 images)" in lines
    assert "best checkpoint: none (no face was found in any LoRA image)" in summary_lines(result)


def test_images_carry_parameters_and_each_checkpoint_changes_them(evaluated):
    _, result, _ = evaluated
    images = {p.name: np.asarray(Image.open(p), dtype=np.int16) for p in sorted((result.folder / "images").glob("*.png"))}
    assert sorted(images) == sorted(f"{c}-{kind}{p}-s7.png" for c in ("base", "e000001", "e000002", "final")
                                    for kind in "pb" for p in (1, 2))  # identity and bleed prompts
    for a, b in [("base", "e000001"), ("e000001", "e000002"), ("e000002", "final")]:
        assert np.abs(images[f"{a}-p1-s7.png"] - images[f"{b}-p1-s7.png"]).mean() > 1
    params = Image.open(result.folder / "images" / "e000002-p1-s7.png").text["parameters"]
    assert params.startswith("myface woman, portrait <lora:myface-000002:1>") and "Seed: 7" in params and "Size: 64x64" in params
    assert "<lora:" not in Image.open(result.folder / "images" / "base-p1-s7.png").text["parameters"]


def test_switching_adapters_leaves_no_trace_of_the_previous_checkpoint(evaluated, tiny):
    """The final checkpoint's images, made after three other adapter switches, equal a fresh pipeline's."""
    from faceswap_kohya.diffusion.images import generate_images
    from faceswap_kohya.diffusion.lora import attach_lora
    from faceswap_kohya.diffusion.pipeline import load_pipeline
    from faceswap_kohya.diffusion.prompts import set_sampler

    run, result, _ = evaluated
    folder, _ = tiny
    fresh = load_pipeline(str(folder), device="cpu")
    set_sampler(fresh, SAMPLER)
    attach_lora(fresh, run / "model" / "myface.safetensors")
    (img,) = generate_images(fresh, ["myface woman, outdoors"], [7], 2, 5.0, 64, 64, "lowres, blurry, deformed")
    saved = np.asarray(Image.open(result.folder / "images" / "final-p2-s7.png"))
    assert np.array_equal(np.asarray(img), saved)


def test_report_and_chart_are_self_contained_and_agree_with_scores(evaluated):
    _, result, _ = evaluated
    s = json.loads(result.scores_json.read_text())
    html_text = result.report.read_text()
    assert result.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(result.chart).size[0] > 300
    chart_b64 = base64.b64encode(result.chart.read_bytes()).decode()
    assert chart_b64 in html_text  # the chart is inline
    assert html_text.count("data:image/jpeg;base64,") == 16  # every image inline, bleed images included
    assert html_text.count("no face</span>") == 16
    assert "No checkpoint produced a detectable face" in html_text and "dlib-resnet-128" in html_text
    assert "<img src='images/" not in html_text and "src=\"images/" not in html_text
    for c in s["checkpoints"]:
        assert f"<td>{c['summary']['faces']}/{c['summary']['images']}</td>" in html_text


def test_report_and_chart_with_a_best_checkpoint_and_top3_on_real_faces(embedder, tmp_path, face_recognition_photos):
    """A report as evaluate writes it (scores_document, write_chart, write_report), from real face photos standing
    in for generated images: the best checkpoint is marked in the verdict, the table and the chart, the top-3
    images are inline, and prompts with markup are shown as text, never run."""
    import shutil
    from types import SimpleNamespace

    from faceswap_kohya.scoring.document import scores_document
    from faceswap_kohya.scoring.report import write_chart, write_report

    refs_dir, held_dir = tmp_path / "refs", tmp_path / "held"
    for folder, names in ((refs_dir, ("obama.jpg", "obama3.jpg")), (held_dir, ("obama2.jpg",))):
        folder.mkdir()
        for name in names:
            shutil.copy(face_recognition_photos / name, folder / name)
    refs, held = load_references(refs_dir, embedder), load_references(held_dir, embedder)
    folder = tmp_path / "eval"
    (folder / "images").mkdir(parents=True)
    prompts = ["myface man, <script>alert('x')</script> portrait", "myface man & friends, outdoors"]
    faces = {"base": ["biden.jpg", None], "epoch 1": ["biden.jpg", "obama_partial_face.jpg"],
             "epoch 2": ["obama_partial_face2.jpg", "obama_partial_face.jpg"], "final": ["obama_partial_face2.jpg", None]}
    entries = []
    for label, photos in faces.items():
        scored = []
        for p, photo in enumerate(photos, 1):
            name = f"images/{label.replace(' ', '')}-p{p}-s7.png"
            image = Image.open(face_recognition_photos / photo).convert("RGB") if photo else Image.new("RGB", (96, 96), "gray")
            image.save(folder / name)
            scored.append({"file": name, "p": p, "prompt": prompts[p - 1], "seed": 7,
                           **score_image(image, refs, embedder, held)})
        entries.append({"label": label, "file": None if label == "base" else f"model/{label}.safetensors", "epoch": None,
                        "step": None, "images": scored, "summary": summarize(scored)})
    scoring = SimpleNamespace(refs=refs, held_out=held, embedder=embedder)
    scores = scores_document(None, [refs_dir], held_dir, scoring, entries, {
        "base_model": "base.safetensors", "prompts": prompts, "bleed_prompts": ["photo of a man <b>bold</b>"],
        "seeds": [7], "steps": 2, "cfg": 5.0, "width": 64, "height": 64, "sampler": SAMPLER, "negative_prompt": "",
        "lora_weight": 1.0, "bleed_margin": 0.1})
    best, top = scores["best"], scores["top"]
    held_means = {e["label"]: e["summary"]["held_out_mean"] for e in entries if e["file"]}
    assert best["label"] == max(held_means, key=held_means.get) and len(top) == 3
    assert held_means[best["label"]] > held_means["epoch 1"]  # biden's face pulls epoch 1 down
    write_chart(scores, folder / "identity.png")
    page = write_report(scores, folder).read_text(encoding="utf-8")

    assert "<script>" not in page and "alert('x')" not in page and "<b>bold</b>" not in page  # text, not markup
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page and "myface man &amp; friends" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert f"<b>Best checkpoint: {best['label']}</b> — held-out identity <b>{best['held_out_mean']:.3f}</b>" in page
    assert f"<tr class='best'><td>{best['label']}</td>" in page and page.count("class='best'") == 1
    top_html = page.split("<h2>Top 3 images</h2>")[1].split("<h2>")[0]
    assert top_html.count("<figure>") == 3 and top_html.count("data:image/jpeg;base64,") == 3
    for i, t in enumerate(top, 1):
        assert f"{i}. {t['score']:.3f} — {t['checkpoint']}, seed 7" in top_html
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    assert page.count("no face</span>") == 2  # the two gray squares: shown, not scored
    chart = np.asarray(Image.open(folder / "identity.png").convert("RGB"), dtype=int)
    orange = (np.abs(chart - [255, 127, 14]).sum(axis=2) < 40).sum()  # the star on the best checkpoint
    assert orange > 30


def test_scores_json_recomputes_every_number(tiny, tmp_path, astronaut, embedder):  # noqa: F811
    """With real faces standing in for generated ones: summaries, ranking and the report's numbers all
    come back from scores.json alone (per-image scores from the stored embeddings)."""
    refs_dir = tmp_path / "refs"
    refs_dir.mkdir()
    astronaut.save(refs_dir / "a.png")
    refs = load_references(refs_dir, embedder)
    variants = {"epoch 1": [astronaut.resize((400, 400)), Image.new("RGB", (64, 64), "gray")],
                "final": [ImageOps.mirror(astronaut), ImageEnhance.Brightness(astronaut).enhance(0.7)]}
    entries = [{"label": "base", "file": None, "images": [{"file": "x", "p": 1, "prompt": "p", "seed": 1,
                                                            **score_image(grace_hopper(), refs, embedder)}]}]
    for label, ims in variants.items():
        entries.append({"label": label, "file": f"{label}.safetensors",
                        "images": [{"file": f"{label}-{i}.png", "p": 1, "prompt": "p", "seed": i,
                                    **score_image(im, refs, embedder)} for i, im in enumerate(ims)]})
    for e in entries:
        e["summary"] = summarize(e["images"])
    stored = json.loads(json.dumps({"checkpoints": entries, "references": {
        "embeddings": {f: [round(float(x), 6) for x in v] for f, v in zip(refs.files, refs.vectors)}}}))
    for e in stored["checkpoints"]:
        assert summarize(e["images"]) == e["summary"]
        for im in e["images"]:
            if im.get("score") is None:
                continue
            again = score_embedding(np.asarray(im["embedding"]), refs_of(
                list(stored["references"]["embeddings"].values()), files=list(stored["references"]["embeddings"])))
            assert abs(again["score"] - im["score"]) < 2e-4 and again["nearest"] == im["nearest"]
    best, top = rank(stored["checkpoints"])
    assert entries[1]["summary"]["no_face"] == 1 and best["label"] in ("epoch 1", "final")
    assert best["summary"]["mean"] == max(entries[1]["summary"]["mean"], entries[2]["summary"]["mean"])
    assert len(top) == 3 and [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    assert entries[0]["summary"]["mean"] < best["summary"]["mean"] - 0.2  # someone else is the floor here


def test_cli_writes_a_new_folder_each_time_and_names_the_report(tiny, tmp_path):
    from faceswap_kohya.cli.main import cli

    folder, pipe = tiny
    run = make_run(tmp_path, folder, pipe, checkpoints=("myface",), prompts=["{trigger} {class}, portrait"])
    outputs = []
    for _ in range(2):
        res = CliRunner().invoke(cli, ["evaluate", str(run), "--device", "cpu"])
        assert res.exit_code == 0, res.output
        outputs.append(res.output)
    folders = sorted(p for p in (run / "eval").iterdir() if p.is_dir())
    assert len(folders) == 2 and all((f / "scores.json").is_file() and (f / "report.html").is_file() for f in folders)
    assert {f"report: {f / 'report.html'}" for f in folders} == {
        ln for out in outputs for ln in out.splitlines() if ln.startswith("report: ")}
    assert "best checkpoint: none" in outputs[0] and "final: no face found (1 image)" in outputs[0]


def test_a_truncated_or_foreign_checkpoint_is_named_and_skipped_and_the_others_are_scored(tiny, tmp_path):
    """A checkpoint cut in half (a full disk, a copy stopped midway) and a foreign .safetensors among a run's
    LoRAs: `evaluate` names both as skipped, scores the good one, and exits 0; when none can be read, one message."""
    from safetensors.numpy import save_file

    from faceswap_kohya.cli.main import cli

    folder, pipe = tiny
    run = make_run(tmp_path, folder, pipe, checkpoints=("myface-000001", "myface-000002", "myface"),
                   prompts=["{trigger} {class}, portrait"])
    good = (run / "model" / "myface-000002.safetensors").read_bytes()
    (run / "model" / "myface-000002.safetensors").write_bytes(good[: len(good) // 2])
    save_file({"foo.weight": np.zeros((2, 2), np.float32)}, str(run / "model" / "myface-000001.safetensors"))
    res = CliRunner().invoke(cli, ["evaluate", str(run), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "skipped epoch 2 (myface-000002.safetensors)" in res.output and "truncated or corrupt" in res.output
    assert "skipped epoch 1 (myface-000001.safetensors)" in res.output and "not a LoRA" in res.output
    scores = json.loads(next((run / "eval").glob("*/scores.json")).read_text())
    assert [c["label"] for c in scores["checkpoints"]] == ["base", "final"]
    assert [s["label"] for s in scores["skipped"]] == ["epoch 1", "epoch 2"]
    (run / "model" / "myface.safetensors").write_bytes(b"")
    res = CliRunner().invoke(cli, ["evaluate", str(run), "--device", "cpu"])
    assert res.exit_code == 2 and "no checkpoint of the run can be read" in res.output and "Traceback" not in res.output


def test_bad_input_is_one_clear_message(tiny, tmp_path):
    from faceswap_kohya.cli.main import cli

    folder, pipe = tiny
    run = make_run(tmp_path, folder, pipe, checkpoints=())
    res = CliRunner().invoke(cli, ["evaluate", str(run)])
    assert res.exit_code == 2 and "no LoRA checkpoints in" in res.output and "myface*.safetensors" in res.output
    res = CliRunner().invoke(cli, ["evaluate"])
    assert res.exit_code == 2 and "give a run folder" in res.output
    res = CliRunner().invoke(cli, ["evaluate", str(tmp_path)])
    assert res.exit_code == 2 and "not a run folder (no preset.yaml)" in res.output
    lora = tmp_path / "loose.safetensors"
    from tiny_sdxl import write_kohya_lora

    write_kohya_lora(pipe, lora)
    res = CliRunner().invoke(cli, ["evaluate", "--lora", str(lora), "--refs", str(tmp_path), "--base", str(folder)])
    assert res.exit_code == 2 and "give --trigger WORD --class WORD" in res.output


def test_embedder_unavailable_and_faceless_references_stop_before_loading(tiny, tmp_path):
    folder, pipe = tiny
    empty = tmp_path / "models"
    empty.mkdir()
    run = make_run(tmp_path / "a", folder, pipe, checkpoints=("myface",), embedder="arcface", arcface_models=str(empty))
    with pytest.raises(UserError, match="no face detector|needs onnxruntime"):  # a user's model folder without models
        evaluate_run(run)
    run = make_run(tmp_path / "b", folder, pipe, checkpoints=("myface",))
    faceless = tmp_path / "faceless"
    faceless.mkdir()
    Image.new("RGB", (120, 120), "gray").save(faceless / "x.png")
    with pytest.raises(UserError, match="no face found in any of its 1 photos"):
        evaluate_run(run, refs=faceless)
    assert not (run / "eval").exists()  # nothing was generated or written


def test_train_runs_it_only_when_enabled_and_a_failure_keeps_the_training(tiny, tmp_path):
    """Training hands over its preset, layout and checkpoints; a failure is an EvaluationFailed event that the
    run's recorder keeps in events.jsonl, and the trial summary reads it from there."""
    from faceswap_kohya.config.presets import read_run_preset
    from faceswap_kohya.events import EvaluationFailed, Message
    from faceswap_kohya.runs.layout import RunLayout
    from faceswap_kohya.runs.read import read_run
    from faceswap_kohya.runs.status import RunRecorder
    from faceswap_kohya.sweeps.trials import summarize_run

    folder, pipe = tiny
    off = make_run(tmp_path / "off", folder, pipe, checkpoints=("myface",))
    assert evaluate_after_training(read_run_preset(off), RunLayout(off), checkpoints(off)) is None
    assert not (off / "eval").exists()
    broken = make_run(tmp_path / "on", folder, pipe, checkpoints=(), enabled=True)
    recorder = RunRecorder(broken, "myface")
    seen = []
    on_event = recorder.wrap(seen.append)
    assert evaluate_after_training(read_run_preset(broken), RunLayout(broken), [], on_event) is None
    recorder.set(state="finished")
    recorder.close()
    failed = [e for e in seen if isinstance(e, EvaluationFailed)]
    assert len(failed) == 1 and "no LoRA checkpoints in" in failed[0].message and failed[0].run == str(broken)
    assert failed[0].text.startswith("evaluation failed:") and f"faceswap-kohya evaluate {broken}" in failed[0].text
    assert not any(isinstance(e, Message) and e.text.startswith("evaluation failed") for e in seen)  # typed, not text
    assert read_run(broken).evaluation_error == failed[0].message
    summary = summarize_run(broken)
    assert summary["state"] == "finished" and summary["error"].startswith("evaluation failed: ") and summary["scores"] is None


def test_a_lora_file_with_its_subject_in_the_metadata(tiny, tmp_path):
    """sd-scripts records the dataset folder (`10_myface woman`): trigger and class come from it."""
    from safetensors.torch import load_file, save_file

    folder, pipe = tiny
    from tiny_sdxl import write_kohya_lora

    path = tmp_path / "l.safetensors"
    write_kohya_lora(pipe, path)
    save_file(load_file(str(path)), str(path), metadata={"ss_dataset_dirs": json.dumps({"10_sks man": {"n_repeats": 10}})})
    assert subject_from_lora(path) == ("sks", "man")
    (tmp_path / "refs").mkdir()
    plan = plan_lora(path, tmp_path / "refs", str(folder), size=64)
    assert plan.prompts[0].startswith("sks man, ") and [c.path for c in plan.checkpoints] == [path]
    assert plan.out_parent == Path.cwd() / "eval" and plan.width == 64


# ---------------------------------------------------------------- held-out identity, bleed, the best and why
def with_bleed(entry, bleed_scores, held=None):
    """A checkpoint entry with bleed images (one face each, or none for None) and held-out scores."""
    images = [{"file": f"images/{entry['label']}-b{i}.png", "p": 1, "prompt": "photo of a woman", "seed": i,
               "faces": [] if s is None else [{"face_box": [0, 0, 9, 9], "score": s, "nearest": "a.png"}]}
              for i, s in enumerate(bleed_scores)]
    entry["bleed"] = {"images": images, "summary": summarize_bleed(images)}
    if held is not None:
        for im, h in zip(entry["images"], held):
            if im.get("score") is not None:
                im["held_out_score"] = h
        entry["summary"] = summarize(entry["images"])
    return entry


def test_an_overtrained_checkpoint_is_never_best_and_the_reason_says_so():
    entries = [with_bleed(checkpoint("base", [0.3, 0.3], file=False), [0.20, 0.24], held=[0.3, 0.3]),
               with_bleed(checkpoint("epoch 1", [0.5, 0.5]), [0.22, 0.26], held=[0.40, 0.44]),
               with_bleed(checkpoint("epoch 2", [0.6, 0.6]), [0.25, 0.29], held=[0.55, 0.53]),
               with_bleed(checkpoint("final", [0.7, 0.7]), [0.40, 0.44], held=[0.60, 0.62])]  # best likeness, but bleeds
    mark_overtrained(entries, 0.1)
    assert [c.get("overtrained") for c in entries[1:]] == [False, False, True]
    assert [c["bleed_rise"] for c in entries[1:]] == [0.02, 0.05, 0.2]
    best, why = pick_best(entries, 0.1)
    assert best["label"] == "epoch 2" and identity_basis(entries) == "held_out_mean"  # ranked by held-out identity
    assert why.startswith("highest held-out identity (0.540)") and "overtrained: final (+0.200)" in why
    assert rank(entries)[0]["label"] == "epoch 2"
    # without held-out photos the basis is identity vs all photos
    plain = [with_bleed(checkpoint("base", [0.3], file=False), [0.2]), with_bleed(checkpoint("epoch 1", [0.5]), [0.21]),
             with_bleed(checkpoint("final", [0.6]), [0.22])]
    mark_overtrained(plain, 0.1)
    best, why = pick_best(plain, 0.1)
    assert best["label"] == "final" and why.startswith("highest identity (0.600)") and "no checkpoint's bleed rose" in why


def test_when_every_checkpoint_bleeds_the_least_bleeding_is_chosen():
    entries = [with_bleed(checkpoint("base", [0.3], file=False), [0.2]), with_bleed(checkpoint("epoch 1", [0.5]), [0.45]),
               with_bleed(checkpoint("final", [0.7]), [0.6])]
    mark_overtrained(entries, 0.1)
    best, why = pick_best(entries, 0.1)
    assert best["label"] == "epoch 1" and why.startswith("every checkpoint is overtrained") and "(+0.250)" in why
    # a base model whose bleed images show no face: bleed is not judged, nothing is marked
    entries = [with_bleed(checkpoint("base", [0.3], file=False), [None]), with_bleed(checkpoint("final", [0.7]), [0.6])]
    mark_overtrained(entries, 0.1)
    assert entries[1]["overtrained"] is False and entries[1]["bleed_rise"] is None
    assert "bleed not judged" in pick_best(entries, 0.1)[1]


def test_bleed_scores_every_face_high_for_the_person_and_low_for_someone_else(astronaut, embedder, tmp_path):
    refs_dir = tmp_path / "refs"
    refs_dir.mkdir()
    astronaut.crop((0, 0, 512, 512)).save(refs_dir / "a.jpg", quality=92)
    astronaut.crop((100, 0, 400, 300)).resize((450, 450)).save(refs_dir / "b.jpg", quality=92)
    refs = load_references(refs_dir, embedder)
    hopper = grace_hopper().resize((400, 512))
    pair = Image.new("RGB", (912, 512), "white")  # two people side by side: both faces are scored
    pair.paste(ImageOps.mirror(astronaut), (0, 0))
    pair.paste(hopper, (512, 0))
    faces = score_faces(pair, refs, embedder)
    assert len(faces) == 2
    subject, other = sorted(faces, key=lambda f: f["face_box"][0])
    assert subject["score"] > 0.6 > 0.4 > other["score"]
    assert score_faces(Image.new("RGB", (128, 128), "gray"), refs, embedder) == []
    s = summarize_bleed([{"faces": faces}, {"faces": []}])
    assert (s["images"], s["faces"], s["max"]) == (2, 2, subject["score"])
    assert s["mean"] == round((subject["score"] + other["score"]) / 2, 4)


def test_report_leads_with_held_out_identity_bleed_and_the_reason(tmp_path):
    """scores.json → report.html: the held-out identity, the bleed column, the overtrained mark, the
    validation losses and the chosen checkpoint with why, every number named by its face model."""
    from types import SimpleNamespace

    from faceswap_kohya.runs.status import RunRecorder
    from faceswap_kohya.scoring.document import scores_document
    from faceswap_kohya.scoring.report import write_chart, write_report
    from faceswap_kohya.trainer.progress import log_events

    folder = tmp_path / "eval"
    (folder / "images").mkdir(parents=True)
    entries = [with_bleed(checkpoint("base", [0.3, 0.3], file=False), [0.20, 0.24], held=[0.3, 0.3]),
               with_bleed(checkpoint("epoch 1", [0.5, 0.5]), [0.22, 0.26], held=[0.40, 0.44]),
               with_bleed(checkpoint("final", [0.7, 0.7]), [0.40, 0.44], held=[0.60, 0.62])]
    for c in entries:
        for im in c["images"] + c["bleed"]["images"]:
            Image.new("RGB", (32, 32), "gray").save(folder / im["file"])
    run = tmp_path / "run"
    run.mkdir()
    recorder = RunRecorder(run, "myface")  # the run's events, as the launcher records a real trainer's output
    for event in log_events((DATA / "trainer_validation.log").read_text()):
        recorder.record(event)
    recorder.close()
    ref = References(Path("img"), "euclidean", ["a.png"], [np.zeros(128)], [{"file": "a.png", "face_box": [0, 0, 1, 1]}])
    held = References(Path("val"), "euclidean", ["h.png"], [np.zeros(128)], [{"file": "h.png", "face_box": [0, 0, 1, 1]}])
    scoring = SimpleNamespace(embedder=SimpleNamespace(name="dlib-resnet-128"), refs=ref, held_out=held)
    settings = {"base_model": "m", "prompts": ["myface woman"], "bleed_prompts": ["photo of a woman"], "seeds": [1, 2],
                "steps": 2, "cfg": 5.0, "width": 64, "height": 64, "sampler": "euler", "negative_prompt": "",
                "lora_weight": 1.0, "bleed_margin": 0.1}
    scores = scores_document(run, [Path("img"), Path("val")], Path("val"), scoring, entries, settings)
    assert scores["best"]["label"] == "epoch 1" and scores["best"]["held_out_mean"] == 0.42
    assert scores["identity_basis"] == "held_out_mean" and scores["best"]["above_base"] == 0.12
    assert scores["validation_loss"] and all(v["loss"] > 0 for v in scores["validation_loss"])
    assert json.loads(json.dumps(scores)) == scores
    write_chart(scores, folder / "identity.png")
    text = write_report(scores, folder).read_text()
    assert "Best checkpoint: epoch 1</b> — held-out identity <b>0.420</b> (photos the LoRA never saw)" in text
    assert "Why: highest held-out identity (0.420) among checkpoints whose bleed stays within 0.1" in text
    assert "overtrained: final (+0.200)" in text and "all scores by dlib-resnet-128" in text
    assert "<tr class='over'><td>final</td>" in text and "<td>0.420</td>" in text  # bleed of final: mean of 0.40, 0.44
    assert "Validation loss on the held-out photos" in text
    assert f"{scores['validation_loss'][-1]['loss']:.4f}" in text
    assert text.index("held-out identity") < text.index("identity (all photos)")  # held-out leads


def test_arcface_scores_name_their_model_and_metric(tiny, tmp_path):
    from faceswap_kohya.faces.arcface import arcface_available

    if not arcface_available():
        pytest.skip("ArcFace is not installed: pip install 'faceswap_kohya[arcface]'")
    folder, pipe = tiny
    run = make_run(tmp_path, folder, pipe, checkpoints=("myface",), embedder="arcface", bleed_prompts=[])
    s = evaluate_run(run, device="cpu").scores
    assert (s["embedder"], s["metric"]) == ("arcface-w600k-mbf", "cosine")
    assert all(len(v) == 512 for v in s["references"]["embeddings"].values())  # not dlib's 128-d vectors
    assert "bleed" not in s["checkpoints"][1] and s["base_bleed"] is None
