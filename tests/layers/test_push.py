"""Frames pushed from the pacer's tick (layers.push): in order, none while a send waits, snapshots between."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

import httpx
import orjson
import websockets
from live_support import auth

from layers.hub import Hub
from layers.push import Pusher


def change(fid: str, i: int, pad: int = 0) -> dict:
    props = {"values": {"i": i}, **({"pad": "x" * pad} if pad else {})}
    return {"op": "update", "layer": "devices",
            "feature": {"type": "Feature", "id": fid, "geometry": {"type": "Point", "coordinates": [0.5, 0.5]},
                        "properties": props}}


def ids_and_values(text: str) -> list[tuple[str, int]]:
    msg = orjson.loads(text)
    return [(c["feature"]["id"], c["feature"]["properties"]["values"]["i"]) for c in msg["changes"]]


class Transport:
    """An ASGI-like send: finishes at once unless ``gate`` is closed, then waits for it (flow control)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.waits = 0
        self.fail: Exception | None = None

    async def send_text(self, text: str) -> None:
        if self.fail is not None:
            raise self.fail
        if not self.gate.is_set():
            self.waits += 1
            await self.gate.wait()
        self.sent.append(text)


def test_frames_go_out_in_the_tick_without_a_consumer_task() -> None:
    async def main() -> tuple[list, int]:
        loop = asyncio.get_running_loop()
        hub = Hub()
        sub = hub.subscribe(loop=loop)
        t = Transport()
        pusher = Pusher(sub, t.send_text, sub.pacer.frame)  # type: ignore[union-attr]
        tasks = len(asyncio.all_tasks())
        await loop.run_in_executor(None, lambda: [hub.publish("devices", change("a", i)) for i in range(3)])
        for _ in range(50):
            if sum(len(ids_and_values(s)) for s in t.sent) == 3:
                break
            await asyncio.sleep(0.01)
        assert not pusher.busy
        return [x for s in t.sent for x in ids_and_values(s)], len(asyncio.all_tasks()) - tasks

    got, extra_tasks = asyncio.run(main())
    assert got == [("a", 0), ("a", 1), ("a", 2)]
    assert extra_tasks == 0


def test_a_send_that_waits_holds_later_frames_back_and_they_follow_in_order() -> None:
    async def main() -> tuple[list, Transport, Pusher]:
        loop = asyncio.get_running_loop()
        hub = Hub()
        hub.frame_s = hub.frame_max_s = 0.005
        sub = hub.subscribe(loop=loop)
        t = Transport()
        pusher = Pusher(sub, t.send_text, sub.pacer.frame)  # type: ignore[union-attr]
        t.gate.clear()  # the client stops reading
        hub.publish("devices", change("a", 0))
        await asyncio.sleep(0.05)
        assert pusher.busy and t.waits == 1 and t.sent == []
        for i in range(1, 6):  # several ticks pass: nothing more is started while the first frame waits
            hub.publish("devices", change("a", i))
            await asyncio.sleep(0.02)
        assert t.waits == 1 and t.sent == []
        t.gate.set()
        for _ in range(100):
            if sum(len(ids_and_values(s)) for s in t.sent) == 6:
                break
            await asyncio.sleep(0.01)
        return [x for s in t.sent for x in ids_and_values(s)], t, pusher

    got, t, pusher = asyncio.run(main())
    assert got == [("a", i) for i in range(6)]  # every change, in order: the queue was short (no coalescing)
    assert len(t.sent) == 2  # the waiting frame, then the rest in one
    assert not pusher.busy and not pusher.failed.done()


def test_a_snapshot_waits_for_the_frame_in_flight_and_no_old_frame_follows_it() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        hub = Hub()
        hub.frame_s = hub.frame_max_s = 0.005
        sub = hub.subscribe(loop=loop, bbox=(0, 0, 1, 1))
        t = Transport()
        pusher = Pusher(sub, t.send_text, sub.pacer.frame)  # type: ignore[union-attr]
        t.gate.clear()
        hub.publish("devices", change("a", 0))
        await asyncio.sleep(0.03)
        hub.publish("devices", change("a", 1))  # queued behind the waiting frame

        def moved() -> str:
            sub.reset(None, (10, 10, 11, 11))  # the client moved away: change 1 is not for it any more
            return '{"type":"snapshot"}'

        snap = asyncio.create_task(pusher.send(moved))
        await asyncio.sleep(0.03)
        assert not snap.done() and t.sent == []
        t.gate.set()
        await asyncio.wait_for(snap, 5)
        await asyncio.sleep(0.05)
        return t.sent

    sent = asyncio.run(main())
    assert len(sent) == 2
    assert ids_and_values(sent[0]) == [("a", 0)]
    assert sent[1] == '{"type":"snapshot"}'  # and nothing of the old bbox after it


