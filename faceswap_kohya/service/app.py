"""The FastAPI app of `faceswap-kohya serve`: `/health`, `/openapi.json` and the `/v1` API (trainings, generations,
swaps: submit, get, list, cancel, Server-Sent Events, LoRA / report / image downloads). Every `/v1` call needs
`Authorization: Bearer KEY`; a key sees only its own jobs. Errors are `{"error": {"message", "field"}}`."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceswap_kohya.runs.artifacts import final_lora
from faceswap_kohya.runs.status import read_json_lines
from faceswap_kohya.service import store as st
from faceswap_kohya.service import submit
from faceswap_kohya.service.joblog import event_files, latest_run
from faceswap_kohya.service.keys import check_key
from faceswap_kohya.service.submit import ApiError, Config
from faceswap_kohya.service.views import PATHS, job_object, report_path

KINDS = {path: kind for kind, path in PATHS.items()}
MULTIPART = {"multipart/form-data": {"schema": {"type": "object", "properties": {
    "photos": {"type": "array", "items": {"type": "string", "format": "binary"},
               "description": "one or more photos (JPEG, PNG, WebP), or one .zip of them"},
    "trigger": {"type": "string"}, "class_word": {"type": "string"},
    "preset": {"type": "string", "default": submit.DEFAULT_PRESET, "description": "a shipped preset name"},
    "overrides": {"type": "string", "description": "a JSON object of preset keys, checked as the CLI's key=value"},
    "webhook": {"type": "string", "format": "uri"},
    "webhook_events": {"type": "string", "description": "comma-separated: start, progress, completed"}},
    "required": ["photos"]}}}
SWAP_FORM = {"multipart/form-data": {"schema": {"type": "object", "properties": {
    "training": {"type": "string"}, "photo": {"type": "string", "format": "binary"}, "face": {"type": "integer"},
    "strength": {"type": "number"}, "seed": {"type": "integer"}, "steps": {"type": "integer"},
    "webhook": {"type": "string"}, "webhook_events": {"type": "string"}}, "required": ["training", "photo"]}}}
GENERATION_JSON = {"application/json": {"schema": {"type": "object", "properties": {
    "training": {"type": "string"}, "prompts": {"type": "array", "items": {"type": "string"},
                                                "description": "{trigger} and {class} are filled in"},
    "n": {"type": "integer"}, "seed": {"type": "integer"}, "weight": {"type": "number"}, "width": {"type": "integer"},
    "height": {"type": "integer"}, "steps": {"type": "integer"}, "negative_prompt": {"type": "string"},
    "webhook": {"type": "string"}, "webhook_events": {"type": "array", "items": {"type": "string"}}},
    "required": ["training", "prompts"]}}}


def error_response(status: int, message: str, field: Optional[str] = None, headers: Optional[dict] = None):
    return JSONResponse({"error": {"message": message, "field": field}}, status_code=status, headers=headers)


def create_app(store: st.Store, cfg: Config, queue=None, deliverer=None) -> FastAPI:
    """The app over `store`; `queue` and `deliverer` (started and stopped with the app) run the jobs and webhooks."""
    # long: one short handler per route of the API, each closing over this store and config (FastAPI's own style)
    stopping = asyncio.Event()

    @asynccontextmanager
    async def lifespan(_app):
        if deliverer is not None:
            deliverer.start()
        if queue is not None:
            queue.start()
        yield
        stopping.set()
        if queue is not None:
            await run_in_threadpool(queue.stop)
        if deliverer is not None:
            await run_in_threadpool(deliverer.stop)

    app = FastAPI(title="faceswap-kohya training service", version="1", lifespan=lifespan,
                  description="Identity LoRAs for apps: post photos, get called back, download the LoRA, generate and "
                              "swap. See README: Service API.")

    @app.exception_handler(ApiError)
    async def api_error(_request, e: ApiError):
        return error_response(e.status, e.message, e.field, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, e: StarletteHTTPException):
        return error_response(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, e: RequestValidationError):
        first = (e.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(422, f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg")), where)

    def auth(request: Request) -> dict:
        found = check_key(store, request.headers.get("authorization"))
        if isinstance(found, tuple):
            raise ApiError(found[0], found[1], "Authorization")
        return found

    def own(kind_path: str, job_id: str, key: dict) -> dict:
        kind = KINDS.get(kind_path)
        job = store.job(job_id, key["name"]) if kind else None
        if job is None or job["kind"] != kind:
            raise ApiError(404, f"{kind or 'job'} {job_id}: not found", "id")
        return job

    async def read_body(request: Request) -> bytes:
        limit = cfg.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"the request is {int(declared) / 2**20:.1f} MiB, over the limit of {limit / 2**20:.0f} "
                                "MiB (--max-upload-mb)", "photos")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, f"the request is over the limit of {limit / 2**20:.0f} MiB (--max-upload-mb)", "photos")
        return bytes(body)

    async def read_form(request: Request) -> tuple[dict, list[tuple[str, str, bytes]]]:
        """The form in memory (nothing spooled to disk): fields and (field, filename, bytes) files."""
        from starlette.formparsers import MultiPartException, MultiPartParser

        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(400, "send the request as multipart/form-data (curl -F ...)", None)
        body = await read_body(request)

        async def once():
            yield body
            yield b""

        parser = MultiPartParser(request.headers, once(), max_files=1000, max_fields=100)
        parser.spool_max_size = len(body) + 1
        try:
            form = await parser.parse()
        except MultiPartException as e:
            raise ApiError(400, f"the multipart form is malformed ({e.message})", None) from None
        fields, files = {}, []
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields[name] = value
            else:
                files.append((name, value.filename or "upload", await value.read()))
        return fields, files

    def created(job: dict, new: bool) -> JSONResponse:
        return JSONResponse(job_object(job, store), status_code=201 if new else 200)

    @app.get("/health")
    def health():
        return {"ok": True, "queued": store.count([st.QUEUED]), "running": store.count(st.RUNNING)}

    @app.post("/v1/trainings", status_code=201, openapi_extra={"requestBody": {"content": MULTIPART, "required": True}})
    async def create_training(request: Request):
        key = auth(request)
        fields, files = await read_form(request)
        job, new = await run_in_threadpool(submit.training, store, cfg, key["name"], fields, files,
                                           request.headers.get("idempotency-key"))
        return created(job, new)

    @app.post("/v1/generations", status_code=201, openapi_extra={"requestBody": {"content": GENERATION_JSON}})
    async def create_generation(request: Request):
        key = auth(request)
        try:
            body = json.loads(await read_body(request) or b"{}")
        except ValueError as e:
            raise ApiError(400, f"the body is not valid JSON ({e})") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        job, new = await run_in_threadpool(submit.generation, store, cfg, key["name"], body,
                                           request.headers.get("idempotency-key"))
        return created(job, new)

    @app.post("/v1/swaps", status_code=201, openapi_extra={"requestBody": {"content": SWAP_FORM, "required": True}})
    async def create_swap(request: Request):
        key = auth(request)
        fields, files = await read_form(request)
        job, new = await run_in_threadpool(submit.swap, store, cfg, key["name"], fields, files,
                                           request.headers.get("idempotency-key"))
        return created(job, new)

    @app.get("/v1/{kind}")
    def list_jobs(kind: str, request: Request, status: Optional[str] = None, limit: int = 20,
                  cursor: Optional[str] = None):
        key = auth(request)
        if kind not in KINDS:
            raise ApiError(404, f"/v1/{kind}: not found")
        if status is not None and status not in st.STATES:
            raise ApiError(422, f"status: {status!r} is not one of {', '.join(st.STATES)}", "status")
        if not 1 <= limit <= 100:
            raise ApiError(422, f"limit {limit}: must be from 1 to 100", "limit")
        before = None
        if cursor:
            job = store.job(cursor, key["name"])
            if job is None:
                raise ApiError(422, f"cursor {cursor!r}: not a job of this key (use next_cursor)", "cursor")
            before = job["seq"]
        found = store.list_jobs(key["name"], KINDS[kind], status, limit + 1, before)
        more = len(found) > limit
        found = found[:limit]
        return {"data": [job_object(j, store) for j in found], "next_cursor": found[-1]["id"] if more else None}

    @app.get("/v1/{kind}/{job_id}")
    def get_job(kind: str, job_id: str, request: Request):
        return job_object(own(kind, job_id, auth(request)), store)

    @app.post("/v1/{kind}/{job_id}/cancel")
    async def cancel(kind: str, job_id: str, request: Request):
        job = own(kind, job_id, auth(request))
        if job["status"] in st.TERMINAL:
            raise ApiError(409, f"{job['kind']} {job_id} is {job['status']} already", "id")
        if not store.update(job_id, only_from=[st.QUEUED], status=st.CANCELED, completed_at=time.time()):
            store.update(job_id, only_from=st.RUNNING, cancel_requested=1)
            deadline = time.monotonic() + 90  # the trainer gets SIGINT, then SIGTERM, then SIGKILL
            while time.monotonic() < deadline and store.job(job_id)["status"] not in st.TERMINAL + (st.QUEUED,):
                await asyncio.sleep(0.5)
        else:
            from faceswap_kohya.service import webhooks

            webhooks.enqueue(store, job, "completed", job_object(store.job(job_id), store))
        return job_object(store.job(job_id), store)

    @app.get("/v1/{kind}/{job_id}/events")
    async def events(kind: str, job_id: str, request: Request):
        job = own(kind, job_id, auth(request))
        return StreamingResponse(sse(job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def sse(job: dict):
        """The job's events (its own and its runs' events.jsonl, merged by time) from the start, then live; a `status`
        event whenever its status changes; the stream ends after the last state."""
        offsets: dict[Path, int] = {}
        last, done = None, False
        while not stopping.is_set():
            fresh = await run_in_threadpool(store.job, job["id"])
            found = []
            for f in await run_in_threadpool(event_files, Path(job["folder"])):
                lines, offsets[f] = read_json_lines(f, offsets.get(f, 0))
                found += lines
            for e in sorted(found, key=lambda e: e.get("time") or 0):
                yield f"event: {e.get('type', 'Message')}\ndata: {json.dumps(e)}\n\n"
            if fresh["status"] != last or (done and fresh["status"] in st.TERMINAL):
                obj = await run_in_threadpool(job_object, fresh, store)
                yield f"event: status\ndata: {json.dumps(obj)}\n\n"
                last = fresh["status"]
            if done:
                return
            done = fresh["status"] in st.TERMINAL and not found
            await asyncio.sleep(0.5)

    @app.get("/v1/trainings/{job_id}/lora")
    def lora(job_id: str, request: Request):
        job = own("trainings", job_id, auth(request))
        run = latest_run(Path(job["folder"]))
        path = final_lora(run) if run and job["status"] == st.SUCCEEDED else None
        if path is None:
            raise ApiError(409, f"training {job_id} is {job['status']}: no LoRA to download yet", "id")
        return FileResponse(path, media_type="application/octet-stream", filename=path.name)

    @app.get("/v1/trainings/{job_id}/report")
    def report(job_id: str, request: Request):
        job = own("trainings", job_id, auth(request))
        path = report_path(latest_run(Path(job["folder"])))
        if path is None:
            raise ApiError(409, f"training {job_id}: no report (evaluation did not run; set evaluate.enabled: true)", "id")
        return FileResponse(path, media_type="text/html")

    @app.get("/v1/{kind}/{job_id}/images/{index}")
    def image(kind: str, job_id: str, index: int, request: Request):
        job = own(kind, job_id, auth(request))
        images = (job["result"] or {}).get("images") or []
        if not 0 <= index < len(images) or not Path(images[index]).is_file():
            raise ApiError(404, f"{job['kind']} {job_id}: no image {index}", "index")
        return FileResponse(images[index], media_type="image/png")

    return app
