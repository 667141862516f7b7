"""What an evaluation shows: `identity.png` (per checkpoint in training order: held-out identity, identity vs
all photos with its spread, and bleed, beside the base model's) and a self-contained `report.html` (the best
checkpoint and why, the person's own baseline and each checkpoint as a share of it, the table with bleed,
validation losses, image grids)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from faceswap_kohya.scoring.scores import DECIMALS
from faceswap_kohya.scoring.summary import summarize_scores
from faceswap_kohya.scoring.thresholds import thresholds_note

THUMB_PX, TOP_PX = 256, 512  # inline JPEG sizes in the report


def difference(a, b):
    return None if a is None or b is None else round(a - b, DECIMALS)


# ---------------------------------------------------------------- chart and report
def write_chart(scores: dict, path: Path) -> Path:
    """Per checkpoint in training order: held-out identity, identity vs all photos (± spread) and bleed, with
    the base model's values as dashed lines; overtrained checkpoints crossed, the best starred."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot and no global backend

    loras = [c for c in scores["checkpoints"] if c["file"]]
    fig = Figure(figsize=(max(5.0, 0.7 * len(loras) + 2), 4.0), dpi=110)
    ax = fig.subplots()
    xs = list(range(len(loras)))

    def series(values, label, colour, err=None):
        pts = [(x, v, e) for x, v, e in zip(xs, values, err or [0] * len(xs)) if v is not None]
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] or 0 for p in pts] if err else None,
                        marker="o", capsize=3, color=colour, label=label)

    series([c["summary"].get("held_out_mean") for c in loras], "held-out identity (unseen photos)", "tab:blue")
    series([c["summary"]["mean"] for c in loras], "identity vs all photos ± spread", "tab:cyan", [c["summary"]["std"] for c in loras])
    series([c["bleed"]["summary"]["mean"] if c.get("bleed") else None for c in loras], "bleed (no trigger)", "tab:red")
    over = [(x, c["bleed"]["summary"]["mean"]) for x, c in zip(xs, loras) if c.get("overtrained")]
    if over:
        ax.plot([o[0] for o in over], [o[1] for o in over], marker="X", markersize=11, color="darkred", linestyle="none",
                label="overtrained")
    missing = [x for x, c in zip(xs, loras) if c["summary"]["mean"] is None]
    if missing:
        ax.plot(missing, [0.02] * len(missing), marker="x", color="tab:red", linestyle="none", label="no face found")
    basis = scores.get("identity_basis", "mean")
    base = scores["base"].get(basis)
    if base is not None:
        ax.axhline(base, color="gray", linestyle="--", label=f"base model identity {base:.3f}")
    else:
        ax.text(0.01, 0.97, "base model: no face found", transform=ax.transAxes, va="top", fontsize=8, color="gray")
    if scores.get("base_bleed") and scores["base_bleed"]["mean"] is not None:
        ax.axhline(scores["base_bleed"]["mean"], color="tab:red", linestyle=":", alpha=0.7,
                   label=f"base model bleed {scores['base_bleed']['mean']:.3f}")
    if scores["best"]:
        bx = next(i for i, c in enumerate(loras) if c["label"] == scores["best"]["label"])
        by = scores["best"]["held_out_mean"] if basis == "held_out_mean" else scores["best"]["mean"]
        ax.plot([bx], [by], marker="*", markersize=14, color="tab:orange", linestyle="none", label="best")
    ax.set_xticks(xs, [c["label"] for c in loras], rotation=30 if len(loras) > 6 else 0, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"score ({scores['embedder']})")
    ax.set_title("likeness and bleed per checkpoint", fontsize=10)
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
td:first-child,th:first-child{text-align:left}tr.best{background:#fff3d6}tr.base{color:#666}tr.over td{color:#a00}
figure{display:inline-block;margin:4px;text-align:center;font-size:12px}figure img{display:block}
.noface{color:#b00}.note{color:#555;font-size:13px}.why{font-size:15px}"""


def _row(c: dict, scores: dict, own: dict) -> str:
    e, s, base = html.escape, c["summary"], scores["base"]
    best = scores["best"]
    basis = scores.get("identity_basis", "mean")
    cls = "base" if not c["file"] else ("best" if best and c["label"] == best["label"] else ("over" if c.get("overtrained") else ""))
    near = ", ".join(f"{e(k)} ×{v}" for k, v in list(s["nearest_counts"].items())[:2]) or "–"
    bleed = c["bleed"]["summary"] if c.get("bleed") else None
    over = "" if not c["file"] else ("yes" if c.get("overtrained") else ("no" if c.get("bleed_rise") is not None else "–"))
    return (f"<tr class='{cls}'><td>{e(c['label'])}{' (floor)' if not c['file'] else ''}</td>"
            f"<td><b>{_fmt(s.get('held_out_mean'))}</b></td><td>{_fmt(s['mean'])}</td>"
            f"<td>{own.get(c['label'], '–')}</td><td>{_fmt(s['std'])}</td>"
            f"<td>{_fmt(s['min'])}</td><td>{_fmt(s['max'])}</td>"
            f"<td>{_fmt(difference(s.get(basis), base.get(basis)), '+.3f') if c['file'] else ''}</td>"
            f"<td>{s['faces']}/{s['images']}</td><td>{s['no_face']}</td>"
            f"<td>{_fmt(bleed['mean']) if bleed else '–'}</td><td>{_fmt(c.get('bleed_rise'), '+.3f') if c['file'] else ''}</td>"
            f"<td>{over}</td><td>{_fmt(s['centroid_mean'])}</td><td>{_fmt(s['copy_gap_mean'], '+.3f')}</td><td>{near}</td></tr>")


def _verdict(scores: dict) -> str:
    e, best, base = html.escape, scores["best"], scores["base"]
    model = e(scores["embedder"])
    if not best:
        return ("<p class='noface'><b>No checkpoint produced a detectable face</b>: no identity score, no best checkpoint.</p>")
    held = (f"held-out identity <b>{best['held_out_mean']:.3f}</b> (photos the LoRA never saw) · "
            if best.get("held_out_mean") is not None else "no held-out photos · ")
    basis = scores.get("identity_basis", "mean")
    vs = (f", {best['above_base']:+.3f} vs the base model ({base[basis]:.3f})" if best["above_base"] is not None
          else " (the base model produced no face to compare with)")
    bleed = ""
    if best.get("bleed") is not None:
        floor = scores["base_bleed"]["mean"] if scores.get("base_bleed") else None
        bleed = f" · bleed {best['bleed']:.3f}" + (f" (base model {floor:.3f})" if floor is not None else "")
    return (f"<p><b>Best checkpoint: {e(best['label'])}</b> — {held}identity vs all photos {best['mean']:.3f}{vs}{bleed}; "
            f"all scores by {model}.<br><span class='why'>Why: {e(best['reason'])}.</span><br><code>{e(best['file'])}</code></p>")


def _validation(scores: dict) -> str:
    losses = [v for v in scores.get("validation_loss") or [] if v["loss"] is not None]
    if not losses:
        return ""
    cells = "".join(f"<tr><td>{'epoch ' + str(v['epoch']) if v['epoch'] is not None else '–'}"
                    f"{' (every N steps)' if v['kind'] == 'step' else ''}</td><td>{v['step'] if v['step'] is not None else '–'}</td>"
                    f"<td>{v['loss']:.4f}</td></tr>" for v in losses)
    return ("<h2>Validation loss on the held-out photos</h2><table><tr><th>after</th><th>step</th><th>loss</th></tr>"
            f"{cells}</table><p class='note'>Computed by sd-scripts during training (masked like the training loss, at "
            "fixed timesteps; tensorboard: loss/validation/epoch_average). Lower is better; a rise while the training "
            "loss keeps falling is overfitting.</p>")


def _figure(folder: Path, im: dict, text: str) -> str:
    e = html.escape
    return (f"<figure><a href='{e(im['file'])}'><img src='{_inline(folder / im['file'], THUMB_PX)}' width='160'></a>"
            f"{text}<br>{'b' if 'faces' in im else 'p'}{im['p']} s{im['seed']}</figure>")


def _grids(scores: dict, folder: Path) -> str:
    e, grids = html.escape, []
    for c in scores["checkpoints"]:
        cells = "".join(_figure(folder, im, (f"{im['score']:.3f} (near {e(im['nearest'])})" if im.get("score") is not None
                                             else "<span class='noface'>no face</span>")
                                + (f"<br>held-out {im['held_out_score']:.3f}" if im.get("held_out_score") is not None else ""))
                        for im in c["images"])
        bleed = "".join(_figure(folder, im, ("bleed " + ", ".join(f"{f['score']:.3f}" for f in im["faces"])) if im["faces"]
                                else "<span class='noface'>no face</span>") for im in (c.get("bleed") or {}).get("images", []))
        grids.append(f"<h3>{e(c['label'])}</h3>{cells}" + (f"<br>{bleed}" if bleed else ""))
    return "".join(grids)


def write_report(scores: dict, folder: Path) -> Path:
    """report.html: the best checkpoint and why (held-out identity first), chart, table with bleed, validation
    loss, top-3 images and every image, all inline."""
    e = html.escape
    summary = summarize_scores(scores)
    top = "".join(f"<figure><a href='{e(t['file'])}'><img src='{_inline(folder / t['file'], TOP_PX)}' width='256'></a>"
                  f"{i + 1}. {t['score']:.3f} — {e(t['checkpoint'])}, seed {t['seed']}<br>{e(t['prompt'][:60])}</figure>"
                  for i, t in enumerate(scores["top"])) or f"<p class='noface'>none: {e(summary.why_no_top)}</p>"
    st = scores["settings"]
    refs_used = sum(1 for p in scores["references"]["photos"] if "face_box" in p)
    skipped = [f"{e(p['file'])} ({e(p['error'])})" for p in scores["references"]["photos"] if "error" in p]
    held = scores.get("held_out")
    held_note = (f" Held out (never trained on): {', '.join(e(f) for f in held['embeddings'])} from <code>{e(held['folder'])}</code>."
                 if held else " No held-out photos: identity is measured against photos the LoRA was trained on.")
    chart = "data:image/png;base64," + base64.b64encode((folder / "identity.png").read_bytes()).decode()
    bleed_prompts = st.get("bleed_prompts") or []
    own = {r.label: f"{r.own_share * 100:.0f} %" for r in summary.rows if r.own_share is not None}
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>faceswap_kohya evaluation</title>
<style>{CSS}</style></head><body>
<h1>Identity evaluation</h1>
<p class="why"><b>Verdict:</b> {e(summary.verdict)}</p>
<p class="why">{e(summary.baseline_line())}</p>
{_verdict(scores)}
<p class="note">{e(scores['run'] or '')} — {e(scores['created'])} — face model <b>{e(scores['embedder'])}</b> ({e(scores['metric'])});
{refs_used} reference face{'s' if refs_used != 1 else ''} from <code>{e(scores['references']['folder'])}</code>{'; not used: ' + ', '.join(skipped) if skipped else ''}.{held_note}<br>
{len(st['prompts'])} prompts + {len(bleed_prompts)} bleed prompts × {len(st['seeds'])} seeds (seeds {', '.join(map(str, st['seeds']))}), {st['steps']} steps, CFG {st['cfg']:g},
{st['width']}×{st['height']}, {e(st['sampler'])}, LoRA weight {st['lora_weight']:g}, base model <code>{e(st['base_model'])}</code>.</p>
<img src="{chart}" alt="identity per checkpoint">
<table><tr><th>checkpoint</th><th>held-out identity</th><th>identity (all photos)</th><th>of your photos' own</th><th>spread (sd)</th><th>min</th><th>max</th>
<th>vs base</th><th>faces found</th><th>no face</th><th>bleed</th><th>bleed vs base</th><th>overtrained</th><th>to mean face</th>
<th>copy gap</th><th>nearest photo</th></tr>
{''.join(_row(c, scores, own) for c in scores['checkpoints'])}</table>
<p class="note">All scores by {e(scores['embedder'])}. <i>Held-out identity</i>: similarity (0–1, higher = more alike) of each generated
face to the nearest held-out photo, one the LoRA never saw: the honest measure of likeness, and the one the best
checkpoint is chosen by when there is one. <i>Identity (all photos)</i>: to the nearest of all the person's photos.
<i>Of your photos' own</i>: <i>to mean face</i> (each generated face against the centroid of the reference photos) as a
share of how much the person's own photos look like each other measured the same way (each against the centroid of the
others, same face model; never across face models): about 100 % is as alike as the person's own photos.
{thresholds_note()} Images with no face are
counted, not scored. <i>Bleed</i>: mean score of every face in images of prompts without the trigger (below); a
checkpoint whose bleed exceeds the base model's by more than {st.get('bleed_margin', 0.1):g} gives strangers the person's
face: overtrained, never chosen while another is not. <i>To mean face</i>: similarity to the mean of all reference faces.
<i>Copy gap</i> = identity − to mean face: clearly positive when faces match one training photo far better
than the person as a whole (a copy of one photo, a sign of overfitting). Every number here is recomputable from scores.json.</p>
{_validation(scores)}
<h2>Top 3 images</h2>{top}
<h2>Prompts</h2><ol>{''.join(f'<li>{e(p)}</li>' for p in st['prompts'])}</ol>
{'<h2>Bleed prompts (no trigger)</h2><ol>' + ''.join(f'<li>{e(p)}</li>' for p in bleed_prompts) + '</ol>' if bleed_prompts else ''}
<h2>All images</h2>{_grids(scores, folder)}
</body></html>"""
    path = folder / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path
