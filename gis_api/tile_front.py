"""The cached-tile front: answers vector tiles already in memory before any middleware runs.

Big screens re-request the same tiles all day; a memory hit should cost about what a
bare ASGI app costs. This outermost layer recognises ``GET /tiles/{layers}/{z}/{x}/{y}.mvt``,
asks the tile service's memory cache (no I/O, no database) and, on a hit, writes the
response itself with the headers the full stack would add (CORS, cache, ETag) and the
request metrics. Everything else — misses, conditional requests, malformed paths,
errors — goes down the normal stack unchanged, so behaviour is identical either way.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from gis_api.metrics import LATENCY, REQUESTS
from gis_api.negotiation import choose_encoding, tile_etag
from tiles.tms import parse_tile
from twin.errors import TwinError

TILE_PATH = "/tiles/{layers}/{z}/{x}/{y}.mvt"
MVT = b"application/vnd.mapbox-vector-tile"


class CachedTileFront:
    def __init__(self, app: ASGIApp, fastapi_app) -> None:  # noqa: ANN001 - the FastAPI app (for its state)
        self.app = app
        self.fastapi_app = fastapi_app
        self._ok = REQUESTS.labels(TILE_PATH, "GET", "200")
        self._empty = REQUESTS.labels(TILE_PATH, "GET", "204")
        self._latency = LATENCY.labels(TILE_PATH)
        self._public_memo: dict[str, bool] = {}

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
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith("/tiles/") and path.endswith(".mvt") and await self._answer(scope, send):
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send) -> bool:
        svc = getattr(self.fastapi_app.state, "tiles", None)
        if svc is None:
            return False
        start = time.perf_counter()
        parts = scope["path"][7:-4].split("/")
        if len(parts) != 4:
            return False
        accept: list[bytes] = []
        has_origin = False
        for name, value in scope["headers"]:
            if name in (b"if-none-match", b"authorization"):
                return False  # conditional and authenticated requests take the full path
            if name == b"accept-encoding":
                accept.append(value)
            elif name == b"origin":
                has_origin = True
        try:
            tile = parse_tile(parts[1], parts[2], parts[3])
            specs = svc.layer_specs_cached(parts[0])
        except TwinError:
            return False  # the full stack answers with the proper JSON error
        if not all(self._public(spec) for spec in specs):
            return False  # the full path decides (drops the layer, or 401)
        # the same negotiation as the full path, so one ETag always names one body
        encoding = choose_encoding(b", ".join(accept).decode("latin-1") if accept else None)
        result = svc.cached(specs, tile, encoding)
        if result is None:
            return False
        settings = self.fastapi_app.state.settings
        headers = [
            (b"etag", tile_etag(result.etag, encoding).encode()),
            (b"cache-control", f"public, max-age={int(settings.tile_max_age_s)}".encode()),
            (b"vary", b"Accept-Encoding, Origin" if has_origin else b"Accept-Encoding"),
        ]
        if has_origin:  # as the CORS middleware would answer a simple cross-origin request
            headers.append((b"access-control-allow-origin", b"*"))
            headers.append((b"access-control-expose-headers", b"ETag, Content-Crs"))
        body = result.body
        if body:
            headers.append((b"content-type", MVT))
            headers.append((b"content-length", str(len(body)).encode()))
            if encoding != "identity":
                headers.append((b"content-encoding", encoding.encode()))
            status = 200
        else:
            status = 204
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        (self._ok if status == 200 else self._empty).inc()
        self._latency.observe(time.perf_counter() - start)
        return True