def test_a_failed_send_ends_the_stream_and_stops_pushing() -> None:
    async def main() -> tuple[BaseException, int]:
        loop = asyncio.get_running_loop()
        hub = Hub()
        sub = hub.subscribe(loop=loop)
        t = Transport()
        t.fail = ConnectionResetError("gone")
        pusher = Pusher(sub, t.send_text, sub.pacer.frame)  # type: ignore[union-attr]
        hub.publish("devices", change("a", 0))
        exc = await asyncio.wait_for(pusher.failed, 5)
        hub.publish("devices", change("a", 1))
        await asyncio.sleep(0.05)
        return exc, sub.pending_count()

    exc, left = asyncio.run(main())
    assert isinstance(exc, ConnectionResetError)
    assert left == 1  # not drained any more: the owner unsubscribes it


class RawWebSocket:
    """A WebSocket client on a plain socket with a small receive buffer, so it can stop reading for real
    (a library client keeps reading into its own queue) and parse the server's frames when it reads again."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def recv(self) -> bytes:
        """The next text message (the server sends whole, unmasked frames)."""
        while True:
            if len(self.buf) >= 2:
                n, at = self.buf[1] & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, at = struct.unpack("!H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
                if n < 126 or at > 2:
                    if len(self.buf) >= at + n:
                        assert self.buf[0] == 0x81, self.buf[:2]  # FIN + text
                        msg, self.buf = self.buf[at:at + n], self.buf[at + n:]
                        return msg
            chunk = self.sock.recv(1 << 20)
            assert chunk, "the server closed the socket"
            self.buf += chunk


def test_a_client_that_stops_reading_holds_up_nobody_and_catches_up_to_the_latest_state(live_server) -> None:
    """Real uvicorn and sockets: a client that stops reading fills its socket buffers until its frame's
    send has to wait (flow control); the other client's frames keep coming, and when the first one
    reads again it gets whole frames ending with every feature's latest state."""
    with live_server() as srv:
        hub = srv.app.state.live.hub
        slow = RawWebSocket(srv.port, "/live/ws?layers=devices")
        assert orjson.loads(slow.recv())["type"] == "snapshot"

        async def main() -> None:
            async with websockets.connect(f"{srv.ws_url}/live/ws?layers=devices", max_size=2**25) as fast:
                await fast.recv()
                loop = asyncio.get_running_loop()

                def flood() -> None:  # 300 features × 40 kB: far more than the slow client's socket takes
                    for i in range(300):
                        hub.publish("devices", change(f"f{i}", i, 40_000))

                async def read_fast(last: int) -> None:
                    while True:
                        msg = orjson.loads(await asyncio.wait_for(fast.recv(), 20))
                        if any(c["feature"]["properties"]["values"]["i"] == last for c in msg["changes"]):
                            return

                reader = asyncio.create_task(read_fast(299))
                await loop.run_in_executor(None, flood)
                await reader
                pushers = [s.push.__self__ for s in hub._subs if s.push is not None]  # type: ignore[union-attr]
                # the kernel's and the transport's buffers can swallow one flood when it coalesces into a
                # frame or two: flood again (same features: the slow queue stays at 300) until a send waits
                for _ in range(5):
                    if any(p.busy for p in pushers):
                        break
                    reader = asyncio.create_task(read_fast(299))
                    await loop.run_in_executor(None, flood)
                    await reader
                    await asyncio.sleep(0.2)
                assert any(p.busy for p in pushers), "the stalled client's send never had to wait"
                reader = asyncio.create_task(read_fast(1000))  # the fast client still gets a new change at once
                await loop.run_in_executor(None, hub.publish, "devices", change("late", 1000))
                await asyncio.wait_for(reader, 10)
                async with httpx.AsyncClient(base_url=srv.url) as http:
                    assert (await http.get("/live/devices", headers=auth())).status_code == 200

        asyncio.run(main())
        # the slow one reads again: whole frames, ending on every feature's latest value
        slow.sock.settimeout(20)
        latest: dict[str, int] = {}
        while latest.get("late") != 1000 or any(latest.get(f"f{i}") != i for i in range(300)):
            msg = orjson.loads(slow.recv())
            assert msg["type"] == "changes"
            for c in msg["changes"]:
                latest[c["feature"]["id"]] = c["feature"]["properties"]["values"]["i"]
        slow.sock.close()
