"""Evaluate a run: how much the generated person looks like the photos, per checkpoint, against the base model.

The base pipeline is loaded once. The base model (no LoRA) and then every checkpoint of the run
(`model/<name>-000001.safetensors` ..., the final `model/<name>.safetensors`), each attached in turn
as an adapter, render the same evaluation set (`preset.evaluate.prompts` × `preset.evaluate.seeds`).
Each image is scored against the reference photos (the run's training photos) with `faces`:

- `score`: the identity score of its face vs the nearest reference (as `faceswap-kohya identity`);
- `centroid_score`: its similarity to the mean embedding of all references;
- `copy_gap = score - centroid_score`: large when a face matches one training photo much better than
  the person as a whole (a copy of one photo is not success); around zero or below for a face that
  resembles the person across photos.

Images with no face are counted and reported ("no face"), never dropped. Per checkpoint: mean and
spread of the scores over the faces found, faces found / images. The best checkpoint has the highest
mean (ties go to the earlier one); the top-3 images are the highest-scoring LoRA images. Everything
goes into a new `<run>/eval/<timestamp>/` folder: the images, `scores.json` (every number of the
report can be recomputed from it: summaries from the per-image scores, scores from the embeddings),
`report.html` (self-contained) and `identity.png` (score per checkpoint with the base-model line).
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from faceswap_kohya.scoring.scores import DECIMALS

THUMB_PX, TOP_PX = 256, 512  # inline JPEG sizes in the report


def _diff(a, b):
    return None if a is None or b is None else round(a - b, DECIMALS)


# ---------------------------------------------------------------- chart and report
def write_chart(scores: dict, path: Path) -> Path:
    """Mean identity (± spread) per checkpoint in training order, with the base model as a dashed line."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot and no global backend

    loras = [c for c in scores["checkpoints"] if c["file"]]
    base = scores["base"]["mean"]
    fig = Figure(figsize=(max(5.0, 0.7 * len(loras) + 2), 4.0), dpi=110)
    ax = fig.subplots()
    xs = list(range(len(loras)))
    pts = [(x, c["summary"]["mean"], c["summary"]["std"]) for x, c in zip(xs, loras) if c["summary"]["mean"] is not None]
    if pts:
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                    color="tab:blue", label="LoRA: mean identity ± spread")
    missing = [x for x, c in zip(xs, loras) if c["summary"]["mean"] is None]
    if missing:
        ax.plot(missing, [0.02] * len(missing), marker="x", color="tab:red", linestyle="none", label="no face found")
    if base is not None:
        ax.axhline(base, color="gray", linestyle="--", label=f"base model {base:.3f}")
    else:
        ax.text(0.01, 0.97, "base model: no face found", transform=ax.transAxes, va="top", fontsize=8, color="gray")
    if scores["best"]:
        bx = next(i for i, c in enumerate(loras) if c["label"] == scores["best"]["label"])
        ax.plot([bx], [scores["best"]["mean"]], marker="*", markersize=14, color="tab:orange", linestyle="none", label="best")
    ax.set_xticks(xs, [c["label"] for c in loras], rotation=30 if len(loras) > 6 else 0, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"identity score ({scores['embedder']})")
    ax.set_title("identity vs the reference photos, per checkpoint", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    return path


def _inline(path: Path, side: int) -> str:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((side, side))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _fmt(x, spec=".3f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}tr.best{background:#fff3d6}tr.base{color:#666}
figure{display:inline-block;margin:4px;text-align:center;font-size:12px}figure img{display:block}
.noface{color:#b00}.note{color:#555;font-size:13px}"""


def write_report(scores: dict, folder: Path) -> Path:
    """report.html: summary table, chart, best checkpoint, top-3 images and every image, all inline."""
    e = html.escape
    base = scores["base"]
    best = scores["best"]
    rows = []
    for c in scores["checkpoints"]:
        s = c["summary"]
        cls = "base" if not c["file"] else ("best" if best and c["label"] == best["label"] else "")
        near = ", ".join(f"{e(k)} ×{v}" for k, v in list(s["nearest_counts"].items())[:2]) or "–"
        rows.append(f"<tr class='{cls}'><td>{e(c['label'])}{' (floor)' if not c['file'] else ''}</td>"
                    f"<td>{_fmt(s['mean'])}</td><td>{_fmt(s['std'])}</td><td>{_fmt(s['min'])}</td><td>{_fmt(s['max'])}</td>"
                    f"<td>{_fmt(_diff(s['mean'], base['mean']), '+.3f') if c['file'] else ''}</td>"
                    f"<td>{s['faces']}/{s['images']}</td><td>{s['no_face']}</td><td>{_fmt(s['centroid_mean'])}</td>"
                    f"<td>{_fmt(s['copy_gap_mean'], '+.3f')}</td><td>{near}</td></tr>")
    if best:
        verdict = (f"<p><b>Best checkpoint: {e(best['label'])}</b> — mean identity {best['mean']:.3f}"
                   + (f", {best['above_base']:+.3f} vs the base model ({base['mean']:.3f})" if best["above_base"] is not None
                      else " (the base model produced no face to compare with)")
                   + (f"<br><code>{e(best['file'])}</code></p>"))
    else:
        verdict = "<p class='noface'><b>No checkpoint produced a detectable face</b>: no identity score, no best checkpoint.</p>"
    top = "".join(f"<figure><a href='{e(t['file'])}'><img src='{_inline(folder / t['file'], TOP_PX)}' width='256'></a>"
                  f"{i + 1}. {t['score']:.3f} — {e(t['checkpoint'])}, seed {t['seed']}<br>{e(t['prompt'][:60])}</figure>"
                  for i, t in enumerate(scores["top"])) or "<p class='noface'>no faces found</p>"
    grids = []
    for c in scores["checkpoints"]:
        cells = "".join(
            f"<figure><a href='{e(im['file'])}'><img src='{_inline(folder / im['file'], THUMB_PX)}' width='160'></a>"
            + (f"{im['score']:.3f} (near {e(im['nearest'])})" if im.get("score") is not None else "<span class='noface'>no face</span>")
            + f"<br>p{im['p']} s{im['seed']}</figure>" for im in c["images"])
        grids.append(f"<h3>{e(c['label'])}</h3>{cells}")
    st = scores["settings"]
    refs_used = sum(1 for p in scores["references"]["photos"] if "face_box" in p)
    skipped = [f"{e(p['file'])} ({e(p['error'])})" for p in scores["references"]["photos"] if "error" in p]
    chart = "data:image/png;base64," + base64.b64encode((folder / "identity.png").read_bytes()).decode()
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>faceswap_kohya evaluation</title>
<style>{CSS}</style></head><body>
<h1>Identity evaluation</h1>
<p class="note">{e(scores['run'] or '')} — {e(scores['created'])} — embedder <b>{e(scores['embedder'])}</b> ({e(scores['metric'])});
{refs_used} reference face{'s' if refs_used != 1 else ''} from <code>{e(scores['references']['folder'])}</code>{'; not used: ' + ', '.join(skipped) if skipped else ''}.<br>
{len(st['prompts'])} prompts × {len(st['seeds'])} seeds (seeds {', '.join(map(str, st['seeds']))}), {st['steps']} steps, CFG {st['cfg']:g},
{st['width']}×{st['height']}, {e(st['sampler'])}, LoRA weight {st['lora_weight']:g}, base model <code>{e(st['base_model'])}</code>.</p>
{verdict}
<img src="{chart}" alt="identity per checkpoint">
<table><tr><th>checkpoint</th><th>identity mean</th><th>spread (sd)</th><th>min</th><th>max</th><th>vs base</th>
<th>faces found</th><th>no face</th><th>to mean face</th><th>copy gap</th><th>nearest photo</th></tr>
{''.join(rows)}</table>
<p class="note">Identity: similarity (0–1, higher = more alike) of each generated face to the nearest reference photo,
averaged over the images where a face was found; with dlib, photos of one person usually score above 0.4.
Images with no face are counted, not scored. <i>To mean face</i>: similarity to the mean of all reference faces.
<i>Copy gap</i> = identity − to mean face: clearly positive when faces match one training photo far better
than the person as a whole (a copy of one photo, a sign of overfitting). Every number here is recomputable from scores.json.</p>
<h2>Top 3 images</h2>{top}
<h2>Prompts</h2><ol>{''.join(f'<li>{e(p)}</li>' for p in st['prompts'])}</ol>
<h2>All images</h2>{''.join(grids)}
</body></html>"""
    path = folder / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path
