"""Tile content is shared between workers through Redis, keyed on data versions (both backends)."""

from __future__ import annotations

import os
import uuid

import pytest
import redis

from scenes.service import SceneService
from tiles.cache import TileCache

REDIS_URL = os.environ.get("TWIN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def prefix(backend):
    p = f"twin:scene:test:{backend}:{uuid.uuid4().hex[:8]}:"
    yield p
    client = redis.Redis.from_url(REDIS_URL)
    for k in client.scan_iter(match=p + "*"):
        client.delete(k)


def test_a_second_worker_serves_content_rendered_by_the_first(town_store, town_settings, prefix):
    def worker() -> SceneService:
        return SceneService(town_store, town_settings, cache=TileCache(2**20, REDIS_URL, redis_prefix=prefix))

    first, second = worker(), worker()
    try:
        layers = ("buildings",)
        glb, etag = first.content(layers, 0, 0, 0)

        def no_render(*_a, **_k):  # the second worker must not render: Redis has the tile
            raise AssertionError("rendered again")

        second.render = no_render  # type: ignore[method-assign]
        again, etag2 = second.content(layers, 0, 0, 0)
        assert (again, etag2) == (glb, etag)
        assert redis.Redis.from_url(REDIS_URL).exists(prefix + etag)
    finally:
        first.close()
        second.close()
