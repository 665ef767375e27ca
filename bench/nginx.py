"""Issue 13: cached vector tiles through nginx, step by step, against nginx serving the same bytes.

    bash bench/run.sh nginx                 # or: .venv/bin/python bench/nginx.py
    .venv/bin/python bench/nginx.py --quick  # shorter runs while developing

On the 10x town (database ``twin_bench``, read only; built by ``bash bench/run.sh data``):

1. ``twin direct``: one twin worker (uvicorn, as ``twin serve``), wrk straight at it;
2. ``nginx, cache off → 1 twin``: the deploy/nginx files (twin-http.conf, twin-locations.conf,
   keep-alive upstream) with the tile cache turned off as twin-tile-cache.conf says: every tile
   request reaches the worker;
3. ``nginx, cache off → 2 twins``: a second worker process in the upstream; the two share the Redis
   tile tier;
4. ``shipped nginx → 1 twin`` and 5. ``shipped nginx → 2 twins``: the deploy/nginx files as shipped,
   the 1 s nginx tile cache on (twin-tile-cache.conf): twin sees one revalidation per tile per second;
6. ``nginx static``: the same nginx serving the very bytes twin answers (gzip MVT files, same
   headers) from disk: the ceiling of any server behind this nginx on this machine.

Every server gets the same set of the densest z16 building tiles, all cached (each worker has
answered each tile once before the runs), ``Accept-Encoding: gzip`` as browsers send it, and the
same wrk load (2 threads, 16 keep-alive connections); each scenario runs ``--runs`` times,
interleaved, and the median is reported. The goals are judged on the shipped configuration (5. vs
6., and 5. vs 4.); 2. and 3. show what the cache is worth. nginx runs ``worker_processes auto``
with a buffered access log, in its own prefix directory (never the system service); each nginx's
log gives the tile cache's verdicts (HIT, UPDATING, REVALIDATED …), so the table says how many
requests reached twin. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import harness as h  # noqa: E402
from data import DB_URL  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
NGINX_DIR = ROOT / "deploy" / "nginx"
GOAL_SHARE = 0.60  # cached tiles through nginx ≥ 60 % of nginx static
GOAL_TWO_VS_ONE = 0.95  # "two workers are not slower than one", with 5 % run-to-run noise allowed
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")


def densest_tiles(db_url: str, z: int, k: int) -> list[tuple[int, int, int]]:
    import psycopg

    sql = """
        WITH c AS (SELECT ST_X(p) lon, ST_Y(p) lat FROM (SELECT ST_PointOnSurface(geom) p FROM buildings) s)
        SELECT floor((lon + 180) / 360 * 2 ^ %(z)s)::int,
               floor((1 - ln(tan(radians(lat)) + 1 / cos(radians(lat))) / pi()) / 2 * 2 ^ %(z)s)::int
        FROM c GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT %(k)s"""
    with psycopg.connect(db_url) as conn:
        return [(z, x, y) for x, y in conn.execute(sql, {"z": z, "k": k}).fetchall()]


def building_count(db_url: str) -> int:
    import psycopg

    with psycopg.connect(db_url) as conn:
        return int(conn.execute("SELECT count(*) FROM buildings").fetchone()[0])  # type: ignore[index]


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        sys.exit("nginx is missing: apt-get install nginx (./run.sh test does it)")
    return found


def upstream_conf(ports: list[int]) -> str:
    """deploy/nginx/twin-upstream.conf with its two example servers replaced by ``ports`` (1 or 2)."""
    text = (NGINX_DIR / "twin-upstream.conf").read_text()
    if len(ports) == 1:
        text = "\n".join(ln for ln in text.splitlines() if "127.0.0.1:8002" not in ln) + "\n"
    for example, port in zip(("127.0.0.1:8001", "127.0.0.1:8002"), ports, strict=False):
        text = text.replace(example, f"127.0.0.1:{port}")
    return text


class Nginx:
    """nginx as a child process, its own prefix and config: ``upstreams`` (proxy) or ``static_root``.
    ``tile_cache``: the deploy/nginx files as shipped (the tile cache on), else with the cache turned
    off the way twin-tile-cache.conf says (the include line commented out)."""

    def __init__(self, name: str, *, upstreams: list[int] | None = None, static_root: Path | None = None,
                 tile_cache: bool = True, worker_processes: str = "auto"):
        self.name = name
        self.port = h.free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix=f"twin-bench-nginx-{name}-"))
        os.chmod(self.prefix, 0o755)
        conf = self.prefix / "conf"
        (self.prefix / "logs").mkdir(parents=True)
        conf.mkdir()
        shipped_conf(conf / "twin", self.prefix / "cache", tile_cache=tile_cache)
        if upstreams:
            site = (upstream_conf(upstreams) + f"server {{\n    listen 127.0.0.1:{self.port};\n    include twin/twin-locations.conf;\n}}\n")
        else:  # the same bytes and headers twin sends, from files
            site = (f"server {{\n    listen 127.0.0.1:{self.port};\n    root {static_root};\n"
                    "    open_file_cache max=10000 inactive=60s;\n"
                    "    location /tiles/ {\n        types { application/vnd.mapbox-vector-tile mvt; }\n"
                    "        add_header Content-Encoding gzip;\n        add_header Vary Accept-Encoding;\n"
                    "        add_header Cache-Control \"public, max-age=60\";\n    }\n}\n")
        p = self.prefix
        (conf / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"worker_processes {worker_processes};\npcre_jit on;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n    sendfile on;\n    tcp_nopush on;\n    include twin/twin-http.conf;\n"
            f"    access_log {p}/logs/access.log twin buffer=64k flush=1s;\n"
            + "".join(f"    {k}_temp_path {p}/tmp_{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + site + "}\n")
        self.cmd = [nginx_binary(), "-p", str(p), "-c", str(conf / "nginx.conf"), "-e", str(p / "logs/error.log")]
        self.proc: subprocess.Popen | None = None
        self.verdicts: dict[str, int] = {}

    def __enter__(self) -> Nginx:
        subprocess.run([*self.cmd, "-t", "-q"], check=True)
        self.proc = subprocess.Popen([*self.cmd, "-g", "daemon off;"])
        deadline = time.monotonic() + 20
        while True:
            try:
                h.http_get(self.port, "/", timeout=2)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx {self.name} did not start") from None
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.verdicts = cache_verdicts(self.prefix / "logs" / "access.log")
        shutil.rmtree(self.prefix, ignore_errors=True)


def shipped_conf(dest: Path, cache_dir: Path, *, tile_cache: bool) -> None:
    """deploy/nginx/ copied to ``dest`` with its cache directory moved to ``cache_dir``; with
    ``tile_cache=False`` the /tiles/ location's include of twin-tile-cache.conf commented out."""
    shutil.copytree(NGINX_DIR, dest)
    http, loc = dest / "twin-http.conf", dest / "twin-locations.conf"
    assert "proxy_cache_path /var/cache/nginx/twin-tiles " in http.read_text()
    http.write_text(http.read_text().replace("proxy_cache_path /var/cache/nginx/twin-tiles ", f"proxy_cache_path {cache_dir} "))
    if not tile_cache:
        assert "    include twin/twin-tile-cache.conf;" in loc.read_text()
        loc.write_text(loc.read_text().replace("    include twin/twin-tile-cache.conf;", "    # include twin/twin-tile-cache.conf;"))


