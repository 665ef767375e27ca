"""The hub: coalescing bounded queues, bbox transitions, a stalled subscriber, shared backends."""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from live_support import NATS_URL, REDIS_URL, unique

from layers.hub import Hub, Pacer, make_hub


def change(fid: str, lon: float, lat: float, v: float = 0.0, layer: str = "devices", op: str = "update") -> dict:
    return {"op": op, "layer": layer,
            "feature": {"type": "Feature", "id": fid, "geometry": {"type": "Point", "coordinates": [lon, lat]},
                        "properties": {"v": v}}}


def test_a_subscriber_that_keeps_up_gets_every_change_in_order() -> None:
    hub = Hub(queue_size=10, coalesce_after=8)
    sub = hub.subscribe()
    for v in range(5):
        hub.publish("devices", change("A", 1, 1, v))
    hub.publish("devices", change("B", 1, 1, 9))
    got = sub.drain()
    assert [(c["feature"]["id"], c["feature"]["properties"]["v"]) for c in got] == [
        ("A", 0.0), ("A", 1.0), ("A", 2.0), ("A", 3.0), ("A", 4.0), ("B", 9.0)]
    assert sub.coalesced == 0 and sub.dropped == 0


def test_a_lagging_subscriber_gets_the_latest_change_of_each_feature() -> None:
    hub = Hub(queue_size=10, coalesce_after=2)
    sub = hub.subscribe()
    hub.publish("devices", change("B", 1, 1, 9))
    hub.publish("devices", change("C", 1, 1, 8))  # two queued: the client lags from here on
    for v in range(5):
        hub.publish("devices", change("A", 1, 1, v))
    hub.publish("devices", change("B", 1, 1, 10))
    got = sub.drain()
    assert [(c["feature"]["id"], c["feature"]["properties"]["v"]) for c in got] == [
        ("B", 10.0), ("C", 8.0), ("A", 4.0)]
    assert sub.coalesced == 5 and sub.dropped == 0 and sub.pending_count() == 0


@settings(deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCDE"), st.sampled_from(["update", "remove"])), max_size=60),
       st.integers(1, 6), st.integers(1, 12))
def test_every_published_change_is_queued_merged_or_dropped(ops, maxsize, coalesce_after) -> None:
    hub = Hub(queue_size=maxsize, coalesce_after=coalesce_after)
    sub = hub.subscribe()
    for v, (fid, op) in enumerate(ops):
        hub.publish("devices", change(fid, 1, 1, v, op=op))
        assert len(sub._pending) <= maxsize  # distinct features queued
    left = sub.drain()
    assert len(left) + sub.coalesced + sub.dropped == len(ops)
    assert sub.pending_count() == 0
    for fid in "ABCDE":  # the last change of a feature the client still hears of is its latest one
        mine = [c for c in left if c["feature"]["id"] == fid]
        sent = [v for v, (f, _) in enumerate(ops) if f == fid]
        if mine:
            assert mine[-1]["feature"]["properties"]["v"] == sent[-1]


def test_full_queue_drops_the_oldest_feature_and_counts_it() -> None:
    hub = Hub(queue_size=3)
    sub = hub.subscribe()
    for i in range(5):
        hub.publish("devices", change(f"F{i}", 1, 1))
    assert [c["feature"]["id"] for c in sub.drain()] == ["F2", "F3", "F4"]
    assert sub.dropped == 2


def test_stalled_subscriber_never_blocks_publishing_or_other_subscribers() -> None:
    hub = Hub(queue_size=100)
    stalled = hub.subscribe()  # never read
    fresh = hub.subscribe()
    for i in range(20_000):  # publish() returns each time although one subscriber never reads
        hub.publish("devices", change(f"F{i % 500}", 1, 1, i))
        if i % 1000 == 999:
            assert len(fresh.drain()) > 0
    assert stalled.pending_count() == 100  # bounded
    assert stalled.dropped + stalled.coalesced == 20_000 - 100  # every change queued, merged or dropped
    left = fresh.drain()
    assert {c["feature"]["properties"]["v"] for c in left} <= set(range(19_000, 20_000))


