"""Database engines for the two backends: PostGIS (production) and SpatiaLite (embedded).

The stdlib ``sqlite3`` of many CPython builds cannot load extensions, so the
embedded store uses ``pysqlite3`` (which can) and loads Debian's
``mod_spatialite``. A new SpatiaLite file gets ``InitSpatialMetadata(1)`` so SRIDs
resolve. PostgreSQL URLs are routed to psycopg 3 and get a statement timeout so a
slow query is cut instead of holding a worker.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url

from twin import casei
from twin.errors import StoreUnavailable

SPATIALITE_MODULE = "mod_spatialite"


def normalise_url(url: str | URL) -> URL:
    """``postgresql://`` → ``postgresql+psycopg://``; other URLs unchanged."""
    u = make_url(url) if isinstance(url, str) else url
    if u.drivername in ("postgresql", "postgres", "postgis"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def make_engine(url: str | URL, *, statement_timeout_ms: int = 15_000, echo: bool = False) -> Engine:
    """Create the engine for ``url`` with the backend's connection set-up."""
    u = normalise_url(url)
    if u.get_backend_name() == "sqlite":
        return _spatialite_engine(u, echo=echo)
    if u.get_backend_name() == "postgresql":
        engine = create_engine(
            u,
            echo=echo,
            pool_size=8,
            max_overflow=8,
            connect_args={
                "options": f"-c statement_timeout={int(statement_timeout_ms)}",
                "application_name": "twin",
                "connect_timeout": 10,
            },
        )
        ping_idle_connections(engine)
        return engine
    raise StoreUnavailable(f"unsupported database URL scheme {u.drivername!r}; use postgresql:// or sqlite:///")


#: A pooled connection unused for longer than this is pinged before it is handed out.
PING_IDLE_S = 2.0


def ping_idle_connections(engine: Engine, idle_s: float = PING_IDLE_S) -> None:
    """Check a pooled connection's liveness on checkout only when it sat idle over ``idle_s``.

    SQLAlchemy's ``pool_pre_ping`` pings on *every* checkout: one extra round trip per
    query, which doubled the time of a small indexed read (a 50 m buffer is one such
    query). Connections die while idle (server restart, idle timeouts, a failover), so a
    connection used moments ago is handed out as is; an idle one is pinged and, when dead,
    replaced (``DisconnectionError`` makes the pool retry with a fresh connection). A
    connection that died within the last ``idle_s`` fails its query; SQLAlchemy then
    sees the disconnect and invalidates the pool, so the next query reconnects.
    """
    import time

    from sqlalchemy import exc

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _stamp(dbapi_conn, record):  # noqa: ANN001 - pool callback (a new connection needs no ping either)
        record.info["twin_used_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, proxy):  # noqa: ANN001 - pool callback
        used = record.info.get("twin_used_at")
        if used is not None and time.monotonic() - used <= idle_s:
            return
        try:
            if not engine.dialect.do_ping(dbapi_conn):
                raise exc.DisconnectionError("connection failed its ping")
        except exc.DisconnectionError:
            raise
        except Exception as err:
            raise exc.DisconnectionError(f"connection failed its ping: {err}") from err


#: Wheels that bundle their own GDAL, PROJ or GEOS. They must be loaded before the
#: first SpatiaLite connection: SQLite loads extensions with RTLD_GLOBAL, which puts
#: the system PROJ/GEOS that mod_spatialite links into the global symbol scope, and a
#: bundled GDAL loaded after that binds to the wrong PROJ and crashes the process.
NATIVE_WHEELS = ("shapely", "pyproj", "rasterio", "rasterio.crs", "pyogrio")


def _preload_native_wheels() -> None:
    import importlib

    for name in NATIVE_WHEELS:
        try:
            importlib.import_module(name)
        except ImportError:  # optional for a given deployment
            pass


def _spatialite_engine(u: URL, *, echo: bool) -> Engine:
    _preload_native_wheels()
    try:
        import pysqlite3.dbapi2 as sqlite_module  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - platforms without the wheel
        import sqlite3 as sqlite_module

    if u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        u,
        module=sqlite_module,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": 30},
    )

    @event.listens_for(engine, "connect")
    def _load_spatialite(dbapi_conn, _record):  # noqa: ANN001 - DBAPI callback
        dbapi_conn.enable_load_extension(True)
        try:
            dbapi_conn.load_extension(SPATIALITE_MODULE)
        except Exception as exc:  # the Debian package libsqlite3-mod-spatialite is missing
            raise StoreUnavailable(
                "cannot load SpatiaLite (mod_spatialite); install libsqlite3-mod-spatialite",
                detail=str(exc),
            ) from exc
        dbapi_conn.enable_load_extension(False)
        # CASEI folds Unicode the same way on both backends (twin.casei)
        dbapi_conn.create_function(casei.SQLITE_FUNCTION, 1, casei.casei, deterministic=True)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA cache_size=-65536")
        has_meta = cur.execute(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='spatial_ref_sys'"
        ).fetchone()[0]
        if not has_meta:
            cur.execute("SELECT InitSpatialMetadata(1)")
        cur.close()

    return engine


# --- read replicas (twin/replicas.py): the engine of a store with TWIN_DATABASE_READ_URLS -------------
def make_routed_engine(
    url: str | URL,
    read_urls: list[str],
    *,
    statement_timeout_ms: int = 15_000,
    check_s: float = 1.0,
    retry_s: float = 10.0,
    max_lag_s: float = 30.0,
) -> Engine:
    """The primary's engine for ``url``; with ``read_urls``, a routed one whose reads may go to the replicas."""
    from twin.replicas import route_reads

    primary = make_engine(url, statement_timeout_ms=statement_timeout_ms)
    if not read_urls:
        return primary
    if primary.dialect.name != "postgresql":
        raise StoreUnavailable("read replicas need PostGIS (TWIN_DATABASE_URL=postgresql://…), not SpatiaLite")
    replicas: dict[str, Engine] = {}
    for raw in read_urls:
        u = normalise_url(raw)
        if u.get_backend_name() != "postgresql":
            raise StoreUnavailable(f"read replica URL {u.render_as_string(hide_password=True)!r} is not postgresql://")
        name = f"{u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}"
        replicas[name] = create_engine(
            u,
            pool_size=8,
            max_overflow=8,
            connect_args={
                "options": f"-c statement_timeout={int(statement_timeout_ms)}",
                "application_name": "twin-replica-read",
                "connect_timeout": 3,  # a replica that does not answer is skipped, not waited for
            },
        )
        # as on the primary: ping only connections idle for a while (a query that still fails
        # on a dead replica connection is retried on the primary by twin/replicas.py)
        ping_idle_connections(replicas[name])
    return route_reads(primary, replicas, check_s=check_s, retry_s=retry_s, max_lag_s=max_lag_s)
