"""The leaderboard of a sweep, or the summary of a batch: every trial's settings, state, best checkpoint,
identity (held-out identity and bleed where the evaluation measured them; as a share of the person's own
baseline where scores.json has one), time and LoRA.

Sweep trials are ranked by held-out identity when every scored trial has one, else by identity; a trial
whose best checkpoint is overtrained (bleed) ranks after those that are not; ties go to the earlier trial.
The winner is the first. A batch trains different people, so its rows are not ranked against each other.
Written as `leaderboard.json`, `leaderboard.html` (self-contained) and `leaderboard.png`, again each time
a trial finishes.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import os
from pathlib import Path
from typing import Optional

from faceswap_kohya.scoring.summary import BASIS_NAMES
from faceswap_kohya.sweeps.grid import show

JSON, HTML, CHART = "leaderboard.json", "leaderboard.html", "leaderboard.png"
BASIS_NAME = {"held_out": BASIS_NAMES["held_out_mean"], "identity": BASIS_NAMES["mean"]}  # as the evaluation summary names them


def build(plan, summaries: dict) -> dict:
    """The leaderboard document from the plan (trial order, settings) and the summaries known so far."""
    rows = []
    for i, trial in enumerate(plan.trials):
        summary = summaries.get(trial.id) or {"state": "waiting"}
        rows.append({**summary, "index": i, "id": trial.id, "label": trial.label,
                     "settings": {k: show(v) for k, v in trial.settings.items()},
                     "folder": str(plan.trial_folder(trial)), "rank": None})
    scored = [r for r in rows if r.get("state") == "finished" and r.get("identity") is not None]
    basis = "held_out" if scored and all(r.get("held_out") is not None for r in scored) else "identity"
    winner = None
    if plan.kind == "sweep":
        ranked = sorted(scored, key=lambda r: (bool(r.get("overtrained")), -r[basis], r["index"]))
        for n, row in enumerate(ranked, 1):
            row["rank"] = n
        rows = ranked + [r for r in rows if r["rank"] is None]
        if ranked:
            w = ranked[0]
            winner = {"id": w["id"], "label": w["label"], "settings": w["settings"], "score": w[basis],
                      "lora": w.get("best_lora"), "run": w.get("run"), "report": w.get("report")}
    states = [r["state"] for r in rows]
    return {"kind": plan.kind, "name": plan.name, "folder": str(plan.folder), "source": str(plan.source),
            "updated": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "basis": basis, "basis_name": BASIS_NAME[basis],
            "embedder": next((r["embedder"] for r in rows if r.get("embedder")), None),
            "counts": {s: states.count(s) for s in dict.fromkeys(states)},
            "winner": winner, "rows": rows}


def write(plan, summaries: dict) -> dict:
    """Rewrite leaderboard.json, .png and .html in the sweep folder; returns the document."""
    doc = build(plan, summaries)
    folder = Path(plan.folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / JSON, json.dumps(doc, indent=1, default=str).encode("utf-8"))
    write_chart(doc, folder / CHART)
    _atomic(folder / HTML, page(doc, (folder / CHART).read_bytes()).encode("utf-8"))
    return doc


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read(folder: Path) -> Optional[dict]:
    try:
        return json.loads((Path(folder) / JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- chart
def _short(text: str, n: int = 44) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def write_chart(doc: dict, path: Path) -> Path:
    """One bar per trial: its score (the basis), the base model's as a grey tick, bleed as a red dot."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot and no global backend

    rows = doc["rows"]
    basis = doc["basis"]
    fig = Figure(figsize=(8.0, max(2.2, 0.42 * len(rows) + 1.3)), dpi=110)
    ax = fig.subplots()
    ys = list(range(len(rows)))[::-1]
    winner = (doc.get("winner") or {}).get("id")
    for y, r in zip(ys, rows):
        value = r.get(basis)
        if value is not None and r.get("state") == "finished":
            color = "tab:orange" if r["id"] == winner else ("tab:gray" if r.get("overtrained") else "tab:blue")
            ax.barh(y, value, color=color, height=0.6)
            ax.text(min(value + 0.01, 0.9), y, f"{value:.3f}", va="center", fontsize=8)
            if r.get("base_identity") is not None:
                ax.plot([r["base_identity"]] * 2, [y - 0.35, y + 0.35], color="black", linewidth=1.5)
            if r.get("bleed") is not None:
                ax.plot([r["bleed"]], [y], marker="o", color="tab:red", markersize=5, linestyle="none")
        else:
            word = {"finished": "no face found"}.get(r.get("state"), r.get("state") or "waiting")
            ax.text(0.01, y, word, va="center", fontsize=8, color="tab:red" if word == "failed" else "dimgray")
    ax.set_yticks(ys, [_short(f"{r['id'][:10]} {r['label']}") for r in rows], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"{doc['basis_name']} of the best checkpoint ({doc.get('embedder') or 'face model'}); "
                  "black tick: base model" + ("; red dot: bleed" if any(r.get("bleed") is not None for r in rows) else ""),
                  fontsize=8)
    ax.set_title(f"{doc['kind']} {doc['name']}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    return path


# ---------------------------------------------------------------- page
CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
td.n{text-align:right}tr.win{background:#fff3d6}tr.failed td{color:#b00}.note{color:#555;font-size:13px}code{font-size:12px}"""


def _num(x, spec=".3f") -> str:
    return "–" if x is None else format(x, spec)


def _link(path: Optional[str], folder: Path, text: str) -> str:
    if not path:
        return "–"
    try:
        href = os.path.relpath(path, folder)
    except ValueError:
        href = path
    return f"<a href='{html.escape(href)}'>{html.escape(text)}</a>"


def own_share(row: dict) -> str:
    """A trial's best score as a share of its person's own baseline ("90 % of 0.710"), "–" without one."""
    share, own = row.get("baseline_share"), row.get("baseline")
    return "–" if share is None or own is None else f"{share * 100:.0f} % of {own:.3f}"


def page(doc: dict, chart_png: bytes) -> str:
    e = html.escape
    folder = Path(doc["folder"])
    w = doc.get("winner")
    if w:
        verdict = (f"<p><b>Winner: {e(w['label'])}</b> (trial {e(w['id'])}) — {e(doc['basis_name'])} {w['score']:.3f}<br>"
                   f"LoRA: <code>{e(str(w['lora']))}</code>"
                   + (f" — {_link(w['report'], folder, 'its evaluation report')}" if w.get("report") else "") + "</p>")
    elif doc["kind"] == "sweep":
        verdict = "<p class='note'>No winner yet: no finished trial has an identity score.</p>"
    else:
        verdict = ""
    rows = []
    for r in doc["rows"]:
        cls = "win" if w and r["id"] == w["id"] else ("failed" if r.get("state") == "failed" else "")
        settings = "<br>".join(f"{e(k)}={e(v)}" for k, v in r["settings"].items()) or e(r["label"])
        minutes = _num(r["seconds"] / 60, ".1f") if r.get("seconds") else "–"
        note = r.get("error") or r.get("why") or ""
        rows.append(
            f"<tr class='{cls}'><td class='n'>{r['rank'] or ''}</td><td><code>{e(r['id'])}</code></td><td>{settings}</td>"
            f"<td>{e(r.get('state') or '')}{' (done before)' if r.get('skipped') else ''}</td>"
            f"<td class='n'>{_num(r.get('held_out'))}</td><td class='n'>{_num(r.get('identity'))}</td>"
            f"<td class='n'>{own_share(r)}</td>"
            f"<td class='n'>{_num(r.get('bleed'))}{' overtrained' if r.get('overtrained') else ''}</td>"
            f"<td class='n'>{_num(r.get('above_base'), '+.3f')}</td><td class='n'>{e(str(r.get('faces') or '–'))}</td>"
            f"<td>{e(r.get('best_checkpoint') or '–')}</td><td class='n'>{minutes}</td>"
            f"<td>{_link(r.get('best_lora') or r.get('lora'), folder, Path(r.get('best_lora') or r.get('lora') or '').name)}</td>"
            f"<td>{_link(r.get('report'), folder, 'report')}</td><td>{e(note[:300])}</td></tr>")
    counts = ", ".join(f"{n} {s}" for s, n in doc["counts"].items())
    chart = "data:image/png;base64," + base64.b64encode(chart_png).decode()
    title = f"{'Sweep' if doc['kind'] == 'sweep' else 'Batch'} {e(doc['name'])}"
    ranked = (f"Ranked by <b>{e(doc['basis_name'])}</b> of each trial's best checkpoint"
              + (" (an overtrained best checkpoint ranks last)" if doc["kind"] == "sweep" else " (not ranked: each row is another person)"))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>{CSS}</style></head><body>
<h1>{title}</h1>
<p class="note">{e(doc['folder'])} — preset <code>{e(doc['source'])}</code> — updated {e(doc['updated'])} — {e(counts)}</p>
{verdict}
<img src="{chart}" alt="score per trial">
<table><tr><th>rank</th><th>trial</th><th>settings</th><th>state</th><th>held-out identity</th><th>identity</th><th>of own photos</th><th>bleed</th>
<th>vs base</th><th>faces</th><th>best checkpoint</th><th>minutes</th><th>LoRA</th><th>report</th><th>note</th></tr>
{''.join(rows)}</table>
<p class="note">{ranked}; face model: {e(doc.get('embedder') or '–')}. Identity: similarity (0–1, higher = more alike) of
generated faces to the person's photos; held-out identity: to photos the LoRA never saw; bleed: how much faces in prompts
without the trigger look like the person (lower is better); of own photos: the ranking score as a share of how much the
person's own photos look like each other (their baseline, same face model); vs base: the best checkpoint's score minus the base model's.
Each trial's report holds every image and number.</p>
</body></html>"""
