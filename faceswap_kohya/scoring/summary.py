"""The one summary of an evaluation that every front end shows: from a scores document (scores.json as
`scoring.document.scores_document` writes it), the best checkpoint and why, its held-out likeness, its
likeness to all photos, its bleed and overtrained mark, one row per checkpoint, the base model's numbers,
the top images (or why there are none) and a one-line verdict. Each checkpoint's likeness is also read as a share
of the person's own baseline (scores.json's `baseline`, `faces.likeness`), when the same face model measured both,
and always as one statistic on both sides: the generated faces against the centroid of the reference photos
(`centroid_mean`) over each reference photo against the centroid of the others ("likeness 0.640 to your photos'
centroid, 90 % of their own 0.710"); the nearest-photo scores (identity, held-out identity) are not divided by it.
The best-checkpoint rule is unchanged.

`evaluate` prints it, the web app's Evaluate page shows it, the sweep leaderboard takes its numbers from
it: they cannot disagree. Older scores.json files (no held-out photos, no bleed) read too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from faceswap_kohya.faces.likeness import METHOD, share_of
from faceswap_kohya.scoring.thresholds import same_person, same_person_text

BASIS_NAMES = {"held_out_mean": "held-out identity", "mean": "identity"}
# The per-checkpoint columns, in the CLI's table and the Evaluate page's table alike.
TABLE_HEADERS = ["checkpoint", "held-out", "all photos", "of own", "spread", "faces", "vs base", "bleed", "bleed rise",
                 "overtrained", "copy gap"]
NO_FACE = "no face was found in any LoRA image"


def _num(x, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


@dataclass
class CheckpointRow:
    """One model's numbers: the base model (file None) or a LoRA checkpoint."""

    label: str
    file: Optional[str]
    held_out: Optional[float]  # held-out identity: to photos the LoRA never saw
    identity: Optional[float]  # to all the person's photos
    spread: Optional[float]
    faces: int
    images: int
    copy_gap: Optional[float]
    above_base: Optional[float]  # the ranking basis minus the base model's
    bleed: Optional[float]
    bleed_rise: Optional[float]
    overtrained: Optional[bool]  # None: not judged (the base model, or no bleed check)
    best: bool = False
    own_share: Optional[float] = None  # `centroid` as a share of the person's own baseline
    centroid: Optional[float] = None  # likeness to the centroid of the reference photos (the baseline's statistic)

    def cells(self) -> list[str]:
        """The row as the tables show it (TABLE_HEADERS)."""
        over = "" if self.overtrained is None else ("yes" if self.overtrained else "no")
        label = self.label + (" (best)" if self.best else "")
        share = "–" if self.own_share is None else f"{self.own_share * 100:.0f} %"
        return [label, _num(self.held_out), _num(self.identity), share, _num(self.spread), f"{self.faces}/{self.images}",
                "" if self.file is None else _num(self.above_base, "+.3f"), _num(self.bleed),
                "" if self.file is None else _num(self.bleed_rise, "+.3f"), over, _num(self.copy_gap, "+.3f")]


