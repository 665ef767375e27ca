"""Issue 9: what the security checks cost per request, and whether one principal's burst hurts the others.

    bash bench/run.sh security                     # or: .venv/bin/python bench/security.py
    .venv/bin/python bench/security.py --quick     # short run: proves it runs

Everything goes through real uvicorn servers (subprocesses, one worker each) over a PostGIS town
of the bench's own (``twin_bench_security``: the sample town at scale 0.05, built once; the
checks do not depend on the data, and the bench writes apps, users and nonces, so it keeps off
``twin_bench``).

1. **Per-request cost of the checks** (goal: ≤ 1 ms added at p50). The checked request and its
   baseline alternate one by one, each over its own kept-alive connection, so a change in the
   machine's load hits both alike; the figure is the difference of the p50s.

   * bearer tokens: ``GET /collections/buildings/items?limit=1`` without a token, with the admin
     token (a constant-time compare) and with a user's access token (JWT HS256 verify plus the
     token-version check). The anonymous role is set to the user's role, so all three get the
     same answer.
   * signatures: ``GET /eUrbanMIS/api/v1/getdata`` signed with HMAC-SHA256, with HMAC-SM3, and
     with HMAC-SHA256 plus a fresh nonce (the nonce is a database insert), each against the same
     request to a second server made by :func:`unchecked_app`: the same app with
     ``Exchange.authenticate`` cut down to its parameter checks (no app lookup, no secret, no
     HMAC, no time window, no nonce).

2. **Burst isolation** (goal: the other principals keep their p99). The rate limit is R req/s per
   principal (bucket R). One principal sends 10×R req/s from a process of its own while N others
   send R/2 req/s each; rounds without and with the burst alternate, and the others' p99 is
   compared (kept: with the burst ≤ 1.5× without). The burster's answers are counted (mostly 429).
"""

from __future__ import annotations

import argparse
import hmac
import http.client
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if __name__ == "__main__":  # as a script (not as ``bench.security`` in the server, where bench/ must not
    for p in (str(ROOT), str(BENCH)):  # shadow the ``tiles`` package with bench/tiles.py)
        if p not in sys.path:
            sys.path.insert(0, p)

DOC = ROOT / "docs" / "benchmarks.md"
DB_URL = os.environ.get("BENCH_SECURITY_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/twin_bench_security")
SECRET_KEY = "bench-security-server-key-0123456789abcdef"
ADMIN = "bench-security-admin-token"
APP_ID, APP_SECRET = "bench-exchange", "bench-exchange-secret"
ROLE = "planner"
ITEMS = "/collections/buildings/items?limit=1"


# --------------------------------------------------------------------------- the baseline server
def unchecked_app():  # noqa: ANN201 - an ASGI app for ``uvicorn --factory bench.security:unchecked_app``
    """The twin app with the exchange's authentication cut down to its parameter checks: the
    baseline of the signature cost. For this benchmark only."""
    from gis_api.app import create_app
    from twin.security.exchange import _NAME, Exchange, ExchangeError

    def params_only(self, params, *, needs):  # noqa: ANN001, ANN202 - mirrors Exchange.authenticate
        for key, code in (("appID", 10003), ("version", 10005), ("timestamp", 10006)):
            if not params.get(key):
                raise ExchangeError(code)
        if needs == "data" and not (params.get("data") or "").strip():
            raise ExchangeError(10004)
        for key in ("group", "table"):
            if not _NAME.match(params.get(key) or ""):
                raise ExchangeError(10002, f"{key} must be 1-64 letters, digits or _")
        return params["appID"]

    Exchange.authenticate = params_only  # type: ignore[method-assign]
    return create_app()


