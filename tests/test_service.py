"""The training service (`faceswap-kohya serve`) as apps use it: a real server on a loopback port, httpx as the
client, keys made with `keys create`, on SQLite and on a throwaway PostgreSQL. The light tests run the server with
`--hold` (jobs are queued, none starts); the `trainer` ones train `cpu-check` on the real face photos (~22 GB)."""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import zipfile

import pytest
from conftest import needs_kohya
from face_data import FACES
from postgres import missing_reason, postgres_cluster
from service_server import Receiver, Server, cli, create_key
from sweep_data import alive_with

from faceswap_kohya.service.uploads import safe_member
from faceswap_kohya.service.views import eta_seconds, evaluation_summary

PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"]
LIMIT_MB = 5


def photo_files(names=PHOTOS) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("photos", (n, (FACES / n).read_bytes(), "image/jpeg")) for n in names]


def zip_of(entries: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def error_of(r) -> dict:
    assert "error" in r.json(), r.text
    return r.json()["error"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request):
    if request.param == "sqlite":
        yield None
        return
    reason = missing_reason()
    if reason:
        print(f"skipping PostgreSQL: {reason}")
        pytest.skip(reason)
    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="module")
def held(database, tmp_path_factory):
    """A server that queues and starts nothing, with a small upload limit and queue limit; keys a and b."""
    out = tmp_path_factory.mktemp("service") / "out"
    out.mkdir()
    keys = {name: create_key(out, database, name) for name in ("a", "b")}
    server = Server(out, database, "--hold", "--max-upload-mb", str(LIMIT_MB), "--max-queued-per-key", "3")
    server.keys = keys
    yield server
    assert server.stop() == 130, server.log()  # SIGTERM: non-zero, the jobs left queued


def jobs_dirs(server) -> set:
    folder = server.output / "jobs"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_health_openapi_and_keys(held):
    with held.client() as c:
        assert c.get("/health").json() == {"ok": True, "queued": 0, "running": 0} or c.get("/health").json()["ok"]
        spec = c.get("/openapi.json").json()
        assert {"/v1/trainings", "/v1/generations", "/v1/swaps", "/health"} <= set(spec["paths"])
    listed = cli("keys", "ls", "--output", held.output, *(["--database", held.database] if held.database else []))
    assert listed.returncode == 0 and {"a", "b"} <= {ln.split("\t")[0] for ln in listed.stdout.splitlines()}, listed
    assert not any(v[0] in (held.output / "service.db").read_bytes().decode("latin-1") for v in held.keys.values()) \
        if held.database is None else True, "keys are stored hashed"


def test_keys_see_only_their_own_jobs(held):
    key_a, key_b = held.keys["a"][0], held.keys["b"][0]
    with held.client(key_a) as a, held.client(key_b) as b, held.client() as none, held.client("fsk_wrong") as wrong:
        r = a.post("/v1/trainings", files=photo_files(), data={"preset": "cpu-check", "trigger": "obm",
                                                               "class_word": "man"})
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["status"] == "queued" and job["queue_position"] >= 1 and job["id"].startswith("trn_")
        assert set(job["urls"]) == {"self", "cancel", "events"} and job["created_at"].endswith("Z")
        assert a.get(job["urls"]["self"]).json()["trigger"] == "obm"
        assert none.get(job["urls"]["self"]).status_code == 401
        assert error_of(wrong.get(job["urls"]["self"]))["message"] == "this API key is not known"
        assert wrong.get(job["urls"]["self"]).status_code == 403
        r = b.get(job["urls"]["self"])
        assert r.status_code == 404 and error_of(r)["message"] == f"training {job['id']}: not found"
        assert b.post(job["urls"]["cancel"]).status_code == 404
        assert job["id"] not in [j["id"] for j in b.get("/v1/trainings").json()["data"]]
        assert job["id"] in [j["id"] for j in a.get("/v1/trainings", params={"status": "queued"}).json()["data"]]
        assert (held.output / "jobs" / job["id"] / "photos").is_dir()
        assert len(list((held.output / "jobs" / job["id"] / "photos").iterdir())) == len(PHOTOS)
        # cancel a queued job: canceled at once
        r = a.post(job["urls"]["cancel"])
        assert r.status_code == 200 and r.json()["status"] == "canceled" and r.json()["completed_at"]
        assert a.post(job["urls"]["cancel"]).status_code == 409
    # a revoked key gets 403
    k = create_key(held.output, held.database, "short-lived")[0]
    store = ["--output", held.output] + (["--database", held.database] if held.database else [])
    assert cli("keys", "revoke", "short-lived", *store).returncode == 0
    with held.client(k) as c:
        r = c.get("/v1/trainings")
        assert r.status_code == 403 and "revoked" in error_of(r)["message"]
    again = cli("keys", "revoke", "short-lived", *store)
    assert again.returncode == 2 and "no active key named 'short-lived'" in again.stderr