@dataclass
class EvaluationSummary:
    embedder: Optional[str]
    basis: str  # "held_out_mean" or "mean": what checkpoints are ranked by
    base: Optional[CheckpointRow]
    rows: list[CheckpointRow]  # the base model first, then every checkpoint in training order
    best: Optional[CheckpointRow]
    reason: str  # why the best is best, or why there is none
    top: list[dict] = field(default_factory=list)  # {"checkpoint", "file", "score", ...}
    base_bleed: Optional[float] = None
    baseline: Optional[dict] = None  # scores.json's `baseline` (faces.likeness.Baseline.to_dict), or None

    @property
    def basis_name(self) -> str:
        return BASIS_NAMES[self.basis]

    @property
    def held_out_measured(self) -> bool:
        return self.basis == "held_out_mean"

    def value(self, row: Optional[CheckpointRow]) -> Optional[float]:
        """A row's score on the ranking basis."""
        if row is None:
            return None
        return row.held_out if self.held_out_measured else row.identity

    @property
    def base_value(self) -> Optional[float]:
        return self.value(self.base)

    @property
    def baseline_mean(self) -> Optional[float]:
        """The person's own likeness, when the same face model measured it as the checkpoints."""
        b = self.baseline
        return b["mean"] if b and b.get("embedder") == self.embedder and b.get("mean") else None

    def share(self, value: Optional[float]) -> Optional[float]:
        """A likeness as a share of the person's own baseline (None without a comparable baseline)."""
        return share_of(value, self.baseline, self.embedder)

    def of_own(self, row: Optional[CheckpointRow]) -> str:
        """", likeness 0.640 to your photos' centroid, 90 % of their own 0.710" ("" without a comparable baseline):
        the row's faces against the centroid of the reference photos, over each photo against the centroid of the
        others (one statistic on both sides)."""
        share = self.share(row.centroid) if row is not None else None
        return "" if share is None else (f", likeness {row.centroid:.3f} to your photos' centroid, {share * 100:.0f} % "
                                         f"of their own {self.baseline_mean:.3f}")

    def baseline_line(self) -> str:
        """The person's own baseline in one line, or why there is none to compare with."""
        b = self.baseline
        if not b:
            return "your photos' own likeness: not measured (fewer than 2 reference faces, or an older scores.json)"
        if self.baseline_mean is None:
            return (f"your photos' own likeness: {b['mean']:.3f} by {b.get('embedder')}, not comparable with "
                    f"{self.embedder}'s scores")
        return (f"your photos' own likeness: {b['mean']:.3f} ± {b['std']:.3f} ({b['photos']} photos, each against the "
                f"{b.get('method', METHOD)} of the others; {b['embedder']})")

    @property
    def same_person(self) -> float:
        return same_person(self.embedder)

    @property
    def why_no_top(self) -> str:
        """Why the top images are empty ("" when there are some)."""
        if self.top:
            return ""
        loras = [r for r in self.rows if r.file is not None]
        if not loras:
            return "no LoRA checkpoint was evaluated"
        if not any(r.images for r in loras):
            return "no LoRA image was generated"
        return NO_FACE

    @property
    def verdict(self) -> str:
        """One line: what to use and how good it is, or why there is nothing to use."""
        model = self.embedder or "face model"
        if self.best is None:
            return f"no checkpoint to use: {self.reason or NO_FACE} ({model})"
        value = self.value(self.best)
        base = self.base_value
        vs = f", {value - base:+.3f} vs the base model" if value is not None and base is not None else ""
        if value is None:
            like = "not scored"
        elif value >= self.same_person:
            like = f"looks like the person (above {same_person_text(self.embedder)})"
        else:
            like = f"does not look like the person yet (one person usually scores above {same_person_text(self.embedder)})"
        text = f"use {self.best.label}: {self.basis_name} {_num(value)}{self.of_own(self.best)}{vs}, {like}"
        if self.best.overtrained:
            text += "; overtrained: faces in prompts without the trigger look like the person too"
        return text + f" ({model})"

    def best_line(self) -> str:
        """The best checkpoint with its numbers and file, or that there is none."""
        if self.best is None:
            faceless = self.reason in ("", NO_FACE, "no checkpoint produced a face to score")
            return f"best checkpoint: none ({NO_FACE if faceless else self.reason})"
        b = self.best
        held = f"held-out identity {_num(b.held_out)}, " if b.held_out is not None else ""
        vs = f" ({b.above_base:+.3f} vs base model)" if b.above_base is not None else ""
        bleed = f", bleed {_num(b.bleed)}" if b.bleed is not None else ""
        ident = f"identity {_num(b.identity)}{self.of_own(b)}"
        return f"best checkpoint: {b.label}  {held}{ident}{vs}{bleed} ({self.embedder})  {b.file}"

    def table(self) -> list[list[str]]:
        """The per-checkpoint rows (TABLE_HEADERS)."""
        return [r.cells() for r in self.rows]

    def table_lines(self) -> list[str]:
        """The per-checkpoint table as fixed-width text."""
        cells = [TABLE_HEADERS] + self.table()
        widths = [max(len(row[i]) for row in cells) for i in range(len(TABLE_HEADERS))]
        return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                for row in cells]

    def lines(self, folder=None) -> list[str]:
        """What `evaluate` prints: the verdict, the best checkpoint and why, the table, the top images (their
        paths under the evaluation `folder` when given)."""
        out = [f"verdict: {self.verdict}", self.best_line()]
        if self.best is not None:
            out.append(f"  why: {self.reason}")
        out.append(self.baseline_line())
        out += self.table_lines()
        if self.top:
            out += [f"top {i}: {t['score']:.3f}  {t['checkpoint']}  {Path(folder) / t['file'] if folder else t['file']}"
                    for i, t in enumerate(self.top, 1)]
        else:
            out.append(f"top 3: none ({self.why_no_top})")
        return out

    def numbers(self) -> dict:
        """The leaderboard's numbers for this evaluation (a trial's summary)."""
        b = self.best
        chosen = b or next((r for r in reversed(self.rows) if r.file is not None), None)
        return {
            "embedder": self.embedder,
            "basis": "held_out" if self.held_out_measured else "identity",
            "identity": b.identity if b else None,
            "held_out": b.held_out if b else None,
            "bleed": b.bleed if b else None,
            "bleed_rise": b.bleed_rise if b else None,
            "overtrained": bool(chosen.overtrained) if chosen else False,
            "above_base": b.above_base if b else None,
            "base_identity": self.base_value,
            "baseline": self.baseline_mean,
            "centroid_likeness": b.centroid if b else None,
            "baseline_share": self.share(b.centroid) if b else None,
            "baseline_embedder": (self.baseline or {}).get("embedder"),
            "faces": f"{chosen.faces}/{chosen.images}" if chosen else "0/0",
            "best_checkpoint": b.label if b else None,
            "best_lora": b.file if b else None,
            "why": self.reason or (None if b else NO_FACE),
            "verdict": self.verdict,
        }


