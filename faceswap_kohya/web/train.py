"""Train page: a preset (shipped, an imported Kohya file or an uploaded YAML) and the knobs people change, checked
before Start; then live progress followed from the run folder (the loss curve, the samples and their likeness per
epoch), Stop (Ctrl-C) and Resume (`train --resume`). One training at a time: a second Start (another tab) says which
run is going."""

from __future__ import annotations

import shlex
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from faceswap_kohya.errors import UserError
from faceswap_kohya.runs.lock import held
from faceswap_kohya.web import follow
from faceswap_kohya.web.common import Workspace, error_text, new_upload_folder, save_upload

DEFAULT_PRESET = "face-12gb"
RESOLUTIONS = [64, 512, 768, 1024, 1280, 1536]


@dataclass
class Knobs:
    """The Train page's settings, in the order of the components."""

    preset: str
    preset_file: Optional[str]
    trigger: str
    class_word: str
    length_kind: str  # steps | epochs
    length: float
    rank: float
    alpha: float
    lr: float
    resolution: float
    save_state: bool

    def numbers(self) -> None:
        """Every number field holds a number (an emptied field is refused by name)."""
        for label, name in (("Steps / epochs", "length"), ("Rank", "rank"), ("Alpha", "alpha"),
                            ("Learning rate", "lr"), ("Resolution", "resolution")):
            try:
                setattr(self, name, float(getattr(self, name)))
            except (TypeError, ValueError):
                raise UserError(f"{label}: give a number (got {getattr(self, name)!r})") from None

    def overrides(self, ws: Workspace) -> list[str]:
        """The `key=value` overrides these knobs mean (runs go to the app's workspace)."""
        self.numbers()
        out = [f"subject.trigger={self.trigger.strip()}", f"subject.class_word={self.class_word.strip()}"]
        if self.length_kind == "epochs":
            out += [f"training.epochs={int(self.length)}", "training.max_steps=null"]
        else:
            out.append(f"training.max_steps={int(self.length)}")
        out += [f"network.dim={int(self.rank)}", f"network.alpha={self.alpha:g}", f"optimizer.unet_lr={self.lr!r}",
                f"dataset.resolution={int(self.resolution)}", f"training.save_state={str(bool(self.save_state)).lower()}",
                f"output.dir={ws.output}"]
        return out


def preset_source(knobs: Knobs, ws: Workspace, keep: bool) -> str:
    """The preset as the CLI takes it: an uploaded file (copied into the workspace when `keep`) or a shipped name."""
    if knobs.preset_file:
        src = Path(knobs.preset_file)
        return str(save_upload(src, new_upload_folder(ws, "presets"), src.name)) if keep else str(src)
    return knobs.preset


def load(knobs: Knobs, ws: Workspace, photos_dir: str = "", prepared: str = "", keep: bool = False):
    """(preset, path, import report or None, CLI arguments) exactly as `faceswap-kohya train` would get them."""
    from faceswap_kohya.formats.importer import load_any

    source = preset_source(knobs, ws, keep)
    overrides = knobs.overrides(ws)
    if photos_dir and not prepared:
        overrides.insert(0, f"dataset.images={photos_dir}")
    preset, path, report = load_any(source, overrides)
    args = ["train", source, *overrides] + (["--prepared", prepared] if prepared else [])
    return preset, path, report, args


def knob_values(name: str, file: Optional[str]) -> list:
    """The knobs as a preset sets them (after a preset is picked or uploaded)."""
    from faceswap_kohya.formats.importer import load_any

    preset, _, _ = load_any(file or name, [])
    t = preset.training
    kind, length = ("steps", t.max_steps) if t.max_steps else ("epochs", t.epochs)
    return [preset.subject.trigger, preset.subject.class_word, kind, length, preset.network.dim, preset.network.alpha,
            preset.optimizer.unet_lr, preset.dataset.resolution, t.save_state]


