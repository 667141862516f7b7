"""Webhooks after the Standard Webhooks spec: `webhook-id` (the same on every attempt of one delivery),
`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` signed with the `whsec_` secret of the key that
made the job; the body is the job's object when the event happened. Each delivery is recorded in the store first,
so a restart loses none, then tried with backoff on failure or timeout, a bounded number of times."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import time

import httpx

from faceswap_kohya.service.store import Store

EVENTS = ("start", "progress", "completed")
BACKOFF_S = (1, 2, 5, 15, 60, 300, 900, 3600)  # after attempt 1, 2, ...: then it is given up (recorded as failed)
TIMEOUT_S = 10.0


def check_events(value: str | None) -> list[str]:
    """`webhook_events`: a comma-separated (or JSON list) choice of start, progress, completed; default completed."""
    if not value:
        return ["completed"]
    try:
        items = json.loads(value) if value.strip().startswith("[") else value.split(",")
    except ValueError:
        items = [value]
    chosen = [str(i).strip() for i in items if str(i).strip()]
    bad = [i for i in chosen if i not in EVENTS]
    if bad or not chosen:
        shown = ", ".join(bad) or repr(value)
        raise ValueError(f"webhook_events: {shown} is not one of {', '.join(EVENTS)}")
    return list(dict.fromkeys(chosen))


def headers(secret: str, webhook_id: str, body: str, now: dt.datetime | None = None) -> dict:
    from standardwebhooks.webhooks import Webhook

    now = now or dt.datetime.now(dt.timezone.utc)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(webhook_id, now, body), "content-type": "application/json",
            "user-agent": "faceswap-kohya-service"}


def enqueue(store: Store, job: dict, event: str, body: dict) -> None:
    """Record a delivery of `event` for the job when it asked for one."""
    wanted = (job.get("webhook_events") or "completed").split(",")
    if job.get("webhook") and event in wanted:
        store.add_delivery("msg_" + secrets.token_hex(12), job["id"], event, job["webhook"], json.dumps(body))


class Deliverer:
    """A thread that sends due deliveries, retrying with backoff; each attempt's outcome goes into the store."""

    def __init__(self, store: Store):
        self.store = store
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, name="webhooks", daemon=True)
        self.client = httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=TIMEOUT_S + 5)
        self.client.close()

    def loop(self) -> None:
        while not self.stopping.is_set():
            try:
                for d in self.store.due_deliveries(time.time()):
                    if self.stopping.is_set():
                        break
                    self.attempt(d)
            except Exception:  # noqa: BLE001 - a database hiccup must not end deliveries; the next round retries
                pass
            self.stopping.wait(0.5)

    def attempt(self, d: dict) -> None:
        job = self.store.job(d["job_id"])
        secret = self.store.secret_of(job["key_name"]) if job else None
        if not secret:
            self.store.record_attempt(d["seq"], "the key that made the job is gone", "failed", time.time())
            return
        try:
            r = self.client.post(d["url"], content=d["body"].encode(), headers=headers(secret, d["webhook_id"], d["body"]))
            status, ok = str(r.status_code), 200 <= r.status_code < 300
        except httpx.HTTPError as e:
            status, ok = f"{type(e).__name__}: {str(e)[:200]}", False
        attempts = d["attempts"] + 1
        if ok:
            self.store.record_attempt(d["seq"], status, "delivered", time.time())
        elif attempts >= len(BACKOFF_S):
            self.store.record_attempt(d["seq"], status, "failed", time.time())
        else:
            self.store.record_attempt(d["seq"], status, "pending", time.time() + BACKOFF_S[attempts - 1])