# --------------------------------------------------------------------------- data and accounts
def prepare(db_url: str, users: int) -> dict[str, Any]:
    """The bench's town (built once), an exchange app with a few rows, and users with tokens."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from sample_data import build_sample_town
    from twin.db import normalise_url
    from twin.security.accounts import Accounts
    from twin.settings import TwinSettings
    from twin.store import SpatialStore

    url = make_url(db_url)
    admin = create_engine(normalise_url(url.set(database="postgres").render_as_string(hide_password=False)),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}).first():
            conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()
    store = SpatialStore.from_url(db_url)
    store.migrate()
    if store.summary("buildings").count == 0:
        print("building the sample town (scale 0.05) in", url.database)
        home = Path(os.environ.get("TMPDIR", "/tmp")) / "twin-bench-security"
        build_sample_town(store, home / "rasters", scale=0.05)
    settings = TwinSettings(database_url=db_url, secret_key=SECRET_KEY, access_token_ttl_s=86_400,
                            home=Path(os.environ.get("TMPDIR", "/tmp")) / "twin-bench-security")
    acc = Accounts(store, settings)
    with store.engine.begin() as conn:
        for t in ("exchange_records", "request_nonces", "refresh_tokens", "users", "apps"):
            conn.execute(text(f"DELETE FROM {t}"))
    acc.create_app(APP_ID, ["exchange"], secret=APP_SECRET)
    tokens = []
    for i in range(users):
        name = f"bench-sec-{i}"
        acc.create_user(name, "Bench-Security-2026", [ROLE])
        tokens.append(acc.issue(acc.authenticate(name, "Bench-Security-2026"))["access_token"])
    store.engine.dispose()
    return {"tokens": tokens}


def server_env(**extra: str) -> dict[str, str]:
    return {"TWIN_SECRET_KEY": SECRET_KEY, "TWIN_ADMIN_TOKEN": ADMIN, "TWIN_ANONYMOUS_ROLE": ROLE,
            "TWIN_ACCESS_TOKEN_TTL_S": "86400", **extra}


def signed(params: dict[str, str], method: str = "HMAC-SHA256", nonce: bool = False) -> str:
    """A query string signed as docs/security.md shows."""
    p = {"appID": APP_ID, "timestamp": str(int(time.time())), "version": "1.0", **params}
    if method != "HMAC-SHA256":
        p["sign_method"] = method
    if nonce:
        p["nonce"] = uuid.uuid4().hex
    canonical = "&".join(f"{k}={v}" for k, v in sorted(p.items()) if k != "sign")
    p["sign"] = hmac.new(APP_SECRET.encode(), canonical.encode(), "sm3" if method == "HMAC-SM3" else "sha256"
                         ).hexdigest()
    return urllib.parse.urlencode(p)


def push_rows(port: int) -> None:
    import json

    body = signed({"group": "bench", "table": "part", "data": json.dumps(
        [{"districtCode": str(210100 + i), "gridCount": i} for i in range(20)])})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/eUrbanMIS/api/v1/pushdata", body=body,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    assert r.status == 200, (r.status, r.read()[:300])
    conn.close()


# --------------------------------------------------------------------------- timing
class Client:
    """One kept-alive connection; ``get`` returns (status, seconds)."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, float]:
        t0 = time.perf_counter()
        try:
            self.conn.request("GET", path, headers={"Accept-Encoding": "identity", **(headers or {})})
            r = self.conn.getresponse()
            r.read()
            return r.status, time.perf_counter() - t0
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            return -1, time.perf_counter() - t0


def q(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def alternate(variants: dict[str, tuple[int, Any]], n: int) -> dict[str, dict[str, float]]:
    """Send each variant's request in turn, n rounds; variants are name → (port, make) where
    ``make()`` gives (path, headers) just before the request (so signing is not timed)."""
    clients = {name: Client(port) for name, (port, _) in variants.items()}
    lat: dict[str, list[float]] = {name: [] for name in variants}
    bad: dict[str, int] = {name: 0 for name in variants}
    for name, (_, make) in variants.items():  # warm each connection and code path
        for _ in range(20):
            clients[name].get(*make())
    for _ in range(n):
        for name, (_, make) in variants.items():
            path, headers = make()
            status, s = clients[name].get(path, headers)
            if status != 200:
                bad[name] += 1
            lat[name].append(s * 1000)
    return {name: {"p50_ms": q(v, 50), "p95_ms": q(v, 95), "mean_ms": statistics.fmean(v), "n": len(v),
                   "errors": bad[name]} for name, v in lat.items()}


def token_costs(port: int, user_token: str, n: int) -> dict[str, dict[str, float]]:
    return alternate({
        "anonymous": (port, lambda: (ITEMS, {})),
        "admin token": (port, lambda: (ITEMS, {"Authorization": f"Bearer {ADMIN}"})),
        "user access token (JWT)": (port, lambda: (ITEMS, {"Authorization": f"Bearer {user_token}"})),
    }, n)


def signature_costs(checked: int, unchecked: int, n: int) -> dict[str, dict[str, float]]:
    base = {"group": "bench", "table": "part", "where": "gridCount>=10"}
    path = "/eUrbanMIS/api/v1/getdata?"
    out: dict[str, dict[str, float]] = {}
    for label, method, nonce in (("HMAC-SHA256", "HMAC-SHA256", False), ("HMAC-SM3", "HMAC-SM3", False),
                                 ("HMAC-SHA256 + nonce", "HMAC-SHA256", True)):
        res = alternate({
            "unchecked": (unchecked, lambda m=method, nc=nonce: (path + signed(base, m, nc), {})),
            "checked": (checked, lambda m=method, nc=nonce: (path + signed(base, m, nc), {})),
        }, n)
        out[label] = {"baseline_p50_ms": res["unchecked"]["p50_ms"], "checked_p50_ms": res["checked"]["p50_ms"],
                      "added_p50_ms": res["checked"]["p50_ms"] - res["unchecked"]["p50_ms"],
                      "checked_p95_ms": res["checked"]["p95_ms"], "baseline_p95_ms": res["unchecked"]["p95_ms"],
                      "n": res["checked"]["n"], "errors": res["checked"]["errors"] + res["unchecked"]["errors"]}
    return out


# --------------------------------------------------------------------------- burst isolation
def _paced(port: int, token: str, rps: float, until: float, lat: list[float] | None,
           statuses: dict[int, int]) -> None:
    """Send GET ITEMS at ``rps`` until ``until`` (monotonic), recording latency (ms) and statuses."""
    c = Client(port)
    interval, nxt = 1.0 / rps, time.monotonic()
    while (now := time.monotonic()) < until:
        if now < nxt:
            time.sleep(nxt - now)
        nxt += interval
        status, s = c.get("/collections/buildings/items?limit=10", {"Authorization": f"Bearer {token}"})
        statuses[status] = statuses.get(status, 0) + 1
        if lat is not None and status == 200:
            lat.append(s * 1000)


def _burst_process(port: int, token: str, rps: float, seconds: float, out: Any) -> None:
    statuses: dict[int, int] = {}
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=_paced, args=(port, token, rps / 4, until, None, statuses))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(statuses)


