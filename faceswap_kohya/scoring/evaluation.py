"""An evaluation folder (`<run>/eval/<timestamp>/`) read back: `Result` (its scores, report, chart), the run's
latest one (`latest_result`, for `evaluate RUN --last`) and the lines every command prints for it
(`summary_lines`: the one summary of `scoring.summary`, then where the report is)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from faceswap_kohya.errors import UserError
from faceswap_kohya.runs.artifacts import CHART, REPORT, SCORES, latest_scores, read_scores
from faceswap_kohya.scoring.summary import summarize_scores


@dataclass
class Result:
    """One evaluation: its folder and its scores document (scores.json)."""

    folder: Path
    scores: dict

    @property
    def report(self) -> Path:
        return self.folder / REPORT

    @property
    def chart(self) -> Path:
        return self.folder / CHART

    @property
    def scores_json(self) -> Path:
        return self.folder / SCORES

    @property
    def best(self) -> Optional[dict]:
        return self.scores["best"]


def summary_lines(result: Result) -> list[str]:
    """What `evaluate` prints (and `train` after its evaluation): the one summary of the scores, then the report."""
    return summarize_scores(result.scores).lines(result.folder) + [f"report: {result.report}"]


def latest_result(run_dir: Path) -> Result:
    """The run's latest evaluation, read back (`evaluate RUN --last`); UserError when it was never evaluated."""
    path = latest_scores(Path(run_dir))
    scores = read_scores(path)
    if scores is None:
        raise UserError(f"{run_dir}: no evaluation yet (run: faceswap-kohya evaluate {run_dir})")
    return Result(path.parent, scores)
