"""Pipe networks: one graph per utility from the pipelines and pipe nodes (networkx).

**Building.** A pipe joins the nodes named by its ``start_node_code`` / ``end_node_code``.
An end whose code is missing or names no node of that utility is *snapped* to the
nearest node of the utility within ``snap_m`` metres; failing that, ends lying within
``snap_m`` of each other are joined at a new node ``~<pipe code>:<start|end>``. Every
repair is reported as a :class:`Finding`, so bad data is visible rather than silently
fixed or fatal. Loops and disconnected parts are legal networks; every traversal below
keeps a visited set, so loops cannot make it run forever.

**Flow direction.** Gravity pipes (rain, sewage) flow from the higher invert to the
lower; a pipe whose inverts fall against its recorded start→end direction is flagged
``reverse_graded``, one with equal inverts ``flat`` (it keeps the recorded direction).
Pressure pipes flow away from the network's *sources*: nodes of a source kind
(:data:`SOURCE_KINDS`) or the codes the caller gives; without either, the far end of
the largest-diameter dead-end pipe is assumed (the trunk main feeding the town) and
reported. Each pipe is directed from its end nearer (along the pipes) to a source to its
farther end — the steady-state direction in a branched network; in a looped network the
true split needs a hydraulic model (EPANET), which this does not replace.

**Valve isolation** (爆管分析, Giswater's *mincut*): from the burst pipe, spread through
pipes and nodes, stopping at every operable valve — those are the valves to close and
what they enclose is isolated. A valve listed in ``broken_valves`` does not close, so
the spread passes through it to the next valves. Then, with the isolated part removed
and the valves closed, everything no longer reachable from a source is *cut off* too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx
import numpy as np
import shapely

from twin.analysis.metric import LocalFrame, frame_for
from twin.analysis.source import FeatureSet
from twin.errors import InvalidParameter

SOURCE_KINDS = frozenset({"source", "reservoir", "tank", "water_plant", "pump_station", "gate_station",
                          "regulator_station", "heat_source", "substation"})
VALVE_KINDS = frozenset({"valve"})
GRAVITY_UTILITIES = frozenset({"rain", "sewage"})


@dataclass(frozen=True)
class Finding:
    """A repair or doubt found while building a network (shown to the user, never fatal)."""

    kind: str  # snapped_end | missing_node | assumed_source | no_source
    pipe: str | None
    node: str | None
    message: str


@dataclass
class Pipe:
    id: int
    code: str
    utility: str
    start: str
    end: str
    gravity: bool
    diameter_mm: float
    length_m: float
    start_invert_m: float | None
    end_invert_m: float | None
    flow_from: str = ""
    flow_to: str = ""
    reverse_graded: bool = False
    flat: bool = False


@dataclass
class UtilityNetwork:
    """The graph of one utility: nodes are node codes; each edge carries its pipe code as key."""

    utility: str
    graph: nx.MultiGraph
    pipes: dict[str, Pipe]
    node_kind: dict[str, str]
    node_id: dict[str, int | None]
    node_xy: dict[str, tuple[float, float]]  # lon/lat
    sources: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    directed: nx.MultiDiGraph | None = None
    #: the metric frame pipe lengths were measured in, and each pipe's lon/lat bounds (pipe-array order)
    frame: LocalFrame | None = None
    pipe_bounds: np.ndarray | None = None

    # --- flow ---------------------------------------------------------------
    def orient(self, sources: Sequence[str] | None = None) -> None:
        """Set every pipe's ``flow_from``/``flow_to`` (see module docstring) and build :attr:`directed`."""
        if sources:
            unknown = [s for s in sources if s not in self.graph]
            if unknown:
                raise InvalidParameter(f"source nodes {unknown} are not in the {self.utility} network")
            self.sources = list(sources)
        dist = self._flow_distances()
        nodes, index, codes, a_idx, b_idx = self._arrays()
        d = nx.MultiDiGraph()
        d.add_nodes_from(self.graph.nodes)
        edges = []
        for i, c in enumerate(codes):
            p = self.pipes[c]
            a, b = p.start, p.end
            if p.gravity:
                a, b, p.reverse_graded, p.flat = _gravity_flow(p)
            elif dist is not None and dist[b_idx[i]] < dist[a_idx[i]]:
                a, b = b, a
            p.flow_from, p.flow_to = a, b
            edges.append((a, b, p.code))
        d.add_edges_from(edges)
        self.directed = d

    def utility_is_gravity(self) -> bool:
        return self.utility in GRAVITY_UTILITIES or (bool(self.pipes) and all(p.gravity for p in self.pipes.values()))

    def _assumed_sources(self) -> list[str]:
        """Per connected part, the dead end of its largest (diameter, then code) dead-end pipe; the
        parts in graph-node order (scipy's connected components on the pipe arrays: C speed)."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        nodes, _, codes, a, b = self._arrays()
        n = len(nodes)
        deg = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)  # a loop counts twice, as networkx's
        dead = np.flatnonzero((deg[a] == 1) | (deg[b] == 1))
        if not len(dead):
            self.findings.append(Finding("no_source", None, None,
                                         f"the {self.utility} network has no source node and no dead end"))
            return []
        adj = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
        _, labels = connected_components(adj, directed=False)  # labels in order of each part's first node
        best: dict[int, Pipe] = {}
        for i in dead.tolist():
            p = self.pipes[codes[i]]
            lab = int(labels[a[i]])
            q = best.get(lab)
            if q is None or (p.diameter_mm, p.code) > (q.diameter_mm, q.code):
                best[lab] = p
        out: list[str] = []
        index = self._arrays()[1]
        for lab in sorted(best):
            p = best[lab]
            node = p.start if deg[index[p.start]] == 1 else p.end
            out.append(node)
            self.findings.append(Finding("assumed_source", p.code, node,
                                         f"no source node in this part of the {self.utility} network: assumed "
                                         f"{node}, the dead end of its largest pipe {p.code} (DN{p.diameter_mm:g})"))
        return out

    def _distances(self) -> np.ndarray:
        """Distance along the pipes (m) from the nearest source to every node (graph-node order; inf where
        no source reaches)."""
        nodes, index, codes, a, b = self._arrays()
        w = np.fromiter((max(self.pipes[c].length_m, 1e-9) for c in codes), dtype=float, count=len(codes))
        return _source_distances(len(nodes), a, b, w, [index[s] for s in self.sources])

    # --- patching ---------------------------------------------------------------
    def patched(self, rows: FeatureSet) -> UtilityNetwork | None:
        """This network with the pipes of ``rows`` (same codes, same end nodes: an edit of their
        attributes or geometry) put in — equal to building it again from every row — or ``None`` when
        the change needs a full build (pipes added, removed or re-connected, repaired ends involved,
        the length frame moved). Nothing shared with this network is changed: readers of it go on."""
        if self.directed is None or not len(rows) or self.frame is None or self.pipe_bounds is None:
            return None
        nodes, index, codes, a, b = self._arrays()
        pos = self._pipe_index()
        bounds = self.pipe_bounds.copy()
        geoms = np.asarray(rows.geometries, dtype=object)
        new_bounds = shapely.bounds(geoms)
        changed: dict[str, Pipe] = {}
        for k, (fid, props) in enumerate(zip(rows.ids, rows.properties, strict=True)):
            code, s_, e_ = props.get("code"), props.get("start_node_code"), props.get("end_node_code")
            if not (isinstance(code, str) and isinstance(s_, str) and isinstance(e_, str)):
                return None
            old = self.pipes.get(code)
            if (old is None or code in changed or (old.start, old.end) != (s_, e_) or props.get("utility") != self.utility
                    or self.node_kind.get(s_, "missing") == "missing" or self.node_kind.get(e_, "missing") == "missing"
                    or bool(props.get("gravity")) != old.gravity):
                return None
            changed[code] = Pipe(fid, code, self.utility, s_, e_, bool(props.get("gravity")),
                                 float(props.get("diameter_mm") or 0), 0.0,
                                 props.get("start_invert_m"), props.get("end_invert_m"))
            bounds[pos[code]] = new_bounds[k]
        total = (bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max())
        if frame_for(shapely.box(*total)) != self.frame:
            return None
        lengths = shapely.length(self.frame.to_metric(geoms))
        for p, length in zip(changed.values(), lengths, strict=True):
            p.length_m = float(length)
        pipes = dict(self.pipes)  # same order: the pipe arrays stay valid
        pipes.update(changed)
        graph = _cow_edges(self.graph, [(p.start, p.end, p.code, {"length": p.length_m}) for p in changed.values()])
        net = UtilityNetwork(self.utility, graph, pipes, self.node_kind, self.node_id, self.node_xy,
                             [c for c, k in self.node_kind.items() if k in SOURCE_KINDS],
                             [f for f in self.findings if f.kind not in ("assumed_source", "no_source")],
                             frame=self.frame, pipe_bounds=bounds)
        net.sources.sort()
        net.__dict__["_arrays_cache"] = (graph, (nodes, index, codes, a, b))
        net.__dict__["_pipe_index_cache"] = self.__dict__.get("_pipe_index_cache")
        net._orient_after(self, changed)
        return net

    def _pipe_index(self) -> dict[str, int]:
        cached = self.__dict__.get("_pipe_index_cache")
        if cached is None:
            cached = self.__dict__["_pipe_index_cache"] = {c: i for i, c in enumerate(self._arrays()[2])}
        return cached

    def _flow_distances(self) -> np.ndarray | None:
        """Distances from the sources that decide a pressure network's flow (the sources assumed
        when none are given); None for a gravity network (flow follows the inverts)."""
        if self.utility_is_gravity():
            return None
        if not self.sources:
            self.sources = self._assumed_sources()
        return self._distances() if self.sources else None

    def _orient_after(self, old: UtilityNetwork, changed: dict[str, Pipe]) -> None:
        """:meth:`orient` of a patched network, from ``old``'s: the flow of every pipe is decided again
        (sources and distances can move with one pipe's length or diameter), but only pipes whose
        direction changed get new objects and new edges in the directed graph."""
        nodes, index, codes, a, b = self._arrays()
        dist = self._flow_distances()
        moved: list[tuple[str, str, str, str, str]] = []  # (code, old from, old to, new from, new to)
        if dist is not None:
            grav = np.fromiter((self.pipes[c].gravity for c in codes), dtype=bool, count=len(codes))
            rev = ~grav & (dist[b] < dist[a])
            was = np.fromiter((old.pipes[c].flow_from != old.pipes[c].start for c in codes), dtype=bool,
                              count=len(codes))
            for i in np.flatnonzero((rev != was) & ~grav).tolist():
                c = codes[i]
                if c in changed:
                    continue
                p = self.pipes[c] = replace(self.pipes[c])
                o = old.pipes[c]
                p.flow_from, p.flow_to = (p.end, p.start) if rev[i] else (p.start, p.end)
                if (p.flow_from, p.flow_to) != (o.flow_from, o.flow_to):
                    moved.append((c, o.flow_from, o.flow_to, p.flow_from, p.flow_to))
        pos = self._pipe_index()
        for c, p in changed.items():
            i = pos[c]
            if p.gravity:
                p.flow_from, p.flow_to, p.reverse_graded, p.flat = _gravity_flow(p)
            elif dist is not None and dist[b[i]] < dist[a[i]]:
                p.flow_from, p.flow_to = p.end, p.start
            else:
                p.flow_from, p.flow_to = p.start, p.end
            o = old.pipes[c]
            if (p.flow_from, p.flow_to) != (o.flow_from, o.flow_to):
                moved.append((c, o.flow_from, o.flow_to, p.flow_from, p.flow_to))
        assert old.directed is not None
        self.directed = _cow_redirect(old.directed, moved) if moved else old.directed

    # --- traversal ------------------------------------------------------------
    def trace(self, pipe_code: str, direction: str) -> tuple[list[str], list[str]]:
        """Pipes and nodes reached from ``pipe_code`` going ``upstream`` or ``downstream`` (flow order)."""
        if self.directed is None:
            self.orient()
        assert self.directed is not None
        p = self.pipes[pipe_code]
        if direction == "downstream":
            nodes = {p.flow_to} | nx.descendants(self.directed, p.flow_to)
            pipes = {pipe_code} | {k for u, _, k in self.directed.out_edges(nodes, keys=True)}
        elif direction == "upstream":
            nodes = {p.flow_from} | nx.ancestors(self.directed, p.flow_from)
            pipes = {pipe_code} | {k for _, _, k in self.directed.in_edges(nodes, keys=True)}
        else:
            raise InvalidParameter("direction must be 'upstream' or 'downstream'")
        return sorted(pipes), sorted(nodes)

    def isolate(self, pipe_code: str, broken_valves: Iterable[str] = ()) -> Isolation:
        """Valves to close for a burst on ``pipe_code``, what they isolate and what is cut off from supply."""
        if self.directed is None:
            self.orient()
        broken = set(broken_valves)
        unknown = sorted(v for v in broken if v not in self.graph)
        p = self.pipes[pipe_code]
        g = self.graph
        closable = {n for n, k in self.node_kind.items() if k in VALVE_KINDS and n not in broken}
        close: set[str] = set()
        iso_nodes: set[str] = set()
        iso_pipes = {pipe_code}
        queue = deque([p.start, p.end])
        seen: set[str] = set()
        while queue:
            n = queue.popleft()
            if n in seen:
                continue
            seen.add(n)
            if n in closable:
                close.add(n)
                continue
            iso_nodes.add(n)
            for _, m, key in g.edges(n, keys=True):
                iso_pipes.add(key)
                if m not in seen:
                    queue.append(m)
        # supply after closing: from the sources, without the isolated part and the closed valves
        blocked = iso_nodes | close
        live = [s for s in self.sources if s not in blocked]
        cut_nodes, cut_pipes = self._cut_off(blocked, live, iso_pipes)
        return Isolation(pipe_code, sorted(close), sorted(broken & set(self.node_kind)), unknown,
                         sorted(iso_pipes), sorted(iso_nodes), sorted(cut_pipes), sorted(cut_nodes),
                         sources_left=sorted(live))

    def _arrays(self) -> tuple[list[str], dict[str, int], list[str], np.ndarray, np.ndarray]:
        """(nodes, node index, pipe codes, start and end node index of each pipe), made once per graph."""
        cached = self.__dict__.get("_arrays_cache")
        if cached is None or cached[0] is not self.graph:
            nodes = list(self.graph.nodes)
            index = {n: i for i, n in enumerate(nodes)}
            codes = list(self.pipes)
            a = np.fromiter((index[self.pipes[c].start] for c in codes), dtype=np.int64, count=len(codes))
            b = np.fromiter((index[self.pipes[c].end] for c in codes), dtype=np.int64, count=len(codes))
            cached = (self.graph, (nodes, index, codes, a, b))
            self.__dict__["_arrays_cache"] = cached
        return cached[1]

    def _cut_off(self, blocked: set[str], live: list[str], iso_pipes: set[str]) -> tuple[set[str], set[str]]:
        """Nodes and pipes no longer connected to a live source once ``blocked`` nodes are shut
        (scipy's connected components of the pipes between open nodes: C speed)."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        nodes, index, codes, a, b = self._arrays()
        open_ = np.ones(len(nodes), dtype=bool)
        open_[[index[n] for n in blocked if n in index]] = False
        ok = open_[a] & open_[b]  # pipes between two open nodes
        pa, pb = a[ok], b[ok]
        adj = coo_matrix((np.ones(2 * len(pa), dtype=np.int8), (np.concatenate([pa, pb]), np.concatenate([pb, pa]))),
                         shape=(len(nodes), len(nodes)))
        _, labels = connected_components(adj, directed=False)
        fed = {labels[index[s]] for s in live}
        reach = open_ & np.isin(labels, list(fed)) if fed else np.zeros(len(nodes), dtype=bool)
        cut_nodes = {nodes[i] for i in np.flatnonzero(~reach & open_)}
        cut_pipes = {codes[i] for i in np.flatnonzero(~(reach[a] | reach[b])) if codes[i] not in iso_pipes}
        return cut_nodes, cut_pipes


def _source_distances(n: int, a: np.ndarray, b: np.ndarray, w: np.ndarray, sources: Sequence[int]) -> np.ndarray:
    """Shortest distance along the pipes (metres) from the nearest source to each of ``n`` nodes (inf where
    none reaches): pipes from node ``a[i]`` to ``b[i]`` of length ``w[i]`` (scipy's Dijkstra on a sparse
    matrix: the same answer as networkx's, at C speed)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((w, hi, lo))  # parallel pipes: keep the shortest (a sparse matrix would add them)
    lo, hi, w = lo[order], hi[order], w[order]
    first = np.ones(len(lo), dtype=bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    m = coo_matrix((w[first], (lo[first], hi[first])), shape=(n, n)).tocsr()
    return np.asarray(dijkstra(m, directed=False, indices=list(sources), min_only=True))


def _gravity_flow(p: Pipe) -> tuple[str, str, bool, bool]:
    """(from, to, reverse_graded, flat) of a gravity pipe, from its inverts."""
    si, ei = p.start_invert_m, p.end_invert_m
    if si is not None and ei is not None and ei > si:
        return p.end, p.start, True, False
    return p.start, p.end, False, si is not None and ei is not None and ei == si


def _cow_edges(g: nx.MultiGraph, edges: list[tuple[str, str, str, dict[str, float]]]) -> nx.MultiGraph:
    """A copy of the undirected multigraph ``g`` with the data of existing ``edges`` replaced, sharing
    everything else with ``g`` (only the adjacency of their end nodes is copied)."""
    h = g.__class__()
    h.graph = g.graph
    h._node = g._node
    adj = dict(g._adj)
    copied: set[str] = set()

    def own(n: str) -> dict:  # type: ignore[type-arg]
        if n not in copied:
            adj[n] = dict(g._adj[n])
            copied.add(n)
        return adj[n]

    for u, v, key, data in edges:
        kd = dict(own(u)[v])
        kd[key] = dict(data)
        own(u)[v] = kd
        own(v)[u] = kd
    h._adj = adj
    return h


def _cow_redirect(d: nx.MultiDiGraph, moved: list[tuple[str, str, str, str, str]]) -> nx.MultiDiGraph:
    """A copy of the directed multigraph ``d`` with each ``(key, old u, old v, new u, new v)`` edge turned,
    sharing everything else with ``d`` (only the adjacency of the nodes involved is copied)."""
    h = d.__class__()
    h.graph = d.graph
    h._node = d._node
    succ, pred = dict(d._succ), dict(d._pred)
    own_s: set[str] = set()
    own_p: set[str] = set()

    def s_(n: str) -> dict:  # type: ignore[type-arg]
        if n not in own_s:
            succ[n] = {v: dict(kd) for v, kd in d._succ[n].items()}
            for v, kd in succ[n].items():  # keep the one key dict per edge both sides share
                p_(v)[n] = kd
            own_s.add(n)
        return succ[n]

    def p_(n: str) -> dict:  # type: ignore[type-arg]
        if n not in own_p:
            pred[n] = dict(d._pred[n])
            own_p.add(n)
        return pred[n]

    for key, u0, v0, u1, v1 in moved:
        kd = s_(u0)[v0]
        del kd[key]
        if not kd:
            del succ[u0][v0]
            del p_(v0)[u0]
        out = s_(u1)
        kd = out.get(v1)
        if kd is None:
            kd = out[v1] = {}
            p_(v1)[u1] = kd
        kd[key] = {}
    h._succ = h._adj = succ
    h._pred = pred
    return h


@dataclass
class Isolation:
    burst_pipe: str
    valves_to_close: list[str]
    broken_valves: list[str]
    unknown_valves: list[str]
    isolated_pipes: list[str]
    isolated_nodes: list[str]
    cut_off_pipes: list[str]
    cut_off_nodes: list[str]
    sources_left: list[str]


def _xy(geoms: np.ndarray) -> np.ndarray:
    return shapely.get_coordinates(geoms) if len(geoms) else np.zeros((0, 2))


def build_networks(pipes: FeatureSet, nodes: FeatureSet, snap_m: float = 0.5) -> dict[str, UtilityNetwork]:
    """One oriented :class:`UtilityNetwork` per utility from pipeline and pipe-node rows (lon/lat)."""
    out: dict[str, UtilityNetwork] = {}
    n_util = np.array([p.get("utility") for p in nodes.properties], dtype=object)
    p_util = np.array([p.get("utility") for p in pipes.properties], dtype=object)
    for util in sorted(set(p_util.tolist())):
        pi = np.flatnonzero(p_util == util)
        ni = np.flatnonzero(n_util == util)
        out[util] = net = _build_one(util, pipes.take(pi), nodes.take(ni), snap_m)
        net.orient()
    return out


def _build_one(util: str, pipes: FeatureSet, nodes: FeatureSet, snap_m: float) -> UtilityNetwork:
    g = nx.MultiGraph()
    node_kind: dict[str, str] = {}
    node_id: dict[str, int | None] = {}
    node_xy: dict[str, tuple[float, float]] = {}
    nxy = _xy(nodes.geometries)
    for fid, props, (x, y) in zip(nodes.ids, nodes.properties, nxy, strict=True):
        code = props["code"]
        g.add_node(code)
        node_kind[code] = props.get("kind") or "junction"
        node_id[code] = fid
        node_xy[code] = (float(x), float(y))
    geoms = np.asarray(pipes.geometries, dtype=object)
    frame = frame_for(shapely.box(*shapely.total_bounds(geoms))) if len(geoms) else None
    tree = None
    codes = list(node_xy)
    if codes and frame is not None:
        pts = frame.to_metric(shapely.points(np.array([node_xy[c] for c in codes])))
        tree = shapely.STRtree(pts)
    lengths = shapely.length(frame.to_metric(geoms)) if frame is not None else np.zeros(0)
    findings: list[Finding] = []
    loose: list[tuple[str, shapely.Point]] = []  # new nodes made for ends with no node
    net_pipes: dict[str, Pipe] = {}
    edges: list[tuple[str, str, str, dict[str, float]]] = []
    # both ends of every pipe at once (a coordinate sequence per pipe in Python costs more than the build)
    first = shapely.get_coordinates(shapely.get_point(geoms, 0)) if len(geoms) else np.zeros((0, 2))
    last = shapely.get_coordinates(shapely.get_point(geoms, -1)) if len(geoms) else np.zeros((0, 2))
    for k, (fid, props) in enumerate(zip(pipes.ids, pipes.properties, strict=True)):
        code = props["code"]
        ends = []
        for which, key, coord in (("start", "start_node_code", first[k]), ("end", "end_node_code", last[k])):
            name = props.get(key)
            if name in node_kind:
                ends.append(name)
                continue
            assert frame is not None
            pt = frame.to_metric(shapely.Point(coord))
            found = None
            if tree is not None:
                idx, dist = tree.query_nearest(pt, return_distance=True, all_matches=False)
                if len(idx) and dist[0] <= snap_m:
                    found = codes[int(idx[0])]
            if found is None:
                found = next((c for c, q in loose if q.distance(pt) <= snap_m), None)
                if found is None:
                    found = f"~{code}:{which}"
                    loose.append((found, pt))
                    g.add_node(found)
                    node_kind[found] = "missing"
                    node_id[found] = None
                    node_xy[found] = (float(coord[0]), float(coord[1]))
                findings.append(Finding("missing_node", code, found,
                                        f"{which} node {name!r} of pipe {code} is not in the {util} nodes; "
                                        f"its end is joined at {found}"))
            else:
                findings.append(Finding("snapped_end", code, found,
                                        f"{which} node {name!r} of pipe {code} is not in the {util} nodes; "
                                        f"its end was snapped to {found} (within {snap_m:g} m)"))
            ends.append(found)
        length = float(lengths[k])
        edges.append((ends[0], ends[1], code, {"length": length}))
        net_pipes[code] = Pipe(fid, code, util, ends[0], ends[1], bool(props.get("gravity")),
                               float(props.get("diameter_mm") or 0), length,
                               props.get("start_invert_m"), props.get("end_invert_m"))
    g.add_edges_from(edges)
    sources = sorted(c for c, k in node_kind.items() if k in SOURCE_KINDS)
    bounds = shapely.bounds(geoms) if len(geoms) else np.zeros((0, 4))
    if len(net_pipes) != len(geoms):  # a code twice: the bounds would not follow the pipes' order
        bounds, frame = None, None
    return UtilityNetwork(util, g, net_pipes, node_kind, node_id, node_xy, sources, findings, frame=frame,
                          pipe_bounds=bounds)


def _band(value: float | None, edges: Sequence[float], unit: str) -> str:
    if value is None or not np.isfinite(value):
        return "unknown"
    lo = None
    for e in edges:
        if value < e:
            return f"<{e:g}{unit}" if lo is None else f"{lo:g}–{e:g}{unit}"
        lo = e
    return f"≥{edges[-1]:g}{unit}"


DIAMETER_BANDS_MM = (100, 200, 300, 500, 800, 1000)
DEPTH_BANDS_M = (0.7, 1.0, 1.5, 2.0, 3.0)
AGE_BANDS_Y = (5, 10, 20, 30)


def pipe_statistics(pipes: FeatureSet, as_of_year: int) -> dict[str, Any]:
    """Count and length (m, on the ground) of pipes by utility, material, diameter band, depth band
    (mean cover of the two ends) and age band (seed 002 §5.3.2: 管径分段、埋深分段、类型、材质统计)."""
    if not len(pipes):
        return {"total": {"count": 0, "length_m": 0.0}, "by_utility": {}, "by_material": {},
                "by_diameter": {}, "by_depth": {}, "by_age": {}}
    geoms = np.asarray(pipes.geometries, dtype=object)
    frame = frame_for(shapely.union_all(geoms).envelope)
    lengths = shapely.length(frame.to_metric(geoms))
    groups: dict[str, dict[str, list[float]]] = {k: {} for k in
                                                 ("by_utility", "by_material", "by_diameter", "by_depth", "by_age")}
    for props, length in zip(pipes.properties, lengths, strict=True):
        depths = [d for d in (props.get("start_depth_m"), props.get("end_depth_m")) if d is not None]
        year = props.get("year_laid")
        keys = {
            "by_utility": props.get("utility") or "unknown",
            "by_material": props.get("material") or "unknown",
            "by_diameter": _band(props.get("diameter_mm"), DIAMETER_BANDS_MM, " mm"),
            "by_depth": _band(float(np.mean(depths)) if depths else None, DEPTH_BANDS_M, " m"),
            "by_age": _band(as_of_year - year if year else None, AGE_BANDS_Y, " years"),
        }
        for g, key in keys.items():
            groups[g].setdefault(key, []).append(float(length))
    out: dict[str, Any] = {"total": {"count": len(lengths), "length_m": round(float(lengths.sum()), 2)}}
    for g, d in groups.items():
        out[g] = {k: {"count": len(v), "length_m": round(sum(v), 2)} for k, v in sorted(d.items())}
    return out


__all__ = ["Finding", "Isolation", "Pipe", "SOURCE_KINDS", "UtilityNetwork", "build_networks", "pipe_statistics"]