def burst_isolation(port: int, tokens: list[str], rate: float, seconds: float, rounds: int) -> dict[str, Any]:
    burster, others = tokens[0], tokens[1:]
    res: dict[str, Any] = {"quiet": {"lat": [], "statuses": {}}, "burst": {"lat": [], "statuses": {}},
                           "burster": {}}
    for _ in range(rounds):
        for cond in ("quiet", "burst"):
            until = time.monotonic() + seconds
            proc, queue = None, None
            if cond == "burst":
                queue = mp.Queue()
                proc = mp.Process(target=_burst_process, args=(port, burster, 10 * rate, seconds, queue))
                proc.start()
            lat: list[float] = []
            statuses: dict[int, int] = {}
            threads = [threading.Thread(target=_paced, args=(port, t, rate / 2, until, lat, statuses))
                       for t in others]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            res[cond]["lat"] += lat
            for k, v in statuses.items():
                res[cond]["statuses"][k] = res[cond]["statuses"].get(k, 0) + v
            if proc is not None and queue is not None:
                for k, v in queue.get(timeout=60).items():
                    res["burster"][k] = res["burster"].get(k, 0) + v
                proc.join(timeout=30)
            time.sleep(1.0)  # let the burster's bucket refill between rounds
    out: dict[str, Any] = {"rate_limit_rps": rate, "others": len(others), "seconds_per_round": seconds,
                           "rounds": rounds, "burster_statuses": res["burster"]}
    for cond in ("quiet", "burst"):
        v = res[cond]["lat"]
        out[cond] = {"p50_ms": q(v, 50), "p99_ms": q(v, 99), "n": len(v), "statuses": res[cond]["statuses"]}
    return out


# --------------------------------------------------------------------------- report
def report(meta: dict[str, Any], tok: dict, sig: dict, burst: dict) -> str:
    import harness as h

    base = tok["anonymous"]["p50_ms"]
    rows = [[name, f"{r['p50_ms']:.2f}", f"{r['p50_ms'] - base:+.2f}", f"{r['p95_ms']:.2f}", r["n"],
             h.verdict(r["p50_ms"] - base <= 1.0) if name != "anonymous" else "–"]
            for name, r in tok.items()]
    t1 = h.md_table(["`GET /collections/buildings/items?limit=1`", "p50 ms", "added p50 ms", "p95 ms", "n",
                     "≤ 1 ms"], rows)
    rows = [[label, f"{r['baseline_p50_ms']:.2f}", f"{r['checked_p50_ms']:.2f}", f"{r['added_p50_ms']:+.2f}",
             r["n"], h.verdict(r["added_p50_ms"] <= 1.0)] for label, r in sig.items()]
    t2 = h.md_table(["`GET /eUrbanMIS/api/v1/getdata` signed with", "unchecked p50 ms", "checked p50 ms",
                     "added p50 ms", "n", "≤ 1 ms"], rows)
    q_, b_ = burst["quiet"], burst["burst"]
    kept = b_["p99_ms"] <= 1.5 * q_["p99_ms"]
    burster = ", ".join(f"{k}: {v}" for k, v in sorted(burst["burster_statuses"].items()))
    t3 = h.md_table(["others' requests", "p50 ms", "p99 ms", "n", "answers"], [
        ["without the burst", f"{q_['p50_ms']:.1f}", f"{q_['p99_ms']:.1f}", q_["n"],
         ", ".join(f"{k}: {v}" for k, v in sorted(q_["statuses"].items()))],
        ["during the burst", f"{b_['p50_ms']:.1f}", f"{b_['p99_ms']:.1f}", b_["n"],
         ", ".join(f"{k}: {v}" for k, v in sorted(b_["statuses"].items()))]])
    r = burst["rate_limit_rps"]
    busy = ""
    try:
        if float(meta["load_before"].split()[0]) > (os.cpu_count() or 1):
            busy = ("\n**The machine was busy** (load average above its core count): differences of a few ms "
                    "between two servers are within the noise; rerun on a quiet machine.\n")
    except ValueError:
        pass
    return f"""## Security checks and rate-limit isolation (issue 9, `bench/security.py`)
{busy}
{meta['date']}, commit {meta['commit']}, load average before {meta['load_before']}; command
`{meta['command']}`. One-worker uvicorn servers over the sample town (scale 0.05) in PostgreSQL;
requests one by one over kept-alive connections, the checked request and its baseline alternating.

**Bearer tokens** (the anonymous role set to the token's role, so the answers are the same):

{t1}

**Signed exchange requests** against the same app with the signature checks cut out (`unchecked_app`):

{t2}

**Burst isolation**: rate limit {r:g} req/s per principal (bucket {r:g}); one principal sends
{10 * r:g} req/s (10×) from its own process while {burst['others']} others send {r / 2:g} req/s each
(`GET /collections/buildings/items?limit=10`), {burst['rounds']} rounds of {burst['seconds_per_round']:g} s
without and with the burst. The burster got {burster}.

{t3}

Others' p99 during the burst ≤ 1.5× without: **{h.verdict(kept)}**
({b_['p99_ms'] / q_['p99_ms']:.2f}×).
"""


