"""A new job from a request, every check done before anything is written: the body's size, the form, the preset and
its overrides (checked as the CLI checks `key=value`, with the CLI's own messages; a FLUX preset's model files as
`train` checks them), the photos (`uploads`), the idempotency key and the per-key queue limit. Only then is the
job's folder made and the job queued."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from faceswap_kohya import events as ev
from faceswap_kohya.config import presets
from faceswap_kohya.errors import UserError
from faceswap_kohya.service import store as st
from faceswap_kohya.service.joblog import note, photos_dir, runs_dir
from faceswap_kohya.service.uploads import UploadError, check_photos, write_photos
from faceswap_kohya.service.webhooks import check_events

DEFAULT_PRESET = "face-12gb"
# Set by the service (paths on this machine, the trainer's programs): an override of these is refused.
RESERVED = ("dataset.images", "dataset.subsets", "output.dir", "regularization.images", "regularization.subsets",
            "kohya.", "base_model.", "resources.")
PREFIX = {"training": "trn_", "generation": "gen_", "swap": "swp_"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers or {}


def from_user_error(e: UserError, status: int = 422, field: Optional[str] = None) -> ApiError:
    from faceswap_kohya.service.queue import error_of

    return ApiError(status, str(e), field or error_of(str(e))["field"])


@dataclass
class Config:
    output: Path
    max_upload_bytes: int
    max_queued_per_key: int


def body_hash(fields: dict, files: list[tuple[str, str, bytes]]) -> str:
    """What an idempotency key is checked against: the fields and each file's name and content."""
    h = hashlib.sha256(json.dumps(sorted(fields.items())).encode())
    for field, name, data in files:
        h.update(f"\0{field}\0{name}\0".encode() + hashlib.sha256(data).digest())
    return h.hexdigest()


def check_idempotency(store: st.Store, key_name: str, idem: Optional[str], digest: str) -> Optional[dict]:
    """The job an earlier request with the same Idempotency-Key made (same body), else None; 409 for another body."""
    if not idem:
        return None
    if len(idem) > 300:
        raise ApiError(400, "Idempotency-Key: at most 300 characters", "Idempotency-Key")
    found = store.idempotent(key_name, idem)
    if found is None:
        return None
    if found["body_hash"] != digest:
        raise ApiError(409, f"Idempotency-Key {idem!r} was used before with another request; use a new key for a new "
                            "request", "Idempotency-Key")
    return store.job(found["job_id"], key_name)


def check_queue_limit(store: st.Store, cfg: Config, key_name: str) -> None:
    queued = store.count([st.QUEUED], key_name)
    if queued >= cfg.max_queued_per_key:
        running = max(1, store.count(st.RUNNING))
        raise ApiError(429, f"this key has {queued} jobs queued, the most it may have (--max-queued-per-key "
                            f"{cfg.max_queued_per_key}); retry when one has started", None,
                       {"Retry-After": str(60 * running)})


def override_items(raw: Optional[str]) -> list[str]:
    """`overrides` (a JSON object of preset keys) as the CLI's `key=value` items."""
    if not raw or not raw.strip():
        return []
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ApiError(400, f"overrides: not valid JSON ({e})", "overrides") from None
    if not isinstance(data, dict):
        raise ApiError(400, 'overrides: expected a JSON object of preset keys, e.g. {"training.max_steps": 1500}',
                       "overrides")
    items = []
    for key, value in data.items():
        if any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESERVED):
            raise ApiError(422, f"overrides: {key} is set by the service (photos, output folder, trainer and base "
                                "model are the server's)", f"overrides.{key}")
        items.append(f"{key}={value if isinstance(value, str) else json.dumps(value)}")
    return items


def shipped_preset(name: str) -> str:
    """A shipped preset's name; the CLI's message for any other (files on the server are not the client's)."""
    names = [i.name for i in presets.discover()]
    if name not in names:
        raise ApiError(422, f"{name}: no such preset file (shipped presets: {', '.join(names) or 'none'})", "preset")
    return name


def ray_ask(preset: dict) -> dict:
    """The part of a preset `sweeps.runner.trial_resources` reads (what the job's Ray task asks for)."""
    k = preset.get("kohya") or {}
    return {"resources": preset.get("resources") or {},
            "kohya": {n: k.get(n) for n in ("num_processes", "num_cpu_threads_per_process")},
            "base_model": {"family": (preset.get("base_model") or {}).get("family")}}


def new_job(store: st.Store, cfg: Config, kind: str, key_name: str, request: dict, webhook: Optional[str] = None,
            events: Optional[list[str]] = None, idem: Optional[tuple[str, str]] = None) -> tuple[dict, Path]:
    job_id = PREFIX[kind] + secrets.token_hex(8)
    folder = Path(cfg.output).absolute() / "jobs" / job_id
    return {"id": job_id, "key_name": key_name, "kind": kind, "status": st.QUEUED, "created_at": time.time(),
            "request": json.dumps(request), "folder": str(folder), "webhook": webhook,
            "webhook_events": ",".join(events or ["completed"]), "attempts": 0, "cancel_requested": 0}, folder


