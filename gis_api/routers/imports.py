"""Upload a file into a layer: ``POST /collections/{layer}/import`` (authenticated).

The upload is streamed to a temporary file with a size cap, then loaded by
:func:`twin.loader.load_file` in one transaction: a truncated or broken file, a
wrong CRS or a bad row answers 4xx JSON and leaves the layer as it was.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from gis_api.deps import LayerDep, SettingsDep, StoreDep
from gis_api.responses import JSONResponse
from gis_api.security import authorize, client_address
from twin.errors import InvalidParameter, LimitExceeded, UnsupportedFormat
from twin.security import audit

router = APIRouter(tags=["Import"])

SUFFIXES = {".geojson", ".json", ".gpkg", ".zip", ".csv", ".osm", ".pbf", ".dxf"}  # a Shapefile comes zipped with its .shx/.dbf/.prj


@router.post(
    "/collections/{layer}/import",
    summary="Load an uploaded GeoJSON, GeoPackage, zipped Shapefile, CSV, OSM (.osm/.pbf) or DXF into a layer",
    description="Send the file as the raw request body with its name in `filename` (the suffix picks "
    "the format). Needs a bearer token whose roles may write the layer (or TWIN_ADMIN_TOKEN). One "
    "transaction: any error leaves the layer unchanged. Every import is in the audit log.",
)
async def import_file(
    request: Request,
    spec: LayerDep,
    store: StoreDep,
    settings: SettingsDep,
    filename: Annotated[str, Query(description="Name of the uploaded file, e.g. buildings.gpkg")],
    crs: Annotated[str | None, Query(description="Source CRS when the file does not say")] = None,
    mode: Annotated[str, Query(pattern="^(append|replace)$")] = "append",
    on_invalid: Annotated[str, Query(alias="on-invalid", pattern="^(repair|refuse)$")] = "repair",
    max_rejects: Annotated[int, Query(alias="max-rejects", ge=0)] = 0,
    source_layer: Annotated[str | None, Query(alias="source-layer")] = None,
    map: Annotated[list[str] | None, Query(description="Rename a source field: src=dst (repeatable)")] = None,
    lon_field: Annotated[str | None, Query(alias="lon-field")] = None,
    lat_field: Annotated[str | None, Query(alias="lat-field")] = None,
    set_: Annotated[list[str] | None, Query(alias="set", description="Default for empty cells: column=value (repeatable), "
                                          "e.g. use=unknown")] = None,
    code_from: Annotated[str | None, Query(alias="code-from", description="Make empty codes from this "
                                           "source field")] = None,
    code_pattern: Annotated[str | None, Query(alias="code-pattern", description="Make empty codes from a "
                                              "pattern, e.g. B-{n:06d} ({n}: row number; {FIELD}: a source field)")] = None,
    preset: Annotated[str | None, Query(description="Load preset whose target for this layer maps the fields: "
                                        "osm, cjj61, twin")] = None,
    where: Annotated[str | None, Query(description="OGR SQL attribute filter, e.g. building IS NOT NULL")] = None,
    encoding: Annotated[str | None, Query(description="Text encoding of a Shapefile without .cpg, e.g. GBK")] = None,
) -> JSONResponse:
    from twin.loader import load_file

    who = authorize(request, spec.id, "write")
    mapping = {}
    for pair in map or []:
        src, sep, dst = pair.partition("=")
        if not sep or not src or not dst:
            raise InvalidParameter(f"map takes src=dst, not {pair!r}")
        mapping[src] = dst
    defaults = {}
    for pair in set_ or []:
        col, sep, value = pair.partition("=")
        if not sep or not col.strip():
            raise InvalidParameter(f"set takes column=value, not {pair!r}")
        defaults[col.strip()] = value
    suffix = Path(filename).suffix.lower()
    if suffix not in SUFFIXES:
        raise UnsupportedFormat(f"cannot load {filename!r}: use one of {sorted(SUFFIXES)}")
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise LimitExceeded(f"upload of {declared} bytes exceeds the limit of {settings.max_upload_bytes}")
    with tempfile.TemporaryDirectory(prefix="twin-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        size = 0
        try:
            with path.open("wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > settings.max_upload_bytes:
                        raise LimitExceeded(f"upload exceeds the limit of {settings.max_upload_bytes} bytes")
                    out.write(chunk)
        except ClientDisconnect:
            raise InvalidParameter("the upload was cut off before it ended; nothing was loaded") from None
        if declared and declared.isascii() and declared.isdigit() and size != int(declared):
            raise InvalidParameter(f"upload truncated: got {size} of {declared} bytes; nothing was loaded")
        if size == 0:
            raise InvalidParameter("empty upload; send the file as the request body")
        report = await run_in_threadpool(
            load_file, store, path, spec.id, crs=crs, mode=mode, on_invalid=on_invalid,
            max_rejects=max_rejects, source_layer=source_layer, mapping=mapping or None,
            lon_field=lon_field, lat_field=lat_field, defaults=defaults or None, code_from=code_from,
            code_pattern=code_pattern, preset=preset, where=where, encoding=encoding,
        )
    body = report.to_dict()
    body["path"] = filename
    await run_in_threadpool(audit.record, store, who.subject, "write.import", "ok", target=f"{spec.id} {mode}",
                            client=client_address(request),
                            detail={k: body.get(k) for k in ("written", "deleted", "rejected") if k in body})
    return JSONResponse(body)


def register(app: FastAPI) -> None:
    app.include_router(router)