def cli_error(*args) -> str:
    out = cli(*args)
    assert out.returncode == 2, out
    return out.stderr.strip().removeprefix("error: ")


def test_bad_request_matrix(held, tmp_path):
    key_a = held.keys["a"][0]
    jpeg = (FACES / "obama.jpg").read_bytes()
    unknown_preset = cli_error("validate", "no-such-preset")
    bad_key = cli_error("validate", "cpu-check", "training.no_such_key=1")
    bad_value = cli_error("validate", "cpu-check", "training.max_steps=lots")
    cases = [  # (files, data, status, message (exact) or part of it, field)
        ([("photos", ("p.zip", b"PK\x03\x04 not really a zip", "application/zip"))], {}, 400,
         "photos: p.zip is not a readable zip file", "photos"),
        ([("photos", ("p.zip", zip_of({"../evil.jpg": jpeg}), "application/zip"))], {}, 400,
         "photos: p.zip: zip entries point outside their folder: ../evil.jpg", "photos"),
        ([("photos", ("p.zip", zip_of({"/etc/evil.jpg": jpeg}), "application/zip"))], {}, 400,
         "point outside their folder: /etc/evil.jpg", "photos"),
        ([("photos", ("p.zip", zip_of({"a.jpg": jpeg, "big.jpg": b"\0" * (LIMIT_MB * 2**20 + 1)},
                                       zipfile.ZIP_DEFLATED), "application/zip"))], {}, 413,
         f"over the limit of {LIMIT_MB} MiB (--max-upload-mb)", "photos"),
        ([("photos", ("p.zip", zip_of({"a.jpg": jpeg, "bomb.jpg": b"\0" * (3 * 2**20)}, zipfile.ZIP_DEFLATED),
                      "application/zip"))], {}, 413, "photos: p.zip looks like a zip bomb", "photos"),
        ([("photos", ("a.jpg", jpeg + b"\0" * (LIMIT_MB * 2**20), "image/jpeg"))], {}, 413,
         f"over the limit of {LIMIT_MB} MiB (--max-upload-mb)", "photos"),
        ([("photos", ("notes.jpg", b"just some text, named like a photo", "image/jpeg"))], {}, 422,
         "photos: not images (by their content): notes.jpg; give JPEG, PNG or WebP photos", "photos"),
        ([("photos", ("p.zip", zip_of({"a.jpg": jpeg, "readme.txt": b"hello"}), "application/zip"))], {}, 422,
         "photos: not images (by their content): readme.txt", "photos"),
        ([("photos", ("cut.jpg", jpeg[: len(jpeg) // 3], "image/jpeg"))], {}, 422, "not images (by their content): cut.jpg",
         "photos"),
        ([("preset", (None, "cpu-check"))], {}, 400, "photos: give one or more photos", "photos"),
        ([], {"preset": "cpu-check"}, 400, "send the request as multipart/form-data", None),
        (photo_files(), {"preset": "no-such-preset"}, 422, unknown_preset, "preset"),
        (photo_files(), {"preset": "cpu-check", "overrides": json.dumps({"training.no_such_key": 1})}, 422, bad_key,
         "training.no_such_key"),
        (photo_files(), {"preset": "cpu-check", "overrides": json.dumps({"training.max_steps": "lots"})}, 422, bad_value,
         "training.max_steps"),
        (photo_files(), {"preset": "cpu-check", "overrides": "[1, 2]"}, 400, "overrides: expected a JSON object", "overrides"),
        (photo_files(), {"preset": "cpu-check", "overrides": json.dumps({"kohya.python": "/bin/sh"})}, 422,
         "overrides: kohya.python is set by the service", "overrides.kohya.python"),
        (photo_files(), {"preset": "cpu-check", "webhook_events": "finished"}, 400,
         "webhook_events: finished is not one of start, progress, completed", "webhook_events"),
    ]
    before = jobs_dirs(held)
    with held.client(key_a) as a:
        queued = a.get("/health").json()["queued"]
        for files, data, status, message, field in cases:
            r = a.post("/v1/trainings", files=files or None, data=data or None)
            assert r.status_code == status, (message, r.text)
            err = error_of(r)
            assert message in err["message"] if message not in (unknown_preset, bad_key, bad_value) \
                else err["message"] == message, (err, message)
            assert err["field"] == field, err
        assert a.get("/health").json()["queued"] == queued, "nothing is queued"
    assert jobs_dirs(held) == before, "nothing is left behind"
    assert not list(tmp_path.iterdir())
    assert unknown_preset.startswith("no-such-preset: no such preset file (shipped presets: ")
    assert "training.no_such_key: unknown key" in bad_key


def test_idempotency_and_the_queue_limit(held):
    key = create_key(held.output, held.database, f"idem{time.monotonic_ns()}")[0]
    with held.client(key) as c:
        first = c.post("/v1/trainings", files=photo_files(PHOTOS[:3]), data={"preset": "cpu-check"},
                       headers={"Idempotency-Key": "order-1"})
        assert first.status_code == 201, first.text
        same = c.post("/v1/trainings", files=photo_files(PHOTOS[:3]), data={"preset": "cpu-check"},
                      headers={"Idempotency-Key": "order-1"})
        assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
        other = c.post("/v1/trainings", files=photo_files(PHOTOS[:2]), data={"preset": "cpu-check"},
                       headers={"Idempotency-Key": "order-1"})
        assert other.status_code == 409 and error_of(other)["field"] == "Idempotency-Key"
        assert len(c.get("/v1/trainings").json()["data"]) == 1
        for _ in range(2):  # the limit is 3 queued per key
            assert c.post("/v1/trainings", files=photo_files(PHOTOS[:2]), data={"preset": "cpu-check"}).status_code == 201
        before = jobs_dirs(held)
        r = c.post("/v1/trainings", files=photo_files(PHOTOS[:2]), data={"preset": "cpu-check"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, r.text
        assert "--max-queued-per-key 3" in error_of(r)["message"]
        assert jobs_dirs(held) == before
        listed = c.get("/v1/trainings", params={"limit": 2}).json()
        assert len(listed["data"]) == 2 and listed["next_cursor"]
        rest = c.get("/v1/trainings", params={"limit": 2, "cursor": listed["next_cursor"]}).json()
        ids = [j["id"] for j in listed["data"] + rest["data"]]
        assert len(ids) == 3 == len(set(ids)) and ids[-1] == first.json()["id"], "newest first"
        positions = [j["queue_position"] for j in listed["data"] + rest["data"]]
        assert positions == sorted(positions, reverse=True)
        for j in ids:
            c.post(f"/v1/trainings/{j}/cancel")


def test_webhooks_are_signed_retried_and_recorded(held):
    from standardwebhooks.webhooks import Webhook

    receiver = Receiver(fail=1)
    key, secret = create_key(held.output, held.database, f"hook{time.monotonic_ns()}")
    try:
        with held.client(key) as c:
            job = c.post("/v1/trainings", files=photo_files(PHOTOS[:2]),
                         data={"preset": "cpu-check", "webhook": receiver.url}).json()
            assert c.post(job["urls"]["cancel"]).json()["status"] == "canceled"
        calls = receiver.wait_for(lambda calls: any(s == 200 for _, _, s in calls), timeout=30)
        assert [s for _, _, s in calls] == [500, 200], "the failed delivery is retried"
        assert calls[0][0]["webhook-id"] == calls[1][0]["webhook-id"], "one webhook-id per delivery"
        for headers, body, _ in calls:
            data = Webhook(secret).verify(body, headers)
            assert data["id"] == job["id"] and data["status"] == "canceled"
            assert headers["webhook-signature"].startswith("v1,")
        with pytest.raises(Exception):
            Webhook(held.keys["a"][1]).verify(calls[1][1], calls[1][0])  # another key's secret does not verify it
    finally:
        receiver.close()


def test_restart_keeps_the_queue_in_order(database, tmp_path):
    out = tmp_path / "out"
    key = create_key(out, database, "app")[0]
    server = Server(out, database, "--hold")
    with server.client(key) as c:
        ids = [c.post("/v1/trainings", files=photo_files(PHOTOS[:2]), data={"preset": "cpu-check"}).json()["id"]
               for _ in range(3)]
    server.kill()
    server = Server(out, database, "--hold", port=server.port)
    try:
        with server.client(key) as c:
            jobs = [c.get(f"/v1/trainings/{i}").json() for i in ids]
            assert [(j["status"], j["queue_position"]) for j in jobs] == [("queued", 1), ("queued", 2), ("queued", 3)]
            # the events of a queued job: its own, then the last status, and the stream ends once it is canceled
            c.post(f"/v1/trainings/{ids[0]}/cancel")
            text = c.get(f"/v1/trainings/{ids[0]}/events").text
            assert "queued: 2 photos" in text and text.rstrip().split("\n\n")[-1].startswith("event: status")
            assert json.loads(text.rstrip().split("\n\n")[-1].split("data: ", 1)[1])["status"] == "canceled"
            assert c.get(f"/v1/trainings/{ids[1]}").json()["queue_position"] == 1
    finally:
        assert server.stop() == 130, server.log()  # SIGTERM: non-zero, the jobs left queued


def test_serve_refuses_other_hosts_without_a_key(tmp_path):
    out = cli("serve", "--host", "0.0.0.0", "--output", tmp_path / "out", "--hold")
    assert out.returncode == 2 and "create one first: faceswap-kohya keys create NAME" in out.stderr


def test_small_parts():
    assert [safe_member(n) for n in ("a/b.jpg", "../x", "a/../../x", "/x", "C:/x", "a\\b")] == \
        [True, False, False, False, False, False]
    assert [eta_seconds(t) for t in ("01:02", "1:00:00", "12s", "?", "")] == [62, 3600, 12, None, None]
    assert evaluation_summary(None) is None


# ---------------------------------------------------------------- the real trainer (~22 GB, one training at a time)
def wait_status(c, job_id: str, states, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/v1/trainings/{job_id}").json()
        if job["status"] in states:
            return job
        time.sleep(1)
    raise AssertionError(f"{job_id} is still {job['status']} after {timeout:.0f} s: {job}")


def trainer_of(server, job_id: str) -> str:
    return alive_with(str(server.output / "jobs" / job_id / "runs"))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    pytest.importorskip("ray", reason="the service runs jobs on Ray: pip install 'faceswap_kohya[service]'")
    out = tmp_path_factory.mktemp("live") / "out"
    key, secret = create_key(out, None, "app")
    server = Server(out, None)
    server.key, server.secret = key, secret
    yield server
    if server.proc.poll() is None:
        assert server.stop() == 130, server.log()  # SIGTERM: non-zero, the jobs left queued


def submit(c, **data):
    r = c.post("/v1/trainings", files=photo_files(), data={"preset": "cpu-check", "trigger": "obm", "class_word": "man",
                                                            **data})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.trainer
@needs_kohya
def test_a_training_survives_a_server_kill_and_succeeds_with_its_lora_events_and_webhook(live):
    """The server SIGKILLed mid-training (the trainer goes with it) and started again: the job is queued again, trains
    to the end, and its LoRA, its event stream and its signed webhooks tell the whole story. One real training serves
    both the happy path and the restart, and the generation and swap tests after it."""
    from standardwebhooks.webhooks import Webhook

    receiver = Receiver()
    try:
        with live.client(live.key) as c:
            job = submit(c, webhook=receiver.url, webhook_events="start,completed")
            wait_status(c, job["id"], ("training",), timeout=600)
        live.kill()
        deadline = time.monotonic() + 90  # the launcher's watchdog stops a trainer whose launcher died
        while time.monotonic() < deadline and trainer_of(live, job["id"]):
            time.sleep(1)
        assert trainer_of(live, job["id"]) == "", "the trainer stops with its server"
        restarted = Server(live.output, None, port=live.port)
        live.proc, live.log_file, live.log_path = restarted.proc, restarted.log_file, restarted.log_path
        assert job["id"] in restarted.log(), "the restart says which job it queued again"
        with live.client(live.key) as c:
            done = wait_status(c, job["id"], ("succeeded", "failed", "canceled"))
            assert done["status"] == "succeeded", (done, restarted.log())
            assert done["attempts"] == 2
            assert done["progress"]["step"] == done["progress"]["total"] == 2 and done["lora_url"], done
            assert done["started_at"] and done["completed_at"] and done["error"] is None
            r = c.get(done["lora_url"])
            assert r.status_code == 200
            n = struct.unpack("<Q", r.content[:8])[0]
            assert any(k.startswith("lora_unet") for k in json.loads(r.content[8:8 + n])), "a LoRA safetensors"
            events = []

            def read_stream():
                with live.client(live.key, timeout=None) as s, s.stream("GET", job["urls"]["events"]) as r:
                    events.append(r.headers["content-type"])
                    events.extend(r.iter_lines())

            reader = threading.Thread(target=read_stream, daemon=True)
            reader.start()
            reader.join(timeout=60)
            assert not reader.is_alive(), "the event stream of a finished job ends after its last state"
            assert events[0].startswith("text/event-stream")
            text = "\n".join(events)
            for expected in ("event: StageStarted", "event: Step", '"stage": "training"', "event: Finished",
                             "the server stopped while this job was training"):
                assert expected in text, expected
            assert "training again from the start" in text or "from its saved state" in text
            last = json.loads([ln for ln in events if ln.startswith("data: ")][-1][6:])
            assert last["status"] == "succeeded"
            live.trained = job["id"]
        calls = receiver.wait_for(lambda calls: any(b'"succeeded"' in b for _, b, _ in calls), timeout=60)
        bodies = [Webhook(live.secret).verify(b, h) for h, b, _ in calls]
        assert bodies[0]["status"] == "preparing" and bodies[-1]["status"] == "succeeded"
        assert len({h["webhook-id"] for h, _, _ in calls}) == len(calls)
    finally:
        receiver.close()


def wait_job(c, url: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(url).json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(1)
    raise AssertionError(f"{url} is still {job['status']} after {timeout:.0f} s: {job}")


def png_parameters(data: bytes) -> str:
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.info.get("parameters", "")


@pytest.mark.trainer
@needs_kohya
def test_generations_and_swaps_on_the_trained_lora(live):
    """The app's next calls after a training: prompts on its LoRA, and its face into a customer's photo, each a job
    with images as URLs whose PNGs say how they were made."""
    training = getattr(live, "trained", None)
    assert training, "the training test before this one did not succeed"
    with live.client(live.key) as c:
        r = c.post("/v1/generations", json={"training": training, "prompts": ["{trigger} {class}, portrait photo"],
                                            "n": 2, "seed": 7, "width": 64, "height": 64, "steps": 2})
        assert r.status_code == 201, r.text
        gen = r.json()
        assert gen["id"].startswith("gen_") and gen["status"] == "queued"
        done = wait_job(c, gen["urls"]["self"])
        assert done["status"] == "succeeded", (done, live.log())
        assert len(done["images"]) == 2 and done["training"] == training
        for url in done["images"]:
            r = c.get(url)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            params = png_parameters(r.content)
            assert "obm man, portrait photo" in params and "<lora:" in params and "Steps: 2" in params, params
        assert c.get(done["images"][0].rsplit("/", 1)[0] + "/9").status_code == 404

        photo = (FACES / "obama2.jpg").read_bytes()
        r = c.post("/v1/swaps", data={"training": training, "strength": "0.5", "steps": "2"},
                   files=[("photo", ("customer.jpg", photo, "image/jpeg"))])
        assert r.status_code == 201, r.text
        swap = wait_job(c, r.json()["urls"]["self"])
        assert swap["status"] == "succeeded", (swap, live.log())
        assert len(swap["images"]) == 1 and isinstance(swap.get("identity"), (float, type(None)))
        r = c.get(swap["images"][0])
        assert r.status_code == 200
        assert "Denoising strength: 0.5" in png_parameters(r.content)
        from PIL import Image

        assert Image.open(io.BytesIO(r.content)).size == Image.open(io.BytesIO(photo)).size, "the photo's own size"

        r = c.post("/v1/generations", json={"training": "trn_nosuchjob", "prompts": ["x"]})
        assert r.status_code == 404 and error_of(r)["field"] == "training", r.text


@pytest.mark.trainer
@needs_kohya
def test_cancel_mid_training_leaves_no_trainer(live):
    with live.client(live.key) as c:
        job = submit(c)
        wait_status(c, job["id"], ("training",), timeout=600)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "sdxl_train_network" not in trainer_of(live, job["id"]):
            time.sleep(1)
        assert "sdxl_train_network" in trainer_of(live, job["id"]), "the trainer runs"
        r = c.post(job["urls"]["cancel"])
        assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
        assert trainer_of(live, job["id"]) == "", "no trainer is left"
        assert c.get("/health").json()["running"] == 0
