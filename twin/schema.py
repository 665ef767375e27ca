"""The layer tables of the spatial core (SQLAlchemy 2 + GeoAlchemy2).

One table per layer kind. Geometry is stored in EPSG:4326 (CGCS2000 / EPSG:4490
is accepted as equal at map scale), in the column ``geom`` of every table, with a
spatial index. Every table has an integer ``id`` (the stable OGC feature id and
MVT feature id) and a business ``code`` unique within the layer.

Units are in the column names where they matter: ``_m`` metres, ``_mm``
millimetres, ``_m2`` square metres, ``_mpa`` megapascal. Elevations are metres
above the national height datum (1985 国家高程基准).

The schema is created and changed by the Alembic migrations in
``twin/migrations``; these classes describe it for queries.
"""

from __future__ import annotations

import datetime as dt

from geoalchemy2 import Geometry
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SRID = 4326

naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=naming_convention)


def _geom(kind: str) -> Mapped[object]:
    return mapped_column(Geometry(kind, srid=SRID, spatial_index=True), nullable=False)


def _code() -> Mapped[str]:
    return mapped_column(String(64), unique=True, nullable=False)


class LayerVersion(Base):
    """Data version per layer: bumped by database triggers on every insert/update/delete.

    Tiles and caches key on it, so any write (through twin or straight into the
    database) invalidates exactly that layer's cached output.
    """

    __tablename__ = "layer_versions"
    layer: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    updated_at: Mapped[str | None] = mapped_column(String(40))


class ChangeLogEntry(Base):
    """One change to a layer, written by database triggers in the same transaction as the edit.

    ``version`` is the layer's data version the change produced (``layer_versions``);
    ``minx..maxy`` the lon/lat extent of the changed geometry (old and new places get a
    row each). A row with no extent means "the whole layer" (bulk load, replace,
    TRUNCATE). Tile cache keys use the newest change that touches the tile, so an
    edit invalidates exactly the tiles it touches (see :mod:`twin.changes`).
    """

    __tablename__ = "change_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    minx: Mapped[float | None] = mapped_column(Float)
    miny: Mapped[float | None] = mapped_column(Float)
    maxx: Mapped[float | None] = mapped_column(Float)
    maxy: Mapped[float | None] = mapped_column(Float)
    #: SQLite: the extent as the 32 MBR bytes of the SpatiaLite geometry blob (read by twin), so
    #: the triggers need no SpatiaLite function and a client without it can still edit attributes
    mbr: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: 0: an update of attributes only (the geometry is byte for byte the same); 1: the shape or
    #: place changed; NULL: not known (inserts, deletes, whole-layer and compacted rows)
    shape: Mapped[int | None] = mapped_column(SmallInteger)
    __table_args__ = (Index("ix_change_log_layer_version", "layer", "version"),)


class ChangeLogState(Base):
    """One row: the compaction ``generation`` (readers reload the log when it moves) and
    the ``bulk`` flag twin sets inside a bulk load so SQLite's row triggers log the load
    once, as a whole-layer change, instead of row by row."""

    __tablename__ = "change_log_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    bulk: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class Grid(Base):
    """Management grid: town → village/community → unit grid (单元网格)."""

    __tablename__ = "grids"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    level: Mapped[str] = mapped_column(String(16), nullable=False, index=True)  # town|village|unit
    parent_code: Mapped[str | None] = mapped_column(String(64), index=True)
    village_code: Mapped[str | None] = mapped_column(String(64), index=True)
    area_m2: Mapped[float | None] = mapped_column(Float)
    population: Mapped[int | None] = mapped_column(Integer)
    grid_worker: Mapped[str | None] = mapped_column(String(64))  # duty role/badge, not a person's name
    geom = _geom("MULTIPOLYGON")


class EvaluationGrid(Base):
    """Evaluation grid (评价网格, CJJ/T 312 §2.0.5): a set of unit grids inspected together."""

    __tablename__ = "evaluation_grids"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    village_code: Mapped[str | None] = mapped_column(String(64), index=True)
    unit_grid_codes: Mapped[list[str] | None] = mapped_column(JSON)
    area_m2: Mapped[float | None] = mapped_column(Float)
    geom = _geom("MULTIPOLYGON")


