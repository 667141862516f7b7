"""Sweeps and batches underneath the `sweep` and `batch` jobs: the grid, the plan, Ray, the leaderboard
(the jobs give the trial function; this package never imports the jobs).

| module | owns |
|---|---|
| `grid.py` | `key=v1,v2` and `--variants` → settings per trial, every preset validated first |
| `plan.py` | the sweep folder, `sweep.json`, batch subjects (`subject.yaml`) |
| `trials.py` | a trial's folder read back: its finished run, its summary, its live progress |
| `runner.py` | Ray: local instance or cluster, resources per trial, a given trial function as a task, Ctrl-C |
| `leaderboard.py` | ranking, `leaderboard.{json,html,png}` |
"""
