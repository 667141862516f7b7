"""The one evaluation summary (scoring/summary.py) from real scores documents (real face photos as the generated
images): its verdict, best checkpoint, columns and top-3 reason are what `evaluate` prints, what the Evaluate page
shows and what the sweep leaderboard ranks by."""

from __future__ import annotations

import json

from click.testing import CliRunner
from scores_data import CHECKPOINTS, REFS, real_scores, write_evaluation

from faceswap_kohya.cli.main import cli
from faceswap_kohya.scoring.summary import NO_FACE, TABLE_HEADERS, summarize_scores
from faceswap_kohya.scoring.thresholds import SAME_PERSON, same_person, same_person_text
from faceswap_kohya.sweeps.trials import score_summary


def test_summary_of_real_faces_names_the_best_and_its_numbers(tmp_path):
    scores = real_scores(tmp_path / "eval")
    s = summarize_scores(scores)
    assert s.basis == "held_out_mean" and s.basis_name == "held-out identity"
    assert [r.label for r in s.rows] == list(CHECKPOINTS) and s.base.file is None
    assert s.best.label == scores["best"]["label"] == "final"  # biden's face pulls epoch 1 down
    assert s.best.held_out == scores["best"]["held_out_mean"] and s.best.identity == scores["best"]["mean"]
    assert s.best.above_base == scores["best"]["above_base"] and s.base.faces == 1 and s.base.images == 2
    assert s.best.held_out > same_person("dlib-resnet-128")
    own = scores["baseline"]
    assert own["embedder"] == "dlib-resnet-128" and own["photos"] == len(REFS) and own["method"] == "leave-one-out centroid"
    centroid = next(c for c in scores["checkpoints"] if c["label"] == "final")["summary"]["centroid_mean"]
    assert s.best.centroid == centroid == scores["best"]["centroid_mean"]
    share = centroid / own["mean"]  # the faces against the photos' centroid over each photo against the others'
    assert s.verdict == (f"use final: held-out identity {s.best.held_out:.3f}, likeness {centroid:.3f} to your photos' "
                         f"centroid, {share * 100:.0f} % of their own {own['mean']:.3f}, {s.best.held_out - s.base.held_out:+.3f} vs "
                         "the base model, looks like the person (above 0.4) (dlib-resnet-128)")
    assert s.numbers()["baseline"] == own["mean"] and s.numbers()["baseline_share"] == round(share, 4)
    lines = s.lines()
    assert lines[0] == f"verdict: {s.verdict}" and lines[2] == f"  why: {scores['best']['reason']}"
    assert lines[3].startswith("your photos' own likeness: ") and "dlib-resnet-128" in lines[3]
    assert lines[4].split() == [w for h in TABLE_HEADERS for w in h.split()]
    final = next(line for line in lines if line.startswith("final (best)"))
    assert f"{s.best.held_out:.3f}" in final and "2/2" in final
    assert sum(line.startswith("top ") for line in lines) == 3 and s.why_no_top == ""


def test_bleed_marks_the_overtrained_checkpoint_and_the_table_says_so(tmp_path):
    # base and epoch 1: a stranger's face without the trigger; final: the person's own face (bleed)
    scores = real_scores(tmp_path / "eval", bleed={"base": ["biden.jpg"], "epoch 1": ["biden.jpg"], "final": ["obama.jpg"]})
    s = summarize_scores(scores)
    final = next(r for r in s.rows if r.label == "final")
    assert final.overtrained is True and final.bleed_rise > 0.1 and final.cells()[TABLE_HEADERS.index("overtrained")] == "yes"
    assert s.best.label == "epoch 1" and "overtrained: final" in s.reason
    assert next(r for r in s.rows if r.label == "epoch 1").cells()[TABLE_HEADERS.index("overtrained")] == "no" and s.base.cells()[TABLE_HEADERS.index("overtrained")] == ""
    numbers = score_summary(scores)
    assert numbers["best_checkpoint"] == "epoch 1" and numbers["overtrained"] is False
    assert numbers["bleed"] == scores["best"]["bleed"] and numbers["verdict"] == s.verdict


def test_no_face_anywhere_says_why_the_top_three_is_empty(tmp_path):
    scores = real_scores(tmp_path / "eval", {"base": [None], "final": [None, None]})
    s = summarize_scores(scores)
    assert s.best is None and s.top == [] and s.why_no_top == NO_FACE
    assert s.verdict == "no checkpoint to use: no checkpoint produced a face to score (dlib-resnet-128)"
    assert "best checkpoint: none (no face was found in any LoRA image)" in s.lines()
    assert f"top 3: none ({NO_FACE})" in s.lines()
    assert score_summary(scores)["faces"] == "0/2" and score_summary(scores)["identity"] is None


