"""The MapLibre GL style (v8) that draws the whole twin over the orthophoto.

Two vector sources and one raster source (``/raster/ortho``): ``twin`` is the
composite tile of the slowly changing layers (buildings, pipes, zoning, grids,
roads, …) and ``twin-live`` the composite of the fast-changing ones (events, devices,
cameras). An event changing its status every few seconds then costs one small live
tile, never a re-render or a re-download of the building tile under it — cache keys
are per tile *and per source*, so a source that mixes both kinds is only as cacheable
as its most restless layer (see ``docs/tiles.md``). Colours follow the usual planning conventions:
ecological green, agricultural yellow, urban red; pipelines by utility as in
Chinese pipeline survey maps (water blue, rain/sewage brown, gas pink-red, heat
orange, power red, telecom green).
"""

from __future__ import annotations

from typing import Any

from twin.catalog import CLOSED_EVENTS_ZOOM, LAYERS

SOURCE = "twin"
LIVE_SOURCE = "twin-live"
ORTHO = "ortho"
STYLE_VERSION = "2"
#: Layers edited every few seconds in an operations centre: kept out of the composite source.
FAST_LAYERS = ("events", "devices", "cameras")


def source_of(layer: str) -> str:
    """The style source drawing ``layer``: the live composite for fast-changing layers."""
    return LIVE_SOURCE if layer in FAST_LAYERS else SOURCE


def source_layers() -> dict[str, tuple[str, ...]]:
    """Style source id → the twin layers in its composite tile (catalogue order)."""
    slow = tuple(n for n in LAYERS if n not in FAST_LAYERS)
    fast = tuple(n for n in LAYERS if n in FAST_LAYERS)
    return {SOURCE: slow, LIVE_SOURCE: fast}


def _match(prop: str, pairs: dict[str, str], default: str) -> list[Any]:
    expr: list[Any] = ["match", ["to-string", ["get", prop]]]
    for k, v in pairs.items():
        expr += [k, v]
    return expr + [default]


ZONE_COLORS = {"ecological": "#2e9d4a", "agricultural": "#e3c74f", "urban": "#d9534f"}
LINE_COLORS = {"ecological_red_line": "#c1121f", "permanent_basic_farmland": "#f2b705",
               "urban_development_boundary": "#7b2cbf"}
UTILITY_COLORS = {"water": "#1f78b4", "water_supply": "#1f78b4", "rain": "#8c564b", "stormwater": "#8c564b",
                  "sewage": "#5c3d2e", "gas": "#e7298a", "heat": "#ff7f00", "power": "#e31a1c",
                  "electric": "#e31a1c", "telecom": "#33a02c"}
USE_COLORS = {"residential": "#e8d7c3", "commercial": "#9ecae1", "industrial": "#bdbdbd", "public": "#fdae6b"}
DEVICE_COLORS = {"online": "#2ca25f", "offline": "#969696", "alarm": "#e31a1c", "fault": "#ff7f00"}
CAMERA_COLORS = {"online": "#1565c0", "offline": "#969696", "fault": "#ff7f00"}
EVENT_COLORS = {"reported": "#e31a1c", "verified": "#ff7f00", "dispatched": "#fdd835", "handled": "#43a047",
                "closed": "#9e9e9e"}


def _fill(id_: str, layer: str, color: Any, opacity: float = 0.35, minzoom: int | None = None) -> dict[str, Any]:
    out = {"id": id_, "type": "fill", "source": source_of(layer), "source-layer": layer,
           "paint": {"fill-color": color, "fill-opacity": opacity}}
    if minzoom is not None:
        out["minzoom"] = minzoom
    return out


def _line(id_: str, layer: str, color: Any, width: Any = 1.5, dash: list[float] | None = None,
          minzoom: int | None = None) -> dict[str, Any]:
    paint: dict[str, Any] = {"line-color": color, "line-width": width}
    if dash:
        paint["line-dasharray"] = dash
    out = {"id": id_, "type": "line", "source": source_of(layer), "source-layer": layer,
           "layout": {"line-cap": "round", "line-join": "round"}, "paint": paint}
    if minzoom is not None:
        out["minzoom"] = minzoom
    return out


def _radius(at_z12: float, at_z17: float) -> list[Any]:
    """Circle radius growing with zoom, so a town overview is not buried under markers."""
    return ["interpolate", ["linear"], ["zoom"], 12, at_z12, 17, at_z17]


def _circle(id_: str, layer: str, color: Any, radius: Any = 5, *, minzoom: int | None = None,
            filter_: list[Any] | None = None, opacity: float = 1.0) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": id_, "type": "circle", "source": source_of(layer), "source-layer": layer,
        "paint": {"circle-color": color, "circle-radius": radius, "circle-opacity": opacity,
                  "circle-stroke-color": "#ffffff", "circle-stroke-width": 1, "circle-stroke-opacity": opacity}}
    if minzoom is not None:
        out["minzoom"] = minzoom
    if filter_ is not None:
        out["filter"] = filter_
    return out


#: font stack of the label layers; glyphs come from the twin itself (``/fonts/…``, tiles/glyphs.py)
FONT = ["Twin Sans"]


def _label(id_: str, layer: str, field: Any, *, size: Any = 13, color: str = "#1b2a3a",
           minzoom: int | None = None, filter_: list[Any] | None = None,
           placement: str = "point") -> dict[str, Any]:
    """A text label; CJK text is drawn from the server's glyphs (no CDN)."""
    out: dict[str, Any] = {
        "id": id_, "type": "symbol", "source": source_of(layer), "source-layer": layer,
        "layout": {"text-field": field, "text-font": FONT, "text-size": size,
                   "symbol-placement": placement, "text-max-width": 8},
        "paint": {"text-color": color, "text-halo-color": "rgba(255,255,255,0.85)", "text-halo-width": 1.4}}
    if minzoom is not None:
        out["minzoom"] = minzoom
    if filter_ is not None:
        out["filter"] = filter_
    return out