def check_text(knobs: Knobs, ws: Workspace, photos_dir: str, prepared: str) -> str:
    """What Start would be told before anything runs: the preset's own messages, or that it is valid."""
    from faceswap_kohya.trainer.install import check_flux_model

    try:
        preset, path, report, args = load(knobs, ws, photos_dir, prepared)
        check_flux_model(preset)  # FLUX's four files, as `train` checks them before it starts
        if prepared:
            from faceswap_kohya.jobs.train import check_prepared

            check_prepared(preset, Path(prepared))
    except UserError as e:
        return "```\n" + error_text(e) + "\n```"
    lines = [f"**valid**: {path.name}"]
    if prepared:
        lines.append(f"photos: as prepared in `{prepared}`")
    elif preset.dataset.images:
        lines.append(f"photos: `{preset.dataset.images}`")
    else:
        lines.append("photos: none yet — add them on the Photos page")
    if report is not None:
        lines.append("```\n" + report.text() + "\n```")
    lines.append("same as: `faceswap-kohya " + " ".join(shlex.quote(a) for a in args) + "`")
    return "\n\n".join(lines)


@contextmanager
def one_training(ws: Workspace) -> Iterator[None]:
    """One training at a time in the workspace (one machine: two SDXL trainings don't fit in its memory): a second
    Start, from another tab or while a run trains (from the app or the command line), is refused saying which run
    is going. Two tabs pressing Start at the same moment: the workspace's lock lets one through. The pipeline the
    app keeps between its jobs is let go before the training starts."""
    ws.make()
    stack = ExitStack()
    try:
        stack.enter_context(held(ws.launches, "starting a training"))
    except UserError:
        raise UserError("a training is being started from another tab right now: one runs at a time; "
                        "open it on the Runs page to follow it") from None
    with stack:
        running = follow.running_training(ws)
        if running is not None:
            raise UserError(f"a training is already running: {running.parent.name}/{running.name}; one runs at a time on "
                            "this machine: wait for it to end, or Stop it (open it on the Runs page), then start again")
        from faceswap_kohya.diffusion.pipeline import release_kept

        release_kept()  # the base model the app kept loaded for its pictures: the trainer needs that memory
        yield


def start(ws: Workspace, knobs: Knobs, photos_dir: str, prepared: str) -> tuple[str, str]:
    """Launch `faceswap-kohya train ...` in its own process; (run folder, message). One at a time (one_training)."""
    preset, _, _, args = load(knobs, ws, photos_dir, prepared, keep=True)
    if not prepared and not preset.dataset.images:
        raise UserError("no photos: add them on the Photos page (or use a preset that names dataset.images)")
    with one_training(ws):
        launch = follow.spawn_cli(args, ws)
        root = follow.wait_for_run(launch, ws)
    return str(root), f"started {root.parent.name}/{root.name} (process {launch.proc.pid})"


def resume(ws: Workspace, run: str) -> tuple[str, str]:
    if not run:
        raise UserError("no run to resume: open one on the Runs page")
    with one_training(ws):
        launch = follow.spawn_cli(["train", "--resume", run], ws)
        root = follow.wait_for_run(launch, ws)
    return str(root), f"resuming {Path(run).name} in {root.parent.name}/{root.name}"


def reattach(ws: Workspace) -> str:
    found = follow.running_training(ws)
    return str(found) if found else ""


def loss_frame(view: follow.RunView):
    """The losses as typed columns (int steps, float losses), even when there are none yet: an untyped empty frame
    would make gradio's LinePlot treat the losses as names for good (no line, an axis in text order)."""
    import pandas as pd

    points = [(s, v, "training") for s, v in sorted(view.losses.items())]
    points += [(s, v, "validation") for s, v in sorted(view.val_losses.items())]
    return pd.DataFrame({"step": pd.Series([int(p[0]) for p in points], dtype="int64"),
                         "loss": pd.Series([float(p[1]) for p in points], dtype="float64"),
                         "series": pd.Series([p[2] for p in points], dtype="str")})


LOSS_SERIES = ("training", "validation")


def chart_frame(frame, names):
    """`frame` (x, y, series) with a row without x and y for each of `names` it has no point of yet. Gradio fixes a
    chart's colours from the series in the first data it draws and later only swaps the data: a series that comes
    afterwards (the first losses after a starting run's empty frame, the validation loss) would be drawn with no
    colour, i.e. not at all. Named from the first frame on, every series has its colour; an empty row draws nothing."""
    import pandas as pd

    x, y = frame.columns[:2]
    missing = [n for n in names if n not in set(frame["series"])]
    rows = pd.DataFrame({x: pd.Series([pd.NA] * len(missing), dtype="Int64"),
                         y: pd.Series([float("nan")] * len(missing), dtype="float64"),
                         "series": pd.Series(missing, dtype="str")})
    return pd.concat([frame.astype({x: "Int64"}), rows], ignore_index=True) if missing else frame