def cache_verdicts(log: Path) -> dict[str, int]:
    """How many requests of an nginx access log (log_format twin) got each tile cache verdict (cs=)."""
    out: dict[str, int] = {}
    try:
        with log.open() as f:
            for line in f:
                i = line.rfind(" cs=")
                if i >= 0:
                    v = line[i + 4:].strip()
                    out[v] = out.get(v, 0) + 1
    except OSError:
        pass
    return out


def get_gzip(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    import http.client

    conn = http.client.HTTPConnection(h.HOST, port, timeout=120)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def wrk(port: int, paths: list[str], *, threads: int, connections: int, seconds: float) -> h.LoadResult:
    """wrk over ``paths`` in turn (``Accept-Encoding: gzip``), as harness.wrk but with ``threads``."""
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "paths.lua"
        lua.write_text(h._WRK_LUA)
        plist = Path(tmp) / "paths.txt"
        plist.write_text("\n".join(paths) + "\n")
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout=10s",
               "-s", str(lua), f"http://{h.HOST}:{port}{paths[0]}"]
        env = {**os.environ, "BENCH_PATHS": str(plist), "BENCH_AE": "gzip"}
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    # one BENCHJSON line per thread would double-count: wrk calls done() once, in the main thread
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    d = json.loads(line[len("BENCHJSON "):])
    secs, n = d["duration_us"] / 1e6, d["requests"]
    return h.LoadResult(rps=n / secs if secs else 0.0, requests=n, duration_s=secs,
                        bytes_per_req=d["bytes"] / n if n else 0.0, p50_ms=d["p50_us"] / 1000,
                        p95_ms=d["p95_us"] / 1000, p99_ms=d["p99_us"] / 1000,
                        errors=d["connect"] + d["read"] + d["write"] + d["timeout"], non2xx=d["status"], tool="wrk")


