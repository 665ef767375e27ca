"""Shared hub backends: Redis pub/sub and NATS, so several workers and hosts see one stream.

Both batch: a sender thread takes every change queued since its last send and publishes
them as one JSON array (one Redis ``PUBLISH`` / NATS message per batch, not per change),
and a receiver hands each batch that comes back to :meth:`Hub.deliver`. Both reconnect
with capped exponential backoff; changes published while the backend is unreachable are
dropped and counted (a live stream is about the present; history and state are in the
database), never queued without bound.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any

import orjson
from prometheus_client import Counter

from layers.hub import Change, Hub

log = logging.getLogger("twin.live.hub")

LOST = Counter("twin_live_hub_backend_lost_total", "Changes not sent because the hub backend was unreachable")
MAX_QUEUED = 100_000  # changes waiting for the sender before new ones are refused (counted in LOST)


class _BatchingHub(Hub):
    def __init__(self, url: str, channel: str, queue_size: int):
        super().__init__(queue_size)
        self.url = url
        self.channel = channel
        self._out: queue.Queue[Change] = queue.Queue(MAX_QUEUED)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []

    def _send(self, changes: list[Change]) -> None:
        for ch in changes:
            try:
                self._out.put_nowait(ch)
            except queue.Full:
                LOST.inc()

    def _sender(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._out.get(timeout=0.5)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < 2000:
                try:
                    batch.append(self._out.get_nowait())
                except queue.Empty:
                    break
            try:
                self._publish_bytes(orjson.dumps(batch))
            except Exception as exc:  # backend down: the receiver thread reconnects
                LOST.inc(len(batch))
                log.warning("hub backend publish failed (%s); %d changes lost", exc, len(batch))
                time.sleep(0.2)

    def _received(self, data: bytes) -> None:
        try:
            changes = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("hub: ignored a message that is not JSON")
            return
        if isinstance(changes, list):
            self.deliver(changes)

    def _publish_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return self._ready.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=3)
        super().close()


class RedisHub(_BatchingHub):
    """Redis pub/sub on ``channel``. Pub/sub channels are server-wide (not per database number)."""

    def start(self) -> None:
        import redis

        self._pub = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        self._spawn(self._receiver, "twin-hub-redis-recv")
        self._spawn(self._sender, "twin-hub-redis-send")
        self.wait_ready()

    def _publish_bytes(self, data: bytes) -> None:
        self._pub.publish(self.channel, data)

    def _receiver(self) -> None:
        import redis

        delay = 0.1
        while not self._stop.is_set():
            client = redis.Redis.from_url(self.url, socket_connect_timeout=5)
            try:
                ps = client.pubsub(ignore_subscribe_messages=True)
                ps.subscribe(self.channel)
                ps.get_message(timeout=5)  # the subscribe confirmation: from here on nothing is missed
                self._ready.set()
                delay = 0.1
                while not self._stop.is_set():
                    msg = ps.get_message(timeout=0.5)
                    if msg and msg.get("type") == "message":
                        self._received(msg["data"])
                ps.close()
            except redis.RedisError as exc:
                log.warning("hub: Redis unreachable (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
            finally:
                client.close()


class NatsHub(_BatchingHub):
    """Core NATS publish/subscribe on subject ``channel``, on an event loop of its own thread."""

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._spawn(self._run_loop, "twin-hub-nats")
        self._spawn(self._sender, "twin-hub-nats-send")
        self.wait_ready()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        import nats

        async def on_msg(msg: Any) -> None:
            self._received(msg.data)

        delay = 0.1
        while not self._stop.is_set():
            try:
                self._nc = await nats.connect(self.url, max_reconnect_attempts=-1, reconnect_time_wait=1,
                                              connect_timeout=5)
                break
            except Exception as exc:
                log.warning("hub: NATS unreachable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        else:
            return
        await self._nc.subscribe(self.channel, cb=on_msg)
        await self._nc.flush()
        self._ready.set()
        while not self._stop.is_set():
            await asyncio.sleep(0.2)
        await self._nc.drain()

    def _publish_bytes(self, data: bytes) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._nc.publish(self.channel, data), self._loop)
        fut.result(timeout=5)
