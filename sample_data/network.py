"""Small graph helpers for the pipe networks: noding, components, subdivision, Dijkstra."""

from __future__ import annotations

import heapq

import numpy as np
import shapely
import shapely.ops


def node_lines(lines: list) -> list:
    """Split lines at every intersection; drop stubs shorter than 3 m that dangle."""
    parts = [p for p in shapely.get_parts(shapely.union_all(np.asarray(lines, dtype=object)))
             if p.geom_type == "LineString" and p.length > 0.01]
    ends = np.array([[*p.coords[0], *p.coords[-1]] for p in parts])
    keys = np.round(ends.reshape(-1, 2), 3)
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    deg = counts[inv.ravel()].reshape(-1, 2)
    return [p for p, d in zip(parts, deg, strict=True) if not (p.length < 3.0 and (d == 1).any())]


def endpoints_graph(lines: list) -> tuple[np.ndarray, np.ndarray]:
    """(edges (n, 2) node ids, node xy) for lines whose endpoints are shared exactly (rounded to mm)."""
    ends = np.array([[*ln.coords[0], *ln.coords[-1]] for ln in lines]).reshape(-1, 2)
    keys = np.round(ends, 3)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    edges = inv.ravel().reshape(-1, 2)
    return edges, uniq


def components(n_nodes: int, edges: np.ndarray) -> np.ndarray:
    parent = np.arange(n_nodes)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in edges.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n_nodes)])


def dijkstra(n: int, edges: np.ndarray, lengths: np.ndarray, sources: list[int]) -> np.ndarray:
    adj: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for (a, b), w in zip(edges.tolist(), lengths.tolist(), strict=True):
        adj[a].append((b, w))
        adj[b].append((a, w))
    dist = np.full(n, np.inf)
    heap = []
    for s in sources:
        dist[s] = 0.0
        heap.append((0.0, s))
    heapq.heapify(heap)
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist[u]:
            continue
        for v, w in adj[u]:
            nd = d + w
            if nd < dist[v]:
                dist[v] = nd
                heapq.heappush(heap, (nd, v))
    return dist


def split_line(line, n: int):
    """Cut ``line`` into ``n`` equal pieces; returns (cut points (n+1, 2), list of coordinate arrays)."""
    L = line.length
    ds = np.linspace(0, L, n + 1)
    pts = shapely.get_coordinates(shapely.line_interpolate_point(line, ds))
    pts[0] = line.coords[0]
    pts[-1] = line.coords[-1]
    coords = np.asarray(line.coords)
    if len(coords) == 2:
        return pts, [np.array([pts[k], pts[k + 1]]) for k in range(n)]
    out = []
    for k in range(n):
        c = np.asarray(shapely.ops.substring(line, ds[k], ds[k + 1]).coords)
        c[0], c[-1] = pts[k], pts[k + 1]
        out.append(c)
    return pts, out
