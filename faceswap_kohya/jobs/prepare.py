"""The `prepare` job: check, crop, mask and caption the photos into a new run folder, to look at before training."""

from __future__ import annotations

from faceswap_kohya.config.presets import dump, override_keys
from faceswap_kohya.config.schema import Preset
from faceswap_kohya.events import Finished, ImageWritten, Message, OnEvent, echo_to, ignore
from faceswap_kohya.runs.layout import RunLayout, new_parents, new_run, remove_run_folder
from faceswap_kohya.runs.status import RunRecorder


def prepare(preset: Preset, on_event: OnEvent = ignore, overrides=()):
    """A new run folder with the Kohya dataset, contact sheet and summary; nothing is left behind on failure.

    `overrides`: the command line's key=value pairs (a `subject.*` among them wins over Kohya folder names).
    Returns (run layout, layout summary)."""
    from faceswap_kohya.data.dataset import layout
    from faceswap_kohya.data.images import check_folder
    from faceswap_kohya.data.kohya_folders import resolve

    resolved = resolve(preset, override_keys(overrides))
    preset = resolved.preset
    if not preset.dataset.subsets:
        check_folder(preset.dataset.images, "dataset.images")
    made = new_parents(preset)
    run: RunLayout = new_run(preset)
    recorder = RunRecorder(run.root, preset.output.name, kind="prepare")
    emit = recorder.wrap(on_event)
    try:
        run.preset.write_text("# the preset these photos were prepared with (train --prepared checks it)\n" + dump(preset),
                              encoding="utf-8")
        summary = layout(preset, run, echo=echo_to(emit), notes=resolved.notes)
        for line in summary.brief(run.root):
            emit(Message(line))
        sheet = run.root / "contact_sheet.png"
        if sheet.is_file():
            emit(ImageWritten(str(sheet), "contact_sheet"))
        emit(Finished(f"{len(summary.photos)} photos prepared in {run.root}", [str(run.root)]))
        recorder.set(state="finished")
    except BaseException:
        recorder.close()
        remove_run_folder(run, made)  # only what this job just made: a failed prepare leaves nothing
        raise
    recorder.close()
    return run, summary


def dry_run(preset: Preset, overrides=()) -> list[str]:
    """What would be trained on, with no run folder made: for Kohya folders, beside how sd-scripts reads them."""
    from faceswap_kohya.data.images import check_folder, sort_folder
    from faceswap_kohya.data.kohya_folders import resolve
    from faceswap_kohya.data.kohya_layout import compare, text_lines

    resolved = resolve(preset, override_keys(overrides))
    p = resolved.preset
    if p.dataset.subsets or p.regularization.subsets:
        lines = text_lines(compare(p, None, resolved.notes))
        if p.dataset.subsets:
            return lines
    else:
        lines = []
    folder = check_folder(p.dataset.images, "dataset.images")
    photos, other = sort_folder(folder)
    return [f"{len(photos)} photos in {folder} (not Kohya folders), {len(other)} other files: trained as "
            f"{p.dataset.repeats}_{p.instance_tokens} (photos are checked when prepared)"] + lines
