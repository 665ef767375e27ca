"""Ceiling for cached tiles: a bare Starlette app returning a fixed 70 KB body.

    .venv/bin/uvicorn --app-dir bench bare_starlette:app --port P

``/tile`` answers the same bytes every time (like a cache hit), with the headers a
tile server sends; ``/healthz`` is the readiness probe.
"""

import os

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

BODY = os.urandom(70 * 1024)
HEADERS = {"ETag": '"fixed-70k"', "Cache-Control": "public, max-age=3600"}


async def tile(request):  # noqa: ANN001, ANN201
    return Response(BODY, media_type="application/vnd.mapbox-vector-tile", headers=HEADERS)


async def healthz(request):  # noqa: ANN001, ANN201
    return Response(b"ok", media_type="text/plain")


app = Starlette(routes=[Route("/tile", tile), Route("/healthz", healthz)])
