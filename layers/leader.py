"""The live *leader* lock: which process of a deployment runs the MQTT consumer and housekeeping.

Exactly one process per database may consume from the broker: they all share one persistent MQTT
session (``TWIN_MQTT_CLIENT_ID``), and two clients with one id take the session from each other.

* **PostgreSQL** (any number of hosts on one database): a session-level advisory lock
  (``pg_try_advisory_lock``) on a key derived from the database name and the ingest role (the
  MQTT session, ``TWIN_MQTT_CLIENT_ID``: the thing two consumers must not share), held on a
  connection of its own (not from the pool: the lock lives exactly as long as that session). When
  the leader process dies, the kernel closes its socket, PostgreSQL ends the session and the lock is
  free; a follower's next try takes it. The leader checks its lock connection regularly and steps
  down if it is gone (database restarted, network cut): another process may hold the lock by then.
* **SpatiaLite** (one host by nature): a file lock next to the data in ``TWIN_HOME`` (``flock``),
  released by the kernel when the process dies.

:class:`layers.service.LiveService` tries once at start-up and then, in a thread, every
:data:`RETRY_S` seconds plus up to :data:`JITTER_S` of random jitter (so that followers do not
all hit the database at the same instant).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import random
from pathlib import Path
from typing import IO, Any, Protocol

from prometheus_client import Gauge
from sqlalchemy.engine import Engine

log = logging.getLogger("twin.live.leader")

LEADER = Gauge("twin_live_leader", "1 while this process is the live leader (MQTT consumer, housekeeping)")

#: Followers try to take the lock, and the leader checks it still holds it, this often (seconds) ...
RETRY_S = 2.0
#: ... plus a random delay up to this (seconds).
JITTER_S = 1.0
#: The advisory-lock key is made of the database name and this, followed by the MQTT client id.
INGEST_ROLE = "twin.live.ingest"


def next_delay() -> float:
    """Seconds until the next try / check: bounded, with jitter."""
    return RETRY_S + random.uniform(0.0, JITTER_S)


class LeaderLock(Protocol):
    def acquire(self) -> bool:
        """Take the lock if it is free; never blocks for long, never raises."""

    def alive(self) -> bool:
        """True while the lock taken by :meth:`acquire` is still held."""

    def release(self) -> None:
        """Give the lock up (idempotent)."""


def advisory_key(database: str, role: str = INGEST_ROLE) -> int:
    """A stable signed 64-bit key (``bigint``) for ``pg_try_advisory_lock``."""
    digest = hashlib.sha256(f"{database}\x00{role}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresLeaderLock:
    """``pg_try_advisory_lock`` on a dedicated psycopg connection (autocommit, TCP keepalives)."""

    def __init__(self, engine: Engine, role: str = INGEST_ROLE):
        u = engine.url.set(drivername="postgresql")
        self.conninfo = u.render_as_string(hide_password=False)
        self.key = advisory_key(u.database or "", role)
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            self.conninfo, autocommit=True, connect_timeout=5, application_name="twin-live-leader",
            # a silent network cut is noticed in about 20 s even between checks
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=2,
            options="-c statement_timeout=5000",
        )

    def acquire(self) -> bool:
        if self._conn is not None:
            return self.alive()
        conn = None
        try:
            conn = self._connect()
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]
        except Exception as exc:
            log.warning("live leader lock: cannot ask PostgreSQL (%s); trying again", exc)
            got = False
        if not got:
            if conn is not None:
                conn.close()
            return False
        self._conn = conn
        return True

    def alive(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1").fetchone()
            return True
        except Exception as exc:
            log.warning("live leader lock connection lost (%s)", exc)
            self.release()
            return False

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()  # ends the session: PostgreSQL frees the advisory lock
            except Exception:
                pass


class FileLeaderLock:
    """``flock`` on ``TWIN_HOME/live-leader-<hash of the database URL>.lock`` (one host)."""

    def __init__(self, engine: Engine, home: str | Path):
        url = engine.url.render_as_string(hide_password=True)
        key = hashlib.sha1(url.encode()).hexdigest()[:12]
        self.path = Path(home) / f"live-leader-{key}.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        if self._file is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._file = f
        return True

    def alive(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()


def leader_lock(engine: Engine, home: str | Path, mqtt_client_id: str) -> LeaderLock:
    """The lock that fits the backend of ``engine``. On PostgreSQL, processes with the same MQTT
    session id (every host of one deployment: the setting is the same) compete for one lock."""
    if engine.url.get_backend_name() == "postgresql":
        return PostgresLeaderLock(engine, f"{INGEST_ROLE}:{mqtt_client_id}")
    return FileLeaderLock(engine, home)
