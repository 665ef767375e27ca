"""Glyph ranges for the style's labels: ``/fonts/{fontstack}/{start}-{end}.pbf``.

Ranges come from the disk cache under ``TWIN_HOME/glyphs`` (tiles/glyphs.py), and the ranges
the town's labels use are rendered there in the background when the server starts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from gis_api.negotiation import choose_encoding, etag_matches, header_values
from tiles.glyphs import GlyphCache, GlyphRangeError, font_key, parse_range, prewarm
from twin.errors import InvalidParameter

if TYPE_CHECKING:
    from twin.store import SpatialStore

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


def _label_fields() -> list[tuple[str, str, bool, tuple[str, Any] | None]]:
    """(source layer, property, along a line, ``(property, value)`` of an ``==`` filter or None) of
    every label of the twin style whose text is ``["get", prop]``."""
    from tiles.style import twin_style

    out = []
    for layer in twin_style("").get("layers", []):
        layout = layer.get("layout", {})
        field: Any = layout.get("text-field")
        if layer.get("type") == "symbol" and isinstance(field, list) and field[:1] == ["get"] and len(field) == 2:
            flt: Any = layer.get("filter")
            eq = None  # the style's label filters are ["==", ["get", p], v]; another kind: every feature
            if isinstance(flt, list) and len(flt) == 3 and flt[0] == "==" and isinstance(flt[1], list) \
                    and flt[1][:1] == ["get"] and len(flt[1]) == 2:
                eq = (flt[1][1], flt[2])
            out.append((layer["source-layer"], field[1], layout.get("symbol-placement") == "line", eq))
    return out


def label_texts(store: SpatialStore) -> Iterator[str]:
    """The texts the town's labels draw (only the features a label's filter keeps), read from the
    store page by page (in the warm-up thread); for labels along lines also the vertical forms of
    their punctuation, which MapLibre asks glyphs for as well (tiles.glyphs.vertical_forms)."""
    from tiles.glyphs import vertical_forms
    from twin.store import FeatureQuery

    for layer, prop, along_line, eq in _label_fields():
        props = [prop] if eq is None or eq[0] == prop else [prop, eq[0]]
        offset = 0
        while offset < MAX_LABELS:
            try:
                page = store.query(FeatureQuery(layer, limit=5000, offset=offset, properties=props))
            except Exception as exc:  # noqa: BLE001 - a layer the twin does not hold: no labels from it
                log.info("glyph warm-up skips %s.%s: %s", layer, prop, exc)
                break
            for p in page.properties:
                if p.get(prop) and (eq is None or p.get(eq[0]) == eq[1]):
                    text = str(p[prop])
                    yield text
                    if along_line and (extra := vertical_forms(text)):
                        yield extra
            if len(page.ids) < 5000:
                break
            offset += 5000
    yield "0123456789 -.()"  # digits and punctuation of road numbers and grid codes


def label_ranges(app: FastAPI) -> list[tuple[int, int]]:
    """The glyph ranges of the town's labels, once the start-up warm-up has read them (else [])."""
    return list(getattr(app.state, "glyph_ranges", ()))


def _start_prewarm(app: FastAPI) -> None:
    app.state.glyph_ranges = []
    app.state.glyph_prewarm = prewarm(glyph_cache(app), label_texts(app.state.store), ranges_out=app.state.glyph_ranges)


def register(app: FastAPI) -> None:
    app.include_router(router)
    app.state.startup = [*getattr(app.state, "startup", []), lambda: _start_prewarm(app)]