def twin_style(base_url: str, *, center: tuple[float, float] | None = None, zoom: float = 13,
               bounds: tuple[float, float, float, float] | None = None,
               ortho: dict[str, Any] | None = None) -> dict[str, Any]:
    """The style document; every URL absolute under ``base_url`` (no trailing slash).

    ``bounds`` (lon/lat) is the data extent, kept in ``metadata["twin:bounds"]`` so a client
    can frame the town; ``ortho`` is the orthophoto's ``{"bounds", "minzoom", "maxzoom"}``, or
    None when the twin has no orthophoto (then the style has no raster source at all, and a
    client never asks for tiles that do not exist).
    """
    layers: list[dict[str, Any]] = [
        {"id": "background", "type": "background", "paint": {"background-color": "#f4f1ea"}},
        _fill("zones", "zones", _match("kind", ZONE_COLORS, "#888888"), 0.18),
        _fill("farmland", "farmland",
              ["case", ["==", ["get", "is_permanent_basic"], True], "#f6d55c", "#cfe8a9"], 0.45),
        _fill("construction_sites", "construction_sites",
              ["case", ["==", ["get", "dust_controlled"], True], "#a1887f", "#ff7043"], 0.5),
        _line("control_lines", "control_lines", _match("kind", LINE_COLORS, "#555555"), 2.5, [3, 2]),
        _line("grids", "grids", "#3f51b5", ["match", ["get", "level"], "town", 3, "village", 2, 0.8],
              [4, 2]),
        _line("evaluation_grids", "evaluation_grids", "#00897b", 1.2, [1, 1]),
        _line("roads", "roads", "#ffffff",
              ["interpolate", ["linear"], ["zoom"], 10, 1, 16,
               ["match", ["get", "road_class"], "arterial", 10, "collector", 6, 3]]),
        _line("pipelines", "pipelines", _match("utility", UTILITY_COLORS, "#607d8b"),
              ["interpolate", ["linear"], ["zoom"], 12, 0.8, 18, 3]),
        {"id": "buildings", "type": "fill-extrusion", "source": SOURCE, "source-layer": "buildings",
         "paint": {"fill-extrusion-color": _match("use", USE_COLORS, "#d9d9d9"),
                   "fill-extrusion-height": ["coalesce", ["get", "height_m"], 3],
                   "fill-extrusion-base": 0, "fill-extrusion-opacity": 0.85}},
        _circle("pipe_nodes", "pipe_nodes", _match("utility", UTILITY_COLORS, "#607d8b"), _radius(1, 3.5),
                minzoom=15),
        _circle("evaluation_points", "evaluation_points", "#00897b", _radius(2, 5)),
        _circle("devices", "devices", _match("status", DEVICE_COLORS, "#2ca25f"), _radius(2.5, 6)),
        _circle("cameras", "cameras", _match("status", CAMERA_COLORS, "#1565c0"), _radius(2.5, 6)),
        # closed events are history: small, faint, close up only; open ones stand out at every zoom
        _circle("events-closed", "events", EVENT_COLORS["closed"], _radius(1.5, 4), minzoom=CLOSED_EVENTS_ZOOM,
                filter_=["==", ["get", "status"], "closed"], opacity=0.6),
        _circle("events", "events", _match("status", EVENT_COLORS, "#e31a1c"), _radius(4, 8),
                filter_=["!=", ["get", "status"], "closed"]),
        _label("grids-label", "grids", ["get", "name"], size=14, filter_=["==", ["get", "level"], "village"]),
        _label("roads-label", "roads", ["get", "name"], size=11, color="#3a3a3a", minzoom=15, placement="line"),
    ]
    sources: dict[str, Any] = {src: {"type": "vector", "url": f"{base_url}/tiles/{','.join(names)}/tilejson.json"}
                               for src, names in source_layers().items() if names}
    if ortho is not None:
        layers.insert(1, {"id": "ortho", "type": "raster", "source": ORTHO, "paint": {"raster-opacity": 0.9, "raster-fade-duration": 0}})
        sources = {ORTHO: {"type": "raster", "tiles": [f"{base_url}/raster/ortho/{{z}}/{{x}}/{{y}}.webp"],
                           "tileSize": 256, "attribution": "twin orthophoto",
                           "bounds": [round(v, 7) for v in ortho["bounds"]],
                           "minzoom": int(ortho.get("minzoom", 0)),
                           "maxzoom": int(ortho.get("maxzoom", 22))}, **sources}
    style: dict[str, Any] = {
        "version": 8,
        "name": "twin",
        "metadata": {"twin:style-version": STYLE_VERSION},
        "glyphs": f"{base_url}/fonts/{{fontstack}}/{{range}}.pbf",
        "sources": sources,
        "layers": layers,
    }
    if bounds is not None:
        style["metadata"]["twin:bounds"] = [round(v, 7) for v in bounds]
    if center is not None:
        style["center"] = [round(center[0], 6), round(center[1], 6)]
        style["zoom"] = zoom
        style["pitch"] = 45
    return style


__all__ = ["FAST_LAYERS", "LIVE_SOURCE", "SOURCE", "source_layers", "source_of", "twin_style"]
