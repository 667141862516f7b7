"""The person's own likeness: how much real photos of one person look like each other, with one face model.

- `centroid(vectors, metric)` (from `faces.identity`): the mean embedding (of unit vectors for cosine face models).
- `leave_one_out(vectors, metric)`: each face's score against the centroid of all the others.
- `own_baseline(files, vectors, embedder, metric)`: the real-vs-real baseline of a set of reference photos
  (`Baseline`: per photo, mean, spread), the scale on which a generated face's likeness is read: a
  checkpoint scoring 0.64 where the photos score 0.71 among themselves reaches 90 % of their own.
- `share_of(value, baseline, embedder)`: that share, or None when the numbers come from different face models;
  `value` must be the same statistic: a face against the centroid of the reference photos (`centroid_score`), not
  its nearest photo (which favours a face that copies one photo).
- `one_person(vectors, metric, threshold)`: which faces of a set show the majority person (`Majority`),
  the ones that look like someone else, or `NoMajority` when no person has more than half the faces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from faceswap_kohya.faces.identity import centroid, similarity

METHOD = "leave-one-out centroid"  # how a baseline is computed (named with it in scores.json and dataset.json)


def leave_one_out(vectors: Sequence[np.ndarray], metric: str = "euclidean") -> list[float]:
    """Each face's identity score against the centroid of the others (empty with fewer than 2 faces)."""
    n = len(vectors)
    if n < 2:
        return []
    return [similarity(vectors[i], centroid([v for j, v in enumerate(vectors) if j != i], metric), metric)
            for i in range(n)]


@dataclass
class Baseline:
    """The real-vs-real likeness of a set of photos of one person, with the face model that measured it."""

    embedder: str
    metric: str
    scores: dict[str, float]  # photo file name → its score against the centroid of the others
    method: str = METHOD

    @property
    def values(self) -> list[float]:
        return list(self.scores.values())

    @property
    def mean(self) -> float:
        return round(float(np.mean(self.values)), 4)

    @property
    def std(self) -> float:
        return round(float(np.std(self.values)), 4)

    def to_dict(self) -> dict:
        """As scores.json and dataset.json store it."""
        return {"embedder": self.embedder, "metric": self.metric, "method": self.method, "photos": len(self.scores),
                "mean": self.mean, "std": self.std, "min": round(min(self.values), 4), "max": round(max(self.values), 4),
                "scores": {f: round(s, 4) for f, s in self.scores.items()}}

    def lines(self) -> list[str]:
        """What `identity --refs` prints."""
        out = [f"your photos' own likeness: {self.mean:.3f} ± {self.std:.3f} (each of {len(self.scores)} photos against "
               f"the {METHOD} of the others; {self.embedder})"]
        out += [f"  {s:.3f}  {f}" for f, s in sorted(self.scores.items(), key=lambda kv: -kv[1])]
        return out


def own_baseline(files: Sequence[str], vectors: Sequence[np.ndarray], embedder: str,
                 metric: str = "euclidean") -> Optional[Baseline]:
    """The baseline of the photos (`files`, their face embeddings); None with fewer than 2 faces."""
    scores = leave_one_out(vectors, metric)
    if not scores:
        return None
    return Baseline(embedder, metric, {str(f): float(s) for f, s in zip(files, scores)})


def share_of(value: Optional[float], baseline: Optional[dict], embedder: Optional[str]) -> Optional[float]:
    """`value` as a share of the baseline's mean (1.0 = as alike as the photos are to each other); None
    without a value or baseline, or when the baseline was measured by another face model than `embedder`."""
    if value is None or not baseline or not baseline.get("mean") or baseline.get("embedder") != embedder:
        return None
    return round(value / baseline["mean"], 4)


def share_text(value: Optional[float], baseline: Optional[dict], embedder: Optional[str]) -> str:
    """"0.640, 90 % of your photos' own 0.710" (or just the value where there is no comparable baseline)."""
    if value is None:
        return "–"
    share = share_of(value, baseline, embedder)
    if share is None:
        return f"{value:.3f}"
    return f"{value:.3f}, {share * 100:.0f} % of your photos' own {baseline['mean']:.3f}"


# ---------------------------------------------------------------- one person in a set of photos
class NoMajority(ValueError):
    """No person has more than half of the faces."""

    def __init__(self, groups: list[list[int]]):
        super().__init__(f"no person has more than half of the faces (groups of {', '.join(map(str, map(len, groups)))})")
        self.groups = groups


@dataclass
class Majority:
    """The faces of a set that show its majority person (`members`) and how each face scores against them."""

    members: list[int]
    scores: list[float]  # every face: a member against the centroid of the other members, others against all members
    outsiders: list[int] = field(default_factory=list)  # faces that look like someone else
    centre: Optional[np.ndarray] = None  # the centroid of the members' embeddings

    def member_range(self) -> str:
        values = [self.scores[i] for i in self.members]
        return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def groups_of(vectors: Sequence[np.ndarray], metric: str, threshold: float) -> list[list[int]]:
    """Faces joined when a pair scores at least `threshold`; the groups, largest first."""
    n = len(vectors)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if similarity(vectors[i], vectors[j], metric) >= threshold:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def one_person(vectors: Sequence[np.ndarray], metric: str, threshold: float) -> Majority:
    """The majority person of a set of faces (one per photo): the largest group of faces that look alike must
    hold more than half of them (else `NoMajority`). Each face is then scored leave-one-out: a member against
    the centroid of the other members, any other face against the centroid of all members; a face outside the
    group that scores below `threshold` looks like someone else."""
    groups = groups_of(vectors, metric, threshold)
    main = groups[0] if groups else []
    if 2 * len(main) <= len(vectors):
        raise NoMajority(groups)
    centre = centroid([vectors[i] for i in main], metric)
    scores = []
    for i, v in enumerate(vectors):
        others = [vectors[j] for j in main if j != i]
        scores.append(similarity(v, centroid(others, metric) if i in main else centre, metric) if others else 1.0)
    outsiders = [i for i in range(len(vectors)) if i not in main and scores[i] < threshold]
    members = [i for i in range(len(vectors)) if i not in outsiders]
    return Majority(members, scores, outsiders, centroid([vectors[i] for i in members], metric))
