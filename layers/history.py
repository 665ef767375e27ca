"""Reading history and latest state in the database (tables of migration ``0007_live``).

Readings are written in batches by a :class:`HistoryWriter` thread (one multi-row
``INSERT`` per flush, plus the latest state per device), never one statement per
reading. Queries read one device over an interval; :func:`aggregate` buckets rows
per interval in numpy, the same on both backends.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from prometheus_client import Counter
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    select,
    tuple_,
)
from sqlalchemy import insert as sa_insert

from layers.readings import Reading
from twin.errors import LimitExceeded
from twin.store import SpatialStore

log = logging.getLogger("twin.live.history")

metadata = MetaData()
readings_table = Table(
    "live_readings", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("layer", String(64), nullable=False),
    Column("device_code", String(64), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("values", JSON, nullable=False),
    Column("lon", Float),
    Column("lat", Float),
)
state_table = Table(
    "live_state", metadata,
    Column("layer", String(64), primary_key=True),
    Column("device_code", String(64), primary_key=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("values", JSON, nullable=False),
    Column("lon", Float),
    Column("lat", Float),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)

ROWS_WRITTEN = Counter("twin_live_history_rows_total", "Readings written to the history table")
WRITE_ERRORS = Counter("twin_live_history_write_errors_total", "History batches that failed to write")


def _utc(t: Any) -> dt.datetime:
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t)
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def write_batch(store: SpatialStore, readings: Sequence[Reading], seen_at: dt.datetime | None = None) -> int:
    """Append ``readings`` to the history and move each device's latest state, in one transaction."""
    if not readings:
        return 0
    latest: dict[tuple[str, str], Reading] = {}
    for r in readings:
        k = (r.layer, r.device_code)
        if k not in latest or r.ts >= latest[k].ts:
            latest[k] = r
    seen = seen_at or dt.datetime.now(dt.UTC)
    with store.engine.begin() as conn:
        if store.dialect.name == "postgis":
            _insert_readings_pg(conn, readings)
            _upsert_state_pg(conn, latest, seen)
        else:
            conn.execute(sa_insert(readings_table), [
                {"layer": r.layer, "device_code": r.device_code, "ts": r.ts, "values": r.values,
                 "lon": r.lon, "lat": r.lat} for r in readings])
            _replace_state(conn, latest, seen)
    ROWS_WRITTEN.inc(len(readings))
    return len(readings)


def _replace_state(conn: Any, latest: dict[tuple[str, str], Reading], seen: dt.datetime) -> None:
    """SpatiaLite: read the devices' stored state, replace the rows a newer reading moves."""
    keys = list(latest)
    old = {
        (row.layer, row.device_code): row
        for row in conn.execute(
            select(state_table).where(tuple_(state_table.c.layer, state_table.c.device_code).in_(keys))
        )
    }
    replace = [k for k in keys if k not in old or _utc(old[k].ts) <= latest[k].ts]
    if replace:
        conn.execute(delete(state_table).where(
            tuple_(state_table.c.layer, state_table.c.device_code).in_(replace)))
        conn.execute(sa_insert(state_table), [
            {"layer": k[0], "device_code": k[1], "ts": latest[k].ts, "values": latest[k].values,
             "lon": latest[k].lon if latest[k].lon is not None else (old[k].lon if k in old else None),
             "lat": latest[k].lat if latest[k].lat is not None else (old[k].lat if k in old else None),
             "last_seen": seen}
            for k in replace
        ])


#: one statement whatever the batch size: the devices' latest readings as one JSON array parameter
#: (serialised by orjson in C; psycopg's per-element array dumping was a third of this step), upserted;
#: a stored state newer than the batch's reading stays, a missing position keeps the stored one
_UPSERT_STATE_PG = """
INSERT INTO live_state (layer, device_code, ts, "values", lon, lat, last_seen)
SELECT layer, device_code, ts, "values", lon, lat, %s FROM json_to_recordset(%s::json)
    AS u(layer text, device_code text, ts timestamptz, "values" json, lon float8, lat float8)
ON CONFLICT (layer, device_code) DO UPDATE SET ts = excluded.ts, "values" = excluded."values",
    lon = COALESCE(excluded.lon, live_state.lon), lat = COALESCE(excluded.lat, live_state.lat),
    last_seen = excluded.last_seen
WHERE live_state.ts <= excluded.ts
"""

_INSERT_READINGS_PG = """
INSERT INTO live_readings (layer, device_code, ts, "values", lon, lat)
SELECT layer, device_code, ts, "values", lon, lat FROM json_to_recordset(%s::json)
    AS u(layer text, device_code text, ts timestamptz, "values" json, lon float8, lat float8)
"""


def _rows_json(readings: Sequence[Reading]) -> str:
    return orjson.dumps([{"layer": r.layer, "device_code": r.device_code, "ts": r.ts, "values": r.values,
                          "lon": r.lon, "lat": r.lat} for r in readings]).decode()


def _upsert_state_pg(conn: Any, latest: dict[tuple[str, str], Reading], seen: dt.datetime) -> None:
    """PostgreSQL: the latest state per device in one ``INSERT … ON CONFLICT`` (the select + delete +
    insert with a ``(layer, code) IN (…)`` list of thousands of pairs cost a quarter of the ingest's
    CPU at 2,000 readings/s, most of it building and splitting that query text)."""
    with conn.connection.driver_connection.cursor() as cur:
        cur.execute(_UPSERT_STATE_PG, (seen, _rows_json(list(latest.values()))))


