"""A subscription's frames sent from its pacer's tick, without waking a task per subscriber.

The WebSocket stream used to run one consumer task per client: at every pacer tick the pacer set
each client's event, and each task woke in its own turn of the event loop, drained its queue,
framed it and awaited the send. At 2,000 readings/s and 200 clients that is ~8,000 task wake-ups
a second (a future, a callback, a task step and a chain of coroutine frames each) on the loop
that also does the sends — the largest share of the loop in the benchmark's profile.

A :class:`Pusher` is the subscription's synchronous consumer instead (``Subscription.push``): the
pacer calls it on its tick, it drains the queue, builds the frame (shared encodings,
:meth:`layers.hub.Pacer.frame`) and *starts* the send coroutine right there. An ASGI send that
does not have to wait (the usual case: uvicorn writes to the transport unless the client's socket
buffer is full) finishes in that one step, so a frame costs no task, no future and no extra turn
of the loop. Only a send that must wait (flow control: a client not reading) is handed to a task
that completes it; until it has, that subscriber gets no new frame (its changes wait in, and
coalesce in, its bounded queue), and when it has, the pacer is asked for another tick.

Other messages on the same socket (snapshots, errors) go through :meth:`Pusher.send`, which waits
for a frame in flight and keeps pushes out while it sends, so the client sees one order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from layers.hub import Change, Subscription

log = logging.getLogger("twin.live.push")


class Pusher:
    """Sends ``sub``'s changes as frames from its pacer's tick (loop thread only; see the module doc).

    ``send(text)`` is the transport's send coroutine (e.g. ``WebSocket.send_text``), ``frame(batch)``
    builds a frame's bytes. A failed send (the client went away) sets :attr:`failed`; the stream's
    owner ends the session on it."""

    def __init__(self, sub: Subscription, send: Callable[[str], Awaitable[None]],
                 frame: Callable[[Sequence[Change]], bytes], max_items: int = 500):
        self.sub = sub
        self._send = send
        self._frame = frame
        self.max_items = max_items
        self.busy = False  # a send is in flight (a frame waiting on flow control, or a snapshot)
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop = asyncio.get_running_loop()
        self.failed: asyncio.Future[BaseException] = self._loop.create_future()
        self._task: asyncio.Task[None] | None = None
        sub.push = self.push

    # -- the pacer's side ----------------------------------------------------------------------
    def push(self) -> None:
        """Send what is queued as one frame, now (called by the pacer's tick, on the loop)."""
        if self.busy or self.failed.done() or self.sub.closed:
            return  # a send in flight asks for another tick when it is done
        batch = self.sub.drain(self.max_items)
        if not batch:
            return
        if self.sub.pending_count() and self.sub.pacer is not None:  # more than max_items: the rest next tick
            self.sub.pacer.ready(self.sub)
        self._start(self._send(self._frame(batch).decode()))

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` up to its first wait; only if it has to wait, a task finishes it."""
        try:
            waiting = coro.send(None)
        except StopIteration:
            return  # sent without waiting: the usual case
        except Exception as exc:  # the client is gone (or the socket closed): the session ends
            self._fail(exc)
            return
        self.busy = True
        self._idle.clear()
        self._task = self._loop.create_task(self._finish(coro, waiting))

    async def _finish(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        """Drive a send that waited in :meth:`_start` to its end, as a task would have."""
        try:
            while True:
                if waiting is None:  # a bare yield (asyncio.sleep(0))
                    await asyncio.sleep(0)
                else:
                    waiting._asyncio_future_blocking = False  # as a task does with what a coroutine yields
                    try:
                        await waiting
                    except asyncio.CancelledError:
                        if not waiting.done() or not waiting.cancelled():
                            coro.close()  # this task was cancelled: the session is ending
                            raise
                    except Exception:  # noqa: S110 — the send coroutine sees the outcome when resumed
                        pass
                try:
                    waiting = coro.send(None)
                except StopIteration:
                    return
        except Exception as exc:
            self._fail(exc)
        finally:
            self._done()

    def _done(self) -> None:
        self.busy = False
        self._idle.set()
        if not self.failed.done() and not self.sub.closed and self.sub.pending_count() and self.sub.pacer is not None:
            self.sub.pacer.ready(self.sub)

    def _fail(self, exc: BaseException) -> None:
        if not self.failed.done():
            self.failed.set_result(exc)

    # -- the stream owner's side ---------------------------------------------------------------
    async def send(self, make: Callable[[], str]) -> None:
        """Send ``make()`` after any frame in flight, with pushes held off meanwhile: ``make`` may move
        the subscription (a new snapshot) and no frame of the old filter follows it."""
        while self.busy:
            await self._idle.wait()
        self.busy = True
        self._idle.clear()
        try:
            await self._send(make())
        finally:
            self._done()

    def close(self) -> None:
        """Stop pushing (the session is over); a send still in flight is cancelled."""
        self.sub.push = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
