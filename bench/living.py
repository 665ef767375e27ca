"""Issue 11: tiles in a living town — cache hit ratio and p95 while events and buildings change.

    bash bench/run.sh living                  # the 10× town in PostGIS (bench/data.py)
    .venv/bin/python bench/living.py --quick  # short run
    BENCH_DATABASE_URL=postgresql://…/other .venv/bin/python bench/living.py --skip-data --seconds 20

Two twin servers (one uvicorn worker each) on the same database, in the same run, one after the
other with the same stream (``--together``: both at once, as in earlier runs, where the server that
renders every tile on demand took the CPU the other one was measured on):

* ``layer``: ``TWIN_TILE_INVALIDATION=layer`` — the layer-version keys of before (an edit
  anywhere changes every tile of the layer, and the style's one composite source held every
  layer);
* ``extent``: the change-log keys (an edit changes only the tiles it touches) with the warm
  pyramid on (``TWIN_TILE_WARM=true``), as ``twin demo`` runs.

Both get the same viewer-like stream: ``--clients`` threads, each a big screen looking at a
random place of the town at z12–z17, fetching every tile of a 1920×1080 viewport (512-px
tiles, as MapLibre does for vector sources) of both style sources — past a source's TileJSON
``maxzoom`` (16) the z16 tiles under the view, as MapLibre overzooms — then panning by one tile
or zooming by one level; each server has its own clients on the same paths (same seeds), so
neither server's pace sets the other's (``--paired``: each request goes to both servers, in
random order, as before). Meanwhile a
writer changes the status of a random event 5 times a second and the height of a random
building once a second, by plain SQL on its own connection (as another program would).

Hit ratio = tile requests answered from the cache over all tile requests, counted by the servers
(``twin_tile_cache_lookups_total``: ``hit`` = the current version from memory or Redis, ``stale`` =
the previous version of a tile an edit touched, sent within ``TWIN_TILE_STALE_S`` of the edit
while the new one renders, ``miss`` = rendered while the client waited). Renders with no client
waiting (the warmer, stale refreshes) are not lookups and are counted apart
(``twin_tile_background_renders_total``). The stale share is reported beside the hit ratio.
p95 = client latency of the tile requests. The ``layer`` server is the scheme of before: layer
versions, the single composite source (every layer in one tile), no warm pyramid, no stale
answers; the ``extent`` server runs today's defaults and style (two sources) with the warmer on.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import os
import random
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(BENCH), str(ROOT)):  # ROOT first: bench/tiles.py must not shadow the tiles package
    while p in sys.path:
        sys.path.remove(p)
    sys.path.insert(0, p)

import harness as h  # noqa: E402
from data import DB_URL, build_blocks, ensure_data  # noqa: E402
from features import DOC  # noqa: E402

from tiles.style import source_layers  # noqa: E402
from twin.catalog import LAYERS  # noqa: E402

VIEW_W, VIEW_H, TILE_PX = 1920, 1080, 512


def twin_server(name: str, db_url: str, env: dict[str, str]) -> h.Server:
    home = Path(tempfile.mkdtemp(prefix=f"twin-living-{name}-"))
    return h.Server(
        name=f"living-{name}",
        cmd=[sys.executable, "-m", "uvicorn", "--factory", "gis_api.app:create_app", "--host", h.HOST,
             "--port", "{port}", "--workers", "1", "--no-access-log", "--log-level", "warning"],
        env={"TWIN_DATABASE_URL": db_url, "TWIN_HOME": str(home), "PYTHONPATH": str(ROOT), **env},
        ready_path="/conformance",
    )


def town_extent(db_url: str) -> tuple[float, float, float, float]:
    import psycopg

    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                           "FROM (SELECT ST_Extent(geom) e FROM buildings) s").fetchone()
    assert row and row[0] is not None, "no buildings in the benchmark database"
    return row


def tile_xy(lon: float, lat: float, z: int) -> tuple[float, float]:
    n = 1 << z
    return (lon + 180) / 360 * n, (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n


def viewport(lon: float, lat: float, z: int, maxzoom: int = 22) -> list[tuple[int, int, int]]:
    """The tiles MapLibre fetches for a 1920×1080 view at zoom ``z`` (vector tiles are 512 px there):
    past the source's TileJSON ``maxzoom`` it overzooms, fetching the ``maxzoom`` tiles under the view."""
    tz = min(z, maxzoom)
    cx, cy = tile_xy(lon, lat, tz)
    px = TILE_PX * (1 << (z - tz))  # screen pixels of one tile at the view's zoom
    half_w, half_h = VIEW_W / px / 2, VIEW_H / px / 2
    n = 1 << tz
    return [(tz, x, y) for x in range(int(cx - half_w), int(cx + half_w) + 1)
            for y in range(int(cy - half_h), int(cy + half_h) + 1) if 0 <= x < n and 0 <= y < n]


