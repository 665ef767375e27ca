"""OGC API – Features (Part 1 core, GeoJSON; Part 2 CRS; Part 3 CQL2 filter, sortby): collections, items, item."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gis_api.deps import BaseUrlDep, BBoxDep, PageDep, SettingsDep, StoreDep
from gis_api.security import (
    ReadableLayerDep,
    cql_properties,
    hidden_fields,
    readable_layers,
    refuse_hidden,
)
from twin import cql, geojson
from twin.catalog import LAYERS, LayerSpec
from twin.crs import (
    CRS84_URI,
    SUPPORTED_CRS,
    check_supported,
    crs_uri,
    geometries_from_crs84,
    parse_crs,
)
from twin.errors import InvalidParameter
from twin.params import parse_datetime_interval, parse_int
from twin.store import FeatureQuery, SpatialStore, queryables

router = APIRouter(tags=["Features"])

GEOJSON = "application/geo+json"
RESERVED = {"bbox", "bbox-crs", "crs", "limit", "offset", "datetime", "properties", "f",
            "filter", "filter-lang", "filter-crs", "sortby"}


def _json(obj: Any, media_type: str = "application/json", headers: dict[str, str] | None = None) -> Response:
    return Response(geojson.dumps(obj), media_type=media_type, headers=headers)


def _check_format(f: str | None) -> None:
    if f not in (None, "json", "geojson"):
        raise InvalidParameter(f"format f={f!r} is not offered; use f=json")


def collection_doc(spec: LayerSpec, store: SpatialStore, base: str) -> dict[str, Any]:
    s = store.summary(spec.id)
    extent: dict[str, Any] = {
        "spatial": {"bbox": [list(s.extent)] if s.extent else [], "crs": CRS84_URI},
    }
    if s.temporal_extent:
        lo, hi = s.temporal_extent
        extent["temporal"] = {
            "interval": [[lo.isoformat() if lo else None, hi.isoformat() if hi else None]],
            "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian",
        }
    col = f"{base}/collections/{spec.id}"
    return {
        "id": spec.id,
        "title": spec.title,
        "description": spec.description,
        "itemType": "feature",
        "geometryType": spec.geometry_type,
        "extent": extent,
        "crs": SUPPORTED_CRS,
        "storageCrs": CRS84_URI,
        "numberOfFeatures": s.count,
        "dataVersion": s.version,
        "links": [
            {"href": col, "rel": "self", "type": "application/json", "title": spec.title},
            {"href": f"{col}/items", "rel": "items", "type": GEOJSON, "title": "Features"},
            {"href": f"{col}/queryables", "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
             "type": "application/schema+json", "title": "Queryables"},
            {"href": f"{base}/tiles/{spec.id}/tilejson.json", "rel": "tiles", "type": "application/json",
             "title": "TileJSON"},
            {"href": f"{col}/tiles", "rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector",
             "type": "application/json", "title": "Vector tilesets"},
        ],
    }


@router.get("/collections", summary="Every layer with extent, item count and links")
async def collections(request: Request, store: StoreDep, base: BaseUrlDep, f: str | None = None) -> Response:
    _check_format(f)
    visible = [LAYERS[i] for i in readable_layers(request, LAYERS)]
    docs = await run_in_threadpool(lambda: [collection_doc(s, store, base) for s in visible])
    return _json({
        "links": [{"href": f"{base}/collections", "rel": "self", "type": "application/json"}],
        "collections": docs,
        "crs": SUPPORTED_CRS,
    })


@router.get("/collections/{layer}", summary="One layer")
async def collection(spec: ReadableLayerDep, store: StoreDep, base: BaseUrlDep, f: str | None = None) -> Response:
    _check_format(f)
    return _json(await run_in_threadpool(collection_doc, spec, store, base))


@router.get("/collections/{layer}/queryables", summary="Properties usable as filters",
            responses={200: {"content": {"application/schema+json": {}}}})
async def layer_queryables(request: Request, spec: ReadableLayerDep, base: BaseUrlDep) -> Response:
    hidden = hidden_fields(request, spec.id)
    props = {name: {"type": t} for name, t in queryables(spec).items() if name not in hidden}
    return _json({
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": f"{base}/collections/{spec.id}/queryables",
        "type": "object",
        "title": spec.title,
        "properties": props,
    }, media_type="application/schema+json")


def _page_links(request: Request, base: str, layer: str, limit: int, offset: int, returned: int,
                matched: int) -> list[dict[str, str]]:
    url = request.url
    self_href = f"{base}{url.path}" + (f"?{url.query}" if url.query else "")
    links = [
        {"href": self_href, "rel": "self", "type": GEOJSON},
        {"href": f"{base}/collections/{layer}", "rel": "collection", "type": "application/json"},
    ]
    if offset + returned < matched:
        nxt = url.include_query_params(offset=offset + limit, limit=limit)
        links.append({"href": f"{base}{nxt.path}?{nxt.query}", "rel": "next", "type": GEOJSON})
    if offset > 0:
        prv = url.include_query_params(offset=max(0, offset - limit), limit=limit)
        links.append({"href": f"{base}{prv.path}?{prv.query}", "rel": "prev", "type": GEOJSON})
    return links


@router.get(
    "/collections/{layer}/items",
    summary="Features of a layer",
    description="Filter by `bbox` (+`bbox-crs`), `datetime` (events), any queryable as "
    "`{property}=value` and a CQL2 `filter` (`filter-lang` cql2-text or cql2-json, geometry "
    "literals in `filter-crs`); order with `sortby` (`+prop`/`-prop`, comma-separated); choose "
    "output `crs`, `properties` and page with `limit`/`offset`.",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
async def items(
    request: Request,
    spec: ReadableLayerDep,
    store: StoreDep,
    base: BaseUrlDep,
    bbox: BBoxDep,
    page: PageDep,
    settings: SettingsDep,
    crs: Annotated[str | None, Query(description="Output CRS URI (default CRS84)")] = None,
    datetime: Annotated[str | None, Query(description="RFC 3339 instant or interval a/b, ../b, a/..")] = None,
    properties: Annotated[str | None, Query(description="Comma-separated properties to return")] = None,
    filter: Annotated[str | None, Query(description="CQL2 expression on the queryables, e.g. "
                                        "`floors >= 5 AND use = 'residential'`; at most "
                                        "TWIN_CQL_MAX_CHARS characters (20,000), TWIN_CQL_MAX_DEPTH "
                                        "nesting levels (60) and TWIN_CQL_MAX_OPERATORS operators (500)")] = None,
    filter_lang: Annotated[str | None, Query(alias="filter-lang",
                                             description="`cql2-text` (default) or `cql2-json`")] = None,
    filter_crs: Annotated[str | None, Query(alias="filter-crs",
                                            description="CRS URI of geometry literals in `filter` (default CRS84)")] = None,
    sortby: Annotated[str | None, Query(description="Sort keys, e.g. `-height_m,floors`; "
                                        "`-` descending, `+` or none ascending")] = None,
    f: str | None = None,
) -> Response:
    _check_format(f)
    limit, offset = page
    if filter is None and (filter_lang is not None or filter_crs is not None):
        raise InvalidParameter("filter-lang or filter-crs given without filter")
    limits = cql.CqlLimits(settings.cql_max_chars, settings.cql_max_depth, settings.cql_max_operators)
    parsed = cql.parse(filter, filter_lang, filter_crs, limits) if filter is not None else None
    out_crs = parse_crs(crs) if crs else None
    if out_crs is not None:
        check_supported(out_crs)
    filters = {k: v for k, v in request.query_params.items() if k not in RESERVED}
    selected = [p.strip() for p in properties.split(",") if p.strip()] if properties is not None else None
    hidden = hidden_fields(request, spec.id)
    if hidden:  # fields the caller may not see do not exist for it: not returned, not filterable
        refuse_hidden(filters, hidden, spec.id, "filter")
        refuse_hidden(selected or (), hidden, spec.id, "properties")
        refuse_hidden((k.name for k in cql.parse_sortby(sortby)), hidden, spec.id, "sortby")
        if parsed is not None:
            refuse_hidden(cql_properties(parsed.tree), hidden, spec.id, "filter")
        if selected is None:
            selected = [c.name for c in spec.property_columns if c.name not in hidden]
    query = FeatureQuery(
        layer=spec.id,
        bbox=bbox,
        filters=filters,
        datetime=parse_datetime_interval(datetime) if datetime else None,
        limit=limit,
        offset=offset,
        properties=selected,
        filter=parsed,
        sortby=cql.parse_sortby(sortby),
    )

    def run() -> bytes:
        pg = store.query(query)
        geoms = geometries_from_crs84(pg.geometries, out_crs) if out_crs is not None else pg.geometries
        body = {
            "type": "FeatureCollection",
            "numberMatched": pg.number_matched,
            "numberReturned": pg.number_returned,
            "features": geojson.features(pg.ids, pg.properties, geoms),
            "links": _page_links(request, base, spec.id, limit, offset, pg.number_returned, pg.number_matched),
        }
        return geojson.dumps(body)

    headers = {"Content-Crs": f"<{crs_uri(out_crs) if out_crs is not None else CRS84_URI}>"}
    return Response(await run_in_threadpool(run), media_type=GEOJSON, headers=headers)


@router.get("/collections/{layer}/items/{feature_id}", summary="One feature",
            response_class=Response, responses={200: {"content": {GEOJSON: {}}}})
async def item(
    request: Request,
    spec: ReadableLayerDep,
    store: StoreDep,
    base: BaseUrlDep,
    feature_id: Annotated[str, Path(description="Feature id: an integer in ASCII digits (optional sign); "
                                    "one past the id column's range is a 404")],
    crs: Annotated[str | None, Query(description="Output CRS URI (default CRS84)")] = None,
    f: str | None = None,
) -> Response:
    _check_format(f)
    fid = parse_int(feature_id, "feature id")  # out of the id column's range: 404 from the store
    out_crs = parse_crs(crs) if crs else None
    if out_crs is not None:
        check_supported(out_crs)
    pg = await run_in_threadpool(store.get, spec.id, fid)
    geoms = geometries_from_crs84(pg.geometries, out_crs) if out_crs is not None else pg.geometries
    hidden = hidden_fields(request, spec.id)
    props = [{k: v for k, v in p.items() if k not in hidden} for p in pg.properties] if hidden else pg.properties
    feat = geojson.features(pg.ids, props, geoms)[0]
    col = f"{base}/collections/{spec.id}"
    feat["links"] = [
        {"href": f"{col}/items/{fid}", "rel": "self", "type": GEOJSON},
        {"href": col, "rel": "collection", "type": "application/json"},
    ]
    headers = {"Content-Crs": f"<{crs_uri(out_crs) if out_crs is not None else CRS84_URI}>"}
    return _json(feat, media_type=GEOJSON, headers=headers)
