"""The pipe networks of one store, built once and rebuilt when pipelines or pipe nodes change.

Also the questions that need the store besides the graph: which pipe a clicked point
means (the nearest within ``max_snap_m``), and which buildings and devices a set of
pipes serves (those whose nearest pipe of that utility, within ``service_m``, is one of
them — the usual proxy for service connections, which the data does not hold). That
nearest pipe is found for every building and device once per data version, so a burst
that cuts off half the town costs a set lookup, not a spatial query over half the town.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np
import shapely

from twin.analysis.locate import nearest_features
from twin.analysis.metric import frame_for
from twin.analysis.mirror import Delta, LayerMirror
from twin.analysis.network import UtilityNetwork, build_networks
from twin.analysis.source import FeatureSet, VersionClock, feature_by_ref, features_in_bbox
from twin.errors import FeatureNotFound, InvalidParameter, NotFound
from twin.store import SpatialStore

log = logging.getLogger("twin.analysis.networks")
#: (metric frame, pipe codes, STRtree in that frame, the pipes' metric geometries) of one utility
PipeTree = tuple[object, list[str], shapely.STRtree, np.ndarray]
#: (features, nearest pipe code, distance m, nearest pipe as a position in the codes, the pipe tree's codes)
ServiceEntry = tuple[FeatureSet, np.ndarray, np.ndarray, np.ndarray, list[str]]
WORLD = (-180.0, -90.0, 180.0, 90.0)
#: the largest ``service_m`` a request may ask (the router's bound); the service index is exact up to it
MAX_SERVICE_M = 1000.0


class NoPipeNearby(NotFound):
    """The start point of a trace or burst lies too far from any pipe (HTTP 404)."""

    code = "no_pipe_nearby"


class NetworkService:
    """Per-utility networks and service indexes of one store, kept current edit by edit.

    After an edit of pipelines or pipe nodes only the places it touched are re-read
    (:class:`~twin.analysis.mirror.LayerMirror`), only the utilities whose rows really
    changed are rebuilt, and the nearest-pipe index of buildings and devices is patched
    around the changed pipes instead of recomputed for the whole town.
    """

    #: history of pipe changes kept per utility, so a service index a few edits behind can catch up
    KEEP_CHANGES = 16
    #: how long a request waits for the networks to catch up with an edit before it answers from the
    #: previous version (flagged ``stale`` in the answer); the rebuild goes on in the background
    wait_s = 0.15

    def __init__(self, store: SpatialStore, cap: int = 200_000, snap_m: float = 0.5):
        self.store = store
        self.cap = cap
        self.snap_m = snap_m
        self.clock = VersionClock(store)
        self._lock = threading.RLock()
        self._build_lock = threading.Lock()  # one rebuild at a time
        self._job: threading.Thread | None = None
        self._wait_until = 0.0
        self._versions: tuple[int, int] | None = None
        self._pipe_rows = LayerMirror(store, "pipelines", cap)
        self._node_rows = LayerMirror(store, "pipe_nodes", cap)
        self._nets: dict[str, UtilityNetwork] = {}
        self._pipes: FeatureSet | None = None
        self._oriented: dict[tuple[str, tuple[str, ...]], UtilityNetwork] = {}
        self._pos: dict[tuple[str, str], int] = {}
        self._trees: dict[str, PipeTree] = {}
        #: per utility: generation (bumped when its network changes) and the pipe changes that made each one
        self._gen: dict[str, int] = {}
        self._changes: dict[str, list[tuple[int, FeatureSet | None, FeatureSet | None]]] = {}
        self._layers: dict[str, tuple[int, FeatureSet]] = {}
        self._metric: dict[tuple[str, object], tuple[int, np.ndarray, shapely.STRtree]] = {}
        self._served: dict[tuple[str, str], tuple[tuple[int, int, object], ServiceEntry]] = {}

    def _load(self) -> None:
        """Bring the networks to the store's current versions (see :attr:`wait_s`)."""
        v = self.clock.get()
        key = (v.get("pipelines", 0), v.get("pipe_nodes", 0))
        if self._versions == key:
            return
        if self._pipes is None:  # nothing to answer from yet: build now
            with self._build_lock:
                if self._versions != key:
                    self._rebuild(key)
            return
        import time

        with self._lock:
            job = self._job
            if job is None or not job.is_alive():
                job = self._job = threading.Thread(target=self._rebuild_logged, args=(key,), daemon=True,
                                                   name="twin-network-rebuild")
                job.start()
                self._wait_until = time.monotonic() + self.wait_s
        # usually done by then; else answer from the previous version (stale). The wait is shared: a
        # request that looks several times, and every request meanwhile, wait at most wait_s in all
        job.join(max(0.0, self._wait_until - time.monotonic()))

    def _rebuild_logged(self, key: tuple[int, int]) -> None:
        try:
            with self._build_lock:
                if self._versions != key:
                    self._rebuild(key)
        except Exception:  # the next request tries again; this one answers from the previous version
            log.exception("rebuilding the pipe networks failed")

    def freshness(self) -> dict[str, object]:
        """The data versions the networks stand for, and whether the store has moved on since (``stale``)."""
        v = self.clock.get()
        now = (v.get("pipelines", 0), v.get("pipe_nodes", 0))
        have = self._versions or (0, 0)
        return {"pipelines": have[0], "pipe_nodes": have[1], "stale": have != now}

    def _rebuild(self, key: tuple[int, int]) -> None:
        """Patch the networks to ``key``: re-read the changed places, patch the utilities whose pipes were
        edited (:meth:`UtilityNetwork.patched`) and rebuild those that changed otherwise, then swap the
        new state in at once (readers never see half of it)."""
        dp = self._pipe_rows.refresh(key[0])
        dn = self._node_rows.refresh(key[1])
        pipes, nodes = self._pipe_rows.rows, self._node_rows.rows
        full = self._pipes is None or (dp is not None and dp.full) or (dn is not None and dn.full)
        p_util: np.ndarray | None = None

        def utilities() -> np.ndarray:  # each row's utility, only when a full build needs it
            nonlocal p_util
            if p_util is None:
                p_util = np.array([p.get("utility") for p in pipes.properties], dtype=object)
            return p_util

        node_utils: set[str | None] = set()
        if full:
            changed = set(self._nets) | set(utilities().tolist())
        else:
            changed = set()
            for d in (dp, dn):
                if d is not None:
                    changed |= {p.get("utility") for p in d.gone.properties}
                    changed |= {p.get("utility") for p in d.new.properties}
            if dn is not None:
                node_utils = {p.get("utility") for p in dn.gone.properties} | {p.get("utility") for p in dn.new.properties}
        nets, gens = dict(self._nets), dict(self._gen)
        changes = {k: list(h) for k, h in self._changes.items()}
        edited: dict[str, FeatureSet] = {}  # utility → the pipes patched in (same codes, new rows)
        for util in sorted(u for u in changed if u is not None):
            net = None
            if not full and dp is not None and util not in node_utils and util in nets:
                gone_u, new_u = _of_utility(dp.gone, util), _of_utility(dp.new, util)
                if sorted(p["code"] for p in gone_u.properties) == sorted(p["code"] for p in new_u.properties):
                    net = nets[util].patched(new_u) if len(new_u) else nets[util]
                    if net is not None:
                        edited[util] = new_u
            if net is None:
                pi = np.flatnonzero(utilities() == util)
                if not len(pi):
                    nets.pop(util, None)
                else:
                    n_util = np.array([p.get("utility") for p in nodes.properties], dtype=object)
                    net = build_networks(pipes.take(pi), nodes.take(np.flatnonzero(n_util == util)), self.snap_m)[util]
            if net is not None:
                nets[util] = net
            gen = gens[util] = gens.get(util, 0) + 1
            hist = changes.setdefault(util, [])
            if full or dp is None:
                hist.append((gen, None, None) if full else (gen, FeatureSet("pipelines"), FeatureSet("pipelines")))
            else:
                hist.append((gen, _of_utility(dp.gone, util), _of_utility(dp.new, util)))
            del hist[:-self.KEEP_CHANGES]
        pos = self._pos
        if full or dp is None or dp.positions is None or not self._pos_follows(pipes, dp):
            pos = {(u, p["code"]): i for i, (u, p) in enumerate(zip(utilities().tolist(), pipes.properties, strict=True))}
        elif len(dp.new):
            pos = dict(pos)
            for k in dp.positions:
                pos[(pipes.properties[k]["utility"], pipes.properties[k]["code"])] = k
        # the pipe trees in use are patched or rebuilt here too, not by the next request
        trees = {}
        for u in changed:
            if u in self._trees and u in nets:
                old = self._trees[u]
                trees[u] = _patched_tree(old, edited[u]) if u in edited else _pipe_tree(pipes, pos, u)
        with self._lock:
            self._nets, self._gen, self._changes = nets, gens, changes
            self._trees = {**{k: t for k, t in self._trees.items() if k not in changed}, **trees}
            self._oriented = {k: n for k, n in self._oriented.items() if k[0] not in changed}
            self._pipes, self._pos = pipes, pos
            self._versions = key

    def _pos_follows(self, pipes: FeatureSet, dp: Delta) -> bool:
        """Whether the positions of the pipes can be patched: every row read back in place kept its
        (utility, code) — an edit that renames a pipe re-indexes everything."""
        old = self._pipes
        assert old is not None and dp.positions is not None
        for k in dp.positions:
            if k < len(old) and ((old.properties[k].get("utility"), old.properties[k]["code"])
                                 != (pipes.properties[k].get("utility"), pipes.properties[k]["code"])):
                return False
        return True

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
        with self._lock:  # rows and positions of one version (a patch swaps both at once)
            allp, pos = self._pipes, self._pos
        assert allp is not None
        return allp.take([pos[(utility, c)] for c in codes if (utility, c) in pos])

    def _tree(self, utility: str) -> PipeTree:
        """(metric frame, pipe codes, STRtree in that frame) of one utility's pipes, built once per change."""
        self._load()
        hit = self._trees.get(utility)
        if hit is None:
            with self._lock:  # rows and positions of one version
                assert self._pipes is not None
                hit = self._trees[utility] = _pipe_tree(self._pipes, self._pos, utility)
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

    def _layer(self, layer: str) -> tuple[int, FeatureSet]:
        """All rows of ``layer`` (the properties answers list), read once per data version of the layer."""
        version = self.clock.get().get(layer, 0)
        hit = self._layers.get(layer)
        if hit is None or hit[0] != version:
            fs = features_in_bbox(self.store, layer, WORLD, cap=10 * self.cap,  # a whole city's buildings
                                  properties=list(self.SERVED_PROPERTIES.get(layer, ("code",))))
            hit = self._layers[layer] = (version, fs)
            self._metric = {k: m for k, m in self._metric.items() if k[0] != layer}
        return hit

    def _layer_metric(self, layer: str, frame: object) -> tuple[np.ndarray, shapely.STRtree]:
        """``layer``'s geometries in ``frame`` and their STRtree (once per layer version and frame)."""
        version, fs = self._layer(layer)
        hit = self._metric.get((layer, frame))
        if hit is None or hit[0] != version:
            metric = frame.to_metric(np.asarray(fs.geometries, dtype=object)) if len(fs) else np.array([], dtype=object)  # type: ignore[attr-defined]
            hit = self._metric[(layer, frame)] = (version, metric, shapely.STRtree(metric))
        return hit[1], hit[2]

    def _service_index(self, layer: str, utility: str) -> tuple[FeatureSet, np.ndarray, np.ndarray]:
        """Every feature of ``layer`` with the code of its nearest ``utility`` pipe and the distance."""
        return self._service(layer, utility)[:3]  # type: ignore[return-value]

    def _service(self, layer: str, utility: str) -> ServiceEntry:
        """:meth:`_service_index`, plus each feature's nearest pipe as a position in the pipe tree's codes
        (−1: none) and those codes — what set look-ups use, vectorised.

        Computed for the whole layer once per data version of the layer; after an edit of the
        network only the features that may change their nearest pipe are looked at again: those
        whose nearest pipe changed or went, and those a changed or new pipe comes at least as near
        as their nearest one (looked for within :data:`MAX_SERVICE_M`, the largest ``service_m``:
        a feature farther than that from every pipe is served by none either way).
        """
        self._load()
        with self._lock:
            version, fs = self._layer(layer)
            gen = self._gen.get(utility, 0)
            frame, tree_codes, tree, _ = self._tree(utility)
            key = (layer, utility)
            stamp = (version, gen, frame)
            hit = self._served.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            if not len(fs) or not tree_codes:
                entry = (fs, np.full(len(fs), "", dtype=object), np.full(len(fs), np.inf), np.full(len(fs), -1), tree_codes)
                self._served[key] = (stamp, entry)
                return entry
            metric, ftree = self._layer_metric(layer, frame)
            steps = self._catch_up(utility, hit[0] if hit is not None else None, stamp)
            if steps is None:
                todo = np.arange(len(fs))
                near_at, dists = np.full(len(fs), -1), np.full(len(fs), np.inf)
            else:
                assert hit is not None
                _, _, old_d, old_at, old_codes = hit[1]
                near_at, dists = _positions(old_at, old_codes, tree_codes), old_d.copy()
                sel = np.zeros(len(fs), dtype=bool)
                for gone, new in steps:
                    if len(gone):  # features whose nearest pipe changed or went (old codes: they may be gone)
                        sel |= _member_at(old_at, old_codes, {p["code"] for p in gone.properties})
                    for g in frame.to_metric(np.asarray(new.geometries, dtype=object)) if len(new) else ():  # type: ignore[attr-defined]
                        cand = ftree.query(g, predicate="dwithin", distance=MAX_SERVICE_M)
                        if len(cand):  # only features the new pipe comes at least as near as their nearest one
                            d = shapely.distance(metric[cand], g)
                            sel[cand[d <= dists[cand]]] = True
                todo = np.flatnonzero(sel)
            if len(todo):
                near, dist = tree.query_nearest(metric[todo], return_distance=True, all_matches=False)  # type: ignore[attr-defined]
                near_at[todo] = -1
                dists[todo] = np.inf
                near_at[todo[near[0]]] = near[1]
                dists[todo[near[0]]] = dist
            codes = np.array([*tree_codes, ""], dtype=object)[near_at]  # −1 → ""
            entry = (fs, codes, dists, near_at, tree_codes)
            self._served[key] = (stamp, entry)
            return entry

    def _catch_up(self, utility: str, was: tuple[int, int, object] | None,
                  now: tuple[int, int, object]) -> list[tuple[FeatureSet, FeatureSet]] | None:
        """The pipe changes of ``utility`` between two service-index stamps, or ``None`` (recompute all)."""
        if was is None or was[0] != now[0] or was[2] != now[2]:
            return None
        steps = [(g, n) for gen, g, n in self._changes.get(utility, []) if was[1] < gen <= now[1]]
        if len(steps) != now[1] - was[1] or any(g is None or n is None for g, n in steps):
            return None
        return steps  # type: ignore[return-value]

    def served(self, layer: str, utility: str, pipe_codes: set[str], service_m: float) -> FeatureSet:
        """Features of ``layer`` whose nearest ``utility`` pipe (within ``service_m``) is in ``pipe_codes``."""
        if not pipe_codes:
            return FeatureSet(layer)
        fs, _, dists, near_at, tree_codes = self._service(layer, utility)
        if not len(fs):
            return fs
        keep = np.flatnonzero(_member_at(near_at, tree_codes, pipe_codes) & (dists <= service_m))
        return fs.take(keep)


