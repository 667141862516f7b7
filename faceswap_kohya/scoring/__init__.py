"""Scoring a run's checkpoints: identity and bleed scores, the best checkpoint, scores.json, chart and report."""