def bench(args: argparse.Namespace) -> dict[str, Any]:
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: bash bench/setup.sh installs it")
    n_buildings = building_count(args.db)
    if n_buildings == 0:
        sys.exit(f"no buildings in {args.db}: build the town first (bash bench/run.sh data)")
    tiles = densest_tiles(args.db, 16, args.tiles)
    paths = [f"/tiles/buildings/{z}/{x}/{y}.mvt" for z, x, y in tiles]
    run_id = uuid.uuid4().hex[:8]
    env = {"TWIN_REDIS_URL": REDIS_URL, "TWIN_TILE_REDIS_PREFIX": f"twin:bench-nginx:{run_id}:",
           "TWIN_TRUSTED_PROXIES": "127.0.0.1/32", "TWIN_STATEMENT_TIMEOUT_MS": "120000"}
    static_root = Path(tempfile.mkdtemp(prefix="twin-bench-static-"))
    os.chmod(static_root, 0o755)
    res: dict[str, Any] = {"tiles": len(paths), "buildings": n_buildings, "runs": {}}
    try:
        with h.twin_server(args.db, "twin-a", env) as a, h.twin_server(args.db, "twin-b", env) as b:
            t0 = time.monotonic()
            sizes = []
            for pth in paths:  # worker a renders each tile (memory + Redis); b takes it from Redis
                st, hdr, body = get_gzip(a.port, pth)
                if st == 200:
                    assert hdr.get("content-encoding") == "gzip", hdr
                    f = static_root / pth.lstrip("/")
                    f.parent.mkdir(parents=True, exist_ok=True)
                    f.write_bytes(body)
                    sizes.append(len(body))
                get_gzip(b.port, pth)
            paths = [p for p in paths if (static_root / p.lstrip("/")).exists()]  # 204 (empty) tiles have no file
            for d in static_root.rglob("*"):
                os.chmod(d, 0o755 if d.is_dir() else 0o644)
            res["warm_s"] = round(time.monotonic() - t0, 1)
            res["mean_kb"] = round(sum(sizes) / len(sizes) / 1024, 1)
            print(f"nginx bench: {len(paths)} z16 tiles cached ({res['mean_kb']} KB gzip mean), warm-up {res['warm_s']} s")
            fronts = {
                OFF_1: Nginx("off1", upstreams=[a.port], tile_cache=False, worker_processes=args.nginx_workers),
                OFF_2: Nginx("off2", upstreams=[a.port, b.port], tile_cache=False, worker_processes=args.nginx_workers),
                SHIPPED_1: Nginx("shipped1", upstreams=[a.port], worker_processes=args.nginx_workers),
                SHIPPED_2: Nginx("shipped2", upstreams=[a.port, b.port], worker_processes=args.nginx_workers),
                STATIC: Nginx("static", static_root=static_root, worker_processes=args.nginx_workers),
            }
            with contextlib.ExitStack() as stack:
                scenarios = {DIRECT: a.port} | {name: stack.enter_context(n).port for name, n in fronts.items()}
                for port in scenarios.values():  # the same bytes everywhere, and warm connections
                    assert get_gzip(port, paths[0])[2] == (static_root / paths[0].lstrip("/")).read_bytes()
                    wrk(port, paths, threads=args.threads, connections=args.connections, seconds=1)
                for i in range(args.runs):
                    for name, port in scenarios.items():
                        r = wrk(port, paths, threads=args.threads, connections=args.connections, seconds=args.seconds)
                        res["runs"].setdefault(name, []).append(r.row())
                        print(f"  run {i + 1} {name}: {r.rps:,.0f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms"
                              f", non2xx {r.non2xx}, errors {r.errors}")
            res["cache_verdicts"] = {name: fronts[name].verdicts for name in (SHIPPED_1, SHIPPED_2)}
    finally:
        shutil.rmtree(static_root, ignore_errors=True)
    res["median"] = {name: {k: statistics.median(run[k] for run in runs) for k in ("rps", "p50_ms", "p99_ms")}
                     | {"non2xx": sum(run["non2xx"] for run in runs), "errors": sum(run["errors"] for run in runs)}
                     for name, runs in res["runs"].items()}
    return res