def _pipe_tree(pipes: FeatureSet, pos: dict[tuple[str, str], int], utility: str) -> PipeTree:
    """(metric frame, pipe codes, STRtree of the pipes in that frame, the metric geometries) of one utility."""
    idx = [i for (u, _), i in pos.items() if u == utility]
    geoms = pipes.geometries[idx]
    frame = frame_for(shapely.box(*shapely.total_bounds(geoms))) if len(idx) else frame_for(shapely.Point(0, 0))
    metric = frame.to_metric(geoms)
    return frame, [pipes.properties[i]["code"] for i in idx], shapely.STRtree(metric), metric


def _patched_tree(tree: PipeTree, rows: FeatureSet) -> PipeTree:
    """``tree`` with the geometries of ``rows`` (pipes already in it, edited) put in; the same tree when
    none moved. Its frame is the network's, which the patch kept."""
    frame, codes, _, metric = tree
    at = {c: i for i, c in enumerate(codes)}
    moved = [(at[p["code"]], g) for p, g in zip(rows.properties, rows.geometries, strict=True)
             if not shapely.equals_exact(metric[at[p["code"]]], frame.to_metric(g), 0.0)]  # type: ignore[attr-defined]
    if not moved:
        return tree
    metric = metric.copy()
    for i, g in moved:
        metric[i] = frame.to_metric(g)  # type: ignore[attr-defined]
    return frame, codes, shapely.STRtree(metric), metric


def _member_at(at: np.ndarray, codes: list[str], wanted: set[str]) -> np.ndarray:
    """Which entries of ``at`` (positions in ``codes``, −1 for none) name a code in ``wanted``: one set
    look-up per pipe code, then a vectorised take over the features (a set look-up per feature cost
    tens of milliseconds in a town of 200,000 buildings, on every isolation)."""
    mask = np.fromiter((c in wanted for c in codes), dtype=bool, count=len(codes))
    return np.append(mask, False)[at]


def _positions(at: np.ndarray, old: list[str], new: list[str]) -> np.ndarray:
    """Positions ``at`` in the code list ``old`` as positions in ``new`` (−1 where the code went)."""
    if old is new:
        return at.copy()
    where = {c: i for i, c in enumerate(new)}
    remap = np.array([*(where.get(c, -1) for c in old), -1])
    return remap[at]


def _of_utility(fs: FeatureSet, utility: str) -> FeatureSet:
    return fs.take([k for k, p in enumerate(fs.properties) if p.get("utility") == utility])


def _copy_pipe(p):  # noqa: ANN001, ANN202
    from dataclasses import replace

    return replace(p)


__all__ = ["NetworkService", "NoPipeNearby"]
