"""JSON responses rendered with orjson (datetimes as RFC 3339 UTC, numpy arrays allowed)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from twin.geojson import dumps


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