class EvaluationPoint(Base):
    """Evaluation point (评价点位, §2.0.6) with its indicator and inspection items."""

    __tablename__ = "evaluation_points"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    category: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    indicator: Mapped[str | None] = mapped_column(String(128))
    inspection_items: Mapped[list[str] | None] = mapped_column(JSON)
    evaluation_grid_code: Mapped[str | None] = mapped_column(String(64), index=True)
    score: Mapped[float | None] = mapped_column(Float)
    geom = _geom("POINT")


class Building(Base):
    """Building footprint (楼栋). Households are a count only: no names or ID numbers."""

    __tablename__ = "buildings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    name: Mapped[str | None] = mapped_column(String(128))
    address: Mapped[str | None] = mapped_column(String(256), index=True)
    use: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    floors: Mapped[int] = mapped_column(Integer, nullable=False)
    height_m: Mapped[float] = mapped_column(Float, nullable=False)
    households: Mapped[int | None] = mapped_column(Integer)
    year_built: Mapped[int | None] = mapped_column(Integer)
    village_code: Mapped[str | None] = mapped_column(String(64), index=True)
    grid_code: Mapped[str | None] = mapped_column(String(64), index=True)
    ground_elev_m: Mapped[float | None] = mapped_column(Float)
    geom = _geom("MULTIPOLYGON")


class Pipeline(Base):
    """Underground pipe segment between two pipe nodes (地下管线)."""

    __tablename__ = "pipelines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    utility: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    material: Mapped[str] = mapped_column(String(32), nullable=False)
    diameter_mm: Mapped[float] = mapped_column(Float, nullable=False)
    start_node_code: Mapped[str | None] = mapped_column(String(64), index=True)
    end_node_code: Mapped[str | None] = mapped_column(String(64), index=True)
    start_invert_m: Mapped[float | None] = mapped_column(Float)  # elevation of the pipe bottom
    end_invert_m: Mapped[float | None] = mapped_column(Float)
    start_depth_m: Mapped[float | None] = mapped_column(Float)  # ground to pipe top
    end_depth_m: Mapped[float | None] = mapped_column(Float)
    gravity: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    pressure_mpa: Mapped[float | None] = mapped_column(Float)
    owner: Mapped[str | None] = mapped_column(String(128))
    year_laid: Mapped[int | None] = mapped_column(Integer)
    length_m: Mapped[float | None] = mapped_column(Float)
    geom = _geom("LINESTRING")


class PipeNode(Base):
    """Pipe network node: manhole, valve, hydrant, junction, outfall, …"""

    __tablename__ = "pipe_nodes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    kind: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    utility: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    ground_elev_m: Mapped[float | None] = mapped_column(Float)
    invert_elev_m: Mapped[float | None] = mapped_column(Float)
    depth_m: Mapped[float | None] = mapped_column(Float)
    geom = _geom("POINT")


class Farmland(Base):
    """Farmland parcel with quality grade (1 best … 10), permanent-basic flag, contract, crop."""

    __tablename__ = "farmland"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    grade: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    is_permanent_basic: Mapped[bool] = mapped_column(Boolean, nullable=False, index=True)
    contract_code: Mapped[str | None] = mapped_column(String(64))
    crop: Mapped[str | None] = mapped_column(String(32))
    village_code: Mapped[str | None] = mapped_column(String(64), index=True)
    area_m2: Mapped[float | None] = mapped_column(Float)
    geom = _geom("MULTIPOLYGON")


class Zone(Base):
    """"Three zones" planning space (三区): ecological, agricultural or urban."""

    __tablename__ = "zones"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    kind: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    area_m2: Mapped[float | None] = mapped_column(Float)
    geom = _geom("MULTIPOLYGON")


class ControlLine(Base):
    """"Three lines" (三线): ecological red line, permanent basic farmland, urban development boundary.

    Stored as the polygons the lines enclose, as the planning data is delivered.
    """

    __tablename__ = "control_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    kind: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    area_m2: Mapped[float | None] = mapped_column(Float)
    geom = _geom("MULTIPOLYGON")