def _basis(scores: dict) -> str:
    basis = scores.get("identity_basis")
    if basis in BASIS_NAMES:
        return basis
    best = scores.get("best") or {}
    return "held_out_mean" if best.get("held_out_mean", best.get("heldout")) is not None else "mean"


def _row(c: dict, basis: str, base: dict, best_label: Optional[str]) -> CheckpointRow:
    s = c.get("summary") or {}
    bleed = (c.get("bleed") or {}).get("summary") or {}
    value, floor = s.get(basis), (base or {}).get(basis)
    judged = c.get("file") and (c.get("bleed_rise") is not None or c.get("overtrained"))
    return CheckpointRow(
        label=c.get("label", "?"), file=c.get("file"), held_out=s.get("held_out_mean", s.get("heldout_mean")),
        identity=s.get("mean"), spread=s.get("std"), faces=s.get("faces", 0), images=s.get("images", 0),
        copy_gap=s.get("copy_gap_mean"), centroid=s.get("centroid_mean"),
        above_base=None if not c.get("file") or value is None or floor is None else round(value - floor, 4),
        bleed=bleed.get("mean"), bleed_rise=c.get("bleed_rise"),
        overtrained=bool(c.get("overtrained")) if judged else None,
        best=bool(c.get("file")) and c.get("label") == best_label)


def summarize_scores(scores: dict) -> EvaluationSummary:
    """The summary of one scores document."""
    basis = _basis(scores)
    best = scores.get("best") or None
    base = scores.get("base") or {}
    label = best.get("label") if best else None
    entries = scores.get("checkpoints") or []
    rows = [_row(c, basis, base, label) for c in entries]
    base_row = next((r for r in rows if r.file is None), None)
    if base_row is None and base:
        base_row = _row({"label": "base", "file": None, "summary": base}, basis, base, None)
    best_row = next((r for r in rows if r.best), None)
    if best is not None and best_row is None:  # a document whose checkpoints are not listed: the best's own numbers
        best_row = CheckpointRow(label or "?", best.get("file"), best.get("held_out_mean", best.get("heldout")),
                                 best.get("mean"), None, 0, 0, None, best.get("above_base"), best.get("bleed"),
                                 best.get("bleed_rise"), None, True)
    if best is not None and best_row is not None:  # scores.json's own rounding of the best's numbers
        best_row.above_base = best.get("above_base", best_row.above_base)
        best_row.bleed = best.get("bleed", best_row.bleed)
        best_row.identity = best.get("mean", best_row.identity)
        held = best.get("held_out_mean", best.get("heldout"))
        best_row.held_out = held if held is not None else best_row.held_out
        best_row.centroid = best.get("centroid_mean", best_row.centroid)
    reason = (best or {}).get("reason") or scores.get("why_no_best") or ("" if best else NO_FACE)
    base_bleed = (scores.get("base_bleed") or {}).get("mean")
    summary = EvaluationSummary(scores.get("embedder"), basis, base_row, rows, best_row, reason,
                                list(scores.get("top") or []), base_bleed, scores.get("baseline") or None)
    for r in rows + [x for x in (base_row, best_row) if x is not None and x not in rows]:
        r.own_share = summary.share(r.centroid)
    return summary
