"""Glyph ranges for the style's labels: ``/fonts/{fontstack}/{start}-{end}.pbf``.

Ranges come from the disk cache under ``TWIN_HOME/glyphs`` (tiles/glyphs.py), and the ranges
the town's labels use are rendered there in the background when the server starts.

With ``?labels=<key>`` (the style's ``glyphs`` URL carries the current key) a range holds only
the characters the town's labels draw (tiles.glyphs.LabelGlyphs): MapLibre parses every range on
the page's main thread, and the full ranges of the sample town are ~5.4 MB for ~300 characters.
The set is read again when a labelled layer changes (its tile version moves), which gives a new
key; a range asked for with a key that is not the current one is the full range, a superset of
whatever set that key named. ``/fonts/labels.json`` says the current key, so a page open for
days can switch to it (``map.setGlyphs``) when the labels change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from gis_api.deps import BaseUrlDep
from gis_api.negotiation import choose_encoding, etag_matches, header_values
from tiles.glyphs import (
    FONTSTACK,
    GlyphCache,
    GlyphRangeError,
    LabelGlyphs,
    label_glyphs,
    parse_range,
    prewarm,
)
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
async def glyphs(
    fontstack: str, glyph_range_: str, request: Request,
    labels: Annotated[str | None, Query(
        description="Key of the town's label characters (the style's glyphs URL names the current one): "
                    "the range holds only those characters. Another key gets the full range.")] = None,
) -> Response:
    """Every font stack is answered from the one CJK font the server has (a style may name
    several fonts; MapLibre asks for them joined by commas)."""
    try:
        start, end = parse_range(glyph_range_)
    except GlyphRangeError as exc:
        raise InvalidParameter(str(exc)) from None
    if labels is not None and not (0 < len(labels) <= 64 and labels.isascii() and labels.isalnum()):
        raise InvalidParameter("labels must be the key of a label set (letters and digits), as the style names it")
    current = getattr(request.app.state, "label_glyphs", None)
    subset = current if labels is not None and current is not None and labels == current.key else None
    # gzip bytes compressed once and kept on disk (the gzip middleware leaves a response with a
    # Content-Encoding alone); each coding is its own body, so its own ETag
    gz = choose_encoding(header_values(request.headers, "accept-encoding"), ("gzip", "identity")) == "gzip"
    cache = glyph_cache(request.app)
    # the disk path names the font key, the stack and (for a subset) the label key: one body each
    tag = cache.path(start, end, fontstack, subset).relative_to(cache.directory).parent.as_posix().replace("/", "-")
    etag = f'"{tag}-gzip"' if gz else f'"{tag}"'
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": etag, "Vary": "Accept-Encoding"}
    if etag_matches(header_values(request.headers, "if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if gz:
        body = await run_in_threadpool(cache.get_gzip, start, end, fontstack, subset)
        headers["Content-Encoding"] = "gzip"
    else:
        body = await run_in_threadpool(cache.get, start, end, fontstack, subset)
    return Response(body, media_type="application/x-protobuf", headers=headers)


@router.get("/fonts/labels.json", summary="The current key of the town's label characters and the glyphs URL naming it")
async def labels_key(request: Request, base: BaseUrlDep) -> JSONResponse:
    """A page open for a long time asks for this now and then: when the key differs from the one
    its style named (a label with a new character was added), it switches to ``glyphs``."""
    labels = await run_in_threadpool(current_label_glyphs, request.app)
    return JSONResponse({"key": labels.key if labels else None, "glyphs": glyphs_url(base, labels),
                         "ranges": [f"{a}-{b}" for a, b in labels.ranges] if labels else []},
                        headers={"Cache-Control": "no-cache"})


def glyphs_url(base: str, labels: LabelGlyphs | None) -> str:
    """The style's ``glyphs`` template: the label subsets when the label set is known."""
    url = f"{base}/fonts/{{fontstack}}/{{range}}.pbf"
    return f"{url}?labels={labels.key}" if labels is not None else url


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
    labels = getattr(app.state, "label_glyphs", None)
    return list(labels.ranges) if labels is not None else []


def _label_versions(app: FastAPI) -> tuple[int, ...]:
    """The tile versions of the labelled layers: they move on every edit of those layers."""
    from gis_api.routers.tiles import tile_service

    versions = tile_service(app).versions.get()
    return tuple(versions.get(layer, 0) for layer in sorted({f[0] for f in _label_fields()}))


_refresh_lock = threading.Lock()


def current_label_glyphs(app: FastAPI) -> LabelGlyphs | None:
    """The label characters of the town as they are now (blocking: run it in a thread). None
    until the start-up warm-up has read them once; read again when a labelled layer changed
    since (a new key; its subsets are rendered on request, a dozen glyphs each)."""
    if getattr(app.state, "label_glyphs", None) is None:
        return None
    with _refresh_lock:
        versions = _label_versions_or_none(app)
        if versions is not None and versions != app.state.label_versions:
            app.state.label_glyphs = label_glyphs(label_texts(app.state.store))
            app.state.label_versions = versions
            log.info("label characters changed: glyph key %s", app.state.label_glyphs.key)
        return app.state.label_glyphs


def _start_prewarm(app: FastAPI) -> None:
    app.state.label_glyphs = None
    # read before the texts: an edit while they are read makes the set stale, never missed
    versions = _label_versions_or_none(app)

    def known(labels: LabelGlyphs) -> None:
        app.state.label_versions = versions
        app.state.label_glyphs = labels

    app.state.glyph_prewarm = prewarm(glyph_cache(app), label_texts(app.state.store), FONTSTACK, on_labels=known)


def _label_versions_or_none(app: FastAPI) -> tuple[int, ...] | None:
    """The labelled layers' versions, or None when they cannot be read (the set is then kept)."""
    try:
        return _label_versions(app)
    except Exception as exc:  # noqa: BLE001 - a store without the change log: the set read at start stays
        log.info("label versions not known: %s", exc)
        return None


def register(app: FastAPI) -> None:
    app.include_router(router)
    app.state.startup = [*getattr(app.state, "startup", []), lambda: _start_prewarm(app)]
