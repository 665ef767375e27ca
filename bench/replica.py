"""Issue 13 (read replicas): what reading from a streaming replica costs or gains.

    .venv/bin/python bench/replica.py            # needs the replica of ./run.sh test (port 5433)
    .venv/bin/python bench/replica.py --quick

One twin worker on the 10× town (``twin_bench``), first with the primary only, then with
``TWIN_DATABASE_READ_URLS`` naming the same database on the replica (port 5433; the replica
holds it because it is a copy of the whole test server). Both serve the same feature pages
(500 buildings per bbox, the features bench's bboxes): sequential p50/p95 and ``wrk -c4``
req/s. On one 2-core machine the replica shares the CPUs with the primary, so this measures
the routing's overhead, not the capacity a replica on its own host adds. The run also reads
``/metrics`` to show where the reads went. Nothing is written to the databases.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

import harness as h  # noqa: E402
from data import DB_URL, ensure_data  # noqa: E402
from features import pick_bboxes  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
REPLICA_URL = os.environ.get("BENCH_REPLICA_URL", DB_URL.replace(":5432/", ":5433/"))


def _metric(port: int, prefix: str) -> dict[str, float]:
    _, _, body = h.http_get(port, "/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line.startswith(prefix):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    bb = [",".join(f"{v:.6f}" for v in b) for b in pick_bboxes()]
    paths = [f"/collections/buildings/items?bbox={b}&limit=500" for b in bb]
    res: dict[str, Any] = {"bboxes": len(bb)}
    setups = {"primary only": {}, "with the replica": {"TWIN_DATABASE_READ_URLS": REPLICA_URL}}
    for name, env in setups.items():
        with h.twin_server(DB_URL, name="twin-" + name.split()[0], env=env) as srv:
            h.sample(srv.port, paths, n=min(40, args.n))  # warm-up
            s = h.sample(srv.port, paths, n=args.n)
            w = h.wrk(srv.port, paths, connections=4, duration=args.seconds)
            reads = _metric(srv.port, "twin_replica_reads_total")
            res[name] = {"seq": s.__dict__, "wrk": w.row(), "reads": reads}
            print(f"  {name}: p50 {s.p50_ms:.1f} ms p95 {s.p95_ms:.1f} ms; wrk -c4 {w.rps:.1f} req/s "
                  f"(non2xx {w.non2xx}); reads {reads}")
    return res


def report(res: dict[str, Any], meta: dict[str, Any]) -> str:
    a, b = res["primary only"], res["with the replica"]
    rows = [
        ["sequential p50 (ms)", a["seq"]["p50_ms"], b["seq"]["p50_ms"], h.ratio(b["seq"]["p50_ms"], a["seq"]["p50_ms"])],
        ["sequential p95 (ms)", a["seq"]["p95_ms"], b["seq"]["p95_ms"], h.ratio(b["seq"]["p95_ms"], a["seq"]["p95_ms"])],
        ["wrk -c4 (req/s)", a["wrk"]["rps"], b["wrk"]["rps"], h.ratio(b["wrk"]["rps"], a["wrk"]["rps"])],
        ["wrk -c4 p99 (ms)", a["wrk"]["p99_ms"], b["wrk"]["p99_ms"], h.ratio(b["wrk"]["p99_ms"], a["wrk"]["p99_ms"])],
    ]
    reads = ", ".join(f"{k.split('=')[1].rstrip('}').strip(chr(34))}: {v:.0f}" for k, v in b["reads"].items())
    return "\n".join([
        "## Read replicas (issue 13)",
        "",
        f"`{meta['command']}` — {meta['date']}, commit {meta['commit']}, load average {meta['load_before']}, "
        f"{meta['buildings']} buildings. One twin worker; features pages of 500 buildings "
        f"({res['bboxes']} bboxes). Primary (5432) and replica (5433) are on the same 2-core machine, "
        "so the table shows the cost of routing reads, not the capacity a replica host adds.",
        "",
        h.md_table(["", "primary only", "with the replica", "replica / primary"], rows),
        "",
        f"Connections handed out with the replica: {reads}.",
        "",
        "Reading: on one machine a replica cannot add capacity — it is a second PostgreSQL on the same two "
        "cores, replaying every write of the shared test server (other benches load towns into it) and with "
        "its own, colder buffer cache. What the routing itself adds per request is one health/lag check per "
        "`TWIN_REPLICA_CHECK_S` (two small queries) and, per writing request, one `pg_current_wal_lsn()`. "
        "The capacity a replica adds shows only with the replica on its own host; that is not measured here.",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    if args.quick:
        args.n, args.seconds = 60, 5.0
    data = ensure_data()
    meta = h.run_meta("replica", data, args.quick)
    meta["command"] = ".venv/bin/python bench/replica.py" + (" --quick" if args.quick else "")
    res = run(args)
    h.save_json("replica", {"meta": meta, "results": res})
    h.write_section(DOC, "bench:replica", report(res, meta))
    print(report(res, meta))


if __name__ == "__main__":
    main()
