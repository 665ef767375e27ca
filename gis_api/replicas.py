"""Read-replica routing per request (twin/replicas.py holds the engine side).

Each GET/HEAD request, and each POST to an analysis or process (they only read), runs in a read context: its
reads may go to a healthy replica that has replayed past the client's last write. A request that
wrote gets the primary's WAL position back in the ``twin_wal`` cookie (read-your-writes across
workers and hosts for clients that keep cookies; API clients may send it as ``X-Twin-Min-LSN``).
A request whose replica failed (``ReplicaFailed``, a 5xx) before its response started is run
again, once, on the primary: the client sees no 5xx.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twin.replicas import ReadContext, ReadRouter, format_lsn, parse_lsn, read_context

#: POST paths that only read: analyses and OGC API processes (their bodies are small and are replayed on a retry)
READ_ONLY_POST = ("/analysis/", "/processes/")
COOKIE = "twin_wal"
HEADER = b"x-twin-min-lsn"
#: how long the cookie lives: past it, the replica lag bound (replica_max_lag_s) applies anyway
COOKIE_MAX_AGE_S = 300


def min_lsn(scope: Scope) -> int:
    """The WAL position a client asks its reads to be past (cookie or header); 0 if none or unreadable."""
    best = 0
    for name, value in scope.get("headers", ()):
        raw = None
        if name == HEADER:
            raw = value.decode("latin-1")
        elif name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == COOKIE:
                    raw = val
        if raw:
            try:
                best = max(best, parse_lsn(raw))
            except ValueError:  # a garbled cookie only costs freshness guarantees, never an error
                pass
    return best


class ReplicaRouting:
    """ASGI middleware: a read context per request, retry on the primary, the write-LSN cookie."""

    def __init__(self, app: ASGIApp, router: ReadRouter) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        readable = method in ("GET", "HEAD") or (method == "POST" and path.startswith(READ_ONLY_POST))
        ctx = ReadContext(replica_ok=readable, min_lsn=min_lsn(scope))
        if not readable:
            await self._run(scope, receive, send, ctx)
            return
        body: list[Message] = []

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message)
            return message

        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                if ctx.failed and message["status"] >= 500:
                    raise _Retry
                started = True
            if not started:
                return
            await send(message)

        try:
            await self._run(scope, recording_receive, guarded_send, ctx)
            return
        except Exception:  # _Retry, or the replica's failure surfacing as an exception: same retry
            if started or not ctx.failed:
                raise
        replay = list(body)

        async def replay_receive() -> Message:
            if replay:
                return replay.pop(0)
            return await receive()

        await self._run(scope, replay_receive, send, ReadContext(replica_ok=False))

    async def _run(self, scope: Scope, receive: Receive, send: Send, ctx: ReadContext) -> None:
        """Run the app in ``ctx``; when it wrote, hand the client the write's WAL position."""
        wal: list[bytes] = []

        async def send_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and ctx.wrote:
                try:
                    lsn = await run_in_threadpool(self.router.current_primary_lsn)
                except Exception:  # noqa: BLE001 - the write is done; the lag bound still applies
                    lsn = 0
                if lsn:
                    wal.append(format_lsn(lsn).encode())
                    cookie = f"{COOKIE}={wal[0].decode()}; Max-Age={COOKIE_MAX_AGE_S}; Path=/; HttpOnly; SameSite=Lax"
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (b"set-cookie", cookie.encode()), (b"x-twin-wal-lsn", wal[0])]}
            await send(message)

        with read_context(ctx):
            await self.app(scope, receive, send_cookie)


class _Retry(Exception):
    """Internal: the response was a 5xx caused by a failed replica; run the request on the primary."""


__all__ = ["ReplicaRouting", "min_lsn"]
