"""The cached-tile front: answers vector tiles already in memory before any middleware runs.

Big screens re-request the same tiles all day; a memory hit should cost about what a
bare ASGI app costs. This outermost layer recognises ``GET /tiles/{layers}/{z}/{x}/{y}.mvt``,
asks the tile service's memory cache (no I/O, no database) and, on a hit, writes the
response itself with the headers the full stack would add (CORS, cache, ETag) and the
request metrics. A conditional request (``If-None-Match``: a browser, or nginx's tile cache
revalidating every second) whose tag names the current cached version gets its 304 here too.
When the layer versions are past their TTL, the front waits for one shared re-read of them
(on the render threads) rather than sending every request down the full stack meanwhile.
Everything else — misses, authenticated requests, malformed paths, errors — goes down the
normal stack unchanged, so behaviour is identical either way.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from gis_api.metrics import LATENCY, REQUESTS
from gis_api.negotiation import choose_encoding, etag_matches, tile_etag
from tiles.mvt import key_layers
from tiles.service import STALE_CACHE_CONTROL
from tiles.tms import Tile, parse_tile
from twin.errors import TwinError

TILE_PATH = "/tiles/{layers}/{z}/{x}/{y}.mvt"
MVT = b"application/vnd.mapbox-vector-tile"
#: Most entries of each memo (paths, header lists) before it is emptied and refilled.
_MEMO_MAX = 50_000
_UNSEEN = object()


class CachedTileFront:
    def __init__(self, app: ASGIApp, fastapi_app) -> None:  # noqa: ANN001 - the FastAPI app (for its state)
        self.app = app
        self.fastapi_app = fastapi_app
        self._ok = REQUESTS.labels(TILE_PATH, "GET", "200")
        self._empty = REQUESTS.labels(TILE_PATH, "GET", "204")
        self._not_modified = REQUESTS.labels(TILE_PATH, "GET", "304")
        self._latency = LATENCY.labels(TILE_PATH)
        self._public_memo: dict[str, bool] = {}
        self._paths: dict[str, tuple[tuple, Tile, tuple[str, ...]] | None] = {}
        self._encodings: dict[bytes | None, str] = {}
        self._headers: dict[tuple[str, str, bool, int, bool, bool], list[tuple[bytes, bytes]]] = {}

    def _public(self, spec) -> bool:  # noqa: ANN001 - LayerSpec
        """May an anonymous caller have this layer's tiles whole? (as gis_api.security.tile_layers)"""
        ok = self._public_memo.get(spec.id)
        if ok is None:
            from twin.security.policy import Policy

            settings = self.fastapi_app.state.settings
            pol = Policy.from_file(settings.roles_file)
            roles = {settings.anonymous_role}
            ok = pol.can(roles, spec.id, "read") and not (pol.hidden(roles, spec.id) & set(spec.tile_properties))
            self._public_memo[spec.id] = ok
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self.try_answer(scope, send):
            await self.app(scope, receive, send)

    async def try_answer(self, scope: Scope, send: Send) -> bool:
        """Answer a memory-cached tile completely (its headers include the guard's ``nosniff``); False
        for anything else. The guard calls this with its own checks done and then goes on to
        ``self.app``, so a hit costs no header rewriting."""
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith("/tiles/") and path.endswith(".mvt"):
                return await self._answer(scope, send)
        return False

    def _request(self, svc, path: str) -> tuple[tuple, Tile, tuple[str, ...]] | None:  # noqa: ANN001
        """``/tiles/{layers}/{z}/{x}/{y}.mvt`` → (specs, tile, key layers), or None when the full
        stack must answer (malformed, unknown layer, or a layer anonymous callers may not have
        whole). Memoised per path: a big screen asks the same few hundred paths all day."""
        hit = self._paths.get(path, _UNSEEN)
        if hit is not _UNSEEN:
            return hit
        parts = path[7:-4].split("/")
        out = None
        if len(parts) == 4:
            try:
                tile = parse_tile(parts[1], parts[2], parts[3])
                specs = svc.layer_specs_cached(parts[0])
            except TwinError:
                specs = None  # the full stack answers with the proper JSON error
            if specs is not None and all(self._public(spec) for spec in specs):
                out = (specs, tile, tuple(key_layers(specs, tile.z)))
        if len(self._paths) >= _MEMO_MAX:
            self._paths.clear()
        self._paths[path] = out
        return out

    def _encoding(self, accept: bytes | None) -> str:
        """The same negotiation as the full path (so one ETag always names one body), memoised."""
        enc = self._encodings.get(accept)
        if enc is None:
            enc = choose_encoding(accept.decode("latin-1") if accept is not None else None)
            if len(self._encodings) >= 256:
                self._encodings.clear()
            self._encodings[accept] = enc
        return enc

    async def _answer(self, scope: Scope, send: Send) -> bool:
        svc = getattr(self.fastapi_app.state, "tiles", None)
        if svc is None:
            return False
        start = time.perf_counter()
        accept: bytes | None = None
        inm: bytes | None = None
        has_origin = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                return False  # authenticated requests take the full path (roles, Cache-Control: private)
            if name == b"accept-encoding":
                accept = value if accept is None else accept + b", " + value
            elif name == b"if-none-match":
                inm = value if inm is None else inm + b", " + value
            elif name == b"origin":
                has_origin = True
        req = self._request(svc, scope["path"])
        if req is None:
            return False
        specs, tile, ids = req
        encoding = self._encoding(accept)
        if svc.versions.ttl > 0 and svc.versions.peek() is None:  # past TWIN_TILE_VERSION_TTL_S: one read for all
            try:
                await svc.fresh_versions_async()
            except Exception:  # noqa: BLE001 - the full route answers (and reports) what went wrong
                return False
        # a conditional request gets the current version, never the previous one (as the full path)
        result = svc.cached(specs, tile, encoding, ids, stale_ok=inm is None)
        if result is None:
            return False
        if inm is not None and etag_matches(inm.decode("latin-1"), tile_etag(result.etag, encoding)):
            await send({"type": "http.response.start", "status": 304,
                        "headers": self._headers_for(result.etag, encoding, has_origin, 0, False, not_modified=True)})
            await send({"type": "http.response.body", "body": b""})
            self._not_modified.inc()
            self._latency.observe(time.perf_counter() - start)
            return True
        body = result.body
        headers = self._headers_for(result.etag, encoding, has_origin, len(body), result.stale)
        status = 200 if body else 204
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        (self._ok if status == 200 else self._empty).inc()
        self._latency.observe(time.perf_counter() - start)
        return True

    def _headers_for(self, key: str, encoding: str, has_origin: bool, size: int, stale: bool, *,
                     not_modified: bool = False) -> list[tuple[bytes, bytes]]:
        """:meth:`_build_headers`, memoised per ETag (sent as they are)."""
        memo_key = (key, encoding, has_origin, size, stale, not_modified)
        headers = self._headers.get(memo_key)
        if headers is None:
            headers = self._build_headers(key, encoding, has_origin, size, stale, not_modified=not_modified)
            if len(self._headers) >= _MEMO_MAX:
                self._headers.clear()
            self._headers[memo_key] = headers
        return headers

    def _build_headers(self, key: str, encoding: str, has_origin: bool, size: int,
                       stale: bool, *, not_modified: bool = False) -> list[tuple[bytes, bytes]]:
        """The headers the full stack would send for this tile; ``not_modified``: for its 304 (no
        content headers)."""
        settings = self.fastapi_app.state.settings
        cache_control = STALE_CACHE_CONTROL if stale else f"public, max-age={int(settings.tile_max_age_s)}"
        headers = [
            (b"etag", tile_etag(key, encoding).encode()),
            (b"cache-control", cache_control.encode()),
            (b"vary", b"Accept-Encoding, Origin" if has_origin else b"Accept-Encoding"),
            (b"x-content-type-options", b"nosniff"),  # as the guard adds to every response
        ]
        if has_origin:  # as the CORS middleware would answer a simple cross-origin request
            headers.append((b"access-control-allow-origin", b"*"))
            headers.append((b"access-control-expose-headers", b"ETag, Content-Crs"))
        if size and not not_modified:
            headers.append((b"content-type", MVT))
            headers.append((b"content-length", str(size).encode()))
            if encoding != "identity":
                headers.append((b"content-encoding", encoding.encode()))
        return headers