def _insert_readings_pg(conn: Any, readings: Sequence[Reading]) -> None:
    """PostgreSQL: append the rows in one statement over a JSON array (one orjson call for the batch;
    ``COPY``'s per-row Python formatting cost more of the ingest's CPU than the database's work)."""
    with conn.connection.driver_connection.cursor() as cur:
        cur.execute(_INSERT_READINGS_PG, (_rows_json(readings),))


def load_state(store: SpatialStore) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [
            {**row._mapping, "ts": _utc(row.ts), "last_seen": _utc(row.last_seen)}
            for row in conn.execute(select(state_table))
        ]


def purge(store: SpatialStore, older_than: dt.datetime) -> int:
    """Delete history older than ``older_than`` (the retention setting); returns rows deleted."""
    with store.engine.begin() as conn:
        return conn.execute(delete(readings_table).where(readings_table.c.ts < older_than)).rowcount or 0


@dataclass(frozen=True)
class HistoryRow:
    ts: dt.datetime
    values: dict[str, Any]
    lon: float | None
    lat: float | None


def history(store: SpatialStore, layer: str, code: str, start: dt.datetime | None, end: dt.datetime | None,
            max_rows: int) -> list[HistoryRow]:
    """One device's readings in [start, end] (either open), oldest first; at most ``max_rows``."""
    t = readings_table
    where = [t.c.layer == layer, t.c.device_code == code]
    if start is not None:
        where.append(t.c.ts >= start)
    if end is not None:
        where.append(t.c.ts <= end)
    q = select(t.c.ts, t.c["values"], t.c.lon, t.c.lat).where(and_(*where)).order_by(t.c.ts).limit(max_rows + 1)
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    if len(rows) > max_rows:
        raise LimitExceeded(f"more than {max_rows} readings in the interval; narrow datetime or aggregate "
                            "over a shorter span", detail={"max_rows": max_rows})
    return [HistoryRow(_utc(r[0]), r[1] or {}, r[2], r[3]) for r in rows]


def aggregate(rows: Sequence[HistoryRow], interval_s: float, start: dt.datetime | None = None) -> list[dict]:
    """Per ``interval_s`` bucket (aligned to ``start``, else to the Unix epoch): count, min, max, mean
    of every numeric metric; empty buckets are left out."""
    if not rows:
        return []
    t = np.array([r.ts.timestamp() for r in rows])
    origin = start.timestamp() if start is not None else 0.0
    bucket = np.floor((t - origin) / interval_s).astype(np.int64)
    metrics = sorted({k for r in rows for k, v in r.values.items() if not isinstance(v, bool)})
    out = []
    uniq, first = np.unique(bucket, return_index=True)
    bounds = list(first) + [len(rows)]
    for b, lo, hi in zip(uniq, bounds[:-1], bounds[1:], strict=True):
        entry: dict[str, Any] = {
            "start": dt.datetime.fromtimestamp(origin + b * interval_s, dt.UTC).isoformat(),
            "end": dt.datetime.fromtimestamp(origin + (b + 1) * interval_s, dt.UTC).isoformat(),
            "count": int(hi - lo),
            "metrics": {},
        }
        for m in metrics:
            vals = np.array([r.values[m] for r in rows[lo:hi] if m in r.values and not isinstance(r.values[m], bool)],
                            dtype=float)
            if vals.size:
                entry["metrics"][m] = {"count": int(vals.size), "min": float(vals.min()),
                                       "max": float(vals.max()), "mean": float(vals.mean())}
        out.append(entry)
    return out


class HistoryWriter:
    """A thread that writes queued readings every ``flush_s`` seconds (or sooner when ``batch`` wait)."""

    def __init__(self, store: SpatialStore, flush_s: float = 0.5, batch: int = 5000):
        self.store = store
        self.flush_s = flush_s
        self.batch = batch
        self._q: queue.Queue[Reading] = queue.Queue()
        self._stop = threading.Event()
        # flush() waits on counts, not on an "idle" flag: a flag set by the writer just before a put
        # would report a reading still in flight as written
        self._done = threading.Condition()
        self._put = 0
        self._handled = 0  # written, or given up on after retries
        self._thread = threading.Thread(target=self._run, name="twin-live-history", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, reading: Reading) -> None:
        with self._done:
            self._put += 1
        self._q.put(reading)

    def _take(self) -> list[Reading]:
        out: list[Reading] = []
        deadline = time.monotonic() + self.flush_s
        while len(out) < self.batch:
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set() and self._q.empty():
                break
            try:
                out.append(self._q.get(timeout=min(left, 0.1)))
            except queue.Empty:
                pass
        return out

    def _run(self) -> None:
        while not (self._stop.is_set() and self._q.empty()):
            batch = self._take()
            if not batch:
                continue
            for attempt in range(3):
                try:
                    write_batch(self.store, batch)
                    break
                except Exception as exc:  # database gone: retry, then count and drop
                    log.warning("history batch of %d failed (%s), attempt %d", len(batch), exc, attempt + 1)
                    time.sleep(0.5 * (attempt + 1))
            else:
                WRITE_ERRORS.inc()
            with self._done:
                self._handled += len(batch)
                self._done.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (tests, shutdown)."""
        with self._done:
            target = self._put
            return self._done.wait_for(lambda: self._handled >= target, timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # never started when the service could not start
            self._thread.join(timeout=15)