class Writer(threading.Thread):
    """Events change status 5/s and buildings height 1/s, by SQL on its own connection."""

    def __init__(self, db_url: str, events_per_s: float, buildings_per_s: float):
        super().__init__(daemon=True)
        self.db_url, self.eps, self.bps = db_url, events_per_s, buildings_per_s
        self.stop = threading.Event()
        self.events = self.buildings = 0

    def run(self) -> None:
        import psycopg

        rng = random.Random(11)
        statuses = ["reported", "verified", "dispatched", "handled", "closed"]
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            ev = [r[0] for r in conn.execute("SELECT id FROM events").fetchall()]
            bd = [r[0] for r in conn.execute("SELECT id FROM buildings").fetchall()]
            started = time.monotonic()
            while not self.stop.is_set():
                now = time.monotonic() - started
                if ev and self.events < now * self.eps:
                    conn.execute("UPDATE events SET status = %s WHERE id = %s", (rng.choice(statuses), rng.choice(ev)))
                    self.events += 1
                elif bd and self.buildings < now * self.bps:
                    conn.execute("UPDATE buildings SET height_m = height_m + 0.5 WHERE id = %s", (rng.choice(bd),))
                    self.buildings += 1
                else:
                    self.stop.wait(0.01)


def scrape(port: int) -> dict[str, float]:
    """The tile cache and warmer counters from ``/metrics``."""
    _, _, body = h.http_get(port, "/metrics")
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        m = re.match(r'(twin_tile_cache_lookups_total|twin_tile_warm_renders_total|twin_tile_background_renders_total)'
                     r'\{[a-z]+="([a-z]+)"\} ([0-9.e+]+)', line)
        if m:
            out[f"{m.group(1)}:{m.group(2)}"] = float(m.group(3))
        elif (g := re.match(r'twin_gc_pause_seconds_(sum|count)\{generation="([0-9])"\} ([0-9.e+]+)', line)):
            out[f"gc_{g.group(1)}:gen{g.group(2)}"] = float(g.group(3))
        elif (w := re.match(r'twin_tile_warm_seconds_total\{reason="([a-z]+)",source="([a-z-]+)",zoom="([0-9]+)"\} ([0-9.e+]+)',
                                line)):
            out[f"warm_s:{w.group(1)}:{w.group(2)}:z{w.group(3)}"] = float(w.group(4))
        elif (mz := re.match(r'twin_tile_misses_total\{zoom="([0-9]+)"\} ([0-9.e+]+)', line)):
            out[f"miss_z:z{mz.group(1)}"] = float(mz.group(2))
        elif line.startswith(("twin_tile_warm_walk_done_ratio ", "twin_tile_warm_dropped_total ",
                              "twin_tile_warm_pending ")):
            name, value = line.split()[:2]
            out[name] = float(value)
    return out


