"""Request metrics as a pure ASGI middleware (cheap enough for cached-tile rates)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("twin_http_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram(
    "twin_http_request_seconds", "HTTP request latency", ["route"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            REQUESTS.labels(name, scope["method"], str(status)).inc()
            LATENCY.labels(name).observe(time.perf_counter() - start)


# --- read replicas (twin/replicas.py): lag and health per replica, read counts ----------------------
class ReplicaCollector:
    """Prometheus collector over the read routers of this process's apps (values as of their last check)."""

    def __init__(self) -> None:
        self.routers: weakref.WeakSet = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        lag_s = GaugeMetricFamily("twin_replica_lag_seconds", "Replay lag of a read replica (0 when caught up)",
                                  labels=["replica"])
        lag_b = GaugeMetricFamily("twin_replica_lag_bytes", "WAL bytes a read replica has not replayed yet",
                                  labels=["replica"])
        up = GaugeMetricFamily("twin_replica_up", "1 if the replica is in use (healthy and within the lag bound)",
                               labels=["replica"])
        reads = CounterMetricFamily("twin_replica_reads", "Connections handed out for reads, by target",
                                    labels=["target"])
        fails = CounterMetricFamily("twin_replica_failures", "Times a replica was taken out (failed check or query)",
                                    labels=["replica"])
        primary = 0
        for router in list(self.routers):
            primary += router.primary_reads
            for r in router.replicas:
                lag_s.add_metric([r.name], r.lag_s)
                lag_b.add_metric([r.name], r.lag_bytes)
                up.add_metric([r.name], 1.0 if r.healthy else 0.0)
                reads.add_metric([r.name], r.reads)
                fails.add_metric([r.name], r.failures)
        if self.routers:
            reads.add_metric(["primary"], primary)
        yield from (lag_s, lag_b, up, reads, fails)


REPLICAS = ReplicaCollector()
REGISTRY.register(REPLICAS)