def main() -> None:
    import harness as h

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run (fewer requests, 5 s rounds)")
    ap.add_argument("-n", type=int, default=2000, help="requests per variant in the cost runs")
    ap.add_argument("--rate", type=float, default=20.0, help="rate limit per principal, req/s")
    ap.add_argument("--others", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each burst/quiet round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--db-url", default=DB_URL)
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = ap.parse_args()
    if args.quick:
        args.n, args.seconds, args.rounds = 300, 5.0, 2
    data = prepare(args.db_url, users=args.others + 2)
    meta = {"date": h.now(), "commit": h.git_commit(), "load_before": h.loadavg(),
            "command": "bash bench/run.sh security" + (" --quick" if args.quick else "")}
    print(f"security bench: load avg {meta['load_before']}")
    checked = h.twin_server(args.db_url, "security-checked", server_env())
    unchecked = h.Server(name="security-unchecked", cmd=h.uvicorn_cmd(ROOT / ".venv/bin", "bench.security:unchecked_app",
                                                                       factory=True),
                         env={"TWIN_DATABASE_URL": args.db_url, "TWIN_HOME": str(checked.env["TWIN_HOME"]),
                              **server_env()}, ready_path="/conformance")
    with checked, unchecked:
        push_rows(checked.port)
        tok = token_costs(checked.port, data["tokens"][-1], args.n)
        for name, r in tok.items():
            print(f"  token   {name:26s} p50 {r['p50_ms']:.2f} ms  p95 {r['p95_ms']:.2f} ms  errors {r['errors']}")
        sig = signature_costs(checked.port, unchecked.port, args.n)
        for label, r in sig.items():
            print(f"  signed  {label:26s} unchecked p50 {r['baseline_p50_ms']:.2f} ms  checked "
                  f"{r['checked_p50_ms']:.2f} ms  added {r['added_p50_ms']:+.2f} ms  errors {r['errors']}")
    limited = h.twin_server(args.db_url, "security-limited", server_env(
        TWIN_RATE_LIMIT_RPS=str(args.rate), TWIN_RATE_LIMIT_BURST=str(int(args.rate))))
    with limited:
        burst = burst_isolation(limited.port, data["tokens"][: args.others + 1], args.rate, args.seconds, args.rounds)
    print(f"  burst   others p99 quiet {burst['quiet']['p99_ms']:.1f} ms, during burst {burst['burst']['p99_ms']:.1f} ms;"
          f" burster {burst['burster_statuses']}")
    h.save_json("security", {"meta": meta, "tokens": tok, "signatures": sig, "burst": burst})
    body = report(meta, tok, sig, burst)
    print(body)
    if not args.no_doc:
        h.write_section(DOC, "security", body)


def rerender(path: str) -> None:
    """Rewrite the docs section from a saved result (bench/results/security-*.json)."""
    import json

    import harness as h

    d = json.loads(Path(path).read_text())
    h.write_section(DOC, "security", report(d["meta"], d["tokens"], d["signatures"], d["burst"]))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--rerender":
        rerender(sys.argv[2])
    else:
        main()
