"""Runtime settings, read once from ``TWIN_*`` environment variables.

Everything configurable lives here so that nothing else reads ``os.environ``.
``twin config`` prints :func:`get_settings` with secrets masked.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
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
    redis_url: str | None = Field(default=None, description="Optional Redis tier for the tile cache.")
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
    tile_workers: int | None = Field(default=None, ge=1, description="Threads rendering tiles (default: per CPU).")
    tile_redis_prefix: str = Field(default="twin:tile:", description="Key prefix of the Redis tile tier.")
    demo_app_secret: SecretStr = Field(default=SecretStr("demo-secret"))
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for write endpoints (uploads). Unset: writes over HTTP are refused.",
    )
    public_url: str | None = Field(
        default=None, description="Base URL used in links when behind a proxy (else taken from the request)."
    )
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

    @property
    def raster_dir(self) -> Path:
        return self.home / "rasters"

    @property
    def effective_database_url(self) -> str:
        """The database URL actually used: the configured one or the embedded SpatiaLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'twin.sqlite'}"

    def masked(self) -> dict[str, object]:
        """Settings as a dict with passwords and secrets masked (for ``twin config``)."""
        out: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = "********"
            elif name in {"database_url", "redis_url", "mqtt_url", "hub_url"} and value:
                value = _mask_url_password(str(value))
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