class Device(Base):
    """IoT sensor (000 App. A): dust/PM10, water level, smoke, combustible gas, voltage, EV charger."""

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    metrics: Mapped[list[str] | None] = mapped_column(JSON)  # e.g. ["pm10", "pm25"]
    thresholds: Mapped[dict[str, float] | None] = mapped_column(JSON)  # alarm limit per metric
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="online", index=True)
    grid_code: Mapped[str | None] = mapped_column(String(64), index=True)
    installed_on: Mapped[dt.date | None] = mapped_column(Date)
    geom = _geom("POINT")


class Camera(Base):
    """Video camera with position, heading (degrees clockwise from north), field of view and range."""

    __tablename__ = "cameras"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    heading_deg: Mapped[float] = mapped_column(Float, nullable=False)
    fov_deg: Mapped[float] = mapped_column(Float, nullable=False)
    range_m: Mapped[float] = mapped_column(Float, nullable=False)
    mount_height_m: Mapped[float | None] = mapped_column(Float)
    stream_url: Mapped[str | None] = mapped_column(String(512))
    protocol: Mapped[str | None] = mapped_column(String(16))  # hls|rtsp|gb28181
    tags: Mapped[list[str] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="online", index=True)
    grid_code: Mapped[str | None] = mapped_column(String(64), index=True)
    geom = _geom("POINT")
    # migration 0006: play URLs by protocol as the video platform / GB/T 28181 gateway exposes
    # them ({"hls": …, "rtsp": …, "flv": …}) and the 20-digit GB/T 28181 device id.
    streams: Mapped[dict[str, str] | None] = mapped_column(JSON)
    gb28181_id: Mapped[str | None] = mapped_column(String(20), index=True)


