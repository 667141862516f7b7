"""Swap page: upload a photo, pick the face where there are several, set the strength; `faceswap-kohya swap` puts the
run's person there and the result is shown beside the original, with its identity score."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceswap_kohya.errors import UserError
from faceswap_kohya.web.common import Workspace, error_text, new_upload_folder, run_dir, run_job, save_upload
from faceswap_kohya.web.pages import run_dropdown
from faceswap_kohya.web.results import SAMPLER_NAMES, seeds


def keep_photo(ws: Workspace, uploaded: str) -> Path:
    """The uploaded photo, copied under a safe name into the workspace's uploads (the swap only reads it)."""
    src = Path(uploaded)
    return save_upload(src, new_upload_folder(ws, "swap"), src.name)


def faces_preview(photo: Path, out: Path) -> tuple[Path, int]:
    """The photo with every face found boxed and numbered as `swap --face N` counts them (1 = the largest)."""
    from PIL import ImageDraw

    from faceswap_kohya.faces.detect import detect
    from faceswap_kohya.jobs.swap import read_photo

    image = read_photo(photo)
    found = detect(image)
    draw = ImageDraw.Draw(image)
    width = max(2, image.width // 250)
    for i, face in enumerate(found, start=1):
        draw.rectangle(face.box, outline=(255, 40, 40), width=width)
        draw.text((face.box[0] + width, face.box[1] + width), str(i), fill=(255, 40, 40))
    image.save(out)
    return out, len(found)


def swap(ws: Workspace, run: str, photo: str, face: int, strength: float, weight: float, seed, steps, sampler: str,
         emit):
    """`faceswap-kohya swap RUN --photo P --face N --strength S -w W --seed .. --steps .. --sampler ..`."""
    from faceswap_kohya.diffusion.source import Settings, default_cfg, resolve_source
    from faceswap_kohya.jobs import swap as sw

    if not photo:
        raise UserError("no photo: upload the photo to put the face into")
    source = resolve_source(str(run_dir(run, ws)))
    settings = Settings(steps=int(steps), cfg=default_cfg(source), sampler=sampler)
    return sw.run_swap(source, Path(photo), settings, sw.default_out_dir(source), seed=seeds(seed, 1)[0],
                       strength=float(strength), weight=float(weight), face=int(face or 1), on_event=emit)


@dataclass
class Page:
    run: Any
    upload: Any
    photo: Any
    faces: Any
    face: Any
    strength: Any
    go: Any
    status: Any
    log: Any
    before: Any
    after: Any


def build(shared) -> Page:
    import gradio as gr

    ws = shared.ws
    gr.Markdown("The face is redrawn by SDXL with the LoRA inside a feathered ellipse; every pixel outside it is "
                "kept exactly. Your photo is only read.")
    run = run_dropdown(ws, elem_id="swap-run")
    photo = gr.State("")
    with gr.Row():
        upload = gr.Image(label="Photo", type="filepath", sources=["upload"], elem_id="swap-upload")
        faces = gr.Image(label="Faces found", type="filepath", interactive=False, elem_id="swap-faces")
    with gr.Row():
        face = gr.Dropdown([1], value=1, label="Face (1 = the largest)", elem_id="swap-face")
        strength = gr.Slider(0.05, 1.0, value=0.75, step=0.05, label="Strength", elem_id="swap-strength")
        weight = gr.Slider(0, 1.5, value=1.0, step=0.05, label="LoRA weight", elem_id="swap-weight")
    with gr.Row():
        seed = gr.Number(-1, label="Seed (-1: random)", precision=0, elem_id="swap-seed")
        steps = gr.Number(30, label="Steps", precision=0, minimum=1, elem_id="swap-steps")
        sampler = gr.Dropdown(SAMPLER_NAMES, value="euler", label="Sampler", elem_id="swap-sampler")
    go = gr.Button("Swap", variant="primary", elem_id="swap-go")
    status = gr.Markdown(elem_id="swap-status")
    log = gr.Textbox(label="Log", lines=4, max_lines=8, elem_id="swap-log")
    with gr.Row():
        before = gr.Image(label="Original", type="filepath", interactive=False, elem_id="swap-before")
        after = gr.Image(label="Swapped", type="filepath", interactive=False, elem_id="swap-after")
    page = Page(run, upload, photo, faces, face, strength, go, status, log, before, after)

    def uploaded(path):
        if not path:
            return "", None, gr.skip(), ""
        try:
            kept = keep_photo(ws, path)
            preview, n = faces_preview(kept, kept.parent / "faces-preview.png")
        except UserError as e:
            return "", None, gr.skip(), error_text(e)
        note = f"{n} face{'s' if n != 1 else ''} found" if n else "no face found in this photo"
        return str(kept), str(preview), gr.Dropdown(choices=list(range(1, n + 1)) or [1], value=1), note

    upload.upload(uploaded, [upload], [photo, faces, face, status])

    def on_swap(run_value, photo_path, face_n, strength_v, weight_v, seed_v, steps_v, sampler_v):
        work = lambda emit: swap(ws, run_value, photo_path, face_n, strength_v, weight_v, seed_v, steps_v,  # noqa: E731
                                 sampler_v, emit)
        for state in run_job("swap", work):
            if not state.done:
                yield state.progress, state.log, gr.skip(), gr.skip()
        if state.error or state.result is None:
            yield state.progress, state.log, gr.skip(), gr.skip()
            return
        text = state.progress + "\n\n" + "  \n".join(state.result.lines())
        yield text, state.log, photo_path, str(state.result.path)

    go.click(on_swap, [run, photo, face, strength, weight, seed, steps, sampler], [status, log, before, after])
    return page
