"""Profile twin's per-request overhead in-process: call the ASGI app directly, no sockets.

    .venv/bin/python bench/profile_asgi.py /tiles/buildings/16/54777/26676.mvt [-n 3000] [--bare]
    .venv/bin/python bench/profile_asgi.py '/raster/dem/14/13694/6669.png?rescale=1,6&colormap=terrain'

Warms the path once (so a cached tile is cached), times ``n`` calls (µs/request) and
prints the top functions of a cProfile run. ``--no-middleware`` strips the app's
middleware stack to show what it costs. Uses the benchmark database and rasters.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def make_scope(path: str) -> dict:
    p, _, q = path.partition("?")
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": p, "raw_path": p.encode(), "query_string": q.encode(), "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"accept-encoding", b"identity")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }


async def call(app, path: str) -> tuple[int, int]:  # noqa: ANN001
    status, size = 0, 0

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg: dict) -> None:
        nonlocal status, size
        if msg["type"] == "http.response.start":
            status = msg["status"]
        elif msg["type"] == "http.response.body":
            size += len(msg.get("body", b""))

    await app(make_scope(path), receive, send)
    return status, size


async def run(app, path: str, n: int) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    for _ in range(n):
        await call(app, path)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--no-middleware", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--app", help="module:attr of another ASGI app to profile instead (e.g. bare_starlette:app)")
    args = ap.parse_args()
    os.environ.setdefault("TWIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/twin_bench")
    os.environ.setdefault("TWIN_HOME", str(BENCH / "results"))
    if args.app:
        import importlib

        sys.path.insert(0, str(BENCH))
        mod, _, attr = args.app.partition(":")
        app = getattr(importlib.import_module(mod), attr)
    else:
        from gis_api.app import create_app

        app = create_app()
    if args.no_middleware:
        app.user_middleware = []
        app.middleware_stack = None
    app.middleware_stack = app.middleware_stack or app.build_middleware_stack()

    async def go() -> None:
        status, size = await call(app, args.path)
        print(f"warm-up: HTTP {status}, {size} bytes")
        us = await run(app, args.path, args.n)
        print(f"{args.n} calls: {us:.1f} µs/request ({1e6 / us:,.0f}/s ceiling for one core, no HTTP parsing)")
        if args.top <= 0:
            return
        prof = cProfile.Profile()
        prof.enable()
        await run(app, args.path, args.n)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)

    asyncio.run(go())


if __name__ == "__main__":
    main()
