"""The pipe networks of one store, built once and rebuilt when pipelines or pipe nodes change.

Also the questions that need the store besides the graph: which pipe a clicked point
means (the nearest within ``max_snap_m``), and which buildings and devices a set of
pipes serves (those whose nearest pipe of that utility, within ``service_m``, is one of
them — the usual proxy for service connections, which the data does not hold). That
nearest pipe is found for every building and device once per data version, so a burst
that cuts off half the town costs a set lookup, not a spatial query over half the town.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import shapely

from twin.analysis.locate import nearest_features
from twin.analysis.metric import frame_for
from twin.analysis.network import UtilityNetwork, build_networks
from twin.analysis.source import FeatureSet, VersionClock, feature_by_ref, features_in_bbox
from twin.errors import FeatureNotFound, InvalidParameter, NotFound
from twin.store import SpatialStore

WORLD = (-180.0, -90.0, 180.0, 90.0)


class NoPipeNearby(NotFound):
    """The start point of a trace or burst lies too far from any pipe (HTTP 404)."""

    code = "no_pipe_nearby"


class NetworkService:
    def __init__(self, store: SpatialStore, cap: int = 200_000, snap_m: float = 0.5):
        self.store = store
        self.cap = cap
        self.snap_m = snap_m
        self.clock = VersionClock(store)
        self._lock = threading.Lock()
        self._versions: tuple[int, int] | None = None
        self._nets: dict[str, UtilityNetwork] = {}
        self._pipes: FeatureSet | None = None
        self._oriented: dict[tuple[str, tuple[str, ...]], UtilityNetwork] = {}
        self._pos: dict[tuple[str, str], int] = {}
        self._trees: dict[str, tuple[object, list[int], shapely.STRtree]] = {}
        self._served: dict[tuple[str, str], tuple[object, tuple[FeatureSet, np.ndarray, np.ndarray]]] = {}

    def _load(self) -> None:
        v = self.clock.get()
        key = (v.get("pipelines", 0), v.get("pipe_nodes", 0))
        with self._lock:
            if self._versions == key:
                return
            pipes = features_in_bbox(self.store, "pipelines", WORLD, cap=self.cap)
            nodes = features_in_bbox(self.store, "pipe_nodes", WORLD, cap=self.cap)
            self._nets = build_networks(pipes, nodes, self.snap_m)
            self._pipes = pipes
            self._pos = {(p["utility"], p["code"]): i for i, p in enumerate(pipes.properties)}
            self._trees = {}
            self._oriented = {}
            self._versions = key

    def network(self, utility: str, sources: Sequence[str] | None = None) -> UtilityNetwork:
        self._load()
        net = self._nets.get(utility)
        if net is None:
            raise NotFound(f"no {utility!r} network", detail={"utilities": sorted(self._nets)})
        if not sources:
            return net
        key = (utility, tuple(sorted(sources)))
        with self._lock:
            if key not in self._oriented:  # a copy oriented from the caller's sources
                copy = UtilityNetwork(net.utility, net.graph, {k: _copy_pipe(p) for k, p in net.pipes.items()},
                                      net.node_kind, net.node_id, net.node_xy, [], list(net.findings))
                copy.orient(list(sources))
                if len(self._oriented) > 32:
                    self._oriented.clear()
                self._oriented[key] = copy
            return self._oriented[key]

    def utilities(self) -> list[str]:
        self._load()
        return sorted(self._nets)

    def pipes(self) -> FeatureSet:
        self._load()
        assert self._pipes is not None
        return self._pipes

    def pipe_rows(self, utility: str, codes: Sequence[str]) -> FeatureSet:
        """The stored rows of ``codes`` in the ``utility`` network (in the order given)."""
        self._load()
        allp = self.pipes()
        return allp.take([self._pos[(utility, c)] for c in codes if (utility, c) in self._pos])

    def _tree(self, utility: str) -> tuple[object, list[int], shapely.STRtree]:
        """(metric frame, row indexes, STRtree in that frame) of one utility's pipes, built once."""
        self._load()
        hit = self._trees.get(utility)
        if hit is None:
            allp = self.pipes()
            idx = [i for (u, _), i in self._pos.items() if u == utility]
            geoms = allp.geometries[idx]
            frame = frame_for(shapely.union_all(geoms).envelope) if len(idx) else frame_for(shapely.Point(0, 0))
            hit = self._trees[utility] = (frame, idx, shapely.STRtree(frame.to_metric(geoms)))
        return hit

    def start_pipe(self, *, point: tuple[float, float] | None = None, feature: tuple[str, int | None, str | None]
                   | None = None, utility: str | None = None, max_snap_m: float = 50.0) -> tuple[str, str, float]:
        """``(utility, pipe code, distance_m)`` of the pipe a request starts from."""
        if (point is None) == (feature is None):
            raise InvalidParameter("give exactly one of 'point' or 'feature'")
        if feature is not None:
            layer, fid, code = feature
            fs = feature_by_ref(self.store, layer, id=fid, code=code)
            if fs.layer == "pipelines":
                return fs.properties[0]["utility"], fs.properties[0]["code"], 0.0
            if fs.layer == "pipe_nodes":  # a node: start from a pipe at that node
                util = fs.properties[0]["utility"]
                net = self.network(util)
                node = fs.properties[0]["code"]
                edges = sorted(k for _, _, k in net.graph.edges(node, keys=True))
                if not edges:
                    raise FeatureNotFound(f"node {node} has no pipes")
                return util, edges[0], 0.0
            g = fs.geometries[0].representative_point()
            point = (g.x, g.y)
        assert point is not None
        filters = {"utility": utility} if utility else None
        hits = nearest_features(self.store, "pipelines", point[0], point[1], 1, max_distance_m=max_snap_m,
                                cap=self.cap, filters=filters)
        if not hits:
            raise NoPipeNearby(f"no {utility + ' ' if utility else ''}pipe within {max_snap_m:g} m of the point",
                               detail={"max_snap_m": max_snap_m})
        h = hits[0]
        return h.properties["utility"], h.properties["code"], h.distance_m

    #: properties kept per served feature (the answer lists them; everything else stays in the store)
    SERVED_PROPERTIES = {"buildings": ("code", "name", "address", "households"), "devices": ("code", "name", "kind")}

    def _service_index(self, layer: str, utility: str) -> tuple[FeatureSet, np.ndarray, np.ndarray]:
        """Every feature of ``layer`` with the code of its nearest ``utility`` pipe and the distance,
        computed once per data version of the layer and the pipes (one STRtree query for all)."""
        v = self.clock.get()
        key = (layer, utility)
        stamp = (self._versions, v.get(layer, 0))
        hit = self._served.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        allp = self.pipes()
        frame, idx, tree = self._tree(utility)
        fs = features_in_bbox(self.store, layer, WORLD, cap=10 * self.cap,  # a whole city's buildings
                              properties=list(self.SERVED_PROPERTIES.get(layer, ("code",))))
        if len(fs) and idx:
            near, dist = tree.query_nearest(frame.to_metric(np.asarray(fs.geometries, dtype=object)),  # type: ignore[attr-defined]
                                            return_distance=True, all_matches=False)
            codes = np.full(len(fs), "", dtype=object)
            dists = np.full(len(fs), np.inf)
            codes[near[0]] = [allp.properties[idx[int(i)]]["code"] for i in near[1]]
            dists[near[0]] = dist
        else:
            codes, dists = np.full(len(fs), "", dtype=object), np.full(len(fs), np.inf)
        entry = (fs, codes, dists)
        with self._lock:
            self._served[key] = (stamp, entry)
        return entry

    def served(self, layer: str, utility: str, pipe_codes: set[str], service_m: float) -> FeatureSet:
        """Features of ``layer`` whose nearest ``utility`` pipe (within ``service_m``) is in ``pipe_codes``."""
        if not pipe_codes:
            return FeatureSet(layer)
        fs, codes, dists = self._service_index(layer, utility)
        if not len(fs):
            return fs
        keep = np.flatnonzero(np.isin(codes, list(pipe_codes)) & (dists <= service_m))
        return fs.take(keep)


def _copy_pipe(p):  # noqa: ANN001, ANN202
    from dataclasses import replace

    return replace(p)


__all__ = ["NetworkService", "NoPipeNearby"]
