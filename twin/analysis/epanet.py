"""EPANET water networks (``.inp``) into the pipe layers, read by ``wntr``.

Mapping (EPANET → twin):

* junctions → ``pipe_nodes`` kind ``junction``; reservoirs → ``reservoir``; tanks → ``tank``
  (both source kinds, so traces and isolation start from them); ``ground_elev_m`` is the
  EPANET elevation (wntr reads every unit system into SI metres);
* pipes → ``pipelines`` (utility ``water_supply``, diameter in mm, length, the link's
  vertices as the line, roughness kept out: twin has no column for it);
* valves and pumps are *links* in EPANET but *nodes* in twin's networks (a valve closes at
  a point): each becomes a node ``<name>~valve`` / ``<name>~pump_station`` at the middle of
  the link, joined to the link's two end nodes by two pipes ``<name>/a`` and ``<name>/b``.

Coordinates: ``crs`` names the CRS of the file's coordinates (e.g. a CGCS2000
Gauss–Krüger zone ``EPSG:4547``); or ``origin`` (lon, lat) places coordinates in metres
east/north of that point (EPANET's example networks use arbitrary planar units). Codes are
``prefix`` + the EPANET id, so several networks can live side by side.

The import is one transaction: on any error nothing is written. Files wntr cannot read
(unknown sections, broken numbers) raise :class:`~twin.errors.LoadFailed` with wntr's
message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer

from twin.analysis.metric import LocalFrame
from twin.errors import InvalidParameter, LoadFailed


def read_epanet(path: Path, *, crs: str | None = None, origin: tuple[float, float] | None = None,
                prefix: str = "EP-") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pipe_nodes rows, pipelines rows) of an EPANET file, geometries in lon/lat."""
    try:
        import wntr
    except ImportError as exc:  # pragma: no cover - an install without the epanet extra
        raise LoadFailed("EPANET import needs wntr: pip install 'twin[epanet]'") from exc
    if (crs is None) == (origin is None):
        raise InvalidParameter("give exactly one of crs (the file's coordinate CRS) or origin (lon,lat of 0,0)")
    try:
        wn = wntr.network.WaterNetworkModel(str(path))
    except Exception as exc:  # wntr raises ENxxx errors, ValueError, KeyError … for bad files
        raise LoadFailed(f"cannot read {Path(path).name} as EPANET: {exc}".strip()) from None
    to_ll = _to_lonlat(crs, origin)

    def ll(xy: Any) -> tuple[float, float]:
        x, y = to_ll(np.array([float(xy[0])]), np.array([float(xy[1])]))
        if not (np.isfinite(x[0]) and np.isfinite(y[0]) and abs(x[0]) <= 180 and abs(y[0]) <= 90):
            raise LoadFailed(f"coordinates {tuple(xy)} do not map to lon/lat with the given crs/origin")
        return float(x[0]), float(y[0])

    nodes: list[dict[str, Any]] = []
    pos: dict[str, tuple[float, float]] = {}
    kinds = {"Junction": "junction", "Reservoir": "reservoir", "Tank": "tank"}
    for name, node in wn.nodes():
        p = ll(node.coordinates)
        pos[name] = p
        elev = getattr(node, "elevation", None)
        if elev is None:
            elev = getattr(node, "base_head", None)
        nodes.append({"code": prefix + name, "kind": kinds.get(node.node_type, "junction"), "utility": "water_supply",
                      "ground_elev_m": _num(elev), "invert_elev_m": None, "depth_m": None,
                      "geom": shapely.Point(p)})
    pipes: list[dict[str, Any]] = []
    for name, link in wn.links():
        a, b = link.start_node_name, link.end_node_name
        coords = [pos[a], *(ll(v) for v in (link.vertices or [])), pos[b]]
        dn = _num(getattr(link, "diameter", None))
        base = {"utility": "water_supply", "material": "unknown", "gravity": False, "owner": None,
                "diameter_mm": round(dn * 1000, 1) if dn else 0.0}
        if link.link_type == "Pipe":
            pipes.append({**base, "code": prefix + name, "start_node_code": prefix + a, "end_node_code": prefix + b,
                          "length_m": _num(link.length), "geom": _line(coords)})
            continue
        line = shapely.LineString(coords) if len(set(coords)) > 1 else None
        mid = line.interpolate(0.5, normalized=True) if line is not None else shapely.Point(pos[a])
        kind = "valve" if link.link_type == "Valve" else "pump_station"
        vcode = f"{prefix}{name}~{kind}"  # links and nodes have separate id spaces in EPANET
        nodes.append({"code": vcode, "kind": kind, "utility": "water_supply",
                      "ground_elev_m": None, "invert_elev_m": None, "depth_m": None, "geom": mid})
        m = (mid.x, mid.y)
        pipes.append({**base, "code": f"{prefix}{name}/a", "start_node_code": prefix + a,
                      "end_node_code": vcode, "geom": _line([pos[a], m])})
        pipes.append({**base, "code": f"{prefix}{name}/b", "start_node_code": vcode,
                      "end_node_code": prefix + b, "geom": _line([m, pos[b]])})
    for rows, what in ((nodes, "node"), (pipes, "pipe")):
        codes = [r["code"] for r in rows]
        if len(set(codes)) != len(codes):
            dup = sorted({c for c in codes if codes.count(c) > 1})[:5]
            raise LoadFailed(f"{Path(path).name}: {what} codes {dup} would repeat; rename them in the file")
    return nodes, pipes


def _line(coords: list[tuple[float, float]]) -> shapely.LineString:
    """A line through ``coords``; a link whose ends coincide gets a 1 cm stub so it stays a line."""
    if len(set(coords)) < 2:
        x, y = coords[0]
        coords = [(x, y), (x + 1e-7, y)]
    return shapely.LineString(coords)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _to_lonlat(crs: str | None, origin: tuple[float, float] | None):  # noqa: ANN202
    if crs is not None:
        t = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        return lambda x, y: t.transform(x, y)
    assert origin is not None
    frame = LocalFrame(float(origin[0]), float(origin[1]))
    return lambda x, y: frame.lonlat(x, y)


def load_epanet(store: Any, path: Path, **kw: Any) -> dict[str, int]:
    """Read ``path`` and append its nodes and pipes to the store in one transaction."""
    nodes, pipes = read_epanet(path, **kw)
    return write_network(store, nodes, pipes)


def write_network(store: Any, nodes: list[dict[str, Any]], pipes: list[dict[str, Any]]) -> dict[str, int]:
    """Append network rows to ``pipe_nodes`` and ``pipelines`` in one transaction (all or nothing)."""
    from sqlalchemy.exc import IntegrityError

    try:
        with store.engine.begin() as conn:
            n = store.write_features("pipe_nodes", nodes, conn=conn)
            p = store.write_features("pipelines", pipes, conn=conn)
    except IntegrityError as exc:
        raise LoadFailed("the network's codes clash with pipes or nodes already stored; use another prefix",
                         detail=str(exc.orig).splitlines()[0]) from None
    return {"pipe_nodes": n, "pipelines": p}


__all__ = ["load_epanet", "read_epanet", "write_network"]