DIRECT = "twin direct"
OFF_1, OFF_2 = "nginx, cache off → 1 twin", "nginx, cache off → 2 twins"
SHIPPED_1, SHIPPED_2 = "shipped nginx → 1 twin", "shipped nginx → 2 twins"
STATIC = "nginx static"
#: each row and the row its step is measured against, with what the step is
STEPS = [(DIRECT, None, ""), (OFF_1, DIRECT, "nginx in front"), (OFF_2, OFF_1, "a second worker"),
         (SHIPPED_1, OFF_1, "the tile cache"), (SHIPPED_2, SHIPPED_1, "a second worker"),
         (STATIC, SHIPPED_2, "static files")]


def to_twin(verdicts: dict[str, int]) -> float:
    """Share of the requests of a cached nginx that reached twin (all but HIT and UPDATING: STALE
    ones started a background refresh, MISS/EXPIRED/REVALIDATED waited for twin)."""
    n = sum(verdicts.values())
    return (n - verdicts.get("HIT", 0) - verdicts.get("UPDATING", 0)) / n if n else 0.0


def report(res: dict[str, Any], meta: dict[str, Any], args: argparse.Namespace) -> str:
    med = res["median"]
    static = med[STATIC]["rps"]
    share = med[SHIPPED_2]["rps"] / static if static else 0.0
    share_1 = med[SHIPPED_1]["rps"] / static if static else 0.0
    two_vs_one = med[SHIPPED_2]["rps"] / med[SHIPPED_1]["rps"]
    off_two_vs_one = med[OFF_2]["rps"] / med[OFF_1]["rps"]
    rows = []
    for name, base, what in STEPS:
        m = med[name]
        step = f"{m['rps'] / med[base]['rps']:.2f}× ({what})" if base else "–"
        rows.append([name, m["rps"], m["p50_ms"], m["p99_ms"], f"{m['rps'] / static:.0%}", step,
                     f"{m['non2xx']}/{m['errors']}"])
    verdicts = res.get("cache_verdicts", {})
    reached = ", ".join(f"{name}: {to_twin(v):.3%} of {sum(v.values()):,} requests "
                        f"({', '.join(f'{k} {n:,}' for k, n in sorted(v.items(), key=lambda kv: -kv[1]))})"
                        for name, v in verdicts.items())
    m = h.machine_info()
    note = " (busy machine: direction only)" if _busy(meta, m) else ""
    return "\n".join([
        "## Many hosts: cached tiles through nginx (issue 13)",
        "",
        f"`{meta['command']}` — {meta['date']}, commit {meta['commit']}, {m.get('cpu', '?')}, "
        f"{m.get('nproc', '?')} cores; load average before the run {meta['load_before']}. "
        f"{res['tiles']} densest z16 building tiles of the {res['buildings']:,}-building town, all cached, "
        f"{res['mean_kb']} KB gzip on average, `Accept-Encoding: gzip`; wrk -t{args.threads} "
        f"-c{args.connections}, {args.seconds:g} s per run, median of {args.runs} interleaved runs. nginx "
        f"(Debian 1.22, `worker_processes {args.nginx_workers}` and `pcre_jit on` as the shipped nginx.conf, buffered access log) runs the deploy/nginx files: "
        "*shipped* as they are (the 1 s nginx tile cache on, twin-tile-cache.conf), *cache off* with that "
        "file's include commented out; the static case serves the same gzip bytes from files with the same "
        "headers. Everything — wrk, nginx, the twin workers, Redis — shares the machine's cores.",
        "",
        h.md_table(["scenario", "req/s", "p50 ms", "p99 ms", "of static", "step", "non2xx/errors"], rows),
        "",
        *(["**Busy machine** (load average above the core count before the run): the figures are noisy "
           "(direction only); re-run on a quiet machine for the record.", ""] if _busy(meta, m) else []),
        f"- Through the shipped nginx, cached tiles reach **{share:.0%}** of nginx static with two workers "
        f"({share_1:.0%} with one; goal ≥ {GOAL_SHARE:.0%}): **{h.verdict(share >= GOAL_SHARE)}**{note}. "
        f"With the tile cache off, {med[OFF_2]['rps'] / static:.0%} (two workers) and "
        f"{med[OFF_1]['rps'] / static:.0%} (one).",
        f"- Two workers vs one behind the shipped nginx: **{two_vs_one:.2f}×** (goal: not slower, "
        f"≥ {GOAL_TWO_VS_ONE}): **{h.verdict(two_vs_one >= GOAL_TWO_VS_ONE)}**{note}. With the cache off: "
        f"{off_two_vs_one:.2f}× (below).",
        f"- Requests that reached twin through the cache: {reached or 'not recorded'}.",
        f"- Steps: nginx in front of one worker {_change(med[OFF_1]['rps'], med[DIRECT]['rps'])}; a second "
        f"worker with the cache off {_change(med[OFF_2]['rps'], med[OFF_1]['rps'])}; the tile cache "
        f"{_change(med[SHIPPED_1]['rps'], med[OFF_1]['rps'])} (one worker) and "
        f"{_change(med[SHIPPED_2]['rps'], med[OFF_2]['rps'])} (two); a second worker behind the cache "
        f"{_change(med[SHIPPED_2]['rps'], med[SHIPPED_1]['rps'])}. A cached tile takes one twin worker "
        f"~{1000 / max(med[DIRECT]['rps'], 1):.3f} ms at saturation, nginx "
        f"~{1000 / max(static, 1):.3f} ms per file.",
        f"- A second worker with the cache off: {off_two_vs_one:.2f}× here. On this 2-core machine wrk's two "
        "threads and nginx's workers already take about a core, so a second Python process adds little or no "
        "CPU, only a second event loop waking for half the requests (fewer requests per wake-up, more context "
        "switches); a quiet run (2026-11-23) had it at 0.66×, a busy machine can put it above 1× (two processes "
        "get a bigger share of contended cores). In the config, the upstream is already HTTP/1.1 keep-alive "
        "(`keepalive 64`, empty `Connection`); `worker_processes 1` instead of `auto` made no clear difference on "
        "a busy machine (direction only); `--nginx-workers 1` and `--threads 1` are there to check it on a quiet "
        "one. What removes it is the tile cache: twin then answers only revalidations (the "
        "304s come from its cached-tile front, and one re-read of the layer versions serves a whole burst), so "
        "the number of workers no longer matters for cached tiles.",
        "- A read replica is not a step here: cached tiles never reach the database "
        "(replicas: docs/operations.md, \"Read replicas\").",
    ])