def test_thresholds_are_one_set():
    assert same_person("dlib-resnet-128") == SAME_PERSON["dlib"] == 0.4
    assert same_person("arcface-w600k-mbf") == SAME_PERSON["arcface"] == 0.5
    assert same_person_text("arcface-buffalo-l") == "0.5 (cosine)" and same_person_text("dlib-resnet-128") == "0.4"


def test_the_evaluate_page_shows_the_cli_verdict_and_columns(tmp_path):
    from faceswap_kohya.web import evaluate as page

    run = tmp_path / "run"
    path = write_evaluation(run, bleed={"base": ["biden.jpg"], "epoch 1": ["biden.jpg"], "final": ["obama.jpg"]})
    r = CliRunner().invoke(cli, ["evaluate", str(run), "--last"])
    assert r.exit_code == 0, r.output
    cli_verdict = next(line for line in r.output.splitlines() if line.startswith("verdict: ")).removeprefix("verdict: ")
    text, _, rows, top, note, files = page.evaluation_view(page.latest_evaluation(run))
    assert f"**Verdict:** {cli_verdict}\n" in text and "**Best checkpoint: epoch 1**" in text
    assert page.TABLE_HEADERS == TABLE_HEADERS
    summary = summarize_scores(json.loads(path.read_text()))
    assert rows == summary.table() and [row[0] for row in rows] == ["base", "epoch 1 (best)", "final"]
    for row in rows:  # the CLI's table holds the same cells
        assert any(line.split()[:1] == row[0].split()[:1] and all(c in line for c in row[1:] if c) for line in r.output.splitlines())
    assert len(top) == 3 and note == "" and str(path) in files


def test_an_empty_top_three_on_the_page_says_why(tmp_path):
    from faceswap_kohya.web import evaluate as page

    run = tmp_path / "run"
    write_evaluation(run, checkpoints={"base": [None], "final": [None]})
    _, _, _, top, note, _ = page.evaluation_view(page.latest_evaluation(run))
    assert top == [] and note == f"**No top-3 images:** {NO_FACE}."
    r = CliRunner().invoke(cli, ["evaluate", str(tmp_path), "--last"])
    assert r.exit_code == 2 and "no evaluation yet" in r.output


def test_the_persons_own_photos_read_near_their_baseline_and_others_far_below(tmp_path):
    # "generated" images that are the person's own photos the references do not hold, against others' faces:
    # both sides are one statistic (a face against the centroid of the reference photos), so they read near 100 %
    own = real_scores(tmp_path / "own", {"base": ["biden.jpg"], "final": ["obama2.jpg", "obama_partial_face.jpg"]},
                      held_out=False)
    s = summarize_scores(own)
    assert s.basis == "mean" and s.baseline_mean == own["baseline"]["mean"]
    assert 0.85 <= s.best.own_share <= 1.15, s.best.own_share
    assert s.best.own_share == round(s.best.centroid / s.baseline_mean, 4)
    assert s.base.own_share < 0.4
    assert f"{s.best.own_share * 100:.0f} % of their own {s.baseline_mean:.3f}" in s.verdict
    # the one held-out photo on its own (obama_partial_face is a crop of a reference photo)
    held = summarize_scores(real_scores(tmp_path / "held", {"base": ["biden.jpg"], "final": ["obama2.jpg"]}, held_out=False))
    assert 0.85 <= held.best.own_share <= 1.15, held.best.own_share
    other = summarize_scores(real_scores(tmp_path / "other", {"base": ["biden.jpg"], "final": ["biden.jpg"]}, held_out=False))
    assert other.best.own_share < 0.4


def test_scores_from_another_face_model_are_never_given_as_a_share(tmp_path):
    scores = real_scores(tmp_path / "eval")
    scores["baseline"] = dict(scores["baseline"], embedder="arcface-w600k-mbf")
    s = summarize_scores(scores)
    assert s.baseline_mean is None and s.best.own_share is None and "% of their own" not in s.verdict
    assert "not comparable" in s.baseline_line() and s.numbers()["baseline_share"] is None


def test_the_service_and_the_leaderboard_give_the_baseline_and_the_share(tmp_path):
    from faceswap_kohya.service.views import evaluation_summary
    from faceswap_kohya.sweeps.leaderboard import own_share

    path = write_evaluation(tmp_path / "run")
    scores = json.loads(path.read_text(encoding="utf-8"))
    api = evaluation_summary(tmp_path / "run")
    own = scores["baseline"]["mean"]
    best = scores["best"]["centroid_mean"]  # the best's faces against the photos' centroid: the baseline's statistic
    assert api["baseline_likeness"] == own and api["baseline_share"] == round(best / own, 4)
    row = score_summary(scores)
    assert row["baseline"] == own and row["baseline_embedder"] == scores["embedder"]
    assert own_share(row) == f"{row['baseline_share'] * 100:.0f} % of {own:.3f}" and own_share({}) == "–"
