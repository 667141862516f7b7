"""The service's job store: jobs, API keys (hashed), idempotency keys and webhook deliveries, in SQLite (WAL, under
`--output`) or PostgreSQL (`--database postgresql://...`), through SQLAlchemy Core. The run folders stay the record
of each run; the database holds what the API needs to answer and to survive a restart."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Optional

import sqlalchemy as sa

from faceswap_kohya.errors import UserError

DB_FILE = "service.db"
QUEUED, PREPARING, TRAINING, EVALUATING = "queued", "preparing", "training", "evaluating"
SUCCEEDED, FAILED, CANCELED = "succeeded", "failed", "canceled"
RUNNING = (PREPARING, TRAINING, EVALUATING)
TERMINAL = (SUCCEEDED, FAILED, CANCELED)
STATES = (QUEUED,) + RUNNING + TERMINAL

meta = sa.MetaData()
keys = sa.Table(
    "keys", meta,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("secret", sa.String(200), nullable=False),  # the whsec_ webhook signing secret (it must sign)
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)
jobs = sa.Table(
    "jobs", meta,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),  # first in, first out
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("key_name", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),  # training / generation / swap
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("completed_at", sa.Float),
    sa.Column("request", sa.Text, nullable=False),  # JSON: what the job runs with
    sa.Column("folder", sa.Text, nullable=False),  # the job's own folder (uploads, run folders, images)
    sa.Column("error", sa.Text),  # JSON {"message", "field"}
    sa.Column("result", sa.Text),  # JSON: images, summary, ...
    sa.Column("webhook", sa.Text),
    sa.Column("webhook_events", sa.String(100)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),  # how many times it was started
    sa.Column("cancel_requested", sa.Integer, nullable=False, default=0),
)
idempotency = sa.Table(
    "idempotency", meta,
    sa.Column("key_name", sa.String(200), primary_key=True),
    sa.Column("idem_key", sa.String(300), primary_key=True),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("job_id", sa.String(40), nullable=False),
)
deliveries = sa.Table(
    "deliveries", meta,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("webhook_id", sa.String(60), nullable=False, unique=True),  # the same on every attempt
    sa.Column("job_id", sa.String(40), nullable=False, index=True),
    sa.Column("event", sa.String(20), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_at", sa.Float, nullable=False),
    sa.Column("last_attempt_at", sa.Float),
    sa.Column("last_status", sa.Text),  # the HTTP status, or what went wrong
    sa.Column("state", sa.String(20), nullable=False, default="pending"),  # pending / delivered / failed
)


def iso(t: Optional[float]) -> Optional[str]:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z") \
        if t is not None else None


def database_url(output: Path, database: Optional[str]) -> str:
    """`--database` as SQLAlchemy wants it (postgresql:// → the psycopg 3 driver), else SQLite under `--output`."""
    if not database:
        return f"sqlite:///{Path(output).expanduser().absolute() / DB_FILE}"
    for prefix in ("postgresql://", "postgres://"):
        if database.startswith(prefix):
            return "postgresql+psycopg://" + database[len(prefix):]
    if database.startswith(("postgresql+psycopg://", "sqlite:///")):
        return database
    raise UserError(f"--database {database}: expected postgresql://USER@HOST:PORT/NAME (or leave it out for SQLite "
                    "under --output)")


class Store:
    """One database of jobs, keys, idempotency keys and deliveries; safe to share between threads."""

    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        try:
            meta.create_all(self.engine)
        except sa.exc.OperationalError as e:
            raise UserError(f"--database: cannot open {self.engine.url.render_as_string(hide_password=True)} "
                            f"({str(e.orig).strip().splitlines()[0]})") from None

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ keys
    def add_key(self, name: str, key_hash: str, secret: str) -> None:
        with self.engine.begin() as c:
            if c.execute(sa.select(keys.c.name).where(keys.c.name == name)).first():
                raise UserError(f"key {name!r} exists already; revoke it or choose another name")
            c.execute(keys.insert().values(name=name, key_hash=key_hash, secret=secret, created_at=time.time()))

    def key_by_hash(self, key_hash: str) -> Optional[dict]:
        with self.engine.connect() as c:
            row = c.execute(sa.select(keys).where(keys.c.key_hash == key_hash)).mappings().first()
        return dict(row) if row else None

    def list_keys(self) -> list[dict]:
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(sa.select(keys).order_by(keys.c.created_at)).mappings()]

    def revoke_key(self, name: str) -> None:
        with self.engine.begin() as c:
            done = c.execute(keys.update().where(keys.c.name == name, keys.c.revoked_at.is_(None))
                             .values(revoked_at=time.time())).rowcount
        if not done:
            known = ", ".join(k["name"] for k in self.list_keys() if k["revoked_at"] is None) or "none"
            raise UserError(f"no active key named {name!r} (active keys: {known})")

    def secret_of(self, key_name: str) -> Optional[str]:
        with self.engine.connect() as c:
            return c.execute(sa.select(keys.c.secret).where(keys.c.name == key_name)).scalar()

    def active_keys(self) -> int:
        with self.engine.connect() as c:
            return c.execute(sa.select(sa.func.count()).select_from(keys).where(keys.c.revoked_at.is_(None))).scalar()

    # ------------------------------------------------------------ jobs
    def add_job(self, job: dict, idem: Optional[tuple[str, str]] = None) -> None:
        """Insert a job (and its idempotency key, in the same transaction)."""
        with self.engine.begin() as c:
            c.execute(jobs.insert().values(**job))
            if idem:
                c.execute(idempotency.insert().values(key_name=job["key_name"], idem_key=idem[0], body_hash=idem[1],
                                                      job_id=job["id"]))

    def idempotent(self, key_name: str, idem_key: str) -> Optional[dict]:
        with self.engine.connect() as c:
            row = c.execute(sa.select(idempotency).where(idempotency.c.key_name == key_name,
                                                         idempotency.c.idem_key == idem_key)).mappings().first()
        return dict(row) if row else None

    def job(self, job_id: str, key_name: Optional[str] = None) -> Optional[dict]:
        q = sa.select(jobs).where(jobs.c.id == job_id)
        if key_name is not None:
            q = q.where(jobs.c.key_name == key_name)
        with self.engine.connect() as c:
            row = c.execute(q).mappings().first()
        return _decoded(row) if row else None

    def list_jobs(self, key_name: str, kind: str, status: Optional[str] = None, limit: int = 20,
                  before_seq: Optional[int] = None) -> list[dict]:
        q = sa.select(jobs).where(jobs.c.key_name == key_name, jobs.c.kind == kind)
        if status:
            q = q.where(jobs.c.status == status)
        if before_seq is not None:
            q = q.where(jobs.c.seq < before_seq)
        with self.engine.connect() as c:
            return [_decoded(r) for r in c.execute(q.order_by(jobs.c.seq.desc()).limit(limit)).mappings()]

    def jobs_in(self, states) -> list[dict]:
        with self.engine.connect() as c:
            return [_decoded(r) for r in c.execute(sa.select(jobs).where(jobs.c.status.in_(list(states)))
                                                   .order_by(jobs.c.seq)).mappings()]

    def count(self, states, key_name: Optional[str] = None) -> int:
        q = sa.select(sa.func.count()).select_from(jobs).where(jobs.c.status.in_(list(states)))
        if key_name is not None:
            q = q.where(jobs.c.key_name == key_name)
        with self.engine.connect() as c:
            return c.execute(q).scalar()

    def queue_position(self, seq: int) -> int:
        """1 for the next job to start."""
        with self.engine.connect() as c:
            return c.execute(sa.select(sa.func.count()).select_from(jobs)
                             .where(jobs.c.status == QUEUED, jobs.c.seq <= seq)).scalar()

    def claim_next(self) -> Optional[dict]:
        """The oldest queued job, marked `preparing` (no other worker gets it)."""
        with self.engine.begin() as c:
            while True:
                row = c.execute(sa.select(jobs.c.id).where(jobs.c.status == QUEUED).order_by(jobs.c.seq).limit(1)).first()
                if row is None:
                    return None
                took = c.execute(jobs.update().where(jobs.c.id == row.id, jobs.c.status == QUEUED).values(
                    status=PREPARING, started_at=time.time(), attempts=jobs.c.attempts + 1)).rowcount
                if took:
                    break
        return self.job(row.id)

    def update(self, job_id: str, only_from=None, **values) -> bool:
        """Change a job; with `only_from`, only while its status is one of those. True when it changed."""
        for name in ("error", "result"):
            if name in values and values[name] is not None and not isinstance(values[name], str):
                values[name] = json.dumps(values[name])
        q = jobs.update().where(jobs.c.id == job_id)
        if only_from is not None:
            q = q.where(jobs.c.status.in_(list(only_from)))
        with self.engine.begin() as c:
            return bool(c.execute(q.values(**values)).rowcount)

    # ------------------------------------------------------------ webhook deliveries
    def add_delivery(self, webhook_id: str, job_id: str, event: str, url: str, body: str) -> None:
        with self.engine.begin() as c:
            c.execute(deliveries.insert().values(webhook_id=webhook_id, job_id=job_id, event=event, url=url, body=body,
                                                 attempts=0, next_at=time.time(), state="pending"))

    def due_deliveries(self, now: float) -> list[dict]:
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(sa.select(deliveries).where(deliveries.c.state == "pending",
                                                                           deliveries.c.next_at <= now)
                                               .order_by(deliveries.c.seq)).mappings()]

    def deliveries_of(self, job_id: str) -> list[dict]:
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(sa.select(deliveries).where(deliveries.c.job_id == job_id)
                                               .order_by(deliveries.c.seq)).mappings()]

    def record_attempt(self, seq: int, status: str, state: str, next_at: float) -> None:
        with self.engine.begin() as c:
            c.execute(deliveries.update().where(deliveries.c.seq == seq).values(
                attempts=deliveries.c.attempts + 1, last_attempt_at=time.time(), last_status=status, state=state,
                next_at=next_at))


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _decoded(row) -> dict:
    job = dict(row)
    job["request"] = json.loads(job["request"])
    for name in ("error", "result"):
        job[name] = json.loads(job[name]) if job.get(name) else None
    return job
