"""Shared benchmark machinery: servers as subprocesses, wrk runs, sequential latency samples.

Everything here talks to 127.0.0.1 only, and every loop is bounded in time and count.

* :class:`Server` starts a server command on a free port, polls a readiness URL and
  kills the whole process group on exit (also via ``atexit`` if the script dies).
* :func:`wrk` runs wrk (one thread, ``-c`` connections, fixed duration) over one URL
  or a list of paths (cycled by a Lua script) and returns requests/s, latency
  percentiles and error counts from a JSON line printed by the Lua ``done`` hook.
  Without wrk it falls back to a bounded asyncio loop (:func:`async_load`).
* :func:`sample` sends requests one after another over a kept-alive connection and
  returns p50/p95/mean latency and mean body size.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
HOST = "127.0.0.1"
DEFAULT_DB_URL = "postgresql://postgres@127.0.0.1:5432/twin_bench"

_LIVE: list[Server] = []


# --------------------------------------------------------------------------- setup
def ensure_setup() -> None:
    """Run bench/setup.sh (idempotent: venvs for TiPg and TiTiler, wrk)."""
    subprocess.run(["bash", str(BENCH / "setup.sh")], check=True, timeout=1800)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "identity"})
        r = conn.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        conn.close()


# --------------------------------------------------------------------------- servers
@dataclass
class Server:
    """A server subprocess on a free port: ``cmd`` may contain ``{port}``."""

    name: str
    cmd: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/"
    ready_timeout: float = 90.0
    cwd: Path = ROOT
    port: int = 0
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    def start(self) -> Server:
        self.port = self.port or free_port()
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.log_path = RESULTS / f"server-{self.name}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        env = {**os.environ, **self.env}
        cmd = [c.format(port=self.port) for c in self.cmd]
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        _LIVE.append(self)
        deadline = time.monotonic() + self.ready_timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see {self.log_path}:\n"
                                   + self.log_tail())
            try:
                status, _, _ = http_get(self.port, self.ready_path, timeout=5)
                if status < 500:
                    return self
                last = f"HTTP {status}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {self.ready_timeout}s ({last}); see {self.log_path}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])  # type: ignore[union-attr]
        except OSError:
            return ""

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        self.proc = None
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # the group we created: the server and its children
                p.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        if self in _LIVE:
            _LIVE.remove(self)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop_all() -> None:
    for s in list(_LIVE):
        try:
            s.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_stop_all)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, lambda signum, _frame: sys.exit(128 + signum))


def uvicorn_cmd(venv_bin: Path, app: str, *, factory: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """One-worker uvicorn on 127.0.0.1:{port}, access log off (as a production deployment would)."""
    cmd = [str(venv_bin / "uvicorn"), app, "--host", HOST, "--port", "{port}", "--workers", "1",
           "--no-access-log", "--log-level", "warning"]
    if factory:
        cmd.insert(2, "--factory")
    return cmd + list(extra)


def twin_server(db_url: str, name: str = "twin", env: dict[str, str] | None = None) -> Server:
    home = Path(tempfile.mkdtemp(prefix="twin-bench-home-"))
    return Server(
        name=name,
        cmd=uvicorn_cmd(ROOT / ".venv/bin", "gis_api.app:create_app", factory=True),
        env={"TWIN_DATABASE_URL": db_url, "TWIN_HOME": str(home), **(env or {})},
        ready_path="/conformance",
    )


def tipg_server(db_url: str, schema: str = "public", tables: Sequence[str] = ("buildings",)) -> Server:
    return Server(
        name="tipg",
        cmd=uvicorn_cmd(BENCH / ".venv-tipg/bin", "tipg.main:app"),
        env={
            "DATABASE_URL": db_url,
            "TIPG_DB_SCHEMAS": json.dumps([schema]),
            "TIPG_DB_TABLES": json.dumps([f"{schema}.{t}" for t in tables]),
            "TIPG_DB_EXCLUDE_FUNCTION_SCHEMAS": json.dumps(["public", "pg_catalog"]),
            "TIPG_DB_ONLY_SPATIAL_TABLES": "true",
            "TIPG_MAX_FEATURES_PER_QUERY": "10000",
            "TIPG_DEFAULT_FEATURES_LIMIT": "10",
            "TIPG_DEBUG": "false",
            "TIPG_DB_POOL_MAX_SIZE": "10",
            "TIPG_MAX_FEATURES_PER_TILE": "10000",
        },
        ready_path="/collections",
    )


# --------------------------------------------------------------------------- load
@dataclass
class LoadResult:
    rps: float
    requests: int
    duration_s: float
    bytes_per_req: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    non2xx: int
    tool: str

    def row(self) -> dict[str, Any]:
        return self.__dict__


_WRK_LUA = r"""
local paths = {}
local n = 0
for line in io.lines(os.getenv("BENCH_PATHS")) do n = n + 1; paths[n] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i - 1) % n + 1], {["Accept-Encoding"] = os.getenv("BENCH_AE") or "identity"})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,'
    .. '"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), e.connect, e.read, e.write, e.timeout, e.status))
