"""Read replicas: PostgreSQL streaming standbys serve reads, the primary serves writes.

The store keeps one :class:`~sqlalchemy.engine.Engine` (``store.engine``). With read URLs it is a
:class:`RoutedEngine`: ``engine.begin()`` (how twin writes) always gets a primary connection;
``engine.connect()`` gets a replica connection only inside a *read context* (:func:`read_context`,
opened per GET/HEAD request and per read-only analysis POST by ``gis_api.replicas``) and only
when a replica is known to be healthy and fresh enough. Everything else (background threads,
the CLI, writing requests) reads the primary, so nothing that reads in order to write sees old rows.

Fresh enough (read-your-writes):

- each read context may carry a ``min_lsn`` (the WAL position of the client's last write, sent back
  in a cookie): a replica is used only if its ``pg_last_wal_replay_lsn()`` is past it;
- after any commit in this process, replicas are skipped until a check shows them replayed past
  the primary's ``pg_current_wal_lsn()`` read after that commit (so a process never reads older
  rows than it wrote, and the tile cache never renders old rows under a new version);
- a replica whose lag exceeds ``replica_max_lag_s`` is not used (the bound for writes made
  through other processes by clients that keep no cookie).

Health: a check (at most every ``replica_check_s``, run by the request that needs it) reads the
primary's and each replica's WAL positions. A replica that fails a check or a query is out for
``replica_retry_s``; a query that failed on it raises :class:`ReplicaFailed`, which the HTTP layer
answers by running the request again on the primary.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.engine.base import OptionEngineMixin
from sqlalchemy.engine.interfaces import ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError

from twin.errors import StoreUnavailable

log = logging.getLogger("twin.replicas")

#: the ``info`` key marking a pooled DBAPI connection as a replica's (value: the replica name)
REPLICA_KEY = "twin_replica"
_DIRTY_KEY = "twin_replica_dirty"
_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse_lsn(raw: str) -> int:
    """``'16/B374D848'`` (PostgreSQL's pg_lsn text) → a comparable integer; ``ValueError`` if not one."""
    m = _LSN.fullmatch(raw.strip())
    if m is None:
        raise ValueError(f"not a WAL position: {raw[:40]!r}")
    return (int(m[1], 16) << 32) | int(m[2], 16)


def format_lsn(lsn: int) -> str:
    """The inverse of :func:`parse_lsn`."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


class ReplicaFailed(StoreUnavailable):
    """A query failed on a read replica (it is out for a while); the request may be run again on the primary."""


@dataclass
class ReadContext:
    """What one request may read from, and what happened while it ran."""

    replica_ok: bool = True
    #: WAL position the replica must have replayed (the client's last write), 0: any
    min_lsn: int = 0
    #: the replica this request reads from (sticky, so one request sees one snapshot line)
    replica: str | None = None
    used_replica: bool = False
    failed: bool = False
    wrote: bool = False


_CTX: contextvars.ContextVar[ReadContext | None] = contextvars.ContextVar("twin_read_context", default=None)
_FORCE_PRIMARY: contextvars.ContextVar[bool] = contextvars.ContextVar("twin_force_primary", default=False)


@contextlib.contextmanager
def read_context(ctx: ReadContext) -> Iterator[ReadContext]:
    """Run the block with ``ctx`` as the routing context (threads started with a copied context inherit it)."""
    token = _CTX.set(ctx)
    try:
        yield ctx
    finally:
        _CTX.reset(token)


def current_context() -> ReadContext | None:
    return _CTX.get()


@dataclass(eq=False)
class Replica:
    """One read URL: its engine and what the last check saw."""

    name: str
    engine: Engine
    healthy: bool = False
    down_until: float = 0.0
    replay_lsn: int = 0
    lag_bytes: int = 0
    lag_s: float = 0.0
    error: str | None = "not checked yet"
    reads: int = 0
    failures: int = 0
    #: it has been in use before (so a return to health is a return from an outage or a lag spike)
    served: bool = False

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "healthy": self.healthy, "lag_s": round(self.lag_s, 3),
                "lag_bytes": self.lag_bytes, "replay_lsn": format_lsn(self.replay_lsn), "error": self.error,
                "reads": self.reads, "failures": self.failures}


@dataclass(eq=False)
class ReadRouter:
    """Health, lag and the choice of a replica for a read (see the module docstring)."""

    primary: Engine
    replicas: list[Replica]
    check_s: float = 1.0
    retry_s: float = 10.0
    max_lag_s: float = 30.0
    primary_lsn: int = 0
    primary_reads: int = 0
    #: replicas must have replayed past this (the primary's position after this process's last commit)
    floor_lsn: int = 0
    _floor_pending: bool = False
    _checked_at: float = field(default=-1e9)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rr: Iterator[int] = field(default_factory=itertools.count)

    # --- health --------------------------------------------------------------
    def check(self, *, force: bool = False) -> None:
        """Read the WAL positions of the primary and the replicas (at most every ``check_s`` unless ``force``).

        Never raises: a primary that does not answer leaves the replicas as they were (the primary's
        own errors surface where it is used); a replica that does not answer is out for ``retry_s``.
        """
        now = time.monotonic()
        due = now - self._checked_at >= self.check_s or (self._floor_pending and now - self._checked_at >= 0.05)
        if not (force or due):
            return
        if not self._lock.acquire(blocking=force):
            return
        try:
            pending = self._floor_pending
            self._floor_pending = False
            try:
                with _primary_only(), self.primary.connect() as conn:
                    self.primary_lsn = parse_lsn(conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one())
            except DBAPIError as exc:
                self._floor_pending = self._floor_pending or pending
                log.warning("replica check: primary unreachable: %s", exc.orig)
                return
            if pending:
                self.floor_lsn = max(self.floor_lsn, self.primary_lsn)
            for r in self.replicas:
                self._check_one(r, now)
            self._checked_at = time.monotonic()
        finally:
            self._lock.release()

    def _check_one(self, r: Replica, now: float) -> None:
        if r.down_until > now:
            return
        try:
            with r.engine.connect() as conn:
                recovering, replay, since = conn.execute(text(
                    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,"
                    " extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
                )).one()
        except DBAPIError as exc:
            self.take_out(r.name, f"check failed: {str(exc.orig).strip().splitlines()[0][:200]}")
            return
        if not recovering or replay is None:
            r.healthy, r.error = False, "not a streaming replica (pg_is_in_recovery() is false)"
            r.down_until = now + self.retry_s
            return
        r.replay_lsn = parse_lsn(replay)
        r.lag_bytes = max(0, self.primary_lsn - r.replay_lsn)
        # idle primary: the last replayed transaction is old but nothing is missing → no lag
        r.lag_s = 0.0 if r.lag_bytes == 0 else max(0.0, float(since or 0.0))
        was = r.healthy
        r.healthy = r.lag_s <= self.max_lag_s
        r.error = None if r.healthy else f"lag {r.lag_s:.1f} s over replica_max_lag_s={self.max_lag_s:g}"
        if r.healthy and not was and r.served:
            # back from an outage: reads went to the primary meanwhile (and may have cached what they saw, e.g. tile
            # versions); the replica serves again once it has replayed up to the primary's position now
            self.floor_lsn = max(self.floor_lsn, self.primary_lsn)
        r.served = r.served or r.healthy

    def take_out(self, name: str, reason: str) -> None:
        """Stop using replica ``name`` for ``retry_s`` (after a failed check or query)."""
        for r in self.replicas:
            if r.name == name:
                if r.healthy:
                    log.warning("read replica %s taken out for %g s: %s", name, self.retry_s, reason)
                r.healthy, r.error = False, reason
                r.down_until = time.monotonic() + self.retry_s
                r.failures += 1
                r.engine.dispose()  # its pooled connections are dead; new ones after the pause

    def note_commit(self) -> None:
        """A write committed in this process: skip replicas until they are known to be past it."""
        self._floor_pending = True

    # --- choice ----------------------------------------------------------------
    def choose(self, ctx: ReadContext | None) -> Replica | None:
        """The replica a read in ``ctx`` goes to, or ``None`` for the primary."""
        if ctx is None or not ctx.replica_ok or ctx.failed or not self.replicas:
            return None
        self.check()
        if self._floor_pending:
            return None
        need = max(self.floor_lsn, ctx.min_lsn)
        if ctx.replica is not None:
            for r in self.replicas:
                if r.name == ctx.replica and r.healthy and r.replay_lsn >= need:
                    return r
        fit = [r for r in self.replicas if r.healthy and r.replay_lsn >= need]
        if not fit:
            if ctx.min_lsn > self.floor_lsn:
                # a client's own write sent this read to the primary: what it reads there (and caches,
                # like tile versions) is at least that new, so this process's replica reads must be too
                self.floor_lsn = ctx.min_lsn
            return None
        chosen = fit[next(self._rr) % len(fit)]
        ctx.replica = chosen.name
        return chosen

    def current_primary_lsn(self) -> int:
        """The primary's WAL position now (one query); the write LSN handed to a client after its write."""
        with _primary_only(), self.primary.connect() as conn:
            return parse_lsn(conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one())

    def status(self) -> list[dict[str, Any]]:
        return [r.status() for r in self.replicas]

    def dispose(self) -> None:
        for r in self.replicas:
            r.engine.dispose()


@contextlib.contextmanager
def _primary_only() -> Iterator[None]:
    token = _FORCE_PRIMARY.set(True)
    try:
        yield
    finally:
        _FORCE_PRIMARY.reset(token)


def primary_only() -> contextlib.AbstractContextManager[None]:
    """Within the block, ``engine.connect()`` of a routed engine gets a primary connection."""
    return _primary_only()


class RoutedEngine(Engine):
    """The primary's engine, whose ``connect()`` may hand out a replica connection (module docstring).

    Made from a primary engine by :func:`route_reads` (its pool, dialect and events stay the primary's).
    """

    router: ReadRouter

    def _router(self) -> ReadRouter:
        own = self.__dict__.get("router")
        return own if own is not None else self._proxied.router  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def begin(self) -> Iterator[Any]:
        with _primary_only():
            conn = self.connect()
        with conn, conn.begin():
            yield conn

    def raw_connection(self) -> Any:
        if _FORCE_PRIMARY.get():
            return super().raw_connection()
        router, ctx = self._router(), _CTX.get()
        replica = router.choose(ctx)
        if replica is None:
            router.primary_reads += 1
            return super().raw_connection()
        try:
            raw = replica.engine.raw_connection()
        except Exception as exc:  # noqa: BLE001 - the driver's own error (the pool does not wrap it)
            # cannot connect: out for a while, this read goes to the primary
            router.take_out(replica.name, f"connect failed: {(str(exc).strip().splitlines() or ['?'])[0][:200]}")
            router.primary_reads += 1
            return super().raw_connection()
        replica.reads += 1
        assert ctx is not None
        ctx.used_replica = True
        return raw


class RoutedOptionEngine(OptionEngineMixin, RoutedEngine):  # type: ignore[misc]
    """``routed.execution_options(...)``: same routing, other options."""

    def update_execution_options(self, **opt: Any) -> None:  # as sqlalchemy's OptionEngine does
        Engine.update_execution_options(self, **opt)


RoutedEngine._option_cls = RoutedOptionEngine  # type: ignore[assignment]


def route_reads(primary: Engine, replica_engines: dict[str, Engine], *, check_s: float, retry_s: float,
                max_lag_s: float) -> RoutedEngine:
    """Turn ``primary`` into a :class:`RoutedEngine` over ``replica_engines`` (name → engine)."""
    replicas = [Replica(name, eng) for name, eng in replica_engines.items()]
    router = ReadRouter(primary, replicas, check_s=check_s, retry_s=retry_s, max_lag_s=max_lag_s)
    for r in replicas:
        event.listen(r.engine, "connect", _tagger(r.name))
    primary.__class__ = RoutedEngine  # same object: listeners already on it (and its pool) keep firing
    routed: RoutedEngine = primary  # type: ignore[assignment]
    routed.router = router
    event.listen(routed, "handle_error", _on_error(router))
    event.listen(routed, "commit", _on_commit)
    event.listen(routed.pool, "checkin", _on_checkin(router))
    return routed


def _tagger(name: str):  # noqa: ANN202
    def tag(_dbapi_conn: Any, record: Any) -> None:
        record.info[REPLICA_KEY] = name
    return tag


def _on_commit(conn: Any) -> None:
    if conn.info.get(REPLICA_KEY):  # a read-only transaction ending on a replica
        return
    ctx = _CTX.get()
    if ctx is not None:
        ctx.wrote = True
    conn.info[_DIRTY_KEY] = True


def _on_checkin(router: ReadRouter):  # noqa: ANN202
    def checkin(_dbapi_conn: Any, record: Any) -> None:
        # the commit is visible once its connection is back: only then is the primary's LSN past it
        if record is not None and record.info.pop(_DIRTY_KEY, False):
            router.note_commit()
    return checkin


#: errors on a replica that say "run this on the primary" without the replica being broken
_RETRY_ON_PRIMARY = ("read-only transaction", "conflict with recovery", "recovery is in progress")


def _on_error(router: ReadRouter):  # noqa: ANN202
    def handle(ctx: ExceptionContext) -> BaseException | None:
        conn = ctx.connection
        name = None
        if conn is not None:
            with contextlib.suppress(Exception):
                name = conn.info.get(REPLICA_KEY)
        if name is None:
            return None
        message = str(ctx.original_exception).strip().splitlines()[0][:200] if ctx.original_exception else "?"
        if "statement timeout" in message:
            return None  # a slow query: it would be as slow on the primary (answered 503 query_timeout)
        elsewhere = any(s in message for s in _RETRY_ON_PRIMARY)  # the replica is fine, the query needs the primary
        broken = not elsewhere and (isinstance(ctx.sqlalchemy_exception, OperationalError) or ctx.is_disconnect)
        if not (broken or elsewhere):
            return None  # an ordinary error (bad SQL, bad value): the same on the primary
        rc = _CTX.get()
        if rc is not None:
            rc.failed = True
        if broken:
            router.take_out(name, f"query failed: {message}")
        return ReplicaFailed(f"read replica {name} failed under a query", detail=message)
    return handle


__all__ = ["ReadContext", "ReadRouter", "ReplicaFailed", "RoutedEngine", "format_lsn", "parse_lsn",
           "primary_only", "read_context", "route_reads"]
