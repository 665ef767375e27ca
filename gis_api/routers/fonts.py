"""Glyph ranges for the style's labels: ``/fonts/{fontstack}/{start}-{end}.pbf``.

Ranges come from the disk cache under ``TWIN_HOME/glyphs`` (tiles/glyphs.py), and the ranges
the town's labels use are rendered there in the background when the server starts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from gis_api.negotiation import choose_encoding, etag_matches, header_values
from tiles.glyphs import GlyphCache, GlyphRangeError, font_key, parse_range, prewarm
from twin.errors import InvalidParameter

router = APIRouter(tags=["Tiles"])
log = logging.getLogger("twin.api.fonts")
#: a range's bytes only change with the font or the renderer (both in the ETag); a browser keeps it
CACHE_CONTROL = "public, max-age=31536000, immutable"
#: labels read for the warm-up, per label layer (the 10x town has far fewer named features)
MAX_LABELS = 200_000


def glyph_cache(app: FastAPI) -> GlyphCache:
    cache = getattr(app.state, "glyph_cache", None)
    if cache is None:
        cache = app.state.glyph_cache = GlyphCache(app.state.settings.home / "glyphs")
    return cache


@router.get(
    "/fonts/{fontstack}/{glyph_range_}.pbf",
    summary="SDF glyphs for map labels (MapLibre glyphs protobuf), 256 code points per range",
    response_class=Response,
    responses={200: {"content": {"application/x-protobuf": {}},
                     "description": "The range's glyphs; cacheable for a year (immutable)."},
               304: {"description": "The browser's copy is current (If-None-Match)."}},
)
async def glyphs(fontstack: str, glyph_range_: str, request: Request) -> Response:
    """Every font stack is answered from the one CJK font the server has (a style may name
    several fonts; MapLibre asks for them joined by commas)."""
    try:
        start, end = parse_range(glyph_range_)
    except GlyphRangeError as exc:
        raise InvalidParameter(str(exc)) from None
    # gzip bytes compressed once and kept on disk (the gzip middleware leaves a response with a
    # Content-Encoding alone); each coding is its own body, so its own ETag
    gz = choose_encoding(header_values(request.headers, "accept-encoding"), ("gzip", "identity")) == "gzip"
    etag = f'"{font_key()}-gzip"' if gz else f'"{font_key()}"'
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": etag, "Vary": "Accept-Encoding"}
    if etag_matches(header_values(request.headers, "if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    cache = glyph_cache(request.app)
    if gz:
        body = await run_in_threadpool(cache.get_gzip, start, end, fontstack)
        headers["Content-Encoding"] = "gzip"
    else:
        body = await run_in_threadpool(cache.get, start, end, fontstack)
    return Response(body, media_type="application/x-protobuf", headers=headers)


def _label_fields() -> list[tuple[str, str]]:
    """(source layer, property) of every label of the twin style whose text is ``["get", prop]``."""
    from tiles.style import twin_style

    out = []
    for layer in twin_style("").get("layers", []):
        field: Any = layer.get("layout", {}).get("text-field")
        if layer.get("type") == "symbol" and isinstance(field, list) and field[:1] == ["get"] and len(field) == 2:
            out.append((layer["source-layer"], field[1]))
    return out


def _label_texts(app: FastAPI) -> Iterator[str]:
    """The texts the town's labels draw, read from the store page by page (in the warm-up thread)."""
    from twin.store import FeatureQuery

    store = app.state.store
    for layer, prop in _label_fields():
        offset = 0
        while offset < MAX_LABELS:
            try:
                page = store.query(FeatureQuery(layer, limit=5000, offset=offset, properties=[prop]))
            except Exception as exc:  # noqa: BLE001 - a layer the twin does not hold: no labels from it
                log.info("glyph warm-up skips %s.%s: %s", layer, prop, exc)
                break
            yield from (str(p[prop]) for p in page.properties if p.get(prop))
            if len(page.ids) < 5000:
                break
            offset += 5000
    yield "0123456789 -.()"  # digits and punctuation of road numbers and grid codes


def label_ranges(app: FastAPI) -> list[tuple[int, int]]:
    """The glyph ranges of the town's labels, once the start-up warm-up has read them (else [])."""
    return list(getattr(app.state, "glyph_ranges", ()))


def _start_prewarm(app: FastAPI) -> None:
    app.state.glyph_ranges = []
    app.state.glyph_prewarm = prewarm(glyph_cache(app), _label_texts(app), ranges_out=app.state.glyph_ranges)


def register(app: FastAPI) -> None:
    app.include_router(router)
    app.state.startup = [*getattr(app.state, "startup", []), lambda: _start_prewarm(app)]