def test_bbox_filter_turns_moves_into_add_and_remove() -> None:
    hub = Hub()
    sub = hub.subscribe(["devices"], (0, 0, 10, 10))
    hub.publish("devices", change("car", 20, 20))  # outside: nothing
    assert sub.drain() == []
    hub.publish("devices", change("car", 5, 5))  # enters
    hub.publish("cameras", change("cam", 5, 5))  # other layer
    got = sub.drain()
    assert [(c["op"], c["feature"]["id"]) for c in got] == [("add", "car")]
    hub.publish("devices", change("car", 6, 6))
    assert [c["op"] for c in sub.drain()] == ["update"]
    hub.publish("devices", change("car", 30, 30))  # leaves
    assert [c["op"] for c in sub.drain()] == ["remove"]
    hub.publish("devices", change("car", 30, 30, op="remove"))
    assert sub.drain() == []


def test_subscriber_moved_to_another_bbox_gets_changes_there_only() -> None:
    hub = Hub()
    sub = hub.subscribe(None, (0, 0, 1, 1))
    sub.reset(["devices"], (10, 10, 11, 11))
    hub.publish("devices", change("a", 0.5, 0.5))
    hub.publish("devices", change("b", 10.5, 10.5))
    assert [c["feature"]["id"] for c in sub.drain()] == ["b"]


def test_async_consumer_wakes_on_publish_from_another_thread() -> None:
    async def main() -> list:
        hub = Hub()
        sub = hub.subscribe(loop=asyncio.get_running_loop())
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: loop.run_in_executor(None, hub.publish, "devices", change("x", 0, 0)))
        return await sub.next_batch(timeout=5)

    got = asyncio.run(main())
    assert [c["feature"]["id"] for c in got] == ["x"]


def test_paced_consumer_gets_the_first_change_at_once_and_the_rest_of_a_burst_in_one_frame() -> None:
    async def main() -> tuple[float, list, list]:
        loop = asyncio.get_running_loop()
        hub = Hub()
        hub.frame_s, hub.frame_max_s = 3.0, 3.0  # long ticks, so the burst surely lands within one
        sub = hub.subscribe(loop=loop)
        t0 = time.perf_counter()
        await loop.run_in_executor(None, hub.publish, "devices", change("x", 0, 0))
        first = await sub.next_batch(timeout=5)
        took = time.perf_counter() - t0

        def burst() -> None:
            for i in range(50):
                hub.publish("devices", change(f"f{i}", 0, 0, i))

        await loop.run_in_executor(None, burst)
        second = await sub.next_batch(timeout=5)
        return took, first, second

    took, first, second = asyncio.run(main())
    assert [c["feature"]["id"] for c in first] == ["x"]
    assert took < 1.5  # after a quiet spell: no wait for the 3-s tick (half of it is room for a busy machine)
    assert [c["feature"]["id"] for c in second] == [f"f{i}" for i in range(50)]  # one frame, in order


def test_pacer_lengthens_its_tick_while_the_worker_is_busy_never_past_the_bound_and_shrinks_back() -> None:
    async def main() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        hub = Hub()
        hub.frame_s, hub.frame_max_s = 0.01, 0.04
        sub = hub.subscribe(loop=loop)
        pacer = sub.pacer
        assert pacer is not None
        stop = threading.Event()

        def busy_publisher() -> None:  # keeps the process's CPU near a full core and changes flowing
            i = 0
            while not stop.is_set():
                hub.publish("devices", change("f", 0, 0, i))
                i += 1
                end = time.perf_counter() + 0.002
                while time.perf_counter() < end:
                    pass

        t = threading.Thread(target=busy_publisher)
        t.start()
        seen = []
        try:
            for _ in range(40):
                await sub.next_batch(timeout=5)
                seen.append(pacer.interval)
        finally:
            stop.set()
            t.join()
        for i in range(30):  # quiet but still changing now and then: the tick comes back down
            hub.publish("devices", change("f", 0, 0, -i))
            await sub.next_batch(timeout=5)
            await asyncio.sleep(0.02)
        return seen, pacer.interval

    seen, after = asyncio.run(main())
    assert max(seen) == pytest.approx(0.04)  # grew to the bound under load…
    assert all(x <= 0.04 + 1e-9 for x in seen)  # …and never past it
    assert after < 0.04


