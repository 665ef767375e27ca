"""Runtime settings, read once from ``TWIN_*`` environment variables.

Everything configurable lives here so that nothing else reads ``os.environ``.
``twin config`` prints :func:`get_settings` with secrets masked.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TwinSettings(BaseSettings):
    """Settings of one twin server or CLI process."""

    model_config = SettingsConfigDict(env_prefix="TWIN_", extra="ignore")

    home: Path = Field(
        default=Path.home() / ".twin",
        description="Folder for the embedded database, rasters and caches.",
    )
    database_url: str | None = Field(
        default=None,
        description="postgresql://… for PostGIS; empty for the embedded SpatiaLite file under home.",
    )
    database_read_urls: str | None = Field(
        default=None,
        description="Comma-separated postgresql://… URLs of streaming replicas for reads (features, tiles, scenes, "
        "analysis, search); writes go to database_url. PostGIS only: refused with the SpatiaLite store.",
    )
    replica_check_s: float = Field(
        default=1.0, gt=0, le=60, description="How often the replicas' health and WAL replay position are checked."
    )
    replica_retry_s: float = Field(
        default=10.0, gt=0, description="How long a replica that failed a check or a query is left out."
    )
    replica_max_lag_s: float = Field(
        default=30.0, gt=0, description="Replicas further behind the primary are not read (the staleness bound "
        "for clients that keep no read-your-writes cookie)."
    )
    redis_url: str | None = Field(default=None, description="Optional Redis tier for the tile cache.")
    gc_freeze: bool = Field(
        default=True, description="Once started, freeze the objects alive (gc.freeze) so the garbage collector's "
        "full passes skip them: pauses of tens of ms instead of 100+ ms (twin/gc_pauses.py).")
    statement_timeout_ms: int = Field(default=15_000, ge=100, description="Per-statement timeout on PostGIS.")
    max_items_limit: int = Field(default=10_000, ge=1, description="Largest `limit` accepted by /items.")
    default_items_limit: int = Field(default=100, ge=1)
    max_bbox_area_deg2: float = Field(
        default=4.0, gt=0, description="Largest bbox (in square degrees) a feature query may ask for."
    )
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    tile_cache_mb: int = Field(default=256, ge=0, description="In-process tile cache size (0 disables it).")
    tile_feature_cap: int = Field(default=20_000, ge=1, description="Most features one layer puts in one tile.")
    tile_max_age_s: int = Field(default=60, ge=0, description="Cache-Control max-age of tiles.")
    tile_version_ttl_s: float = Field(
        default=1.0, ge=0, description="How long a worker trusts the layer versions it read (edit→tile staleness bound)."
    )
    tile_stale_s: float = Field(
        default=5.0, ge=0, description="Stale-while-revalidate: for this long after an edit is learned, a tile it "
        "touched is answered with its previous version (Cache-Control: no-cache) while the new one renders; 0 = "
        "never. A viewer sees an edit within tile_version_ttl_s + tile_stale_s.")
    tile_workers: int | None = Field(default=None, ge=1, description="Threads rendering tiles (default: per CPU).")
    tile_redis_prefix: str = Field(default="twin:tile:", description="Key prefix of the Redis tile tier.")
    change_log_max_rows: int = Field(
        default=20_000, ge=100,
        description="Rows the change log may hold before a worker compacts it (merges old edits per ~2 km cell).",
    )
    tile_invalidation: Literal["extent", "layer"] = Field(
        default="extent", description="Tile keys: 'extent' = newest change touching the tile (an edit invalidates "
        "only its tiles); 'layer' = the layer's data version (any edit invalidates the whole layer).")
    tile_blocks: bool = Field(
        default=True, description="Keep building_blocks (buildings merged per zoom, drawn at z12–z13) in step "
        "with the buildings, in a background thread of each server process.")
    tile_warm: bool = Field(
        default=False, description="Render the style's sources z10–z16 in the background and re-render edited tiles "
        "(`twin serve --warm`; on in `twin demo`).")
    tile_warm_zooms: str = Field(default="10-16", pattern=r"^\d{1,2}(-\d{1,2})?$", description="Zooms the warmer keeps rendered.")
    tile_warm_cpu_share: float = Field(
        default=0.25, gt=0, le=1, description="Most of one core the warmer may use (it sleeps between renders).")
    tile_warm_demand_s: float = Field(
        default=0.0, ge=0, description="0: the warmer re-renders every warm tile an edit touches (tiles viewers "
        "asked for first; re-renders do not rest). N > 0: of the composite source, "
        "only tiles a viewer asked for in the last N seconds are re-rendered; the others render on demand "
        "(for a machine that cannot keep the whole pyramid fresh).")
    first_view_warm: str = Field(
        default="1600x1080,3520x2160", pattern=r"^ *([0-9]{2,5}[xX][0-9]{2,5} *(, *[0-9]{2,5}[xX][0-9]{2,5} *)*)?$",
        description="Map sizes (WIDTHxHEIGHT, CSS pixels, comma-separated) whose framed first view of the viewer "
        "`/` is rendered into the tile caches in the background at start: every vector tile and orthophoto tile "
        "it shows, so the first visitor waits for no render. Default: a 1920x1080 and a 3840x2160 screen less the "
        "320 px panel. Empty: off.")
    demo_app_secret: SecretStr = Field(default=SecretStr("demo-secret"))
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for write endpoints (uploads). Unset: writes over HTTP are refused.",
    )
    public_url: str | None = Field(
        default=None, description="Base URL used in links when behind a proxy (else taken from the request)."
    )
    # --- security (twin/security) ---
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key that signs bearer tokens and encrypts app secrets at rest. Unset: a random key "
        "is created once in TWIN_HOME/secret.key (mode 0600); set it explicitly when several hosts serve.",
    )
    access_token_ttl_s: int = Field(default=900, ge=30, le=86_400, description="Lifetime of a bearer token.")
    refresh_token_ttl_s: int = Field(default=7 * 86_400, ge=60, description="Lifetime of a refresh token.")
    signature_window_s: int = Field(default=300, ge=1, le=3600,
                                    description="Signed requests: allowed clock skew of `timestamp` (API.md: ±300 s).")
    login_max_failures: int = Field(default=5, ge=1, description="Failed logins before an account is locked.")
    login_lockout_s: int = Field(default=900, ge=1, description="How long a locked account stays locked.")
    exchange_max_rows: int = Field(default=5_000, ge=1, description="Most rows in one pushdata or getdata answer.")
    exchange_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024,
                                         description="Largest pushdata request body.")
    rate_limit_rps: float = Field(default=0.0, ge=0, description="Requests per second per principal (token, "
                                  "else client address); 0 turns rate limiting off. `twin demo` uses 200.")
    rate_limit_burst: int = Field(default=400, ge=1, description="Token-bucket size: requests allowed at once.")
    rate_limit_redis: bool = Field(default=False, description="Keep rate-limit buckets in Redis (TWIN_REDIS_URL) "
                                   "so a limit holds across workers and hosts.")
    trusted_proxies: str | None = Field(default=None, description="Comma-separated networks whose "
                                        "X-Forwarded-For is believed (e.g. 127.0.0.1/32 for a local nginx).")
    breaker_failures: int = Field(default=3, ge=1, description="Database outages in a row that open the circuit.")
    breaker_cooldown_s: float = Field(default=5.0, gt=0, description="How long an open circuit answers 503 at once.")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024,
                                description="Largest request body outside file uploads (413 above it).")
    # --- 3D scenes and tilesets (scenes/) ---
    scene_max_area_km2: float = Field(
        default=25.0, gt=0, description="Largest bbox (km²) one /scenes/scene.glb may cover."
    )
    scene_max_features: int = Field(default=100_000, ge=1, description="Most features one scene or tile holds.")
    scene_max_triangles: int = Field(default=8_000_000, ge=1, description="Most triangles one scene may have.")
    scene_storey_height_m: float = Field(
        default=3.0, gt=0, description="Height per floor for buildings without height_m."
    )
    scene_default_height_m: float = Field(
        default=3.0, gt=0, description="Height of a building with neither height_m nor floors."
    )
    scene_default_cover_m: float = Field(
        default=1.2, ge=0, description="Ground-to-pipe-top cover of pipes with neither inverts nor depths."
    )
    scene_default_diameter_mm: float = Field(default=300.0, gt=0, description="Diameter of pipes without one.")
    scene_terrain_cells: int = Field(
        default=160, ge=2, le=2048, description="Most terrain grid cells along a scene's side."
    )
    scene_tile_feature_cap: int = Field(
        default=1500, ge=1, description="Most features in one 3D Tiles content tile (largest stay in parents)."
    )
    scene_cache_mb: int = Field(default=128, ge=0, description="In-process cache of tileset content (GLB).")
    roles_file: Path | None = Field(default=None, description="Roles to layer permissions and hidden fields "
                                    "(JSON, see twin/security/roles.json, the default).")
    anonymous_role: str = Field(default="public", description="Role of callers without a token: what the "
                                "roles file lets it read is public.")
    # --- video and alarms (layers.cameras, layers.alarms, layers.demo_video) ---
    camera_default_mount_height_m: float = Field(
        default=6.0, gt=0, le=500, description="Eye height of cameras whose mount_height_m is not known."
    )
    camera_max_obstacles: int = Field(
        default=20_000, ge=1, description="Most buildings one occlusion computation may take into account."
    )
    camera_max_cones: int = Field(
        default=2_000, ge=1, description="Most cones one /cameras/cones request returns (occluded: a tenth)."
    )
    demo_video: bool = Field(
        default=True, description="`twin demo` runs ffmpeg to publish a synthetic HLS test stream."
    )
    alarm_rules: Path | None = Field(
        default=None, description="JSON file of alarm thresholds per device kind (default: the packaged one)."
    )
    alarm_state_ttl_s: float = Field(
        default=1.0, ge=0, description="How long an alarm engine trusts its cached open alarms (multi-worker staleness bound)."
    )

    terrain_dataset: str = Field(
        default="dem", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$",
        description="Raster dataset (file stem in the raster folder) the CesiumJS terrain is built from.",
    )
    terrain_max_zoom: int | None = Field(
        default=None, ge=0, le=20,
        description="Deepest terrain level served (default: the first level as fine as the DEM's pixels).",
    )
    terrain_tolerance_m: float = Field(
        default=0.1, gt=0, le=100,
        description="How far (m) the deepest terrain level's simplified mesh may depart from the DEM.",
    )
    cql_max_chars: int = Field(default=20_000, ge=100, le=200_000, description="Longest CQL2 `filter` accepted.")
    cql_max_depth: int = Field(
        default=60, ge=4, le=60,
        description="Deepest nesting in a CQL2 filter (at most 60: keeps every parser and compiler step far from the "
        "recursion limit).",
    )
    cql_max_operators: int = Field(
        default=500, ge=10, le=900,
        description="Most operators and functions in one CQL2 filter (at most 900: SQLite refuses expressions deeper "
        "than 1000).",
    )

    @property
    def video_dir(self) -> Path:
        """HLS output of the demo stream(s): ``<home>/video/<stream>/index.m3u8``."""
        return self.home / "video"
    # analysis and locate (twin/analysis, twin/search): caps that keep one request bounded
    analysis_max_distance_m: float = Field(
        default=10_000.0, gt=0, description="Largest buffer / search distance in metres an analysis accepts."
    )
    analysis_max_features: int = Field(
        default=50_000, ge=1, description="Most candidate features one analysis reads from one layer."
    )
    analysis_max_vertices: int = Field(
        default=20_000, ge=4, description="Most vertices in a geometry sent to an analysis."
    )
    analysis_network_max_rows: int = Field(
        default=200_000, ge=1_000,
        description="Most pipes (and most pipe nodes) the network analyses (trace, valve isolation, flow "
                    "direction) hold in memory; a larger network answers 400 limit_exceeded. Raise it for a "
                    "city (the scale-100 sample city has ~322,000 pipes: 400,000 is enough).",
    )
    search_max_results: int = Field(default=100, ge=1, description="Largest `limit` of /search.")
    nearest_max_n: int = Field(default=100, ge=1, description="Largest `n` of /nearest.")
    # live layers (layers/): MQTT ingest, the stream hub, state and history
    mqtt_url: str | None = Field(
        default=None, description="mqtt://host:port of the broker to ingest from; unset: no MQTT ingest."
    )
    mqtt_client_id: str = Field(
        default="twin-ingest", description="MQTT client id of the persistent session (QoS 1 kept while twin is down)."
    )
    mqtt_topic_prefix: str = Field(default="twin", description="Readings arrive on {prefix}/{layer}/{device_id}.")
    hub_url: str | None = Field(
        default=None,
        description="redis://… or nats://… so several workers share one live stream; unset: in-process hub.",
    )
    hub_channel: str = Field(default="twin.live", description="Redis channel / NATS subject of the live stream.")
    hub_queue_size: int = Field(
        default=2000, ge=1, description="Changes queued per subscriber before the oldest are dropped."
    )
    live_frame_s: float = Field(
        default=0.025, gt=0, le=1, description="Shortest time between two live-stream frames to one subscriber: what "
        "arrives meanwhile shares one frame (the first change after a quiet spell goes out at once)."
    )
    live_frame_max_s: float = Field(
        default=0.05, gt=0, le=5, description="Longest the frame interval grows to while the worker's event loop is "
        "busy (more changes per frame, fewer frames); bounds the latency framing adds."
    )
    live_retention_days: float = Field(default=90.0, gt=0, description="History older than this is deleted.")
    live_offline_after_s: float = Field(
        default=300.0, gt=0, description="A device with no reading or heartbeat for this long is offline."
    )
    live_max_future_s: float = Field(default=300.0, ge=0, description="Readings stamped further ahead are refused.")
    live_max_past_s: float = Field(
        default=7 * 86400.0, ge=0, description="Readings stamped further back are refused."
    )
    live_flush_s: float = Field(default=0.5, gt=0, description="History is written in batches at least this often.")
    live_max_batch: int = Field(default=5000, ge=1, description="Most readings in one POST /live/{layer}/features.")
    live_max_history_rows: int = Field(
        default=200_000, ge=1, description="Most rows one history request reads (narrow the interval)."
    )
    # --- loading a town's own data (twin/load_rules.py, twin/presets) ---
    storey_height_m: float = Field(default=3.0, gt=0, le=20, description="Storey height used to derive a "
                                   "building's height from its floors and floors from its height on load.")
    presets_dir: Path | None = Field(default=None, description="Folder of your own load presets (*.json); "
                                     "a preset there overrides a built-in one of the same name.")
    load_batch_rows: int = Field(default=50_000, ge=100, description="Rows a streamed load reads and checks "
                                 "at a time (bounds memory on large files).")

    @property
    def raster_dir(self) -> Path:
        return self.home / "rasters"

    @property
    def effective_database_url(self) -> str:
        """The database URL actually used: the configured one or the embedded SpatiaLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'twin.sqlite'}"

    @model_validator(mode="after")
    def _replicas_need_postgis(self) -> TwinSettings:
        self.read_urls  # noqa: B018 - raises ValueError where read replicas cannot apply
        return self

    @property
    def read_urls(self) -> list[str]:
        """The replicas' URLs (``database_read_urls`` split); :class:`ValueError` where they cannot apply."""
        urls = [u.strip() for u in (self.database_read_urls or "").split(",") if u.strip()]
        if not urls:
            return []
        if not (self.database_url or "").startswith(("postgresql", "postgres", "postgis")):
            raise ValueError(
                "TWIN_DATABASE_READ_URLS needs a PostgreSQL TWIN_DATABASE_URL: read replicas are PostgreSQL "
                "streaming standbys, and the embedded SpatiaLite store has none (unset TWIN_DATABASE_READ_URLS)"
            )
        bad = [_mask_url_password(u) for u in urls if not u.startswith(("postgresql", "postgres", "postgis"))]
        if bad:
            raise ValueError(f"TWIN_DATABASE_READ_URLS: not PostgreSQL URLs: {', '.join(bad)}")
        return urls

    def masked(self) -> dict[str, object]:
        """Settings as a dict with passwords and secrets masked (for ``twin config``)."""
        out: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = "********"
            elif name in {"database_url", "redis_url", "mqtt_url", "hub_url"} and value:
                value = _mask_url_password(str(value))
            elif name == "database_read_urls" and value:
                value = ",".join(_mask_url_password(u.strip()) for u in str(value).split(","))
            out[name] = str(value) if isinstance(value, Path) else value
        out["effective_database_url"] = _mask_url_password(self.effective_database_url)
        return out


def _mask_url_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL we understand: show it as given
        return url


@lru_cache(maxsize=1)
def get_settings() -> TwinSettings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return TwinSettings()