def check_webhook(url: Optional[str], events_raw: Optional[str]) -> tuple[Optional[str], list[str]]:
    if url and not url.startswith(("http://", "https://")):
        raise ApiError(400, f"webhook: {url!r} is not an http(s) URL", "webhook")
    try:
        return url or None, check_events(events_raw)
    except ValueError as e:
        raise ApiError(400, str(e), "webhook_events") from None


def training(store: st.Store, cfg: Config, key_name: str, fields: dict, files: list[tuple[str, str, bytes]],
             idem: Optional[str]) -> tuple[dict, bool]:
    """(the job row, created) for POST /v1/trainings; every problem an ApiError, nothing written before all pass."""
    digest = body_hash(fields, files)
    if (earlier := check_idempotency(store, key_name, idem, digest)) is not None:
        return earlier, False
    unknown = sorted(set(fields) - {"trigger", "class_word", "preset", "overrides", "webhook", "webhook_events"})
    if unknown:
        raise ApiError(400, f"{unknown[0]}: unknown field (fields: photos, trigger, class_word, preset, overrides, "
                            "webhook, webhook_events)", unknown[0])
    if bad := [f for f, _, _ in files if f != "photos"]:
        raise ApiError(400, f"{bad[0]}: unknown file field (send the photos as `photos`)", bad[0])
    check_queue_limit(store, cfg, key_name)
    webhook, events = check_webhook(fields.get("webhook"), fields.get("webhook_events"))
    name = shipped_preset(fields.get("preset") or DEFAULT_PRESET)
    user = override_items(fields.get("overrides"))
    subject = [f"subject.{k}={fields[k]}" for k in ("trigger", "class_word") if fields.get(k)]
    job, folder = new_job(store, cfg, "training", key_name, {}, webhook, events)
    overrides = user + subject + [f"dataset.images={photos_dir(folder)}", f"output.dir={runs_dir(folder)}"]
    from faceswap_kohya.formats.importer import load_any
    from faceswap_kohya.trainer.install import check_flux_model

    try:
        preset, _, _ = load_any(name, overrides, for_training=True)
    except UserError as e:
        raise from_user_error(e) from None
    try:
        check_flux_model(preset)  # a FLUX preset's model files, from their headers, as `train` checks them
    except UserError as e:  # "base_model.t5xxl: ... does not exist": the field leads the message
        lead = re.match(r"([A-Za-z_][\w.]*): ", str(e))
        raise from_user_error(e, field=lead.group(1) if lead else None) from None
    try:
        photos = check_photos([(n, d) for _, n, d in files], cfg.max_upload_bytes)
    except UploadError as e:
        raise ApiError(e.status, e.message, e.field) from None
    request = {"preset": name, "preset_name": name, "overrides": overrides, "user_overrides": user,
               "trigger": preset.subject.trigger, "class_word": preset.subject.class_word, "photos": len(photos),
               "ask": ray_ask(preset.model_dump(mode="json"))}
    job["request"] = json.dumps(request)
    try:
        write_photos(photos, photos_dir(folder))
        note(folder, ev.Message(f"queued: {len(photos)} photos, preset {name}"))
        store.add_job(job, (idem, digest) if idem else None)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        if idem and store.idempotent(key_name, idem):  # the same request raced this one
            return check_idempotency(store, key_name, idem, digest), False
        raise
    return store.job(job["id"]), True


# ---------------------------------------------------------------- generations and swaps
def source_training(store: st.Store, key_name: str, training_id) -> Path:
    """The run folder of the key's succeeded training `training_id`, whose final LoRA is there."""
    from faceswap_kohya.runs.artifacts import final_lora
    from faceswap_kohya.service.joblog import latest_run

    if not training_id or not isinstance(training_id, str):
        raise ApiError(400, "training: required (the id of a succeeded training, e.g. trn_...)", "training")
    t = store.job(training_id, key_name)
    if t is None or t["kind"] != "training":
        raise ApiError(404, f"training {training_id}: no such training", "training")
    if t["status"] != st.SUCCEEDED:
        raise ApiError(409, f"training {training_id} is {t['status']}: generations and swaps need a succeeded training",
                       "training")
    run = latest_run(Path(t["folder"]))
    if run is None or final_lora(run) is None:
        raise ApiError(409, f"training {training_id}: its LoRA is missing from its run folder", "training")
    return run


def _int(value, field: str, low: int, high: int, default: Optional[int]) -> Optional[int]:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ApiError(422, f"{field}: {value!r} is not a whole number", field) from None
    if not low <= n <= high:
        raise ApiError(422, f"{field} {n}: must be from {low} to {high}", field)
    return n