def client(ports: dict[str, int], sources: dict[str, dict[str, tuple[str, int]]],
           extent: tuple[float, float, float, float], until: float, seed: int, lat_out: dict[str, list[float]],
           errors: list[str]) -> None:
    rng = random.Random(seed)
    conns = {name: http.client.HTTPConnection(h.HOST, port, timeout=60) for name, port in ports.items()}
    lon = rng.uniform(extent[0], extent[2])
    lat = rng.uniform(extent[1], extent[3])
    z = rng.randint(12, 17)
    try:
        while time.monotonic() < until:
            # every source of the style, each at its own zooms (overzoomed past its maxzoom), as MapLibre
            wanted = [(name, layers, t) for name in ports for layers, maxzoom in sources[name].values()
                      for t in viewport(lon, lat, z, maxzoom)]
            if len(ports) > 1:  # paired: each tile to both servers, in random order
                wanted.sort(key=lambda w: (w[2], rng.random()))
            for name, layers, t in wanted:
                path = f"/tiles/{layers}/{t[0]}/{t[1]}/{t[2]}.mvt"
                t0 = time.perf_counter()
                try:
                    try:
                        conns[name].request("GET", path, headers={"Accept-Encoding": "br, gzip"})
                        r = conns[name].getresponse()
                    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                        # the server closed the idle keep-alive connection (uvicorn: after 5 s, e.g.
                        # while this client waited on the other server); browsers retry on a new one
                        conns[name].close()
                        conns[name] = http.client.HTTPConnection(h.HOST, ports[name], timeout=60)
                        t0 = time.perf_counter()
                        conns[name].request("GET", path, headers={"Accept-Encoding": "br, gzip"})
                        r = conns[name].getresponse()
                    r.read()
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f"{name}: {exc!r}")
                    conns[name].close()
                    conns[name] = http.client.HTTPConnection(h.HOST, ports[name], timeout=60)
                    continue
                lat_out[name].append(time.perf_counter() - t0)
                lat_out[f"{name}:z{t[0]}"].append(lat_out[name][-1])
                if r.status >= 400:
                    errors.append(f"{name}: {r.status} {path}")
            # pan by one 512-px tile, or zoom by one level, as a screen operator would
            step = 360 / (1 << z)
            move = rng.random()
            if move < 0.7:
                lon += rng.choice((-1, 1)) * step * 0.5
                lat += rng.choice((-1, 1)) * step * 0.3
            else:
                z = min(17, max(12, z + rng.choice((-1, 1))))
            lon = min(max(lon, extent[0]), extent[2])
            lat = min(max(lat, extent[1]), extent[3])
    finally:
        for c in conns.values():
            c.close()


def source_zooms(port: int, layers: str) -> int:
    """The TileJSON ``maxzoom`` the server advertises for a source (MapLibre overzooms past it)."""
    import json

    _, _, body = h.http_get(port, f"/tiles/{layers}/tilejson.json")
    return int(json.loads(body)["maxzoom"])


def wait_for_walk(port: int, wait_s: float) -> tuple[float, bool]:
    """Wait (at most ``wait_s``) for the warmer's first walk of the pyramid, as after a demo start."""
    deadline = time.monotonic() + wait_s
    started = time.monotonic()
    m: dict[str, float] = {}
    while time.monotonic() < deadline:
        time.sleep(2)
        m = scrape(port)
        if m.get("twin_tile_warm_walk_done_ratio", 0.0) >= 1.0:
            break
    done = m.get("twin_tile_warm_walk_done_ratio", 0.0) >= 1.0
    print(f"  warm walk: {m.get('twin_tile_warm_renders_total:walk', 0.0):.0f} tiles rendered, "
          f"{100 * m.get('twin_tile_warm_walk_done_ratio', 0.0):.0f}% of the pyramid walked in "
          f"{time.monotonic() - started:.0f} s before the stream"
          + ("" if done else f" (NOT finished: --warm-wait {wait_s:.0f} s ran out; not a steady state)"))
    return round(time.monotonic() - started, 1), done


