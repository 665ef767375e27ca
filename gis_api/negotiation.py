"""Content coding negotiation and conditional requests, in one place for every tile path.

A tile is sent in one of several content codings (br, gzip, identity); each coding is a
different body, so each gets its own strong ETag (``"<tile key>-<coding>"``). For that to
hold, three things must agree on every path — the cached-tile front, the full route and
the gzip middleware:

* which coding a request gets: :func:`choose_encoding` reads ``Accept-Encoding`` with
  q-values as RFC 9110 §12.5.3 says (``gzip;q=0`` means *not* gzip, ``*`` stands for the
  codings not named, ``identity`` is acceptable unless refused);
* which ETag names that body: :func:`tile_etag`;
* whether ``If-None-Match`` names it: :func:`etag_matches` compares whole entity tags
  (weak comparison, RFC 9110 §13.1.2), so a ``-gzip`` tag never matches the identity body.

:class:`NegotiatedGZipMiddleware` is Starlette's gzip middleware deciding with the same
function (Starlette's looks for the substring ``gzip``, so ``gzip;q=0`` got gzip bytes)
and leaving tile bodies alone: the tile service has already encoded them.
"""

from __future__ import annotations

import functools
import re

from starlette.datastructures import Headers
from starlette.middleware.gzip import (
    DEFAULT_EXCLUDED_CONTENT_TYPES,
    GZipMiddleware,
    GZipResponder,
    IdentityResponder,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from tiles.service import ENCODINGS

#: Media types whose bodies are already encoded by their producer; the middleware never re-encodes them.
PRE_ENCODED = ("application/vnd.mapbox-vector-tile",)

_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")
_ENTITY_TAG = re.compile(r'(?:W/)?"[^"]*"')


@functools.lru_cache(maxsize=512)
def accepted_codings(accept_encoding: str) -> dict[str, float]:
    """``Accept-Encoding`` as ``{coding: q}`` (lower-case names; ``*`` kept as is).

    An element with a malformed weight is dropped (it states nothing we can rely on);
    a coding listed twice keeps its highest weight.
    """
    out: dict[str, float] = {}
    for element in accept_encoding.split(","):
        name, _, params = element.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                value = value.strip()
                if not _QVALUE.fullmatch(value):
                    break
                q = float(value)
        else:
            out[name] = max(q, out.get(name, 0.0))
    return out


@functools.lru_cache(maxsize=512)
def choose_encoding(accept_encoding: str | None, offered: tuple[str, ...] = ENCODINGS) -> str:
    """The content coding to send: the highest-weighted of ``offered`` (br, gzip, identity by default).

    Ties go to the earlier coding in ``offered``; with no ``Accept-Encoding`` header
    (``None``), or when nothing offered is acceptable, plain bytes (identity) — RFC 9110
    §12.5.3 allows that rather than a 406.

    >>> choose_encoding("gzip;q=0"), choose_encoding("br;q=0.5, gzip"), choose_encoding("*")
    ('identity', 'gzip', 'br')
    """
    if accept_encoding is None:
        return "identity"
    prefs = accepted_codings(accept_encoding)
    star = prefs.get("*")
    best, best_q = "identity", 0.0
    for coding in offered:
        if coding in prefs:
            q = prefs[coding]
        elif star is not None:
            q = star
        else:
            q = 1.0 if coding == "identity" else 0.0
        if q > best_q:
            best, best_q = coding, q
    return best


def tile_etag(key: str, encoding: str) -> str:
    """The strong ETag of a tile body: the tile's key and the coding of the bytes."""
    return f'"{key}-{encoding}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """True if ``If-None-Match`` names ``etag`` (``*``, or an equal entity tag; ``W/`` ignored).

    The whole opaque tag is compared: ``"k-gzip"`` does not match ``"k-identity"``, nor
    does a substring or a prefix.
    """
    if not if_none_match:
        return False
    value = if_none_match.strip()
    if value == "*":
        return True
    want = etag.removeprefix("W/")
    return any(tag.removeprefix("W/") == want for tag in _ENTITY_TAG.findall(value))


def header_values(headers: Headers, name: str) -> str | None:
    """Every ``name`` header of a request joined as one list (``None`` when there is none)."""
    values = headers.getlist(name)
    return ", ".join(values) if values else None


class NegotiatedGZipMiddleware(GZipMiddleware):
    """Starlette's gzip middleware, choosing gzip with :func:`choose_encoding` and skipping tiles."""

    def __init__(self, app: ASGIApp, minimum_size: int = 500, compresslevel: int = 9) -> None:
        super().__init__(app, minimum_size, compresslevel,
                         exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, *PRE_ENCODED))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        accept = header_values(Headers(scope=scope), "accept-encoding")
        responder: ASGIApp
        if choose_encoding(accept, ("gzip", "identity")) == "gzip":
            responder = GZipResponder(self.app, self.minimum_size, compresslevel=self.compresslevel,
                                      thread_minimum_size=self.thread_minimum_size,
                                      exclude_content_types=self.exclude_content_types)
        else:
            responder = IdentityResponder(self.app, self.minimum_size, exclude_content_types=self.exclude_content_types)
        await responder(scope, receive, send)


__all__ = ["NegotiatedGZipMiddleware", "accepted_codings", "choose_encoding", "etag_matches", "header_values",
           "tile_etag"]
