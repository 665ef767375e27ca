"""OGC WMTS 1.0.0: capabilities for the raster datasets and vector tile layers, KVP parsing, OWS exceptions.

One tile matrix set is advertised, ``GoogleMapsCompatible`` (the WMTS name of OGC
``WebMercatorQuad``, EPSG:3857, zoom 0–24, 256 px tiles, built from morecantile);
``WebMercatorQuad`` is accepted as its alias in requests. Each layer carries its
``WGS84BoundingBox`` from the data (raster: the COG's bounds; vector: the layer's
extent in the store) and ``TileMatrixSetLimits`` so clients such as GDAL and QGIS
ask only for tiles that exist.

Tiles are fetched through RESTful ``ResourceURL`` templates that point straight at
``/raster/{dataset}/{z}/{x}/{y}.{ext}`` and ``/tiles/{layer}/{z}/{x}/{y}.mvt`` (note
the WMTS order ``{TileCol}/{TileRow}`` = XYZ ``x/y``), or through KVP GetTile.
Errors in KVP requests are OWS ``ExceptionReport`` documents (HTTP 400), which is
what WMTS clients parse; this module raises :class:`OwsException` and knows no HTTP.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

import morecantile

from tiles.raster import MAX_ZOOM, MIN_ZOOM, RasterCatalog
from tiles.tms import parse_tile_number
from twin.catalog import LAYERS
from twin.errors import InvalidParameter
from twin.store import SpatialStore

WMTS_NS = "http://www.opengis.net/wmts/1.0"
OWS_NS = "http://www.opengis.net/ows/1.1"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
GML_NS = "http://www.opengis.net/gml"
SCHEMA_LOCATION = f"{WMTS_NS} http://schemas.opengis.net/wmts/1.0/wmtsGetCapabilities_response.xsd"

TILE_MATRIX_SET = "GoogleMapsCompatible"
TILE_MATRIX_SET_ALIASES = {TILE_MATRIX_SET, "WebMercatorQuad"}
WELL_KNOWN_SCALE_SET = "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible"
SUPPORTED_CRS = "urn:ogc:def:crs:EPSG::3857"
MVT = "application/vnd.mapbox-vector-tile"
#: media type → extension of the raster tile URL
RASTER_FORMATS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")

for _prefix, _uri in (("", WMTS_NS), ("ows", OWS_NS), ("xlink", XLINK_NS), ("xsi", XSI_NS), ("gml", GML_NS)):
    ET.register_namespace(_prefix, _uri)


class OwsException(Exception):
    """A WMTS request error, reported as an OWS ExceptionReport.

    ``code`` is an OWS/WMTS exception code (``MissingParameterValue``,
    ``InvalidParameterValue``, ``OperationNotSupported``, ``TileOutOfRange``,
    ``NoApplicableCode``); ``locator`` names the offending parameter.
    """

    def __init__(self, code: str, message: str, locator: str | None = None, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.locator = locator
        self.status = status

    def to_xml(self) -> bytes:
        root = ET.Element(f"{{{OWS_NS}}}ExceptionReport", {"version": "1.1.0", "{http://www.w3.org/XML/1998/namespace}lang": "en"})
        attrs = {"exceptionCode": self.code}
        if self.locator:
            attrs["locator"] = self.locator
        exc = ET.SubElement(root, f"{{{OWS_NS}}}Exception", attrs)
        ET.SubElement(exc, f"{{{OWS_NS}}}ExceptionText").text = self.message
        return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


# --- layers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WmtsLayer:
    """One layer of the capabilities. ``bbox`` is CRS84 (lon/lat); ``templates`` maps media type → URL template."""

    identifier: str
    title: str
    abstract: str
    bbox: tuple[float, float, float, float] | None
    templates: dict[str, str]
    minzoom: int = MIN_ZOOM
    maxzoom: int = MAX_ZOOM
    keywords: tuple[str, ...] = field(default_factory=tuple)
    native_matrix_set: bool = False
    #: deepest zoom served (rasters are resampled past their native ``maxzoom``)
    overzoom: int | None = None

    @property
    def last_zoom(self) -> int:
        return self.maxzoom if self.overzoom is None else max(self.maxzoom, self.overzoom)

    @property
    def matrix_sets(self) -> list[tuple[str, int]]:
        """``(identifier, last zoom)`` of the tile matrix sets the layer links to, preferred first.

        A raster layer links first to ``GoogleMapsCompatible`` cut at its native zoom, so
        GDAL (which reads at the finest matrix of the set) gets the data's resolution
        instead of zoom 24; the full set follows for clients that overzoom.
        """
        full = (TILE_MATRIX_SET, MAX_ZOOM)
        if self.native_matrix_set and self.maxzoom < MAX_ZOOM:
            return [(f"{TILE_MATRIX_SET}_z{self.maxzoom}", self.maxzoom), full]
        return [full]

    @property
    def formats(self) -> list[str]:
        return list(self.templates)

    def limits(self, z: int) -> tuple[int, int, int, int] | None:
        """``(min_row, max_row, min_col, max_col)`` of the tiles at zoom ``z`` touching the bbox; ``None`` = all."""
        if self.bbox is None:
            return None
        w, s, e, n = self.bbox
        eps = 1e-9
        ul = WEB_MERCATOR.tile(w + eps, n - eps, z)
        lr = WEB_MERCATOR.tile(e - eps, s + eps, z)
        return ul.y, lr.y, ul.x, lr.x

    def contains(self, z: int, row: int, col: int) -> bool:
        if not self.minzoom <= z <= self.last_zoom:
            return False
        lim = self.limits(z)
        return lim is None or (lim[0] <= row <= lim[1] and lim[2] <= col <= lim[3])


def raster_layers(catalog: RasterCatalog, base: str) -> list[WmtsLayer]:
    """A layer per raster dataset, PNG/JPEG/WebP tiles from ``/raster``, zoom 0 to the native zoom."""
    out = []
    for ds in catalog.datasets():
        info = catalog.info(ds)
        kind = "hillshade of " + ds.name.removesuffix("-hillshade") if ds.algorithm else f"{info.count}-band {info.dtype}"
        out.append(WmtsLayer(
            identifier=ds.name,
            title=ds.name,
            abstract=f"Raster tiles of {ds.path.name} ({kind}).",
            bbox=info.bounds,
            templates={
                media: f"{base}/raster/{ds.name}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.{ext}"
                for media, ext in RASTER_FORMATS.items()
            },
            minzoom=0,
            maxzoom=min(MAX_ZOOM, info.maxzoom),
            keywords=("raster", "COG"),
            native_matrix_set=True,
            overzoom=MAX_ZOOM,
        ))
    return out


def vector_layers(store: SpatialStore, base: str) -> list[WmtsLayer]:
    """A layer per core vector layer, Mapbox Vector Tiles from ``/tiles/{layer}``."""
    out = []
    for spec in LAYERS.values():
        extent = store.summary(spec.id).extent
        out.append(WmtsLayer(
            identifier=spec.id,
            title=spec.title,
            abstract=spec.description,
            bbox=tuple(float(v) for v in extent) if extent else None,  # type: ignore[arg-type]
            templates={MVT: f"{base}/tiles/{spec.id}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.mvt"},
            minzoom=max(MIN_ZOOM, spec.min_zoom),
            maxzoom=min(MAX_ZOOM, spec.max_zoom),
            keywords=("vector", spec.geometry_type),
        ))
    return out


# --- capabilities ----------------------------------------------------------------------------


def _sub(parent: ET.Element, ns: str, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ns}}}{tag}", attrs)
    if text is not None:
        el.text = text
    return el


def _fmt(v: float) -> str:
    return repr(float(v))


def capabilities_xml(base: str, layers: list[WmtsLayer], title: str = "twin") -> bytes:
    """The WMTS 1.0.0 ``Capabilities`` document for ``layers`` served under ``base``."""
    root = ET.Element(f"{{{WMTS_NS}}}Capabilities", {"version": "1.0.0", f"{{{XSI_NS}}}schemaLocation": SCHEMA_LOCATION})
    ident = _sub(root, OWS_NS, "ServiceIdentification")
    _sub(ident, OWS_NS, "Title", f"{title} map tiles")
    _sub(ident, OWS_NS, "Abstract", "Raster tiles of the DEM and orthophoto, and vector tiles of the twin's layers.")
    _sub(ident, OWS_NS, "ServiceType", "OGC WMTS")
    _sub(ident, OWS_NS, "ServiceTypeVersion", "1.0.0")
    _sub(ident, OWS_NS, "Fees", "none")
    _sub(ident, OWS_NS, "AccessConstraints", "none")

    ops = _sub(root, OWS_NS, "OperationsMetadata")
    for op, rest in (("GetCapabilities", f"{base}/wmts/1.0.0/WMTSCapabilities.xml"), ("GetTile", None)):
        http = _sub(_sub(_sub(ops, OWS_NS, "Operation", name=op), OWS_NS, "DCP"), OWS_NS, "HTTP")
        for href, encoding in ((f"{base}/wmts?", "KVP"), (rest, "RESTful")):
            if href is None:
                continue
            get = _sub(http, OWS_NS, "Get", **{f"{{{XLINK_NS}}}href": href})
            allowed = _sub(_sub(get, OWS_NS, "Constraint", name="GetEncoding"), OWS_NS, "AllowedValues")
            _sub(allowed, OWS_NS, "Value", encoding)

    contents = _sub(root, WMTS_NS, "Contents")
    for layer in layers:
        el = _sub(contents, WMTS_NS, "Layer")
        _sub(el, OWS_NS, "Title", layer.title)
        _sub(el, OWS_NS, "Abstract", layer.abstract)
        if layer.keywords:
            kw = _sub(el, OWS_NS, "Keywords")
            for k in layer.keywords:
                _sub(kw, OWS_NS, "Keyword", k)
        w, s, e, n = layer.bbox or WEB_MERCATOR.bbox
        box = _sub(el, OWS_NS, "WGS84BoundingBox", crs="urn:ogc:def:crs:OGC:2:84")
        _sub(box, OWS_NS, "LowerCorner", f"{_fmt(w)} {_fmt(s)}")
        _sub(box, OWS_NS, "UpperCorner", f"{_fmt(e)} {_fmt(n)}")
        _sub(el, OWS_NS, "Identifier", layer.identifier)
        style = _sub(el, WMTS_NS, "Style", isDefault="true")
        _sub(style, OWS_NS, "Identifier", "default")
        for media in layer.formats:
            _sub(el, WMTS_NS, "Format", media)
        for tms_id, tms_last in layer.matrix_sets:
            _tile_matrix_set_link(el, layer, tms_id, min(tms_last, layer.last_zoom))
        for media, template in layer.templates.items():
            _sub(el, WMTS_NS, "ResourceURL", format=media, resourceType="tile", template=template)

    sets = dict(sorted({tms for layer in layers for tms in layer.matrix_sets}, key=lambda t: -t[1]))
    for tms_id, last_zoom in sets.items():
        _tile_matrix_set(contents, tms_id, last_zoom)
    _sub(root, WMTS_NS, "ServiceMetadataURL", **{f"{{{XLINK_NS}}}href": f"{base}/wmts/1.0.0/WMTSCapabilities.xml"})
    ET.indent(root, space=" ")
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def _tile_matrix_set_link(layer_el: ET.Element, layer: WmtsLayer, tms_id: str, last_zoom: int) -> None:
    link = _sub(layer_el, WMTS_NS, "TileMatrixSetLink")
    _sub(link, WMTS_NS, "TileMatrixSet", tms_id)
    if layer.bbox is None:
        return  # no data yet: every tile of the set may be asked for
    limits = _sub(link, WMTS_NS, "TileMatrixSetLimits")
    for z in range(layer.minzoom, last_zoom + 1):
        lim = _sub(limits, WMTS_NS, "TileMatrixLimits")
        _sub(lim, WMTS_NS, "TileMatrix", str(z))
        for tag, value in zip(("MinTileRow", "MaxTileRow", "MinTileCol", "MaxTileCol"), layer.limits(z), strict=True):
            _sub(lim, WMTS_NS, tag, str(value))


def _tile_matrix_set(contents: ET.Element, identifier: str, last_zoom: int) -> None:
    """GoogleMapsCompatible (= OGC WebMercatorQuad from morecantile), zoom 0 to ``last_zoom``."""
    tms = _sub(contents, WMTS_NS, "TileMatrixSet")
    _sub(tms, OWS_NS, "Title", f"Google Maps Compatible for the World (OGC WebMercatorQuad), zoom 0-{last_zoom}")
    _sub(tms, OWS_NS, "Identifier", identifier)
    xmin, ymin, xmax, ymax = WEB_MERCATOR.xy_bbox
    box = _sub(tms, OWS_NS, "BoundingBox", crs=SUPPORTED_CRS)
    _sub(box, OWS_NS, "LowerCorner", f"{_fmt(xmin)} {_fmt(ymin)}")
    _sub(box, OWS_NS, "UpperCorner", f"{_fmt(xmax)} {_fmt(ymax)}")
    _sub(tms, OWS_NS, "SupportedCRS", SUPPORTED_CRS)
    _sub(tms, WMTS_NS, "WellKnownScaleSet", WELL_KNOWN_SCALE_SET)
    for z in range(MIN_ZOOM, last_zoom + 1):
        m = WEB_MERCATOR.matrix(z)
        el = _sub(tms, WMTS_NS, "TileMatrix")
        _sub(el, OWS_NS, "Identifier", str(z))
        _sub(el, WMTS_NS, "ScaleDenominator", _fmt(m.scaleDenominator))
        x0, y0 = m.pointOfOrigin  # EPSG:3857 axis order is easting, northing
        _sub(el, WMTS_NS, "TopLeftCorner", f"{_fmt(x0)} {_fmt(y0)}")
        _sub(el, WMTS_NS, "TileWidth", str(m.tileWidth))
        _sub(el, WMTS_NS, "TileHeight", str(m.tileHeight))
        _sub(el, WMTS_NS, "MatrixWidth", str(m.matrixWidth))
        _sub(el, WMTS_NS, "MatrixHeight", str(m.matrixHeight))


# --- KVP requests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GetTile:
    """A parsed KVP GetTile: ``z`` = TILEMATRIX, ``x`` = TILECOL, ``y`` = TILEROW."""

    layer: str
    media_type: str
    z: int
    x: int
    y: int


def kvp_request(query: Mapping[str, str]) -> str:
    """The operation a KVP query asks for (``GetCapabilities`` or ``GetTile``); names are case-insensitive."""
    q = {k.upper(): v for k, v in query.items()}
    service = q.get("SERVICE")
    if not service:
        raise OwsException("MissingParameterValue", "SERVICE is required (SERVICE=WMTS)", "SERVICE")
    if service.upper() != "WMTS":
        raise OwsException("InvalidParameterValue", f"SERVICE={service} is not offered here; use WMTS", "SERVICE")
    request = q.get("REQUEST")
    if not request:
        raise OwsException("MissingParameterValue", "REQUEST is required (GetCapabilities or GetTile)", "REQUEST")
    for op in ("GetCapabilities", "GetTile"):
        if request.lower() == op.lower():
            return op
    raise OwsException("OperationNotSupported", f"REQUEST={request} is not supported", "REQUEST")


def parse_get_tile(query: Mapping[str, str], layers: Mapping[str, WmtsLayer]) -> GetTile:
    """Check a KVP GetTile against the advertised ``layers``; :class:`OwsException` on any fault."""
    q = {k.upper(): v for k, v in query.items()}

    def need(name: str) -> str:
        value = q.get(name)
        if value is None or value == "":
            raise OwsException("MissingParameterValue", f"{name} is required for GetTile", name)
        return value

    version = q.get("VERSION")
    if version and version != "1.0.0":
        raise OwsException("InvalidParameterValue", f"VERSION={version}; only 1.0.0 is offered", "VERSION")
    layer_id = need("LAYER")
    layer = layers.get(layer_id)
    if layer is None:
        raise OwsException("InvalidParameterValue", f"unknown LAYER {layer_id!r}", "LAYER")
    style = q.get("STYLE")
    if style not in (None, "", "default"):
        raise OwsException("InvalidParameterValue", f"unknown STYLE {style!r}; use default", "STYLE")
    media = need("FORMAT")
    if media not in layer.templates:
        raise OwsException("InvalidParameterValue", f"FORMAT {media} not offered for {layer_id}; use one of "
                           + ", ".join(layer.formats), "FORMAT")
    tms = need("TILEMATRIXSET")
    if tms not in TILE_MATRIX_SET_ALIASES and tms not in {t for t, _ in layer.matrix_sets}:
        raise OwsException("InvalidParameterValue", f"unknown TILEMATRIXSET {tms!r}; use {TILE_MATRIX_SET}",
                           "TILEMATRIXSET")
    matrix = need("TILEMATRIX")
    z = _int(matrix, "TILEMATRIX", "InvalidParameterValue")
    if not MIN_ZOOM <= z <= MAX_ZOOM:
        raise OwsException("InvalidParameterValue", f"TILEMATRIX {matrix} is not in {TILE_MATRIX_SET}", "TILEMATRIX")
    row = _int(need("TILEROW"), "TILEROW", "TileOutOfRange")
    col = _int(need("TILECOL"), "TILECOL", "TileOutOfRange")
    n = 1 << z
    for name, value in (("TILEROW", row), ("TILECOL", col)):
        if not 0 <= value < n:
            raise OwsException("TileOutOfRange", f"{name} {value} outside 0..{n - 1} at TILEMATRIX {z}", name)
    if not layer.contains(z, row, col):
        raise OwsException("TileOutOfRange", f"tile {z}/{row}/{col} is outside the limits of {layer_id}", "TILEMATRIX"
                           if not layer.minzoom <= z <= layer.last_zoom else "TILEROW")
    return GetTile(layer_id, media, z, col, row)


def _int(text: str, name: str, code: str) -> int:
    """A KVP tile number, parsed as every tile address is (:func:`tiles.tms.parse_tile_number`)."""
    try:
        return parse_tile_number(text, name)
    except InvalidParameter:
        raise OwsException(code, f"{name} must be a non-negative integer in ASCII digits, got {text[:20]!r}",
                           name) from None
