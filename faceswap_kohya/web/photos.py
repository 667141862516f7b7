"""Photos page: drop photos in (or name a folder), prepare them into a run folder (the `prepare` job), look at the
contact sheet, the photo gate's verdict and the per-photo table (each photo's findings: someone else, other faces,
blurry, face too small, duplicate), and edit the captions, which are saved into the run's caption files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceswap_kohya.errors import UserError
from faceswap_kohya.jobs import captions as captions_job
from faceswap_kohya.web import train
from faceswap_kohya.web.common import Workspace, error_text, run_job, save_photos

TABLE_HEADERS = ["photo", "used", "why not", "size", "faces", "identity", "pose", "findings", "crop", "training images",
                 "caption", "caption from"]
CAPTION_HEADERS = ["image", "caption"]


def photo_rows(run: Path) -> list[list]:
    """One row per input photo, from the run's dataset.json."""
    data = captions_job.dataset_record(run)
    mode = captions_job.caption_mode(run)
    folder = run / data["instance_dir"]
    rows = []
    for p in data["photos"]:
        crop = p.get("crop_box")
        outputs = p.get("outputs", [])
        edited = any(captions_job.caption_of(folder / o) not in (None, p.get("caption")) for o in outputs)
        rows.append([p["file"], "yes" if p["status"] == "kept" else "no", p.get("reason", ""),
                     "×".join(str(v) for v in p.get("size", [])), p.get("faces", 0),
                     "" if p.get("identity_score") is None else f"{p['identity_score']:.2f}", p.get("pose", ""),
                     "; ".join(f["text"] for f in p.get("findings", [])),
                     f"{crop[2] - crop[0]} px ×{p.get('upscale', 1):g}" if crop else "", ", ".join(outputs),
                     p.get("caption", ""), ("edited" if edited else mode) if outputs else ""])
    return rows


def instance_folder(run: Path) -> Path:
    return captions_job.instance_folder(run)


def caption_rows(run: Path) -> list[list[str]]:
    """Every training image of the run (augmented copies included) with its caption file's text."""
    return [list(row) for row in captions_job.captions(run)]


def save_captions(run: Path, rows) -> str:
    """The caption-editing job (`jobs.captions.save_captions`) on the table's rows."""
    return captions_job.save_captions(run, rows)


def prepare_view(run: Path) -> list:
    sheet = run / "contact_sheet.png"
    return [str(sheet) if sheet.is_file() else None, photo_rows(run), caption_rows(run)]


# ---------------------------------------------------------------- the page
@dataclass
class Page:
    files: Any
    folder: Any
    received: Any
    prepare: Any
    status: Any
    log: Any
    sheet: Any
    table: Any
    captions: Any
    save: Any
    saved: Any


def build(shared) -> Page:
    import gradio as gr

    gr.Markdown("Drop 5–10 photos of one person (different days, light and angles; the face clearly visible), "
                "or name a folder. **Prepare** checks, crops and captions them into a run folder, using the "
                "preset, trigger, class and resolution set on the Train page. Your photos are only read.")
    with gr.Row():
        files = gr.File(label="Photos (and optional .txt captions)", file_count="multiple", type="filepath",
                        file_types=["image", ".heic", ".heif", ".txt"], elem_id="photos-upload")
        with gr.Column():
            folder = gr.Textbox(label="…or a folder on this computer", placeholder="~/photos", elem_id="photos-folder")
            received = gr.Markdown(elem_id="photos-received")
    prepare = gr.Button("Prepare", variant="primary", elem_id="photos-prepare")
    status = gr.Markdown(elem_id="photos-status")
    log = gr.Textbox(label="Log", lines=6, max_lines=12, elem_id="photos-log")
    sheet = gr.Image(label="Contact sheet", type="filepath", interactive=False, elem_id="photos-sheet")
    table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, wrap=True, label="Every photo",
                         elem_id="photos-table")
    captions = gr.Dataframe(headers=CAPTION_HEADERS, interactive=True, static_columns=[0], wrap=True,
                            label="Captions (edit, then save)", elem_id="photos-captions")
    with gr.Row():
        save = gr.Button("Save captions", elem_id="photos-save-captions")
        saved = gr.Markdown(elem_id="photos-saved")
    return Page(files, folder, received, prepare, status, log, sheet, table, captions, save, saved)


def wire(page: Page, train_page, shared) -> None:
    import gradio as gr


    ws: Workspace = shared.ws

    # New photos replace the prepared ones: training must not silently use the earlier set.
    def uploaded(files):
        if not files:
            return gr.skip(), gr.skip(), ""
        try:
            folder = save_photos(files, ws)
        except UserError as e:
            return "", "", error_text(e)
        n = sum(1 for _ in folder.iterdir())
        return str(folder), "", f"{n} file{'s' if n != 1 else ''} received → `{folder}`"

    def named(text, current):
        if not text.strip():
            return gr.skip(), gr.skip(), gr.skip()
        from faceswap_kohya.data.images import check_folder

        try:
            folder = str(check_folder(text.strip(), "dataset.images"))
        except UserError as e:
            return "", "", error_text(e)
        return (gr.skip(), gr.skip(), gr.skip()) if folder == current else (folder, "", f"photos from `{folder}`")

    targets = [shared.photos_dir, shared.prepared, page.received]
    page.files.upload(uploaded, [page.files], targets)
    page.folder.submit(named, [page.folder, shared.photos_dir], targets)
    page.folder.blur(named, [page.folder, shared.photos_dir], targets)

    def on_prepare(photos_dir, *knob_values):
        from faceswap_kohya.jobs.prepare import prepare

        try:
            preset, _, _, _ = train.load(train.Knobs(*knob_values), ws, photos_dir or "", "")
            if not preset.dataset.images:
                raise UserError("no photos: drop them above or name a folder")
        except UserError as e:
            yield "", error_text(e), "", None, None, None
            return
        for state in run_job("prepare", lambda emit: prepare(preset, emit)):
            if not state.done:
                yield gr.skip(), state.progress, state.log, gr.skip(), gr.skip(), gr.skip()
        if state.error:
            yield gr.skip(), state.progress, state.log, gr.skip(), gr.skip(), gr.skip()
            return
        run, summary = state.result
        verdict = summary.gate.get("verdict")
        yield (str(run.root), state.progress + f" — `{run.root}`" + (f"  \n**{verdict}**" if verdict else ""), state.log,
               *prepare_view(run.root))

    page.prepare.click(on_prepare, [shared.photos_dir] + train_page.knobs,
                       [shared.prepared, page.status, page.log, page.sheet, page.table, page.captions])

    def on_save(run, rows):
        if not run:
            return "prepare the photos first", gr.skip(), gr.skip()
        try:
            values = rows.values.tolist() if hasattr(rows, "values") else list(rows)
            return save_captions(Path(run), values), photo_rows(Path(run)), caption_rows(Path(run))
        except UserError as e:
            return error_text(e), gr.skip(), gr.skip()

    page.save.click(on_save, [shared.prepared, page.captions], [page.saved, page.table, page.captions])