end
"""


def wrk(port: int, paths: Sequence[str] | str, *, connections: int = 4, duration: float = 10.0,
        timeout_s: float = 10.0, accept_encoding: str = "identity") -> LoadResult:
    """Load ``paths`` (cycled in order, one thread, ``connections`` kept-alive connections)."""
    if isinstance(paths, str):
        paths = [paths]
    if not shutil.which("wrk"):
        return asyncio.run(async_load(port, paths, connections=connections, duration=duration))
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "paths.lua"
        lua.write_text(_WRK_LUA)
        plist = Path(tmp) / "paths.txt"
        plist.write_text("\n".join(paths) + "\n")
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", f"--timeout={timeout_s:g}s",
               "-s", str(lua), f"http://{HOST}:{port}{paths[0]}"]
        env = {**os.environ, "BENCH_PATHS": str(plist), "BENCH_AE": accept_encoding}
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + timeout_s + 30)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    d = json.loads(line[len("BENCHJSON "):])
    secs = d["duration_us"] / 1e6
    n = d["requests"]
    return LoadResult(
        rps=n / secs if secs else 0.0, requests=n, duration_s=secs,
        bytes_per_req=d["bytes"] / n if n else 0.0,
        p50_ms=d["p50_us"] / 1000, p95_ms=d["p95_us"] / 1000, p99_ms=d["p99_us"] / 1000,
        errors=d["connect"] + d["read"] + d["write"] + d["timeout"], non2xx=d["status"], tool="wrk",
    )


async def async_load(port: int, paths: Sequence[str], *, connections: int = 4, duration: float = 10.0,
                     max_requests: int = 200_000) -> LoadResult:
    """Fallback load generator: ``connections`` keep-alive HTTP/1.1 loops, bounded in time and count."""
    lat: list[float] = []
    nbytes = 0
    errors = non2xx = 0
    counter = iter(range(max_requests))
    deadline = time.monotonic() + duration

    async def worker() -> None:
        nonlocal nbytes, errors, non2xx
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for i in counter:
                if time.monotonic() >= deadline:
                    return
                path = paths[i % len(paths)]
                t0 = time.perf_counter()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAccept-Encoding: identity\r\n\r\n".encode())
                status_line = await reader.readline()
                status = int(status_line.split()[1])
                length = 0
                chunked = False
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    k, _, v = h.decode("latin-1").partition(":")
                    if k.lower() == "content-length":
                        length = int(v)
                    elif k.lower() == "transfer-encoding" and "chunked" in v.lower():
                        chunked = True
                if chunked:
                    while True:
                        size = int((await reader.readline()).strip(), 16)
                        await reader.readexactly(size + 2)
                        length += size
                        if size == 0:
                            break
                else:
                    await reader.readexactly(length)
                lat.append(time.perf_counter() - t0)
                nbytes += length
                if not 200 <= status < 400:
                    non2xx += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
        finally:
            writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    secs = time.monotonic() - t0
    q = _quantiles(lat)
    return LoadResult(rps=len(lat) / secs, requests=len(lat), duration_s=secs,
                      bytes_per_req=nbytes / len(lat) if lat else 0.0, p50_ms=q[50], p95_ms=q[95],
                      p99_ms=q[99], errors=errors, non2xx=non2xx, tool="asyncio")


# --------------------------------------------------------------------------- sequential sampling
@dataclass
class Sample:
    n: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    max_ms: float
    mean_kb: float
    statuses: dict[int, int]
    first_error: str | None = None

    @property
    def ok(self) -> bool:
        return set(self.statuses) <= {200, 204} and self.n > 0


def _quantiles(values: Sequence[float]) -> dict[int, float]:
    if not values:
        return {50: float("nan"), 95: float("nan"), 99: float("nan")}
    ms = sorted(v * 1000 for v in values)

    def q(p: float) -> float:
        k = min(len(ms) - 1, max(0, round(p / 100 * (len(ms) - 1))))
        return ms[k]

    return {50: q(50), 95: q(95), 99: q(99)}


def sample(port: int, paths: Sequence[str], *, n: int | None = None, max_seconds: float = 120.0,
           timeout: float = 60.0) -> Sample:
    """Request ``paths`` one after another (``n`` requests, cycling) over one kept-alive connection."""
    n = n or len(paths)
    lat: list[float] = []
    sizes: list[int] = []
    statuses: dict[int, int] = {}
    first_error = None
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    deadline = time.monotonic() + max_seconds
    try:
        for i in range(n):
            if time.monotonic() > deadline:
                break
            path = paths[i % len(paths)]
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers={"Accept-Encoding": "identity"})
                r = conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
                statuses[-1] = statuses.get(-1, 0) + 1
                first_error = first_error or repr(exc)
                continue
            lat.append(time.perf_counter() - t0)
            sizes.append(len(body))
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status >= 400 and first_error is None:
                first_error = f"{r.status} {path}: {body[:300]!r}"
    finally:
        conn.close()
    q = _quantiles(lat)
    return Sample(n=len(lat), p50_ms=q[50], p95_ms=q[95], mean_ms=statistics.fmean(lat) * 1000 if lat else 0,
                  max_ms=max(lat) * 1000 if lat else 0, mean_kb=statistics.fmean(sizes) / 1024 if sizes else 0,
                  statuses=statuses, first_error=first_error)


# --------------------------------------------------------------------------- reporting
def machine_info() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "memory": mem_gib, "cpu": cpu, "python": platform.python_version(),
            "kernel": platform.release()}


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def venv_version(venv: str, module: str) -> str:
    py = BENCH / venv / "bin/python"
    try:
        return subprocess.run([str(py), "-c", f"import {module} as m; print(m.__version__)"], capture_output=True,
                              text=True, timeout=60).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def ratio(a: float, b: float) -> str:
    if not a or not b or a != a or b != b:
        return "–"
    return f"{a / b:.2f}×"


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("PASS" if ok else "MISS")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def write_section(doc: Path, marker: str, body: str) -> None:
    """Replace the text between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` in ``doc``."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = doc.read_text() if doc.exists() else ""
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def save_json(name: str, data: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    p = RESULTS / f"{name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    p.write_text(json.dumps(data, indent=2, default=str))
    return p


def run_meta(name: str, data: dict, quick: bool) -> dict:
    """What every benchmark report records about its run: date, commit, load, data, command."""
    meta = {"date": now(), "commit": git_commit(), "load_before": loadavg(), "data": data["version"],
            "buildings": data["buildings"], "command": f"bash bench/run.sh {name}" + (" --quick" if quick else "")}
    print(f"{name} bench: {data['buildings']} buildings ({data['version']}), load avg {meta['load_before']}")
    return meta