def test_a_change_is_serialised_once_for_every_subscriber_of_the_loop() -> None:
    loop = asyncio.new_event_loop()
    try:
        pacer = Pacer(loop)
        a, b = change("a", 1, 1, 1), change("b", 2, 2, 2)
        one, two = pacer.frame([a, b]), pacer.frame([b])
        assert orjson.loads(one) == {"type": "changes", "changes": [a, b]}
        assert orjson.loads(two) == {"type": "changes", "changes": [b]}
        assert len(pacer._encoded) == 2  # b was encoded once, for both frames
    finally:
        loop.close()


def test_a_stalled_subscriber_costs_one_wake_and_a_bounded_queue() -> None:
    loop = asyncio.new_event_loop()  # never run: the subscriber never reads
    try:
        hub = Hub(queue_size=200)
        stalled = hub.subscribe(loop=loop)
        wakes = []
        real_ready = stalled.pacer.ready
        stalled.pacer.ready = lambda sub: (wakes.append(sub), real_ready(sub))  # type: ignore[method-assign]
        for i in range(10_000):
            hub.publish("devices", change(f"F{i % 150}", 1, 1, i))
        assert len(wakes) == 1  # signalled once, not once per change or batch
        assert stalled.pending_count() <= 200
        assert stalled.coalesced + stalled.dropped + stalled.pending_count() == 10_000
    finally:
        loop.close()


@pytest.mark.parametrize("url", [REDIS_URL, NATS_URL], ids=["redis", "nats"])
def test_shared_backend_delivers_a_change_published_by_one_hub_to_another(url: str) -> None:
    channel = unique("twin.test.live")
    a, b = make_hub(url, channel), make_hub(url, channel)
    a.start()
    b.start()
    try:
        sa, sb = a.subscribe(), b.subscribe()
        a.publish("devices", change("x", 1, 2, 7))
        deadline = time.time() + 10
        got_a, got_b = [], []
        while time.time() < deadline and not (got_a and got_b):
            got_a += sa.drain()
            got_b += sb.drain()
            time.sleep(0.02)
        assert [c["feature"]["properties"]["v"] for c in got_b] == [7.0]
        assert [c["feature"]["id"] for c in got_a] == ["x"]  # the publisher sees it too, in the shared order
    finally:
        a.close()
        b.close()


def test_unknown_hub_url_is_refused() -> None:
    from twin.errors import InvalidParameter

    with pytest.raises(InvalidParameter):
        make_hub("amqp://x")


def test_pacer_shrinks_back_while_the_worker_uses_half_a_core_and_its_ticks_are_on_time(monkeypatch) -> None:
    """At 2,000 readings/s a worker uses about half a core: after one late tick stretched it, the tick must
    come back down (it used to stay at frame_max_s for good)."""
    import layers.hub as hub_module

    class Loop:  # the tick's timer is not what is tested here
        def call_later(self, *a: object) -> None: ...

    clock = {"wall": 0.0, "cpu": 0.0}

    class FakeTime:
        @staticmethod
        def perf_counter() -> float:
            return clock["wall"]

        @staticmethod
        def process_time() -> float:
            return clock["cpu"]

    monkeypatch.setattr(hub_module, "time", FakeTime)
    pacer = Pacer(Loop(), frame_s=0.025, frame_max_s=0.05)  # type: ignore[arg-type]
    sub = Hub().subscribe()
    intervals = []
    for k in range(12):
        pacer._ready.add(sub)
        late = 0.02 if k == 1 else 0.0  # one late tick
        clock["wall"] = pacer._due + late if k else 0.0
        pacer._tick()
        clock["cpu"] += 0.5 * (pacer.interval + late)  # half a core until the next tick
        intervals.append(pacer.interval)
    assert max(intervals) > 0.025  # the late tick stretched it…
    assert intervals[-1] == pytest.approx(0.025)  # …and half a core lets it shrink back
