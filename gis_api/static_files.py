"""Static files (the viewer's pages and the npm libraries under /static/vendor) sent gzipped from
a memory cache: compressed once per file version instead of by the gzip middleware on every
request. maplibre-gl.js alone is 940 kB: ~0.1 s of CPU at level 9 per page view on the 2-core
test machine, while the browser waits for it (docs/viewer.md, "What the first view loads")."""

from __future__ import annotations

import os
import threading
import zlib
from collections import OrderedDict

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from gis_api.negotiation import choose_encoding, header_values

#: media types worth compressing (text; images and fonts are already compressed)
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml", "application/wasm")
#: most bytes of gzip bodies kept (least recently used go first)
MAX_CACHE_BYTES = 64 * 2**20
MIN_SIZE = 1024


class _GzipCache:
    def __init__(self, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, path: str, stat: os.stat_result) -> bytes:
        key = (path, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
                return body
        with open(path, "rb") as fh:
            c = zlib.compressobj(9, zlib.DEFLATED, 31)
            body = c.compress(fh.read()) + c.flush()
        with self._lock:
            if key not in self._items:
                self._items[key] = body
                self._size += len(body)
                while self._size > self.max_bytes and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self._size -= len(old)
        return body


_CACHE = _GzipCache()


class GzipStaticFiles(StaticFiles):
    """:class:`StaticFiles` whose compressible files go out gzipped from :data:`_CACHE` to clients
    that accept gzip (same ETag and Last-Modified as the file, as the gzip middleware does,
    ``Vary: Accept-Encoding``); everything else (304s, ranges, other clients) as StaticFiles sends it."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if not isinstance(response, FileResponse) or response.status_code != 200 or response.stat_result is None:
            return response
        headers = Headers(scope=scope)
        media = response.media_type or ""
        if (response.stat_result.st_size < MIN_SIZE or not media.startswith(COMPRESSIBLE)
                or "range" in headers or scope.get("method") != "GET"
                or choose_encoding(header_values(headers, "accept-encoding"), ("gzip", "identity")) != "gzip"):
            return response
        body = await run_in_threadpool(_CACHE.get, str(response.path), response.stat_result)
        out = {k: v for k, v in response.headers.items() if k not in ("content-length", "accept-ranges")}
        out["content-encoding"] = "gzip"
        out["vary"] = "Accept-Encoding"
        return Response(body, status_code=200, headers=out)


__all__ = ["GzipStaticFiles"]