def stream(ports: dict[str, int], sources: dict[str, dict[str, tuple[str, int]]], extent: tuple[float, float, float, float],
           args: argparse.Namespace, db_url: str) -> tuple[dict[str, list[float]], list[str], dict[str, int], dict, dict]:
    """The viewer clients and the writer for ``args.seconds``; (latencies, errors, edits, metrics before, after)."""
    before = {name: scrape(port) for name, port in ports.items()}
    writer = Writer(db_url, args.events_per_s, args.buildings_per_s)
    writer.start()
    lat: dict[str, list[float]] = {name: [] for name in ports}
    lat.update({f"{name}:z{z}": [] for name in ports for z in range(12, 18)})
    errors: list[str] = []
    until = time.monotonic() + args.seconds
    # each server gets its own clients (same seeds: the same paths), so neither server's pace sets the
    # other's; --paired: one client sends each request to both servers, as before
    groups = [ports] if args.paired else [{name: port} for name, port in ports.items()]
    threads = [threading.Thread(target=client, args=(g, sources, extent, until, i, lat, errors))
               for g in groups for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.stop.set()
    writer.join(5)
    after = {name: scrape(port) for name, port in ports.items()}
    return lat, errors, {"events": writer.events, "buildings": writer.buildings}, before, after


def bench(args: argparse.Namespace) -> dict[str, Any]:
    db_url = args.db_url
    extent = town_extent(db_url)
    build_blocks(db_url)
    all_layers = ",".join(LAYERS)
    layer_sets = {"layer": {"twin": all_layers},
                  "extent": {name: ",".join(ids) for name, ids in source_layers().items() if ids}}
    # both memory tiers sized to hold the warm pyramid (docs/tiles.md: "Size TWIN_TILE_CACHE_MB … to
    # hold the pyramid"); with the default 256 MB the 10× town's coarse tiles were evicted by the
    # walk's later zooms before the stream began
    common = {"TWIN_TILE_VERSION_TTL_S": "1", "TWIN_TILE_CACHE_MB": str(args.cache_mb)}
    servers = {
        "layer": twin_server("layer", db_url, {**common, "TWIN_TILE_INVALIDATION": "layer", "TWIN_TILE_BLOCKS": "false",
                                                "TWIN_TILE_STALE_S": "0"}),
        "extent": twin_server("extent", db_url, {**common, "TWIN_TILE_INVALIDATION": "extent",
                                                  "TWIN_TILE_STALE_S": str(args.stale_s),
                                                  "TWIN_TILE_WARM": "false" if args.no_warm else "true",
                                                  "TWIN_TILE_WARM_ZOOMS": args.warm_zooms,
                                                  "TWIN_TILE_WARM_CPU_SHARE": str(args.warm_share)}),
    }
    out: dict[str, Any] = {"extent": extent, "clients": args.clients, "seconds": args.seconds, "cache_mb": args.cache_mb,
                           "stale_s": args.stale_s, "warm_zooms": args.warm_zooms,
                           "phases": "together" if args.together else "one after the other"}
    # by default the two servers take turns (same client seeds, same edit rates): on two cores a
    # server that renders every tile on demand would otherwise take the CPU the other one is measured
    # on; --together runs both at once, as before
    wanted = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = set(wanted) - set(servers)
    if unknown or not wanted:
        raise SystemExit(f"--servers: layer and/or extent, not {args.servers!r}")
    servers = {name: servers[name] for name in wanted}
    phases = [list(servers)] if args.together else [[name] for name in servers]
    lat: dict[str, list[float]] = {}
    errors: list[str] = []
    edits = {"events": 0, "buildings": 0}
    before: dict[str, dict[str, float]] = {}
    after: dict[str, dict[str, float]] = {}
    for phase in phases:
        with contextlib.ExitStack() as stack:
            ports = {name: stack.enter_context(servers[name]).port for name in phase}
            sources = {name: {src: (layers, source_zooms(ports[name], layers)) for src, layers in layer_sets[name].items()}
                       for name in phase}
            print(f"  phase {'+'.join(phase)}: source maxzooms "
                  + ", ".join(f"{n}:{s}={v[1]}" for n in phase for s, v in sources[n].items()), flush=True)
            if "extent" in ports and not args.no_warm:  # let the warmer's first walk finish (bounded)
                out["warm_walk_s"], out["warm_walk_finished"] = wait_for_walk(ports["extent"], args.warm_wait)
            pl, pe, pd, pb, pa = stream(ports, sources, extent, args, db_url)
            lat.update(pl)
            errors += pe
            before.update(pb)
            after.update(pa)
            out.setdefault("edits_by_phase", {})["+".join(phase)] = pd
            for k in edits:
                edits[k] = max(edits[k], pd[k])  # per phase (the same rates in each)
    for name in servers:
        d = {k: after[name].get(k, 0.0) - before[name].get(k, 0.0) for k in after[name]}
        warm = d.get("twin_tile_warm_renders_total:walk", 0.0) + d.get("twin_tile_warm_renders_total:edit", 0.0)
        refreshes = d.get("twin_tile_background_renders_total:stale", 0.0)
        dropped = d.get("twin_tile_warm_dropped_total", 0.0)  # touched, unrequested: render on demand
        fresh = d.get("twin_tile_cache_lookups_total:hit", 0.0)
        stale = d.get("twin_tile_cache_lookups_total:stale", 0.0)
        misses = d.get("twin_tile_cache_lookups_total:miss", 0.0)  # background renders are not lookups
        hits = fresh + stale
        q = h._quantiles(lat[name])
        pending = after[name].get("twin_tile_warm_pending", 0.0)  # re-renders still queued at the end
        out[name] = {"pending_at_end": pending, "requests": len(lat[name]), "lookups": hits + misses, "hit_ratio": hits / max(hits + misses, 1.0),
                     "stale_ratio": stale / max(hits + misses, 1.0), "hits": fresh, "stale": stale,
                     "misses": misses, "warm_renders": warm, "warm_dropped": dropped, "stale_refreshes": refreshes,
                     "p50_ms": q[50], "p95_ms": q[95], "p99_ms": q[99], "sources": layer_sets[name]}
        print(f"  {name:6s}: {len(lat[name])} tile requests ({hits + misses:.0f} counted by the server), hit ratio "
              f"{out[name]['hit_ratio']:.1%} (stale {out[name]['stale_ratio']:.1%}), p50 {q[50]:.1f} ms, "
              f"p95 {q[95]:.1f} ms, p99 {q[99]:.1f} ms, warm renders {warm:.0f} (dropped {dropped:.0f} unrequested), "
              f"stale refreshes {refreshes:.0f}, re-renders still queued at the end {pending:.0f}")
        slow = {f"z{z}": f"{sum(v > 0.02 for v in lat[f'{name}:z{z}'])}/{len(lat[f'{name}:z{z}'])}"
                for z in range(12, 18)}
        out[name]["over_20ms_by_zoom"] = slow
        print(f"          requests over 20 ms by zoom: {slow}")
        miss_z = {k.split(":", 1)[1]: int(v) for k, v in sorted(d.items()) if k.startswith("miss_z:") and v > 0}
        out[name]["misses_by_zoom"] = miss_z
        print(f"          misses (rendered while the client waited) by zoom: {miss_z}")
        gcs = {k.split(":", 1)[1]: (int(d.get(f"gc_count:{k.split(':', 1)[1]}", 0)), round(v, 3))
               for k, v in sorted(d.items()) if k.startswith("gc_sum:") and v > 0}
        if gcs:
            out[name]["gc_pauses"] = gcs
            print(f"          garbage collections during the stream (count, seconds) by generation: {gcs}")
        spent = {k.split(":", 1)[1]: round(v, 1) for k, v in sorted(d.items()) if k.startswith("warm_s:") and v > 0}
        if spent:
            out[name]["warm_seconds"] = spent
            print(f"          warmer render seconds during the stream by reason, source and zoom: {spent}")
    out["edits"] = edits
    out["errors"] = errors[:20]
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}")
    return out