LIKENESS_SERIES = {"identity": "your photos", "held_out": "held-out photos"}


def likeness_frame(view: follow.RunView):
    """The trainer's samples' likeness per epoch (the mean over that epoch's samples with a face), one series for the
    training photos and one for the held-out ones, as typed columns (int epochs, float likeness; see loss_frame).
    Samples without a face have no point."""
    import pandas as pd

    found: dict = {}
    for sample in view.likeness:
        for key, series in LIKENESS_SERIES.items():
            value = getattr(sample, key)
            if value is not None:
                found.setdefault((sample.epoch if sample.epoch is not None else 0, series), []).append(value)
    points = sorted((epoch, sum(v) / len(v), series) for (epoch, series), v in found.items())
    return pd.DataFrame({"epoch": pd.Series([int(p[0]) for p in points], dtype="int64"),
                         "likeness": pd.Series([round(float(p[1]), 4) for p in points], dtype="float64"),
                         "series": pd.Series([p[2] for p in points], dtype="str")})


# ---------------------------------------------------------------- the page
@dataclass
class Page:
    knobs: list
    check: Any
    start: Any
    stop: Any
    resume: Any
    message: Any
    headline: Any
    loss: Any
    likeness: Any
    samples: Any
    log: Any
    loras: Any
    timer: Any
    seen: Any
    run_check: Any = None  # the check, for the page's first load
    check_inputs: Any = None


def build(shared) -> Page:
    import gradio as gr

    from faceswap_kohya.config.presets import discover

    infos = discover()
    names = [i.name for i in infos]
    default = DEFAULT_PRESET if DEFAULT_PRESET in names else (names[0] if names else None)
    values = knob_values(default, None) if default else [""] * 9
    gr.Markdown("Pick a preset for your GPU (or upload one), change what you need, check, then **Start**. "
                "Training runs in its own process: closing this page does not stop it.")
    with gr.Row():
        preset = gr.Dropdown([(f"{i.name} — {i.vram}", i.name) for i in infos], value=default, label="VRAM preset",
                             elem_id="train-preset")
        preset_file = gr.File(label="…or your own preset (YAML, kohya_ss JSON, sd-scripts TOML)", type="filepath",
                              file_types=[".yaml", ".yml", ".json", ".toml"], elem_id="train-preset-file")
    with gr.Row():
        trigger = gr.Textbox(values[0], label="Trigger word", elem_id="train-trigger")
        class_word = gr.Textbox(values[1], label="Class", elem_id="train-class")
        length_kind = gr.Radio(["steps", "epochs"], value=values[2], label="Train for", elem_id="train-length-kind")
        length = gr.Number(values[3], label="Steps / epochs", precision=0, minimum=1, elem_id="train-length")
    with gr.Row():
        rank = gr.Number(values[4], label="Rank (network dim)", precision=0, minimum=1, elem_id="train-rank")
        alpha = gr.Number(values[5], label="Alpha", minimum=0.001, elem_id="train-alpha")
        lr = gr.Number(values[6], label="Learning rate (UNet)", elem_id="train-lr")
        resolution = gr.Dropdown(RESOLUTIONS, value=values[7], label="Resolution", allow_custom_value=True,
                                 elem_id="train-resolution")
        save_state = gr.Checkbox(values[8], label="Keep state for Resume", elem_id="train-save-state")
    knobs = [preset, preset_file, trigger, class_word, length_kind, length, rank, alpha, lr, resolution, save_state]
    check = gr.Markdown(elem_id="train-check")
    with gr.Row():
        start_btn = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop_btn = gr.Button("Stop", variant="stop", elem_id="train-stop")
        resume_btn = gr.Button("Resume", elem_id="train-resume")
    message = gr.Markdown(elem_id="train-message")
    headline = gr.Markdown("No training followed yet.", elem_id="train-progress")
    with gr.Row():
        loss = gr.LinePlot(x="step", y="loss", color="series", label="Loss", height=260, elem_id="train-loss")
        likeness = gr.LinePlot(x="epoch", y="likeness", color="series", y_lim=[0, 1], height=260,
                               label="Likeness of the samples (their faces vs your photos)", elem_id="train-likeness")
    samples = gr.Gallery(label="Samples", columns=6, height=230, object_fit="contain", fit_columns=False,
                         elem_id="train-samples")
    log = gr.Textbox(label="Log (tail of train.log)", lines=10, max_lines=10, elem_id="train-log")
    loras = gr.File(label="LoRA files", file_count="multiple", interactive=False, elem_id="train-loras")
    timer = gr.Timer(2.0, active=False)  # ticks only while a followed run is going
    seen = gr.State(())
    return Page(knobs, check, start_btn, stop_btn, resume_btn, message, headline, loss, likeness, samples, log, loras,
                timer, seen)


