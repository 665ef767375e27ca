"""Glyph ranges for the style's labels: ``/fonts/{fontstack}/{start}-{end}.pbf``."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from tiles.glyphs import GlyphRangeError, glyph_range, parse_range
from twin.errors import InvalidParameter

router = APIRouter(tags=["Tiles"])


@router.get(
    "/fonts/{fontstack}/{glyph_range_}.pbf",
    summary="SDF glyphs for map labels (MapLibre glyphs protobuf), 256 code points per range",
    response_class=Response,
    responses={200: {"content": {"application/x-protobuf": {}}}},
)
async def glyphs(fontstack: str, glyph_range_: str) -> Response:
    """Every font stack is answered from the one CJK font the server has (a style may name
    several fonts; MapLibre asks for them joined by commas)."""
    try:
        start, end = parse_range(glyph_range_)
    except GlyphRangeError as exc:
        raise InvalidParameter(str(exc)) from None
    body = await run_in_threadpool(glyph_range, start, end)
    return Response(body, media_type="application/x-protobuf",
                    headers={"Cache-Control": "public, max-age=86400"})


def register(app: FastAPI) -> None:
    app.include_router(router)
