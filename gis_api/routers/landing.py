"""OGC API landing page and conformance declaration."""

from __future__ import annotations

from fastapi import APIRouter

from gis_api.deps import BaseUrlDep
from gis_api.responses import JSONResponse

router = APIRouter(tags=["Discovery"])

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
]


def register_conformance(*classes: str) -> None:
    """Other routers (tiles, …) add the conformance classes they implement."""
    for c in classes:
        if c not in CONFORMANCE:
            CONFORMANCE.append(c)


@router.get("/api", summary="OGC API landing page")
async def landing(base: BaseUrlDep) -> JSONResponse:
    return JSONResponse({
        "title": "twin",
        "description": "Digital-twin map server: features, tiles, scenes, live layers and analysis of a town.",
        "links": [
            {"href": f"{base}/api", "rel": "self", "type": "application/json", "title": "This document"},
            {"href": f"{base}/api/openapi.json", "rel": "service-desc",
             "type": "application/vnd.oai.openapi+json;version=3.0", "title": "OpenAPI definition"},
            {"href": f"{base}/api/docs", "rel": "service-doc", "type": "text/html", "title": "API documentation"},
            {"href": f"{base}/conformance", "rel": "conformance", "type": "application/json",
             "title": "Conformance classes"},
            {"href": f"{base}/collections", "rel": "data", "type": "application/json", "title": "Layers"},
        ],
    })


@router.get("/conformance", summary="OGC API conformance classes")
async def conformance() -> JSONResponse:
    return JSONResponse({"conformsTo": CONFORMANCE})
