"""Stale-while-revalidate over HTTP (both backends): after an edit, a tile it touched is answered
with its previous version (``Cache-Control: no-cache``) while the new one renders, never longer than
``TWIN_TILE_STALE_S`` after the edit; tiles the edit did not touch are unaffected."""

from __future__ import annotations

import time

import mapbox_vector_tile
import pytest

from tests.tiles.test_invalidation import FAR, P, event, other_connection_update, tile_at

Z = 16


@pytest.fixture
def events_store(empty_store):
    empty_store.write_features("events", [event(1, *P), event(2, *FAR)])
    yield empty_store
    empty_store.clear(["events"])


def url(place: tuple[float, float]) -> str:
    t = tile_at(*place, Z)
    return f"/tiles/events/{t.z}/{t.x}/{t.y}.mvt"


def statuses(resp) -> list[str]:  # noqa: ANN001
    layers = mapbox_vector_tile.decode(resp.content)  # httpx undid the gzip
    return [f["properties"]["status"] for f in layers["events"]["features"]]


def get(client, place):  # noqa: ANN001, ANN201
    r = client.get(url(place), headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    return r


def test_an_edited_tile_is_served_stale_then_fresh(events_store, client_for):
    client = client_for(events_store, tile_version_ttl_s=0.05, tile_stale_s=600)
    before, far = get(client, P), get(client, FAR)
    assert statuses(before) == ["reported"] and before.headers["cache-control"].startswith("public, max-age=")

    other_connection_update(events_store, "UPDATE events SET status = 'dispatched' WHERE id = 1", spatial=False)
    time.sleep(0.1)  # past the version TTL: the server reads the change log on the next request
    stale = get(client, P)
    assert stale.headers["etag"] == before.headers["etag"] and statuses(stale) == ["reported"]
    assert stale.headers["cache-control"] == "public, no-cache"
    # the tile 1 km away was not touched: same version, cacheable as before
    again = get(client, FAR)
    assert again.headers["etag"] == far.headers["etag"]
    assert again.headers["cache-control"] == far.headers["cache-control"]

    # the answer above started a background render: the new version follows
    deadline = time.monotonic() + 60
    fresh = get(client, P)
    while fresh.headers["etag"] == before.headers["etag"] and time.monotonic() < deadline:
        time.sleep(0.05)
        fresh = get(client, P)
    assert fresh.headers["etag"] != before.headers["etag"]
    assert statuses(fresh) == ["dispatched"] and fresh.headers["cache-control"].startswith("public, max-age=")

    # a client revalidating the stale tag gets the current version
    r = client.get(url(P), headers={"Accept-Encoding": "gzip", "If-None-Match": before.headers["etag"]})
    assert r.status_code == 200 and statuses(r) == ["dispatched"]


def test_never_staler_than_the_bound(events_store, client_for):
    client = client_for(events_store, tile_version_ttl_s=0.05, tile_stale_s=0.3)
    before = get(client, P)
    other_connection_update(events_store, "UPDATE events SET status = 'verified' WHERE id = 1", spatial=False)
    time.sleep(0.6)  # longer than the bound since the edit: the old version may no longer be sent
    after = get(client, P)
    assert after.headers["etag"] != before.headers["etag"] and statuses(after) == ["verified"]
    assert after.headers["cache-control"].startswith("public, max-age=")


def test_stale_answers_off(events_store, client_for):
    client = client_for(events_store, tile_version_ttl_s=0.05, tile_stale_s=0)
    before = get(client, P)
    other_connection_update(events_store, "UPDATE events SET status = 'handled' WHERE id = 1", spatial=False)
    time.sleep(0.1)
    after = get(client, P)
    assert after.headers["etag"] != before.headers["etag"] and statuses(after) == ["handled"]


def test_a_tile_edits_keep_touching_is_re_rendered_at_a_paced_rate(events_store, client_for, monkeypatch):
    """Re-renders of one tile are paced by what it costs (tiles.service.RERENDER_SHARE), never beyond
    half the stale window: made so costly here that the pace is that cap (1 s of a 2 s window), an
    edit right after a render is answered stale (never waited for) until the pace allows, then fresh."""
    import tiles.service

    monkeypatch.setattr(tiles.service, "RERENDER_SHARE", 1e-9)
    client = client_for(events_store, tile_version_ttl_s=0.05, tile_stale_s=2.0)
    before = get(client, P)  # rendered now
    rendered_at = time.monotonic()
    other_connection_update(events_store, "UPDATE events SET status = 'verified' WHERE id = 1", spatial=False)
    time.sleep(0.1)
    answers = []
    while time.monotonic() - rendered_at < 3.0:
        r = get(client, P)
        answers.append((time.monotonic() - rendered_at, r.headers["etag"] != before.headers["etag"], statuses(r)))
        time.sleep(0.05)
    fresh_at = [t for t, new, _ in answers if new]
    assert fresh_at, "the new version came within the stale window"
    assert fresh_at[0] >= 1.0, f"re-rendered {fresh_at[0]:.2f} s after the last render: not paced"
    assert all(s == ["reported"] for t, new, s in answers if not new)
    assert all(s == ["verified"] for t, new, s in answers if new)