def _float(value, field: str, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ApiError(422, f"{field}: {value!r} is not a number", field) from None


def generation(store: st.Store, cfg: Config, key_name: str, body: dict, idem: Optional[str]) -> tuple[dict, bool]:
    """POST /v1/generations: prompts on a succeeded training's LoRA (the `generate` job)."""
    from faceswap_kohya.config.presets import read_run_preset
    from faceswap_kohya.diffusion.prompts import check_size

    digest = body_hash({"json": json.dumps(body, sort_keys=True)}, [])
    if (earlier := check_idempotency(store, key_name, idem, digest)) is not None:
        return earlier, False
    known = {"training", "prompts", "n", "seed", "weight", "width", "height", "steps", "negative_prompt", "webhook",
             "webhook_events"}
    if unknown := sorted(set(body) - known):
        raise ApiError(400, f"{unknown[0]}: unknown field (fields: {', '.join(sorted(known))})", unknown[0])
    check_queue_limit(store, cfg, key_name)
    run = source_training(store, key_name, body.get("training"))
    prompts = body.get("prompts")
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ApiError(422, 'prompts: give a list of prompts, e.g. ["{trigger} {class}, portrait photo"]', "prompts")
    for i, p in enumerate(prompts):
        if not p.strip():
            raise ApiError(422, f"prompt {i + 1} is empty", "prompts")
    preset = read_run_preset(run)
    width = _int(body.get("width"), "width", 64, 4096, preset.dataset.resolution)
    height = _int(body.get("height"), "height", 64, 4096, preset.dataset.resolution)
    try:
        check_size(width, height)
    except UserError as e:
        raise from_user_error(e, field="width" if str(e).startswith("width") else "height") from None
    webhook, events = check_webhook(body.get("webhook"), ",".join(body.get("webhook_events") or []) or None)
    request = {"training": body["training"], "run": str(run), "prompts": prompts,
               "n": _int(body.get("n"), "n", 1, 16, 1), "seed": _int(body.get("seed"), "seed", 0, 2**31 - 1,
                                                                    secrets.randbelow(2**31)),
               "weight": _float(body.get("weight"), "weight", 1.0), "width": width, "height": height,
               "steps": _int(body.get("steps"), "steps", 1, 150, 30), "negative": body.get("negative_prompt") or "",
               "ask": ray_ask(preset.model_dump(mode="json"))}
    return _queue(store, cfg, "generation", key_name, request, webhook, events, idem, digest)


def swap(store: st.Store, cfg: Config, key_name: str, fields: dict, files: list[tuple[str, str, bytes]],
         idem: Optional[str]) -> tuple[dict, bool]:
    """POST /v1/swaps: the training's face into one uploaded photo (the `swap` job)."""
    from faceswap_kohya.config.presets import read_run_preset

    digest = body_hash(fields, files)
    if (earlier := check_idempotency(store, key_name, idem, digest)) is not None:
        return earlier, False
    known = {"training", "face", "strength", "seed", "steps", "webhook", "webhook_events"}
    if unknown := sorted(set(fields) - known):
        raise ApiError(400, f"{unknown[0]}: unknown field (fields: photo, {', '.join(sorted(known))})", unknown[0])
    check_queue_limit(store, cfg, key_name)
    run = source_training(store, key_name, fields.get("training"))
    photos = [(n, d) for f, n, d in files if f == "photo"]
    if len(photos) != 1 or len(files) != 1:
        raise ApiError(400, "photo: give exactly one photo (the file field `photo`)", "photo")
    try:
        photo, = check_photos(photos, cfg.max_upload_bytes, max_photos=1)
    except UploadError as e:
        raise ApiError(e.status, e.message.replace("photos:", "photo:", 1), "photo") from None
    strength = _float(fields.get("strength"), "strength", 0.75)
    if not 0 < strength <= 1:
        raise ApiError(422, f"--strength {strength:g}: must be above 0 and at most 1 (how much of the face is redrawn)",
                       "strength")
    steps = _int(fields.get("steps"), "steps", 1, 150, 30)
    if int(steps * strength) < 1:
        raise ApiError(422, f"--steps {steps} with --strength {strength:g} runs no denoising step (steps × strength must "
                            "be at least 1); raise --steps", "steps")
    webhook, events = check_webhook(fields.get("webhook"), fields.get("webhook_events"))
    preset = read_run_preset(run)
    request = {"training": fields["training"], "run": str(run), "face": _int(fields.get("face"), "face", 1, 100, 1),
               "strength": strength, "steps": steps,
               "seed": _int(fields.get("seed"), "seed", 0, 2**31 - 1, secrets.randbelow(2**31)),
               "ask": ray_ask(preset.model_dump(mode="json"))}
    return _queue(store, cfg, "swap", key_name, request, webhook, events, idem, digest, photo)


def _queue(store, cfg, kind, key_name, request, webhook, events, idem, digest, photo=None) -> tuple[dict, bool]:
    job, folder = new_job(store, cfg, kind, key_name, request, webhook, events)
    try:
        folder.mkdir(parents=True)
        if photo is not None:
            path = folder / f"photo{photo.suffix}"
            path.write_bytes(photo.data)
            request["photo"] = str(path)
            job["request"] = json.dumps(request)
        note(folder, ev.Message(f"queued: {kind}"))
        store.add_job(job, (idem, digest) if idem else None)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        if idem and store.idempotent(key_name, idem):
            return check_idempotency(store, key_name, idem, digest), False
        raise
    return store.job(job["id"]), True
