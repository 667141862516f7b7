"""Results page: images from a run's LoRA (`generate`: `<lora:name:w>` tags, weight, seed, size, sampler) and the
before/after grid (`compare`: base vs 0.7 vs 1.0, same seeds); every PNG can be downloaded with its metadata.
Picking a run shows its newest grids (`runs.artifacts.latest_grids`), each whole (a gallery cell per image, never
one cell stretched over the page)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from faceswap_kohya.config.samplers import SAMPLERS
from faceswap_kohya.errors import UserError
from faceswap_kohya.web.common import Workspace, run_dir, run_job
from faceswap_kohya.web.pages import run_dropdown

DEFAULT_PROMPT = "{trigger} {class}, professional portrait photo, soft light"
SAMPLER_NAMES = list(SAMPLERS)  # the one sampler vocabulary (config/samplers.py)


def seeds(seed: Optional[float], n: int) -> list[int]:
    """`n` seeds from `seed` on; a random first seed (written into every image) when it is empty or negative."""
    first = int(seed) if seed is not None and seed >= 0 else random.randrange(2**31)
    return list(range(first, first + max(1, int(n))))


def _source_and_settings(ws: Workspace, run: str, negative: str, steps, cfg, size: str, sampler: str):
    from faceswap_kohya.diffusion.source import image_settings, resolve_source

    source = resolve_source(str(run_dir(run, ws)))
    text = str(cfg or "").strip()  # empty: the run's own (default_cfg)
    try:
        cfg = float(text) if text else None
    except ValueError:
        raise UserError(f"CFG {text!r}: give a number (6 for SDXL, 3.5 for FLUX.1), or leave it empty for the run's own") from None
    return source, image_settings(negative, int(steps), cfg, size.strip() or None, sampler, source)


def generate(ws: Workspace, run: str, prompt: str, negative: str, weight: float, seed, n, steps, cfg, size: str,
             sampler: str, emit) -> list[Path]:
    """`faceswap-kohya generate RUN "prompt" -w W --seed S -n N --steps .. --cfg .. --size .. --sampler ..`."""
    from faceswap_kohya.diffusion.source import default_out_dir
    from faceswap_kohya.jobs.generate import run_generate

    source, settings = _source_and_settings(ws, run, negative, steps, cfg, size, sampler)
    return run_generate(source, [prompt], seeds(seed, n), settings, default_out_dir(source, "generate"),
                        weight=float(weight), on_event=emit)


def compare(ws: Workspace, run: str, prompt: str, negative: str, seed, n, steps, cfg, size: str, sampler: str,
            emit) -> list[Path]:
    """`faceswap-kohya compare RUN "prompt" --seed S -n N ...`: the grid of base / 0.7 / 1.0."""
    from faceswap_kohya.diffusion.source import default_out_dir
    from faceswap_kohya.jobs.compare import run_compare

    source, settings = _source_and_settings(ws, run, negative, steps, cfg, size, sampler)
    return run_compare(source, [prompt], seeds(seed, n), settings, default_out_dir(source, "compare"), on_event=emit)


def downloads(paths: list) -> list[str]:
    """The PNGs and their JSON sidecars."""
    out = []
    for p in map(Path, paths):
        out.append(str(p))
        if p.with_suffix(".json").is_file():
            out.append(str(p.with_suffix(".json")))
    return out


@dataclass
class Page:
    run: Any
    prompt: Any
    negative: Any
    weight: Any
    seed: Any
    n: Any
    steps: Any
    cfg: Any
    size: Any
    sampler: Any
    generate: Any
    compare: Any
    status: Any
    log: Any
    gallery: Any
    files: Any
    grid: Any = None  # the before/after grid, shown whole (a gallery thumbnail crops a wide grid)
    show: Any = None  # (run, the gallery now) → the view's values: the run's newest grids, unless images are shown
    view: Any = None  # the components show() fills
    show_inputs: Any = None


def build(shared) -> Page:
    import gradio as gr

    gr.Markdown("Prompts may use `{trigger}` and `{class}`, and `<lora:NAME:WEIGHT>` tags for other LoRAs in the "
                "run's model folder. Every PNG carries its settings (A1111 `parameters`) and a JSON sidecar.")
    run = run_dropdown(shared.ws, elem_id="results-run")
    prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt", lines=2, elem_id="results-prompt")
    negative = gr.Textbox("", label="Negative prompt", elem_id="results-negative")
    with gr.Row():
        weight = gr.Slider(0, 1.5, value=1.0, step=0.05, label="LoRA weight", elem_id="results-weight")
        seed = gr.Number(-1, label="Seed (-1: random)", precision=0, elem_id="results-seed")
        n = gr.Number(1, label="Images", precision=0, minimum=1, maximum=16, elem_id="results-n")
    with gr.Row():
        steps = gr.Number(30, label="Steps", precision=0, minimum=1, elem_id="results-steps")
        cfg = gr.Textbox("", label="CFG (empty: the run's evaluate.cfg)", placeholder="6 (SDXL), 3.5 (FLUX.1)",
                         elem_id="results-cfg")
        size = gr.Textbox("", label="Size (empty: the run's resolution)", placeholder="1024 or 832x1216",
                          elem_id="results-size")
        sampler = gr.Dropdown(SAMPLER_NAMES, value="euler", label="Sampler", elem_id="results-sampler")
    with gr.Row():
        gen_btn = gr.Button("Generate", variant="primary", elem_id="results-generate")
        cmp_btn = gr.Button("Before / after grid", elem_id="results-compare")
    status = gr.Markdown(elem_id="results-status")
    log = gr.Textbox(label="Log", lines=4, max_lines=8, elem_id="results-log")
    gallery = gr.Gallery(label="Images", columns=3, height=420, object_fit="contain", fit_columns=False,
                         elem_id="results-gallery")
    grid = gr.Image(label="Before / after grid (whole)", type="filepath", interactive=False, visible=False,
                    elem_id="results-grid")
    files = gr.File(label="Download PNGs (with metadata)", file_count="multiple", interactive=False,
                    elem_id="results-files")
    page = Page(run, prompt, negative, weight, seed, n, steps, cfg, size, sampler, gen_btn, cmp_btn, status, log,
                gallery, files, grid)
    _wire(page, shared.ws)
    return page


def grids_view(folder: Optional[Path]) -> list:
    """[gallery, grid, files] for a run: its newest before/after grids (the first one whole), and their images for
    download; empty when it has none."""
    import gradio as gr

    from faceswap_kohya.runs.artifacts import latest_grids

    grids = [str(p) for p in latest_grids(folder)] if folder is not None else []
    if not grids:
        return [None, gr.Image(value=None, visible=False), None]
    files = sorted(str(p) for p in Path(grids[0]).parent.glob("*.png"))
    return [grids, gr.Image(value=grids[0], visible=True), downloads(files)]


def _stream(name: str, work):
    import gradio as gr

    for state in run_job(name, work):
        if not state.done:
            yield state.progress, state.log, state.images or gr.skip(), gr.skip(), gr.skip()
    paths = [str(p) for p in state.result] if state.result else []
    if name == "compare":  # the grids, and every image of them for download; the first grid whole below
        shown, files = paths, sorted(str(p) for p in Path(paths[0]).parent.glob("*.png")) if paths else []
        grid = gr.Image(value=paths[0], visible=True) if paths else gr.skip()
    else:
        shown = files = state.images or paths
        grid = gr.Image(value=None, visible=False)
    yield state.progress, state.log, shown or gr.skip(), downloads(files) or gr.skip(), grid


def _wire(page: Page, ws: Workspace) -> None:
    outputs = [page.status, page.log, page.gallery, page.files, page.grid]

    def shown(value):
        try:
            return grids_view(run_dir(value, ws))
        except Exception:  # noqa: BLE001 - no run chosen or an unreadable folder: an empty view
            return grids_view(None)

    def shown_unless_busy(value, current):
        import gradio as gr

        return [gr.skip()] * 3 if current else shown(value)  # what was just generated stays on the page

    page.show, page.view, page.show_inputs = shown_unless_busy, [page.gallery, page.grid, page.files], [page.run, page.gallery]
    page.run.change(shown, [page.run], page.view, show_progress="hidden")

    def on_generate(run, prompt, negative, weight, seed, n, steps, cfg, size, sampler):
        yield from _stream("generate", lambda emit: generate(ws, run, prompt, negative, weight, seed, n, steps, cfg,
                                                             size, sampler, emit))

    def on_compare(run, prompt, negative, seed, n, steps, cfg, size, sampler):
        yield from _stream("compare", lambda emit: compare(ws, run, prompt, negative, seed, n, steps, cfg, size,
                                                           sampler, emit))

    page.generate.click(on_generate, [page.run, page.prompt, page.negative, page.weight, page.seed, page.n, page.steps,
                                      page.cfg, page.size, page.sampler], outputs)
    page.compare.click(on_compare, [page.run, page.prompt, page.negative, page.seed, page.n, page.steps, page.cfg,
                                    page.size, page.sampler], outputs)