def _busy(meta: dict[str, Any], machine: dict[str, str]) -> bool:
    try:
        return float(meta["load_before"].split()[0]) > float(machine["nproc"])
    except (KeyError, ValueError, IndexError):
        return False


def _change(new: float, old: float) -> str:
    return f"{new / old:.2f}× ({new - old:+,.0f} req/s)" if old else "–"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=DB_URL, help="the town (read only); default the 10x bench town")
    ap.add_argument("--tiles", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--nginx-workers", default="auto", help="nginx worker_processes (the shipped nginx.conf: auto)")
    ap.add_argument("--quick", action="store_true", help="3 s runs, one round")
    ap.add_argument("--no-doc", action="store_true", help="print, do not rewrite docs/benchmarks.md")
    ap.add_argument("--report", type=Path, help="rewrite the section from a saved bench/results/nginx-*.json")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.runs = 3.0, 1
    if args.report:
        res = json.loads(args.report.read_text())
        args.seconds, args.runs = res["args"]["seconds"], res["args"]["runs"]
        args.threads, args.connections = res["args"]["threads"], res["args"]["connections"]
        args.nginx_workers = res["args"].get("nginx_workers", "auto")
        body = report(res, res["meta"], args)
        print(body)
        if not args.no_doc:
            h.write_section(DOC, "nginx", body)
        return
    data = {"version": "twin_bench" if args.db == DB_URL else args.db.rsplit("/", 1)[-1],
            "buildings": building_count(args.db)}
    meta = h.run_meta("nginx", data, args.quick)
    res = bench(args)
    res["meta"] = meta
    res["args"] = {k: getattr(args, k) for k in ("seconds", "runs", "threads", "connections", "tiles", "nginx_workers")}
    path = h.save_json("nginx", res)
    body = report(res, meta, args)
    print(body)
    print(f"results: {path}")
    if not args.no_doc:
        h.write_section(DOC, "nginx", body)


if __name__ == "__main__":
    main()