def report(res: dict[str, Any], meta: dict[str, Any]) -> str:
    a, b = res["layer"], res["extent"]
    rows = [
        ["tile cache hit ratio", f"{a['hit_ratio']:.1%}", f"{b['hit_ratio']:.1%}", "≥ 95 %",
         h.verdict(b["hit_ratio"] >= 0.95)],
        ["tile p95 latency ms", f"{a['p95_ms']:.1f}", f"{b['p95_ms']:.1f}", "≤ 20 ms", h.verdict(b["p95_ms"] <= 20)],
        ["  of which stale (previous version while re-rendering)", f"{a.get('stale_ratio', 0):.1%}",
         f"{b.get('stale_ratio', 0):.1%}", f"≤ {res.get('stale_s', '?')} s old", ""],
        ["tile p50 latency ms", f"{a['p50_ms']:.1f}", f"{b['p50_ms']:.1f}", "", ""],
        ["tile requests", a["requests"], b["requests"], "", ""],
    ]
    return "\n".join([
        f"Run {meta['date']}, commit {meta['commit']}, load average before {meta['load_before']}; "
        f"{res['clients']} viewer clients for {res['seconds']} s over z12–z17 views (each source's tiles up to its "
        f"TileJSON maxzoom, overzoomed beyond, as MapLibre) per server, the servers "
        f"{res.get('phases', 'together')}, while about "
        f"{res['edits']['events']} event and {res['edits']['buildings']} building edits landed per phase "
        f"(`{meta['command']}`).",
        "",
        h.md_table(["measure", "layer versions (before)", "change log + warm (now)", "goal", ""], rows),
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run (20 s, 4 clients)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--events-per-s", type=float, default=5.0)
    ap.add_argument("--buildings-per-s", type=float, default=1.0)
    ap.add_argument("--warm-zooms", default="10-16")
    ap.add_argument("--cache-mb", type=int, default=1024, help="TWIN_TILE_CACHE_MB of both servers")
    ap.add_argument("--stale-s", type=float, default=5.0, help="TWIN_TILE_STALE_S of the extent server")
    ap.add_argument("--warm-share", type=float, default=0.25, help="TWIN_TILE_WARM_CPU_SHARE of the extent server")
    ap.add_argument("--warm-wait", type=float, default=600.0, help="longest wait for the first warm walk (s)")
    ap.add_argument("--no-warm", action="store_true")
    ap.add_argument("--together", action="store_true",
                    help="run both servers at once on the machine (default: one after the other, same stream)")
    ap.add_argument("--paired", action="store_true",
                    help="each client sends every request to both servers (the pace of the slower one)")
    ap.add_argument("--servers", default="layer,extent",
                    help="which servers to run: layer, extent or both (default; the report needs both)")
    ap.add_argument("--skip-data", action="store_true", help="use the database as it is (BENCH_DATABASE_URL)")
    ap.add_argument("--db-url", default=DB_URL)
    args = ap.parse_args()
    if args.paired:
        args.together = True
    if args.quick:
        args.seconds, args.clients = min(args.seconds, 20.0), min(args.clients, 4)
    if args.skip_data:
        import psycopg

        with psycopg.connect(args.db_url) as conn:
            n = conn.execute("SELECT count(*) FROM buildings").fetchone()[0]
        data = {"version": "as found", "buildings": n}
    else:
        data = ensure_data(url=args.db_url)
    meta = h.run_meta("living", data, args.quick)
    res = bench(args)
    res["meta"] = meta
    path = h.save_json("living", res)
    if "layer" not in res or "extent" not in res:  # one server only: its printed lines are the result
        print(f"saved {path} (one server: no report table)")
        return 0
    body = report(res, meta)
    print(body)
    if not args.skip_data:
        h.write_section(DOC, "living", body)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
