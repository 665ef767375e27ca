"""The outermost guard: rate limits per principal, a circuit breaker for the database, request
body caps, and security headers on pages. One ASGI layer, in front of everything (the
cached-tile front included), so no route can forget it.

- **Rate limit**: a token bucket per principal — the subject of a bearer token that verifies
  (see :class:`BucketSubjects`), else the client address (``X-Forwarded-For`` only from ``TWIN_TRUSTED_PROXIES``). Over the
  limit: ``429`` with ``Retry-After``. With ``TWIN_RATE_LIMIT_REDIS=true`` and a Redis URL
  the buckets live in Redis (one atomic Lua script per request) and hold across workers and
  hosts; otherwise each worker keeps its own. ``TWIN_RATE_LIMIT_RPS=0`` turns it off.
- **Circuit breaker**: after ``TWIN_BREAKER_FAILURES`` database-unavailable errors in a row
  the breaker opens: requests answer ``503 store_unavailable`` at once (with ``Retry-After``)
  instead of each waiting for a connection to time out; after ``TWIN_BREAKER_COOLDOWN_S``
  requests go through again and the first success closes it. Health, metrics and static
  files are never cut off.
- **Body caps**: a request whose ``Content-Length`` exceeds ``TWIN_MAX_BODY_BYTES`` gets
  ``413`` before it is read (uploads have their own cap, ``TWIN_MAX_UPLOAD_BYTES``).
- **Headers**: ``nosniff`` everywhere; on HTML pages a Content-Security-Policy that allows
  only the twin's own scripts (no CDN), no framing by other sites, no referrer leaks.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import threading
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twin.settings import TwinSettings

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; worker-src 'self' blob:; child-src 'self' blob:; "
       "connect-src 'self' ws: wss: blob: data:; font-src 'self' data:; object-src 'none'; base-uri 'self'; "
       "frame-ancestors 'self'")
#: CesiumJS (the /scene page) compiles WebAssembly (terrain and mesh decoders) and its widgets'
#: bindings build functions from strings: that page alone also allows eval and wasm.
CSP_3D = CSP.replace("script-src 'self'", "script-src 'self' blob: 'unsafe-eval' 'wasm-unsafe-eval'")
OTHER_HTML_HEADERS = [(b"x-frame-options", b"SAMEORIGIN"), (b"referrer-policy", b"strict-origin-when-cross-origin")]
HTML_HEADERS = [(b"content-security-policy", CSP.encode()), *OTHER_HTML_HEADERS]
HTML_HEADERS_3D = [(b"content-security-policy", CSP_3D.encode()), *OTHER_HTML_HEADERS]
NEVER_CUT = ("/healthz", "/metrics", "/static/", "/favicon")
UPLOAD_PATHS = ("/import",)  # suffixes of routes with their own, larger cap

# token bucket in Redis: KEYS[1] bucket; ARGV rate, burst, now → {allowed, wait_ms}
_LUA = """
local b = redis.call('HMGET', KEYS[1], 't', 'ts')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1 ok = 1 end
redis.call('HSET', KEYS[1], 't', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
if ok == 1 then return {1, 0} end
return {0, math.ceil((1 - tokens) / rate * 1000)}
"""


class RateLimiter:
    """Token buckets: ``rate`` tokens per second, at most ``burst``; local or in Redis."""

    def __init__(self, rate: float, burst: int, redis_url: str | None = None, prefix: str = "twin:rl:"):
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._redis = None
        self._script = None
        self.prefix = prefix
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(redis_url)
            self._script = self._redis.register_script(_LUA)

    async def check(self, key: str) -> float:
        """0 when allowed; else the seconds to wait before the next request is allowed."""
        if self._script is not None:
            try:
                ok, wait_ms = await self._script(keys=[self.prefix + key], args=[self.rate, self.burst, time.time()])
                return 0.0 if int(ok) else max(0.001, int(wait_ms) / 1000)
            except Exception:  # noqa: BLE001 - Redis down: fall back to this worker's buckets
                pass
        now = time.monotonic()
        with self._lock:
            tokens, ts = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - ts) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                if len(self._buckets) > 100_000:  # forget full buckets (idle principals)
                    self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst - 1}
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


class CircuitBreaker:
    """Closed → open after ``failures`` database outages in a row → half-open after ``cooldown_s``."""

    def __init__(self, failures: int, cooldown_s: float):
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at: float | None = None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def retry_after(self) -> float:
        """Seconds until requests may try the database again (0: let it through)."""
        if self.opened_at is None:
            return 0.0
        left = self.opened_at + self.cooldown_s - time.monotonic()
        return max(0.0, left)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if self.retry_after() > 0 else "half-open"


def client_ip(scope: Scope, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    client = scope.get("client")
    ip = client[0] if client else "?"
    if trusted and ip != "?":
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return ip
        if any(addr in net for net in trusted):
            hops = [h.strip() for name, value in scope["headers"] if name == b"x-forwarded-for"
                    for h in value.decode("latin-1").split(",")]
            # the rightmost address no trusted proxy vouches for: what a client sends itself sits
            # further left (nginx appends the address it saw), so it cannot pick its own bucket
            for hop in reversed(hops):
                if hop and not _trusted(hop, trusted):
                    return hop[:64]
            return next((h[:64] for h in hops if h), ip)
    return ip


def _trusted(ip: str, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in trusted)



class BucketSubjects:
    """Which rate-limit bucket a bearer token draws from: its principal's, if the token is genuine.

    A bucket per *principal* (the token's subject), not per token string: a client inventing a
    new token for every request, or a user holding several tokens, must not get a fresh bucket
    each time. Only a token that verifies (the admin token, or an access token signed with the
    server key and not expired) names a principal; anything else counts against the client
    address. Revocation is not checked here (the route does that): a revoked but genuine token
    still spends its own principal's bucket. Verified tokens are remembered (bounded) so the hot
    path costs a dictionary lookup.
    """

    MAX = 10_000

    def __init__(self, settings: TwinSettings) -> None:
        self.settings = settings
        self._key: bytes | None = None
        self._known: dict[bytes, tuple[str, float]] = {}

    def bucket(self, header: bytes) -> str | None:
        hit = self._known.get(header)
        now = time.time()
        if hit is not None and hit[1] > now:
            return hit[0]
        subject, exp = self._verify(header)
        if subject is None:
            return None
        if len(self._known) >= self.MAX:
            self._known.clear()
        self._known[header] = (subject, exp)
        return subject

    def _verify(self, header: bytes) -> tuple[str | None, float]:
        scheme, _, raw = header.partition(b" ")
        token = raw.strip()
        if scheme.lower() != b"bearer" or not token:
            return None, 0.0
        admin = self.settings.admin_token
        if admin is not None and hmac.compare_digest(token, admin.get_secret_value().encode()):
            return "p:admin-token", time.time() + 3600.0
        try:
            import jwt

            from twin.security.secret_box import server_key

            if self._key is None:
                self._key = server_key(self.settings)
            claims = jwt.decode(token, self._key, algorithms=["HS256"], options={"require": ["exp", "sub"]})
        except Exception:  # noqa: BLE001 - any token that does not verify counts against the address
            return None, 0.0
        return "p:" + str(claims["sub"]), float(claims["exp"])

class Guard:
    def __init__(self, app: ASGIApp, settings: TwinSettings, fastapi_app) -> None:  # noqa: ANN001
        self.app = app
        self.settings = settings
        redis_url = settings.redis_url if settings.rate_limit_redis else None
        self.limiter = (RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst, redis_url)
                        if settings.rate_limit_rps > 0 else None)
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)
        self.subjects = BucketSubjects(settings)
        fastapi_app.state.breaker = self.breaker
        self.trusted = [ipaddress.ip_network(n.strip(), strict=False)
                        for n in (settings.trusted_proxies or "").split(",") if n.strip()]
        fastapi_app.state.trusted_proxies = self.trusted  # the audit log names clients the same way
        # an inner front that answers whole responses itself (gis_api.tile_front: memory-cached
        # tiles, headers complete with nosniff) is asked first, with the guard's checks done and
        # no header rewriting; what it declines goes on to the layer behind it
        self._front = getattr(app, "try_answer", None)
        self._behind_front: ASGIApp = app.app if self._front is not None else app  # type: ignore[attr-defined]

    async def _reject(self, send: Send, status: int, code: str, message: str, retry_after: float | None) -> None:
        headers = [(b"content-type", b"application/json"), (b"access-control-allow-origin", b"*")]
        if retry_after is not None:
            headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
        body = orjson.dumps({"code": code, "message": message, "detail": None})
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        exempt = path.startswith(NEVER_CUT)
        if self.limiter is not None and not exempt:
            key = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    key = self.subjects.bucket(value)
                    break
            key = key or "ip:" + client_ip(scope, self.trusted)
            wait = await self.limiter.check(key)
            if wait > 0:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1013})
                    return
                await self._reject(send, 429, "rate_limited",
                                   f"more than {self.settings.rate_limit_rps:g} requests per second", wait)
                return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not exempt and (wait := self.breaker.retry_after()) > 0:
            await self._reject(send, 503, "store_unavailable", "database unavailable (circuit open)", wait)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not path.endswith(UPLOAD_PATHS) and value.isdigit() and int(value) > self.settings.max_body_bytes:
                    await self._reject(send, 413, "body_too_large",
                                       f"request body over {self.settings.max_body_bytes} bytes", None)
                    return
                break
        half_open = self.breaker.opened_at is not None
        if self._front is not None and not half_open and await self._front(scope, send):
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                if any(n == b"content-type" and v.startswith(b"text/html") for n, v in headers) \
                        and not path.startswith("/api/docs"):
                    headers.extend(HTML_HEADERS_3D if path.rstrip("/") == "/scene" else HTML_HEADERS)
                message = {**message, "headers": headers}
                if half_open and message["status"] < 500:
                    self.breaker.success()
            await send(message)

        await self._behind_front(scope, receive, send_wrapper)


__all__ = ["CSP", "CircuitBreaker", "Guard", "RateLimiter", "client_ip"]