class Event(Base):
    """Event with closed-loop status: reported → verified → dispatched → handled → closed."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    source: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    category: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    title: Mapped[str] = mapped_column(String(256), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    grid_code: Mapped[str | None] = mapped_column(String(64), index=True)
    device_code: Mapped[str | None] = mapped_column(String(64))
    reported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    geom = _geom("POINT")
    # migration 0006: alarm grade of IoT-alarm events, when their alarm ended, last change
    severity: Mapped[str | None] = mapped_column(String(32))
    alarm_cleared_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Road(Base):
    """Road centreline with class and average daily traffic (vehicles/day)."""

    __tablename__ = "roads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    name: Mapped[str | None] = mapped_column(String(128))
    road_class: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    lanes: Mapped[int | None] = mapped_column(Integer)
    traffic_volume: Mapped[int | None] = mapped_column(Integer)  # vehicles per day
    heavy_share: Mapped[float | None] = mapped_column(Float)  # share of heavy vehicles, 0..1
    geom = _geom("LINESTRING")


class ConstructionSite(Base):
    """Construction site: a dust factor in the dust heat map (002 §5.1.5)."""

    __tablename__ = "construction_sites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = _code()
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    area_m2: Mapped[float | None] = mapped_column(Float)
    dust_controlled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    start_date: Mapped[dt.date | None] = mapped_column(Date)
    end_date: Mapped[dt.date | None] = mapped_column(Date)
    geom = _geom("MULTIPOLYGON")


class EventTransition(Base):
    """One accepted step of an event's closed loop (``from_status`` is NULL for the report itself).

    The rows of one event, in ``id`` order, are its history. Deleting the event deletes them
    (FK cascade on PostgreSQL, a trigger on SQLite, migration 0006).
    """

    __tablename__ = "event_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("events.id", ondelete="CASCADE", name="fk_event_transitions_event_id"),
        nullable=False, index=True,
    )
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16), nullable=False)
    by: Mapped[str] = mapped_column(String(64), nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class DeviceAlarm(Base):
    """An alarm of one device metric: open while ``cleared_at`` is NULL, tied to the event it opened.

    The partial unique index allows at most one open alarm per device and metric, whichever
    worker sees the breach first: the database, not a cache, forbids duplicate events.
    """

    __tablename__ = "device_alarms"
    __table_args__ = (
        Index("uq_device_alarms_open", "device_code", "metric", unique=True,
              sqlite_where=text("cleared_at IS NULL"), postgresql_where=text("cleared_at IS NULL")),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_code: Mapped[str] = mapped_column(String(64), nullable=False)
    metric: Mapped[str] = mapped_column(String(64), nullable=False)
    level: Mapped[int] = mapped_column(Integer, nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    cleared_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("events.id", ondelete="CASCADE", name="fk_device_alarms_event_id"),
        nullable=False, index=True,
    )


class BuildingBlock(Base):
    """Built-up block (街区轮廓): buildings of one ~2 km cell merged and generalised for one zoom.

    Derived data, not a layer of its own: vector tiles draw these in place of single
    buildings at z12–z13, where buildings are sub-pixel (:mod:`twin.blocks`). Kept in
    step with ``buildings`` through the change log; ``cell_x``/``cell_y`` are the Web
    Mercator tile at z14 whose buildings it merges, ``built_from`` the buildings
    version it was computed from.
    """

    __tablename__ = "building_blocks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    zoom: Mapped[int] = mapped_column(Integer, nullable=False)
    cell_x: Mapped[int] = mapped_column(Integer, nullable=False)
    cell_y: Mapped[int] = mapped_column(Integer, nullable=False)
    use: Mapped[str] = mapped_column(String(32), nullable=False)
    height_m: Mapped[float] = mapped_column(Float, nullable=False)
    building_count: Mapped[int] = mapped_column(Integer, nullable=False)
    built_from: Mapped[int] = mapped_column(Integer, nullable=False)
    geom = _geom("MULTIPOLYGON")
    __table_args__ = (Index("ix_building_blocks_cell", "cell_x", "cell_y"),)


LAYER_MODELS: dict[str, type[Base]] = {
    m.__tablename__: m  # type: ignore[misc]
    for m in (
        Grid, EvaluationGrid, EvaluationPoint, Building, Pipeline, PipeNode, Farmland, Zone,
        ControlLine, Device, Camera, Event, Road, ConstructionSite,
    )
}


# --- security and data exchange (not layers: no geometry, no tiles) -------------------------

class App(Base):
    """An application allowed to sign requests (exchange interface, signed app tokens).

    The secret is needed in clear to check an HMAC, so it is kept encrypted with the
    server's key (``TWIN_SECRET_KEY``), never in clear (twin/security/secret_box.py).
    """

    __tablename__ = "apps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str | None] = mapped_column(String(128))
    secret_enc: Mapped[str] = mapped_column(Text, nullable=False)
    roles: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class User(Base):
    """A person who logs in: argon2id password hash, roles, lockout after failures."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(256), nullable=False)
    roles: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    token_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class RefreshToken(Base):
    """A refresh token (by its id; the token itself is a signed JWT), revocable."""

    __tablename__ = "refresh_tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(80), nullable=False, index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class RequestNonce(Base):
    """Nonces seen within the signing window: a replay is refused on every worker."""

    __tablename__ = "request_nonces"
    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[int] = mapped_column(Integer, nullable=False, index=True)  # Unix seconds


class AuditRecord(Base):
    """Append-only audit log: database triggers refuse UPDATE and DELETE (migration 0004)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    principal: Mapped[str] = mapped_column(String(96), nullable=False, index=True)
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    target: Mapped[str | None] = mapped_column(String(256))
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    client: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict | None] = mapped_column(JSON)


class ExchangeRecord(Base):
    """A row pushed through the data-exchange interface (seed 001 App. A), by group and table."""

    __tablename__ = "exchange_records"
    __table_args__ = (Index("ix_exchange_records_group_table", "group_name", "table_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    group_name: Mapped[str] = mapped_column(String(64), nullable=False)
    table_name: Mapped[str] = mapped_column(String(64), nullable=False)
    data: Mapped[dict] = mapped_column(JSON, nullable=False)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