def wire(page: Page, shared) -> None:
    import gradio as gr

    ws = shared.ws
    inputs = page.knobs + [shared.photos_dir, shared.prepared]

    def checked(*values):
        return check_text(Knobs(*values[:11]), ws, values[11], values[12])

    def picked(name, file):
        try:
            return knob_values(name, file)
        except UserError:
            return [gr.skip()] * 9  # the check text says what is wrong

    page.run_check, page.check_inputs = checked, inputs
    page.knobs[0].change(picked, page.knobs[:2], page.knobs[2:], show_progress="hidden")
    page.knobs[1].change(picked, page.knobs[:2], page.knobs[2:], show_progress="hidden")
    for component in page.knobs + [shared.photos_dir, shared.prepared]:
        component.change(checked, inputs, page.check, show_progress="hidden")

    def on_start(*values):
        try:
            root, text = start(ws, Knobs(*values[:11]), values[11], values[12])
            return root, text
        except UserError as e:
            return gr.skip(), "```\n" + error_text(e) + "\n```"

    def on_stop(run):
        try:
            return follow.stop_run(Path(run)) if run else "nothing to stop: no training is followed"
        except UserError as e:
            return error_text(e)

    def on_resume(run):
        try:
            return resume(ws, run)
        except UserError as e:
            return gr.skip(), "```\n" + error_text(e) + "\n```"

    page.start.click(on_start, inputs, [shared.followed, page.message])
    page.stop.click(on_stop, [shared.followed], [page.message])
    page.resume.click(on_resume, [shared.followed], [shared.followed, page.message])
    outputs = [page.headline, page.loss, page.likeness, page.samples, page.log, page.loras, page.seen, page.timer]
    page.timer.tick(lambda run, seen: tick(run, seen), [shared.followed, page.seen], outputs, show_progress="hidden")
    shared.followed.change(lambda run: tick(run, ()), [shared.followed], outputs, show_progress="hidden")


def tick(run: str, seen: tuple):
    """The followed run's progress; unchanged parts are skipped (files are not sent again). The timer stops once the
    run has ended and its last state is shown."""
    import gradio as gr

    if not run:
        return [gr.skip()] * 7 + [gr.Timer(active=False)]
    view = follow.view_of(Path(run))
    pictures, files = follow.samples(view.root), follow.loras(view.root)
    log = follow.log_tail(view.root, lines=12)  # what the 10-line box shows: the newest lines
    step = view.step.step if view.step else 0
    now = (run, view.state, step, len(view.losses), len(view.val_losses), len(view.likeness), tuple(pictures),
           tuple(files), log)
    if now == tuple(seen):
        return [gr.skip()] * 7 + [gr.skip() if view.active else gr.Timer(active=False)]
    old = dict(zip(("run", "state", "step", "n", "nv", "nl", "pictures", "files", "log"), seen or (None,) * 9))
    fresh = run != old["run"]
    return [view.headline(),
            chart_frame(loss_frame(view), LOSS_SERIES)
            if (step, len(view.losses), len(view.val_losses)) != (old["step"], old["n"], old["nv"]) or fresh else gr.skip(),
            chart_frame(likeness_frame(view), tuple(LIKENESS_SERIES.values()))
            if len(view.likeness) != old["nl"] or fresh else gr.skip(),
            pictures if tuple(pictures) != old["pictures"] or fresh else gr.skip(),
            log, files if tuple(files) != old["files"] or fresh else gr.skip(), now, gr.Timer(active=True)]
