"""Sweeps and batches: many trainings as Ray tasks, each evaluated, with a leaderboard.

| module | owns |
|---|---|
| `grid.py` | `key=v1,v2` and `--variants` → settings per trial, every preset validated first |
| `plan.py` | the sweep folder, `sweep.json`, batch subjects (`subject.yaml`) |
| `trials.py` | one trial in a worker (train, evaluate), its summary, its live progress |
| `runner.py` | Ray: local instance or cluster, resources per trial, Ctrl-C |
| `leaderboard.py` | ranking, `leaderboard.{json,html,png}` |
"""
