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

    def masked(self) -> dict[str, object]:
        """Settings as a dict with passwords and secrets masked (for ``twin config``)."""
        out: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = "********"
            elif name in {"database_url", "redis_url"} and value:
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
