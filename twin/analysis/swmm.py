"""SWMM sewer and storm networks (``.inp``) into the pipe layers, read by ``swmm-api``.

Mapping (SWMM → twin), lengths in metres (US flow units CFS/GPM/MGD mean feet: × 0.3048):

* junctions → ``pipe_nodes`` kind ``manhole``: ``invert_elev_m`` = the junction's invert
  elevation, ``depth_m`` = its maximum depth, ``ground_elev_m`` = invert + maximum depth (the
  rim); outfalls → ``outfall``, storage units → ``storage``, dividers → ``junction``;
* conduits → ``pipelines`` (``gravity``, the chosen ``utility``): diameter = the cross
  section's first dimension (``Geom1``), inverts at both ends = node invert + the link's
  offset (``LINK_OFFSETS DEPTH``, SWMM's default) or the offset itself
  (``LINK_OFFSETS ELEVATION``), cover = rim − invert − diameter, vertices kept;
* pumps, orifices, weirs and outlets → pipelines without inverts (``gravity`` false), so the
  network stays connected for traces.

Coordinates as in :mod:`twin.analysis.epanet` (``crs`` or ``origin``). One transaction; a
file that cannot be read, a node without coordinates or a number that is not one raises
:class:`~twin.errors.LoadFailed`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import shapely

from twin.analysis.epanet import _line, _num, _to_lonlat, write_network
from twin.errors import InvalidParameter, LoadFailed

US_UNITS = {"CFS", "GPM", "MGD"}
FT = 0.3048


def read_swmm(path: Path, *, crs: str | None = None, origin: tuple[float, float] | None = None,
              prefix: str = "SW-", utility: str = "sewage") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pipe_nodes rows, pipelines rows) of a SWMM file, geometries in lon/lat."""
    try:
        from swmm_api import read_inp_file
    except ImportError as exc:  # pragma: no cover - an install without the swmm extra
        raise LoadFailed("SWMM import needs swmm-api: pip install 'twin[swmm]'") from exc
    if (crs is None) == (origin is None):
        raise InvalidParameter("give exactly one of crs (the file's coordinate CRS) or origin (lon,lat of 0,0)")
    if utility not in ("sewage", "rain"):
        raise InvalidParameter("a SWMM network is 'sewage' or 'rain'")
    name = Path(path).name
    try:
        inp = read_inp_file(str(path))
    except Exception as exc:  # swmm-api raises ValueError, KeyError, IndexError … on bad files
        raise LoadFailed(f"cannot read {name} as SWMM: {exc}".strip()) from None
    def sec(section: str) -> Any:  # swmm-api parses a section when it is indexed, not on .get()
        if section not in inp:
            return {}
        try:
            return inp[section]
        except Exception as exc:  # its parsers raise TypeError, ValueError … on broken lines
            raise LoadFailed(f"cannot read [{section}] of {name}: {str(exc).splitlines()[0]}") from None

    opts = dict(sec("OPTIONS"))
    k = FT if str(opts.get("FLOW_UNITS", "CMS")).upper() in US_UNITS else 1.0
    absolute = str(opts.get("LINK_OFFSETS", "DEPTH")).upper() == "ELEVATION"
    to_ll = _to_lonlat(crs, origin)
    coords = {c.node: (c.x, c.y) for c in sec("COORDINATES").values()}

    def ll(xy: Any) -> tuple[float, float]:
        x, y = to_ll(np.array([float(xy[0])]), np.array([float(xy[1])]))
        if not (np.isfinite(x[0]) and np.isfinite(y[0]) and abs(x[0]) <= 180 and abs(y[0]) <= 90):
            raise LoadFailed(f"{name}: coordinates {tuple(xy)} do not map to lon/lat with the given crs/origin")
        return float(x[0]), float(y[0])

    def num(v: Any, what: str) -> float:
        f = _num(v)
        if f is None:
            raise LoadFailed(f"{name}: {what} is not a number: {v!r}")
        return f * k

    nodes: list[dict[str, Any]] = []
    invert: dict[str, float] = {}
    rim: dict[str, float | None] = {}
    pos: dict[str, tuple[float, float]] = {}
    for section, kind in (("JUNCTIONS", "manhole"), ("OUTFALLS", "outfall"), ("STORAGE", "storage"),
                          ("DIVIDERS", "junction")):
        for node in sec(section).values():
            if node.name not in coords:
                raise LoadFailed(f"{name}: node {node.name} has no [COORDINATES]")
            inv = num(node.elevation, f"invert of {node.name}")
            depth = _num(getattr(node, "depth_max", None))
            depth = depth * k if depth is not None and depth > 0 else None
            invert[node.name] = inv
            rim[node.name] = inv + depth if depth is not None else None
            pos[node.name] = ll(coords[node.name])
            nodes.append({"code": prefix + node.name, "kind": kind, "utility": utility, "invert_elev_m": inv,
                          "ground_elev_m": rim[node.name], "depth_m": depth, "geom": shapely.Point(pos[node.name])})
    xsec = {x.link: x for x in sec("XSECTIONS").values()}
    verts = {v.link: v.vertices for v in sec("VERTICES").values()}
    pipes: list[dict[str, Any]] = []
    for section in ("CONDUITS", "PUMPS", "ORIFICES", "WEIRS", "OUTLETS"):
        for link in sec(section).values():
            a, b = link.from_node, link.to_node
            if a not in pos or b not in pos:
                raise LoadFailed(f"{name}: link {link.name} joins unknown node {a if a not in pos else b}")
            line = _line([pos[a], *(ll(v) for v in verts.get(link.name, [])), pos[b]])
            row: dict[str, Any] = {"code": prefix + link.name, "utility": utility, "material": "unknown",
                                   "start_node_code": prefix + a, "end_node_code": prefix + b, "owner": None,
                                   "gravity": section == "CONDUITS", "diameter_mm": 0.0, "geom": line}
            if section == "CONDUITS":
                x = xsec.get(link.name)
                d = num(x.height, f"Geom1 of {link.name}") if x is not None else 0.0
                up, down = _num(link.offset_upstream), _num(link.offset_downstream)
                si = (up * k if absolute and up is not None else invert[a] + (up or 0.0) * k)
                ei = (down * k if absolute and down is not None else invert[b] + (down or 0.0) * k)
                ra, rb = rim[a], rim[b]
                row.update({"diameter_mm": round(d * 1000, 1), "start_invert_m": round(si, 4),
                            "end_invert_m": round(ei, 4), "length_m": num(link.length, f"length of {link.name}"),
                            "start_depth_m": None if ra is None else round(ra - si - d, 4),
                            "end_depth_m": None if rb is None else round(rb - ei - d, 4)})
            pipes.append(row)
    if not pipes:
        raise LoadFailed(f"{name}: no conduits")
    return nodes, pipes


def load_swmm(store: Any, path: Path, **kw: Any) -> dict[str, int]:
    """Read ``path`` and append its nodes and links to the store in one transaction."""
    nodes, pipes = read_swmm(path, **kw)
    return write_network(store, nodes, pipes)


__all__ = ["load_swmm", "read_swmm"]
